"""Peak experience and mood outcomes (issue 4, notebook 02): does the acute ketamine experience predict
how much depression improves, beyond dose?

Every function takes a :class:`~pipelines.study.dataset.Study` or the tidy tables made from one, plus explicit
parameters, and returns tidy tables (one row per estimate: estimate, CI, p, FDR-adjusted p, n, method).
Scoring is :mod:`pipelines.phenotype.questionnaires`, outcomes :mod:`pipelines.phenotype.mood`, statistics
:mod:`pipelines.stats`; this module only decides *what* is compared with *what*.

Conventions (one place each):

- **Peak-experience tables** are one row per subject-session. Real trials (and the default study) give the
  questionnaires after placebo sessions too, so every analysis involving a peak score uses every session
  with a questionnaire, placebo included (low scores, often at the floor). A study whose questionnaires exist
  only after active doses still runs: :func:`placebo_note` says in one line that placebo is missing. One
  documented exception (:data:`ACTIVE_ONLY_REASON`): with mood measured once per subject (one course), a
  subject's peak score is the mean over their active sessions.
- **Mood improvement** = baseline − time point (scale points; positive = better), the sign used by the
  default study's ``truth.json``. :mod:`pipelines.phenotype.mood`'s ``_change`` is its negative.
- **The subject is the unit of inference** (issue 11; docs/statistics.md). A subject contributes one
  session per dose, so every peak↔mood *conclusion* comes from :func:`subject_level_correlations`
  (:mod:`pipelines.stats`): the within-subject row is the test, the between-subject row (subject
  means) the trait-level association, the pooled over-all-sessions r a labelled description only. The
  per-time-point tables of :func:`peak_vs_mood_correlations` (sessions treated as independent rows) are
  kept as description.
- **Families for FDR** (Benjamini–Hochberg): the confirmatory family is the within-subject rows of the
  primary scores × every post-baseline time point; the other scores' within rows form the secondary
  family; adjusted (partial) and between-subject rows are their own families.
- **Baseline** is the time point labelled ``baseline`` in the manifest, else its first time point.
- A manifest table is matched to a scale by name (``phenotype.meq30`` is scored as MEQ30); a table with
  ``scored: true`` holds scale-level scores and is validated, not scored.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines import stats
from pipelines.core.errors import InputError
from pipelines.phenotype import mood, questionnaires
from pipelines.stats import within_between_correlation, within_subject_mediation, within_subject_partial_correlation
from pipelines.study.dataset import Study
from pipelines.study.manifest import ManifestError

__all__ = [
    "PARAMETERS",
    "AnalysisParameters",
    "MOOD_SCALES",
    "PEAK_SCORES",
    "PRIMARY_SCORES",
    "PeakMoodParameters",
    "PeakMoodResult",
    "ScoreSet",
    "analysis_table",
    "dose_effect_on_peak",
    "load_scores",
    "longitudinal_model",
    "mediation_dose_peak_mood",
    "mood_change_table",
    "mood_trajectory_table",
    "outcome_rate_table",
    "peak_by_dose",
    "peak_vs_mood_correlations",
    "placebo_note",
    "run",
    "session_periods",
    "subject_level_correlations",
    "summary_text",
    "truth_comparison",
    "validate_parameters",
]

# Scores analysed for each peak-experience scale (the primary ones: the four MEQ30 subscales and total,
# the five 5D-ASC dimensions; the 11 lower-order factors only for the stand-alone 11D-ASC). Other
# scores are still computed and kept in the score table.
PEAK_SCORES: dict[str, tuple[str, ...]] = {
    "meq30": ("total", "mystical", "positive_mood", "transcendence", "ineffability"),
    "asc5d": tuple(questionnaires.ASC5D_DIMENSIONS),
    "asc11d": tuple(questionnaires.ASC11D_FACTORS),
}
# The confirmatory family: the a-priori predictors of antidepressant response in the literature — MEQ30
# total and mystical subscale (Griffiths et al. 2016, J Psychopharmacol 30:1181; Roseman, Nutt &
# Carhart-Harris 2018, Front Pharmacol 8:974) and 5D-ASC oceanic boundlessness (Roseman et al. 2018).
# The other analysed scores form a secondary family; BH-FDR is applied within each family.
PRIMARY_SCORES: tuple[str, ...] = ("meq30_total", "meq30_mystical", "asc5d_obn")
# Mood scale -> its total score column (the outcome).
MOOD_SCALES: dict[str, str] = {
    name: questionnaires.SCALES[name].score_column("total") for name in ("madrs", "hamd17", "qids_sr16", "bdi_ii")
}
CORRELATION_METHODS = ("spearman", "pearson")
MISSING_RULES = ("none", "prorate")
ANALYSES = ("bivariate", "partial", "repeated_measures")
KEYS = ["participant_id", "session_id"]
DOSE = "dose_mg_per_kg"
# The one place a peak analysis keeps active sessions only, and why (printed by the report).
ACTIVE_ONLY_REASON = (
    "mood is one course per subject, so a subject's peak score is the mean over their active sessions: a "
    "placebo session's rating is not part of the ketamine course whose outcome is measured"
)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisParameters:
    """The validated parameters of the analysis (what notebook 02 exposes), stored with its results."""

    scales: tuple[str, ...]
    mood_scale: str
    baseline: str
    timepoints: tuple[str, ...]  # post-baseline time points analysed, in manifest order
    correlation_method: str
    fdr_alpha: float
    remission_threshold: float
    n_boot: int
    seed: int
    missing_items: str
    max_missing_fraction: float | None
    primary_scores: tuple[str, ...]  # the confirmatory FDR family (with every time point)
    primary_score: str
    primary_timepoint: str

    @property
    def mood_score(self) -> str:
        return MOOD_SCALES[self.mood_scale]

    @property
    def outcome(self) -> str:
        return f"{self.mood_score}_improvement"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _choice(value, allowed: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        hint = difflib.get_close_matches(str(value), list(allowed), 1)
        raise ValueError(
            f"{name}={value!r} is not one of {list(allowed)}" + (f" — did you mean {hint[0]!r}?" if hint else "")
        )
    return value


def _number(value, name: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if integer and float(value) != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return float(value)


def baseline_label(study: Study) -> str:
    """The baseline time point of a study: ``baseline`` when the manifest lists it, else its first."""
    timepoints = study.manifest.timepoints
    if not timepoints:
        raise ManifestError(f"{study.manifest.manifest_path}: timepoints is empty")
    return "baseline" if "baseline" in timepoints else timepoints[0]


class PeakMoodParameters(BaseModel):
    """Parameters of notebook 02 (``notebooks: 02_peak_experience_mood:`` in the manifest).

    Types and descriptions here; :meth:`resolve` checks the values against the study (scales, time points,
    scores) with the messages of :func:`validate_parameters` and fills in the defaults that depend on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scales: list[str] | str = Field(
        ["meq30", "asc5d"], description="Peak-experience scales (manifest phenotype tables of the same name)"
    )
    mood_scale: str = Field("madrs", description="Mood scale: madrs, hamd17, qids_sr16 or bdi_ii")
    timepoints: list[str] | str | None = Field(
        None, description="Post-baseline time points to analyse; None: the manifest's"
    )
    correlation_method: str = Field("spearman", description="spearman or pearson")
    fdr_alpha: float = Field(0.05, description="Benjamini-Hochberg level, within each family (score x time point)")
    remission_threshold: float | None = Field(
        None,
        description="Remission: total at or below this; None: the mood scale's published cut-off "
        "(MADRS 10, HAM-D17 7, QIDS-SR16 5, BDI-II 13); another value warns",
    )
    n_boot: int = Field(2000, description="Bootstrap resamples for correlation and indirect-effect CIs (>= 100)")
    seed: int = Field(0, description="Seed of every bootstrap (>= 0)")
    missing_items: str = Field("prorate", description="Missing-item rule: none or prorate")
    max_missing_fraction: float | None = Field(
        0.2, description="With prorate: most of a score's items that may be missing, in [0, 1)"
    )
    primary_scores: list[str] | str | None = Field(
        None, description="Confirmatory FDR family; None: MEQ30 total, mystical and 5D-ASC OBN"
    )
    primary_score: str = Field(
        "meq30_mystical", description="Peak score of the longitudinal model, the mediation and the summary"
    )
    primary_timepoint: str | None = Field(
        None, description="Time point of the mediation and the summary; None: 24h when analysed"
    )

    def resolve(self, study: Study) -> AnalysisParameters:
        return validate_parameters(study, **self.model_dump())


PARAMETERS = PeakMoodParameters


def validate_parameters(
    study: Study,
    *,
    scales: Sequence[str] = ("meq30", "asc5d"),
    mood_scale: str = "madrs",
    timepoints: Sequence[str] | None = None,
    correlation_method: str = "spearman",
    fdr_alpha: float = 0.05,
    remission_threshold: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    missing_items: str = "prorate",
    max_missing_fraction: float | None = 0.2,
    primary_scores: Sequence[str] | None = None,
    primary_score: str = "meq30_mystical",
    primary_timepoint: str | None = None,
) -> AnalysisParameters:
    """Check every parameter of the analysis and return them typed; a bad value raises ``ValueError``
    naming the parameter, the allowed values and, for a misspelling, the likely one.

    ``timepoints`` None = the manifest's (baseline excluded); listed time points must be the manifest's.
    ``remission_threshold`` None = the mood scale's published cut-off (``questionnaires.REMISSION_THRESHOLDS``:
    MADRS 10, HAM-D17 7, QIDS-SR16 5, BDI-II 13); an explicit value outside the scale's total range raises,
    one that is not the scale's cut-off warns (:func:`questionnaires.remission_threshold`), e.g. 10 with
    HAM-D17, the MADRS cut-off that notebook 02 used to force on every scale.
    ``primary_scores`` are the confirmatory family of peak scores (None = :data:`PRIMARY_SCORES` of the
    chosen scales, else every analysed score); the other analysed scores form a secondary family.
    ``primary_score`` is the peak score of the longitudinal model, the mediation and the summary;
    ``primary_timepoint`` None = ``24h`` when analysed, else the first analysed time point.
    """
    if isinstance(scales, str):
        scales = [scales]
    if not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"scales must be a non-empty list of {list(PEAK_SCORES)}, got {scales!r}")
    scales = tuple(dict.fromkeys(_choice(s, list(PEAK_SCORES), "scales") for s in scales))
    mood_scale = _choice(mood_scale, list(MOOD_SCALES), "mood_scale")
    correlation_method = _choice(correlation_method, CORRELATION_METHODS, "correlation_method")
    missing_items = _choice(missing_items, MISSING_RULES, "missing_items")
    baseline = baseline_label(study)
    chosen = _chosen_timepoints(study, timepoints, baseline)
    numbers = _checked_numbers(fdr_alpha, n_boot, seed, missing_items, max_missing_fraction)
    if remission_threshold is not None:
        _number(remission_threshold, "remission_threshold")
    remission_threshold = questionnaires.remission_threshold(MOOD_SCALES[mood_scale], remission_threshold)
    primary_scores, primary_score, primary_timepoint = _primary(
        scales, primary_scores, primary_score, primary_timepoint, chosen
    )
    return AnalysisParameters(
        scales=scales,
        mood_scale=mood_scale,
        baseline=baseline,
        timepoints=tuple(chosen),
        correlation_method=correlation_method,
        remission_threshold=remission_threshold,
        missing_items=missing_items,
        primary_scores=primary_scores,
        primary_score=primary_score,
        primary_timepoint=primary_timepoint,
        **numbers,
    )


def _chosen_timepoints(study: Study, timepoints, baseline: str) -> list[str]:
    known = list(study.manifest.timepoints)
    if timepoints is None:
        chosen = [t for t in known if t != baseline]
    else:
        if isinstance(timepoints, str):
            timepoints = [timepoints]
        for t in timepoints:
            _choice(t, known, "timepoints")
        chosen = [t for t in known if t in set(timepoints) and t != baseline]
    if not chosen:
        raise ValueError(
            f"timepoints: no post-baseline time point to analyse (manifest: {known}, baseline {baseline!r})"
        )
    return chosen


def _checked_numbers(fdr_alpha, n_boot, seed, missing_items: str, max_missing_fraction) -> dict:
    fdr_alpha = _number(fdr_alpha, "fdr_alpha")
    if not 0 < fdr_alpha < 1:
        raise ValueError(f"fdr_alpha must be in (0, 1), got {fdr_alpha}")
    n_boot = int(_number(n_boot, "n_boot", integer=True))
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a percentile CI, got {n_boot}")
    seed = int(_number(seed, "seed", integer=True))
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if missing_items == "prorate":
        if max_missing_fraction is None:
            raise ValueError("missing_items='prorate' needs max_missing_fraction in [0, 1)")
        max_missing_fraction = _number(max_missing_fraction, "max_missing_fraction")
        if not 0 <= max_missing_fraction < 1:
            raise ValueError(f"max_missing_fraction must be in [0, 1), got {max_missing_fraction}")
    else:
        max_missing_fraction = None
    return {"fdr_alpha": fdr_alpha, "n_boot": n_boot, "seed": seed, "max_missing_fraction": max_missing_fraction}


def _primary(scales, primary_scores, primary_score, primary_timepoint, chosen: list[str]):
    candidates = [questionnaires.SCALES[s].score_column(c) for s in scales for c in PEAK_SCORES[s]]
    if primary_scores is None:
        primary_scores = [c for c in PRIMARY_SCORES if c in candidates] or candidates
    elif isinstance(primary_scores, str):
        primary_scores = [primary_scores]
    primary_scores = tuple(dict.fromkeys(_choice(c, candidates, "primary_scores") for c in primary_scores))
    if not primary_scores:
        raise ValueError("primary_scores must name at least one score")
    primary_score = _choice(primary_score, candidates, "primary_score")
    if primary_timepoint is None:
        primary_timepoint = "24h" if "24h" in chosen else chosen[0]
    primary_timepoint = _choice(primary_timepoint, chosen, "primary_timepoint")
    return primary_scores, primary_score, primary_timepoint


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoreSet:
    """Scored tables of one study.

    ``peak``: one row per subject-session with a peak-experience questionnaire (keys, dose, every score
    of every present scale). ``mood``: one row per subject-session-time point (keys, dose, time point,
    the mood scale's scores). ``report``: one row per requested table — how it was read (scored from
    items / scale-level / absent), its path and the missing-item counts. ``peak_scores``: the columns
    analysed (see :data:`PEAK_SCORES`) that are present. ``mood_score``: the outcome column, or None when
    the mood table is absent.
    """

    peak: pd.DataFrame
    mood: pd.DataFrame | None
    report: pd.DataFrame
    peak_scores: list[str]
    mood_score: str | None
    missing_items: str
    max_missing_fraction: float | None
    messages: list[str] = field(default_factory=list)
    mood_unit: str = "session"  # "subject" when the mood table has one course per person (no session_id)

    @property
    def absent(self) -> list[str]:
        return self.report.loc[~self.report["present"], "table"].tolist()


def session_doses(study: Study) -> pd.DataFrame:
    """participant_id, session_id, dose_mg_per_kg of every session (from the study; one row each)."""
    sessions = study.sessions[[*KEYS, DOSE]].drop_duplicates()
    conflicting = sessions.duplicated(KEYS, keep=False)
    if conflicting.any():
        row = sessions[conflicting].iloc[0]
        raise InputError(
            "one session maps to more than one dose", subject=row["participant_id"], session=row["session_id"]
        )
    return sessions.reset_index(drop=True)


def _attach_doses(scores: pd.DataFrame, doses: pd.DataFrame, source: str) -> pd.DataFrame:
    out = scores.merge(doses, on=KEYS, how="left", validate="many_to_one")
    unknown = out[DOSE].isna().to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(
            f"{int(unknown.sum())} row(s) name a session the study does not have (no dose); known "
            f"sessions: {', '.join(sorted(doses['session_id'].unique()))}",
            file=source,
            subject=str(out["participant_id"].iloc[i]),
            session=str(out["session_id"].iloc[i]),
        )
    return out


def score_manifest_table(
    study: Study, scale: str, *, missing: str, max_missing_fraction: float | None, participants
) -> tuple[questionnaires.ScoringResult | None, dict]:
    """Score one manifest table; absent tables give (None, report row) instead of an error."""
    row = {
        "table": scale,
        "scale": scale,
        "present": False,
        "input": None,
        "path": None,
        "n_rows": 0,
        "n_scores": 0,
        "n_prorated": 0,
        "n_missing_scores": 0,
        "missing_rule": None,
        "message": "",
    }
    declared = study.manifest.phenotype.get(scale)
    if declared is None:
        row["message"] = (
            f"not declared in the manifest (phenotype.{scale}); tables declared: "
            f"{', '.join(study.manifest.phenotype) or 'none'}"
        )
        return None, row
    path = study.table_path(scale)
    row["path"] = str(path)
    if not path.is_file():
        row["message"] = f"file not found: {path} (declared as phenotype.{scale}.path = {declared.path!r})"
        return None, row
    if declared.scored:
        result = questionnaires.read_scored_table(path, scale, participants=participants)
        row["input"] = "scale-level (scored: true)"
    else:
        result = questionnaires.score_items(
            path,
            scale,
            response_scale=declared.response_scale,
            missing=missing,
            max_missing_fraction=max_missing_fraction,
            participants=participants,
        )
        row["input"] = "items"
    summary = result.summary()
    row.update(
        present=True,
        n_rows=summary["n_rows"],
        n_scores=summary["n_scores"],
        n_prorated=summary["n_prorated"],
        n_missing_scores=summary["n_missing_scores"],
        missing_rule=(
            summary["missing"]
            if summary["max_missing_fraction"] is None
            else f"{summary['missing']} (≤ {100 * summary['max_missing_fraction']:g} % of a score's items)"
        ),
    )
    row["message"] = (
        f"{row['n_rows']} rows, {row['n_scores']} scores; {row['n_prorated']} prorated, "
        f"{row['n_missing_scores']} left missing"
    )
    return result, row


def load_scores(
    study: Study,
    scales: Sequence[str] = ("meq30", "asc5d"),
    mood_scale: str = "madrs",
    *,
    missing_items: str = "prorate",
    max_missing_fraction: float | None = 0.2,
) -> ScoreSet:
    """Score the peak-experience tables ``scales`` and the mood table ``mood_scale`` of a study.

    Each scale is read from the manifest's phenotype table of the same name: item-level tables are
    scored with the declared response scale and the missing-item rule (``missing_items`` "none" or
    "prorate" up to ``max_missing_fraction`` of a score's items); tables marked ``scored: true`` are
    validated scale-level scores. A table not declared or not on disk is reported in ``report`` (with
    the reason) and skipped; bad data in a present table raises :class:`InputError`. Doses come from
    the study's sessions; rows naming unknown sessions raise.
    """
    participants = study.root / "participants.tsv"
    participants = participants if participants.is_file() else None
    doses = session_doses(study)
    rows, messages = [], []
    peak = None
    peak_scores: list[str] = []
    for scale in scales:
        result, row = score_manifest_table(
            study, scale, missing=missing_items, max_missing_fraction=max_missing_fraction, participants=participants
        )
        rows.append(row)
        if result is None:
            messages.append(f"{scale}: {row['message']}")
            continue
        scores = result.scores
        if "timepoint" in scores.columns:
            raise InputError(
                f"{scale} is a peak-experience table and must have one row per "
                "subject-session, but it has a timepoint column",
                file=result.source,
            )
        key = questionnaires.SCALES[scale]
        peak_scores += [key.score_column(c) for c in PEAK_SCORES[scale] if key.score_column(c) in scores.columns]
        peak = scores if peak is None else peak.merge(scores, on=KEYS, how="outer")
    if peak is None:
        peak = pd.DataFrame(columns=[*KEYS, DOSE])
    else:
        peak = _attach_doses(peak, doses, "peak-experience tables")
        peak = peak[[*KEYS, DOSE, *[c for c in peak.columns if c not in (*KEYS, DOSE)]]]

    mood_result, row = score_manifest_table(
        study, mood_scale, missing=missing_items, max_missing_fraction=max_missing_fraction, participants=participants
    )
    rows.append(row)
    mood_table, mood_score, mood_unit = None, None, "session"
    if mood_result is None:
        messages.append(f"{mood_scale}: {row['message']}")
    else:
        mood_table = mood_result.scores
        if "timepoint" not in mood_table.columns:
            raise InputError(
                f"{mood_scale} needs a timepoint column (one row per subject-session-time point)",
                file=mood_result.source,
                field="timepoint",
            )
        unknown = sorted(set(mood_table["timepoint"]) - set(study.manifest.timepoints))
        if unknown:
            raise InputError(
                f"time points {unknown} are not among the manifest's timepoints {study.manifest.timepoints}",
                file=mood_result.source,
                field="timepoint",
            )
        if "session_id" in mood_table.columns:
            mood_table = _attach_doses(mood_table, doses, mood_result.source)
        else:  # mood per subject (e.g. open label): one course per person, not one per session
            mood_table = mood_table.assign(session_id=None, **{DOSE: np.nan})
            mood_unit = "subject"
        mood_table.attrs["source"] = mood_result.source
        mood_score = MOOD_SCALES[mood_scale]
    report = pd.DataFrame(rows)
    return ScoreSet(
        peak=peak.reset_index(drop=True),
        mood=mood_table,
        report=report,
        peak_scores=peak_scores,
        mood_score=mood_score,
        missing_items=missing_items,
        max_missing_fraction=max_missing_fraction if missing_items == "prorate" else None,
        messages=messages,
        mood_unit=mood_unit,
    )


def _require_mood(scores: ScoreSet) -> pd.DataFrame:
    if scores.mood is None:
        absent = "; ".join(scores.messages) or "mood table absent"
        raise InputError(f"no mood table to analyse: {absent}")
    return scores.mood


def _require_peak(scores: ScoreSet) -> list[str]:
    if not scores.peak_scores:
        raise InputError(
            "no peak-experience scores to analyse: " + ("; ".join(scores.messages) or "no peak scale requested")
        )
    return scores.peak_scores


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


def _timepoint_order(values, order: Sequence[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=list(order), ordered=True)


def mood_change_table(
    scores: ScoreSet,
    *,
    baseline: str = "baseline",
    remission_threshold: float | None = None,
    timepoint_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Change from baseline, % change, improvement (= −change), response (≥ 50 % reduction, inclusive)
    and remission (total ≤ ``remission_threshold``) at every time point of every subject-session.

    One row per subject-session-time point (baseline rows kept), sorted by subject, session and time
    point (``timepoint_order``, e.g. the manifest's). See :func:`pipelines.phenotype.mood.mood_outcomes`.
    """
    table = _require_mood(scores)
    score = scores.mood_score
    keys = KEYS if scores.mood_unit == "session" else ["participant_id"]
    out = mood.mood_outcomes(table, score, baseline=baseline, remission_threshold=remission_threshold, keys=keys)
    out[f"{score}_improvement"] = -out[f"{score}_change"]
    if timepoint_order is not None:
        order = _timepoint_order(out["timepoint"], timepoint_order)
        out = out.assign(_order=order.codes).sort_values([*KEYS, "_order"]).drop(columns="_order")
    return out.reset_index(drop=True)


def outcome_rate_table(
    outcomes: pd.DataFrame, score: str, timepoints: Sequence[str], alpha: float = 0.05
) -> pd.DataFrame:
    """Response and remission rates per dose and time point with Wilson CIs (one tidy table)."""
    post = outcomes[outcomes["timepoint"].isin(timepoints)]
    rates = pd.concat(
        [mood.outcome_rates(post, f"{score}_{kind}", alpha=alpha) for kind in ("response", "remission")],
        ignore_index=True,
    )
    rates["measure"] = rates["outcome"].str.rsplit("_", n=1).str[-1]
    rates["_order"] = _timepoint_order(rates["timepoint"], timepoints).codes
    rates["_m"] = rates["measure"].map({"response": 0, "remission": 1})
    return rates.sort_values(["_m", "_order", DOSE]).drop(columns=["_order", "_m"]).reset_index(drop=True)


def mood_trajectory_table(outcomes: pd.DataFrame, score: str, timepoint_order: Sequence[str]) -> pd.DataFrame:
    """Mean, SD, n and t-based 95 % CI of the mood score per dose and time point (baseline included)."""
    table = stats.mean_t_ci(outcomes, [DOSE, "timepoint"], score, dropna_groups=False)
    table["score"] = score
    table["_t"] = _timepoint_order(table["timepoint"], timepoint_order).codes
    return table.sort_values([DOSE, "_t"]).drop(columns="_t").reset_index(drop=True)


def analysis_table(scores: ScoreSet, outcomes: pd.DataFrame, timepoints: Sequence[str]) -> pd.DataFrame:
    """Peak scores next to mood outcomes: one row per subject-session with a peak questionnaire (placebo
    included when it was rated) and per post-baseline time point in ``timepoints`` (the population of every
    peak-vs-mood analysis). With mood per subject, one row per subject: :data:`ACTIVE_ONLY_REASON`.
    """
    peak_scores = _require_peak(scores)
    post = outcomes[outcomes["timepoint"].isin(timepoints)]
    if scores.mood_unit == "subject":
        # Mood is one course per person: each subject counts once per time point, with the mean of their
        # active sessions' peak scores (never one row per session, which would count the outcome twice;
        # placebo left out for ACTIVE_ONLY_REASON).
        active = scores.peak[scores.peak[DOSE] > 0]
        peak = active.groupby("participant_id", as_index=False).agg(
            **{c: (c, "mean") for c in [*peak_scores, DOSE]}, n_peak_sessions=("session_id", "count")
        )
        data = peak.merge(post.drop(columns=[DOSE]), on="participant_id", how="inner", validate="one_to_many")
        data.attrs["unit"] = "subject: peak scores averaged over each subject's active sessions"
    else:
        peak = scores.peak[[*KEYS, *peak_scores]]
        data = peak.merge(post, on=KEYS, how="inner", validate="one_to_many")
    data["_order"] = _timepoint_order(data["timepoint"], timepoints).codes
    data = data.sort_values(["_order", *KEYS]).drop(columns="_order").reset_index(drop=True)
    return data


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

RESULT_COLUMNS = [
    "analysis",
    "family",
    "score",
    "outcome",
    "timepoint",
    "method",
    "n",
    "n_subjects",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_method",
    "p",
    "p_fdr",
    "significant_fdr",
    "covariates",
    "n_boot",
    "seed",
]


def peak_vs_mood_correlations(
    data: pd.DataFrame,
    peak_scores: Sequence[str],
    outcome: str,
    timepoints: Sequence[str],
    *,
    method: str = "spearman",
    baseline_column: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    primary_scores: Sequence[str] | None = None,
    analyses: Sequence[str] = ANALYSES,
) -> pd.DataFrame:
    """Every peak score against ``outcome`` at every time point, three ways (``analysis``):

    - ``bivariate``: Spearman or Pearson ``method`` over the subject-sessions of ``data``, seeded bootstrap
      percentile CI (``n_boot`` resamples, ``seed``).
    - ``partial``: the same, controlling for dose and baseline severity (``baseline_column``; pingouin
      ``partial_corr`` semantics, ranks of all variables for Spearman).
    - ``repeated_measures``: within-subject correlation across dose sessions (Bakdash & Marusich 2017,
      pingouin ``rm_corr``; Pearson on the values, Fisher-z CI) — free of between-subject confounds.

    BH-FDR is applied within each analysis and family (``family``: "primary" = ``primary_scores`` ×
    time points, the confirmatory family; "secondary" = the other scores × time points; None = every
    score is primary). ``data`` is from :func:`analysis_table`. Columns: :data:`RESULT_COLUMNS`.
    """
    unknown = set(analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; choose from {ANALYSES}")
    peak_scores = list(peak_scores)
    data = data[data["timepoint"].isin(timepoints)]
    n_subjects = data.groupby("timepoint")["participant_id"].nunique()
    parts = []
    for analysis in analyses:
        if analysis == "repeated_measures" and not _repeated(data):
            continue  # one row per subject and time point: nothing varies within a subject
        if analysis == "repeated_measures":
            tables = []
            for tp in timepoints:
                part = data[data["timepoint"] == tp]
                table = stats.rm_correlation(part, peak_scores, outcome, subject="participant_id", fdr_alpha=fdr_alpha)
                tables.append(table.assign(group=tp))
            table = pd.concat(tables, ignore_index=True)
            table["p_fdr"] = stats.fdr_bh(table["p"].to_numpy(dtype=float))
            table["significant_fdr"] = table["p_fdr"].to_numpy() <= fdr_alpha
            table = table.assign(
                covariates="subject",
                ci_method="Fisher z (pingouin rm_corr)",
                n_boot=0,
                seed=seed,
                method="rm_corr (pearson)",
            )
        else:
            if analysis == "partial" and baseline_column is None:
                raise ValueError("the partial analysis needs baseline_column")
            covariates = [DOSE, baseline_column] if analysis == "partial" else None
            if covariates:  # a covariate that does not vary (one dose in an open-label study) adjusts nothing
                covariates = [c for c in covariates if data[c].nunique(dropna=True) > 1]
            table = stats.correlation_table(
                data,
                peak_scores,
                [outcome],
                method=method,
                covariates=covariates,
                n_boot=n_boot,
                seed=seed,
                fdr_alpha=fdr_alpha,
                group="timepoint",
            )
            table["n_subjects"] = table["group"].map(n_subjects).astype("int64")
            table["ci_method"] = "bootstrap percentile 95%"
        parts.append(table.assign(analysis=analysis))
    out = pd.concat(parts, ignore_index=True).rename(columns={"x": "score", "y": "outcome", "group": "timepoint"})
    primary = set(peak_scores if primary_scores is None else primary_scores)
    out["family"] = np.where(out["score"].isin(primary), "primary", "secondary")
    out["p_fdr"] = np.nan
    for _, index in out.groupby(["analysis", "family"]).groups.items():
        out.loc[index, "p_fdr"] = stats.fdr_bh(out.loc[index, "p"].to_numpy(dtype=float))
    out["significant_fdr"] = out["p_fdr"].to_numpy() <= fdr_alpha
    out["_a"] = out["analysis"].map({a: i for i, a in enumerate(ANALYSES)})
    out["_t"] = _timepoint_order(out["timepoint"], timepoints).codes
    out["_s"] = out["score"].map({s: i for i, s in enumerate(peak_scores)})
    out = out.sort_values(["_a", "_t", "_s"]).drop(columns=["_a", "_t", "_s"])
    out.attrs.update(
        {
            "fdr": "Benjamini-Hochberg within each analysis and family (score × time point)",
            "fdr_alpha": fdr_alpha,
            "outcome_definition": "baseline − time point",
        }
    )
    return out[RESULT_COLUMNS].reset_index(drop=True)


def peak_by_dose(scores: ScoreSet, peak_scores: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, SD and t-based 95 % CI of each peak score per dose (long table)."""
    peak_scores = list(peak_scores or _require_peak(scores))
    long = scores.peak.melt(id_vars=[*KEYS, DOSE], value_vars=peak_scores, var_name="score", value_name="value")
    table = stats.mean_t_ci(long, ["score", DOSE], "value")
    table["_s"] = table["score"].map({s: i for i, s in enumerate(peak_scores)})
    return table.sort_values(["_s", DOSE]).drop(columns="_s").reset_index(drop=True)


DOSE_EFFECT_COLUMNS = [
    "score",
    "term",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "z",
    "p",
    "p_fdr",
    "significant_fdr",
    "n",
    "n_groups",
    "method",
    "formula",
    "converged",
    "crossover_note",
]


def dose_effect_on_peak(
    scores: ScoreSet,
    peak_scores: Sequence[str] | None = None,
    fdr_alpha: float = 0.05,
    periods: pd.DataFrame | None = None,
    *,
    n_boot: int = 499,
    seed: int = 0,
) -> pd.DataFrame:
    """Linear dose effect on each peak score over every session with a questionnaire (placebo included when
    rated): :func:`pipelines.stats.crossover.crossover_dose_model` — random intercept and random dose slope
    per subject (fallback reported), subject-cluster bootstrap-t CI and p (``n_boot``, ``seed``; calibrated as
    ``crossover_dose_model`` in ``make calibrate``) — one row per score with the slope per mg/kg and BH-FDR across
    scores. ``periods`` (:func:`session_periods`): period, sequence and carry-over from the recorded order where
    identified; without it ``crossover_note`` says that the crossover is not modelled. ``se`` is the bootstrap SE
    and ``z`` the estimate over it.

    A linear slope summarises a saturating (Emax-like) dose response; the per-dose means are in
    :func:`peak_by_dose`.
    """
    from pipelines.stats.crossover import crossover_dose_model

    peak_scores = list(peak_scores or _require_peak(scores))
    data, categorical = _with_periods(scores.peak, periods)
    if data[DOSE].nunique() < 2:  # one dose (open label): no dose effect to estimate
        return pd.DataFrame(columns=DOSE_EFFECT_COLUMNS)
    rows = []
    for score in peak_scores:
        fit = crossover_dose_model(
            data, score, DOSE, "participant_id", "period" if categorical else None, n_boot=n_boot, seed=seed
        )
        row = fit[fit["term"] == DOSE].iloc[0]
        rows.append(
            {
                "score": score,
                "term": DOSE,
                "estimate": row["estimate"],
                "se": row["se_boot"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "z": row["estimate"] / row["se_boot"] if row["se_boot"] > 0 else np.nan,
                "p": row["p"],
                "n": row["n_obs"],
                "n_groups": row["n_subjects"],
                "method": f"{row['method']}; {row['random_effects']}"
                + ("" if row["fallback_reason"] == "none" else f" (fallback: {row['fallback_reason']})"),
                "formula": row["formula"],
                "converged": bool(row["converged"]),
                "crossover_note": row["crossover_note"],
            }
        )
    table = pd.DataFrame(rows)
    table["p_fdr"] = stats.fdr_bh(table["p"].to_numpy(dtype=float))
    table["significant_fdr"] = table["p_fdr"] <= fdr_alpha
    return table[DOSE_EFFECT_COLUMNS]


_TERM = re.compile(r"C\(timepoint\)\[(?P<tp>[^\]]+)\](?::(?P<rest>.+))?$")


def longitudinal_model(
    data: pd.DataFrame,
    peak_score: str,
    outcome: str,
    timepoints: Sequence[str],
    *,
    reml: bool = True,
    periods: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mixed model of mood over time: ``outcome ~ time × dose × peak [+ period] + (1 | subject)`` (statsmodels).

    Fitted on the subject-sessions of ``data`` (every session with a peak questionnaire, placebo included
    when rated) at the post-baseline ``timepoints``. Time is categorical; the model is written in its cell-means form —
    ``0 + C(timepoint) + C(timepoint):dose_c + C(timepoint):peak_z + C(timepoint):dose_c:peak_z`` — the
    same fit as the full three-way interaction, with every coefficient readable on its own:
    ``intercept`` = mean improvement at that time point (average dose, average peak), ``dose`` =
    points per mg/kg at average peak, ``peak`` = points per SD of the peak score at average dose,
    ``dose × peak`` = their interaction. ``dose_c`` is dose centred on the mean of the rows used,
    ``peak_z`` the peak score standardised over the rows used. Random intercept per subject (sessions
    of a subject are not modelled separately). Columns: timepoint, effect, estimate, se, ci_low,
    ci_high, z, p, n, n_groups, method, formula, converged, plus the centring constants. With
    ``periods`` (:func:`session_periods`) the crossover period enters as a categorical term (rows
    ``effect = "period"``); ``crossover_note`` says whether it is modelled.
    """
    import warnings

    from pipelines.stats.crossover import CROSSOVER_NOT_MODELLED

    used = data[data["timepoint"].isin(timepoints)][
        ["participant_id", "session_id", "timepoint", DOSE, peak_score, outcome]
    ].dropna(
        subset=["participant_id", "timepoint", DOSE, peak_score, outcome]
    )  # session_id is None for per-subject mood
    used, categorical = _with_periods(used, periods if used["session_id"].notna().all() else None)
    period_term = " + C(period)" if categorical and used["period"].nunique() > 1 else ""
    if used["participant_id"].nunique() < 2:
        raise InputError("the longitudinal model needs at least two subjects with peak and mood scores")
    dose_mean = float(used[DOSE].mean())
    peak_mean, peak_sd = float(used[peak_score].mean()), float(used[peak_score].std(ddof=1))
    used = used.assign(dose_c=used[DOSE] - dose_mean, peak_z=(used[peak_score] - peak_mean) / peak_sd)
    used["timepoint"] = _timepoint_order(used["timepoint"], timepoints)
    formula = (
        f"{outcome} ~ 0 + C(timepoint) + C(timepoint):dose_c + C(timepoint):peak_z "
        f"+ C(timepoint):dose_c:peak_z{period_term}"
    )
    if used[DOSE].nunique() < 2:  # one dose: the dose terms are not identified
        formula = f"{outcome} ~ 0 + C(timepoint) + C(timepoint):peak_z{period_term}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is reported in the table
        table = stats.mixed_model(used, formula, groups="participant_id", reml=reml)
    parsed = table["term"].str.extract(_TERM)
    names = {None: "intercept", "dose_c": "dose", "peak_z": "peak", "dose_c:peak_z": "dose × peak"}
    is_period = table["term"].str.startswith("C(period)")
    parsed.loc[is_period, "tp"] = (
        table.loc[is_period, "term"].str.extract(r"\[T\.([^\]]+)\]")[0].map(lambda v: f"period {v}")
    )
    table.insert(0, "timepoint", parsed["tp"])
    table.insert(
        1,
        "effect",
        [
            "period" if per else names.get(r if isinstance(r, str) else None, r)
            for per, r in zip(is_period, parsed["rest"])
        ],
    )
    table["crossover_note"] = (
        "period (crossover order) as a categorical term, common to every time point"
        if period_term
        else CROSSOVER_NOT_MODELLED
    )
    table["peak_score"] = peak_score
    table["outcome"] = outcome
    table["dose_centre_mg_per_kg"] = dose_mean
    table["peak_mean"], table["peak_sd"] = peak_mean, peak_sd
    effect_order = {v: i for i, v in enumerate([*names.values(), "period"])}
    table["_t"] = _timepoint_order(table["timepoint"], timepoints).codes
    table["_e"] = table["effect"].map(effect_order)
    return table.sort_values(["_e", "_t"]).drop(columns=["_t", "_e"]).reset_index(drop=True)


def _repeated(data: pd.DataFrame) -> bool:
    """Whether some subject has more than one row at some time point (sessions to compare within)."""
    return bool(len(data)) and int(data.groupby(["timepoint", "participant_id"]).size().max()) > 1


def not_applicable(scores: ScoreSet, data: pd.DataFrame) -> dict[str, str]:
    """Analysis -> the one-line reason it does not apply to this study (absent when it applies)."""
    reasons = {}
    doses = sorted(scores.peak[DOSE].dropna().unique())
    if len(doses) < 2:
        reasons["dose_effect"] = (
            f"one dose with peak questionnaires ({', '.join(_dose(d) for d in doses) or 'none'}): no dose "
            "effect on the peak experience can be estimated"
        )
    if scores.mood_unit == "subject":
        reasons["within"] = (
            "mood is measured per subject, not per session: each subject counts once per time point "
            "(peak scores averaged over their sessions), so the between-subject correlation is the "
            "test and within-subject correlations do not apply"
        )
    elif not _repeated(data):
        reasons["within"] = "one peak-experience session per subject: within-subject correlations do not apply"
    if "within" in reasons or len(doses) < 2:
        reasons["mediation"] = (
            "the within-subject mediation dose → peak → mood needs two or more doses with peak "
            "questionnaires within each subject and mood per session: "
            + reasons.get("within", reasons.get("dose_effect", ""))
        )
    return reasons


def placebo_note(scores: ScoreSet, doses: pd.DataFrame | None = None) -> str:
    """One line: whether the peak analyses include placebo sessions, or why they cannot.

    ``doses`` (:func:`session_doses`): every session of the study, to tell "no placebo in this design" from
    "placebo sessions without a peak questionnaire"."""
    peak = scores.peak
    n_placebo_rated = int((peak[DOSE] == 0).sum())
    n_placebo = int((doses[DOSE] == 0).sum()) if doses is not None else n_placebo_rated
    if scores.mood_unit == "subject":
        return f"Placebo not in the peak↔mood analyses: {ACTIVE_ONLY_REASON}"
    if n_placebo_rated:
        return (
            f"Placebo included: {n_placebo_rated} placebo session(s) with a peak questionnaire enter every peak "
            f"analysis (dose effect, correlations, mediation) beside {int((peak[DOSE] > 0).sum())} active ones"
        )
    if n_placebo:
        return (
            f"Placebo missing: the peak questionnaires exist only after active doses ({n_placebo} placebo "
            "session(s) without one), so the peak analyses cover active sessions only and the dose contrast "
            "starts at the lowest active dose"
        )
    return "No placebo sessions in this design: the peak analyses cover the active sessions"


def session_periods(study: Study) -> pd.DataFrame | None:
    """participant_id, session_id, period (1..K) of every session when the manifest declares the crossover's
    session order (``design.session_order_column`` of ``sub-XX_sessions.tsv``; read by
    :attr:`pipelines.study.dataset.Study.session_order`), else None."""
    order = study.session_order
    return None if order is None else order[["participant_id", "session_id", "period"]].copy()


def _with_periods(data: pd.DataFrame, periods: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    if periods is None:
        return data, []
    return data.merge(periods, on=KEYS, how="left", validate="many_to_one"), ["period"]


SUBJECT_LEVEL_COLUMNS = [
    "quantity",
    "role",
    "family",
    "score",
    "outcome",
    "timepoint",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "significant_fdr",
    "n_subjects",
    "n_obs",
    "covariates",
    "p_parametric",
    "method",
    "convention",
    "n_boot",
    "seed",
]
ROLES = {
    "within": "test: within-subject (across a subject's sessions with a peak questionnaire)",
    "within_partial": "adjusted test: within-subject partial",
    "between": "trait-level: between subjects (subject means)",
    "pooled": "description only: pooled over sessions, no inference",
}


def subject_level_correlations(
    data: pd.DataFrame,
    peak_scores: Sequence[str],
    outcome: str,
    timepoints: Sequence[str],
    *,
    covariates: Sequence[str] = (DOSE,),
    periods: pd.DataFrame | None = None,
    n_boot: int = 499,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    primary_scores: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every peak score against ``outcome`` at every time point at the subject level (issue 11).

    Per score × time point, four rows (``quantity``): ``within`` (repeated-measures r over a subject's
    sessions in ``data``, subject-cluster bootstrap-t: the test), ``within_partial`` (the same given the
    person-mean-centred ``covariates`` — dose, baseline severity — and ``period`` when ``periods`` gives
    it), ``between`` (r of subject means: the trait-level association) and ``pooled`` (r over all rows,
    description only, p NaN); :func:`pipelines.stats.within_between_correlation` and
    :func:`~pipelines.stats.within_subject_partial_correlation`. BH-FDR within each quantity and
    family ("primary" = ``primary_scores``, the confirmatory family of within rows; "secondary" = the
    other scores). Columns: :data:`SUBJECT_LEVEL_COLUMNS`.
    """
    data = data[data["timepoint"].isin(timepoints)]
    data, categorical = _with_periods(data, periods if _repeated(data) else None)
    primary = set(peak_scores if primary_scores is None else primary_scores)
    parts = []
    for tp in timepoints:
        part = data[data["timepoint"] == tp]
        for score in peak_scores:
            wb = within_between_correlation(part, score, outcome, "participant_id", n_boot=n_boot, seed=seed)
            adj = within_subject_partial_correlation(
                part,
                score,
                outcome,
                "participant_id",
                covariates=list(covariates),
                categorical=categorical,
                n_boot=n_boot,
                seed=seed,
            )
            wb["covariates"] = "subject"
            adj["covariates"] = "subject, " + adj["covariates_used"].str.replace(" ,", ",")
            parts.append(pd.concat([wb, adj], ignore_index=True).assign(score=score, outcome=outcome, timepoint=tp))
    out = pd.concat(parts, ignore_index=True)
    out["family"] = np.where(out["score"].isin(primary), "primary", "secondary")
    out["role"] = out["quantity"].map(ROLES)
    out["p_fdr"] = np.nan
    for (quantity, _), index in out.groupby(["quantity", "family"]).groups.items():
        if quantity != "pooled":
            out.loc[index, "p_fdr"] = stats.fdr_bh(out.loc[index, "p"].to_numpy(dtype=float))
    out["significant_fdr"] = out["p_fdr"].to_numpy() <= fdr_alpha
    order = {q: i for i, q in enumerate(ROLES)}
    out["_q"] = out["quantity"].map(order)
    out["_t"] = _timepoint_order(out["timepoint"], timepoints).codes
    out["_s"] = out["score"].map({s: i for i, s in enumerate(peak_scores)})
    out = out.sort_values(["_q", "_t", "_s"]).drop(columns=["_q", "_t", "_s"])
    out.attrs.update(
        {
            "fdr": "Benjamini-Hochberg within each quantity and family (score × time point)",
            "fdr_alpha": fdr_alpha,
            "outcome_definition": "baseline − time point",
            "period_adjusted": bool(categorical),
            "test_quantity": "within" if _repeated(data) else "between",
        }
    )
    return out[SUBJECT_LEVEL_COLUMNS].reset_index(drop=True)


def mediation_dose_peak_mood(
    data: pd.DataFrame,
    peak_score: str,
    outcome: str,
    timepoint: str,
    *,
    covariates: Sequence[str] = (),
    periods: pd.DataFrame | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Within-subject mediation dose → peak experience → mood improvement at one time point.

    :func:`pipelines.stats.within_subject_mediation` on every session with a peak questionnaire (placebo
    included when rated: the dose contrast then starts at 0 mg/kg). Every path, the total effect c and the
    indirect effect a·b are estimated on the same rows (complete in dose, peak, improvement and the
    covariates), so c = c′ + a·b holds exactly (OLS on the same centred design); person-mean-centred
    dose, peak, improvement (and ``covariates``, ``period`` when ``periods`` gives it), paths a, b, c′,
    c by subject-cluster bootstrap-SE t(G−1), the indirect effect a·b by the subject-bootstrap percentile
    interval (subjects, not sessions, are resampled). ``path`` is a, b, c, c_prime, indirect (as
    :func:`pipelines.figures.mood.mediation_forest` expects); adds ``timepoint``, ``description``,
    ``se`` (bootstrap SE), ``n`` (sessions), ``ci_method`` and ``proportion_mediated`` (indirect / total,
    on the indirect row; unstable when the total is near 0).
    """
    part = data[data["timepoint"] == timepoint]
    if part.empty:
        raise InputError(f"no rows at time point {timepoint!r} for the mediation")
    part, categorical = _with_periods(part, periods)
    table = within_subject_mediation(
        part,
        DOSE,
        peak_score,
        outcome,
        "participant_id",
        covariates=list(covariates),
        categorical=categorical,
        n_boot=n_boot,
        seed=seed,
    )
    table = table.rename(columns={"path": "description"})
    table.insert(0, "path", table["quantity"].replace({"c_total": "c"}))
    table.insert(0, "timepoint", timepoint)
    table["se"] = table["se_boot"] if "se_boot" in table.columns else np.nan
    table["n"] = table["n_obs"]
    table["ci_method"] = table["method"]
    order = {"a": 0, "b": 1, "c": 2, "c_prime": 3, "indirect": 4}
    table = table.sort_values("path", key=lambda p: p.map(order)).reset_index(drop=True)
    total = float(table.loc[table["path"] == "c", "estimate"].iloc[0])
    indirect = float(table.loc[table["path"] == "indirect", "estimate"].iloc[0])
    direct = float(table.loc[table["path"] == "c_prime", "estimate"].iloc[0])
    # Same rows, same centred design: c = c' + a*b up to rounding; anything else means the rows differ.
    gap = total - (direct + indirect)
    if not abs(gap) <= 1e-8 * max(1.0, abs(total), abs(direct), abs(indirect)):
        raise AssertionError(f"mediation: total {total} != direct {direct} + indirect {indirect} (rows differ)")
    table["n_placebo_sessions"] = int((part.dropna(subset=[peak_score, outcome])[DOSE] == 0).sum())
    table["proportion_mediated"] = np.where(
        table["path"] == "indirect", indirect / total if total != 0 else np.nan, np.nan
    )
    return table


def truth_comparison(correlations: pd.DataFrame, truth: dict | None, method: str) -> pd.DataFrame:
    """For a synthetic study: the planted correlations of ``truth.json`` (population value and the
    value realised in the generated sample) next to the bivariate estimates and their CIs.

    Empty when the study has no truth or the truth has no mood correlations. ``in_ci`` says whether
    the population value lies inside the bootstrap CI.
    """
    planted = (truth or {}).get("mood") or {}
    expected = planted.get("expected_correlation_with_improvement") or {}
    realised = planted.get("realised_correlation_with_improvement") or {}
    key = "spearman_rho" if method == "spearman" else "pearson_r"
    biv = correlations[correlations["analysis"] == "bivariate"].set_index(["score", "timepoint"])
    rows = []
    for score, by_time in expected.items():
        for tp, values in by_time.items():
            if (score, tp) not in biv.index:
                continue
            est = biv.loc[(score, tp)]
            rows.append(
                {
                    "score": score,
                    "timepoint": tp,
                    "planted_population": values[key],
                    "realised_in_sample": realised.get(score, {}).get(tp, {}).get(key, np.nan),
                    "estimate": est["estimate"],
                    "ci_low": est["ci_low"],
                    "ci_high": est["ci_high"],
                    "p_fdr": est["p_fdr"],
                    "significant_fdr": bool(est["significant_fdr"]),
                }
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "score",
            "timepoint",
            "planted_population",
            "realised_in_sample",
            "estimate",
            "ci_low",
            "ci_high",
            "p_fdr",
            "significant_fdr",
        ],
    )
    table["in_ci"] = (table["ci_low"] <= table["planted_population"]) & (
        table["planted_population"] <= table["ci_high"]
    )
    order = list(dict.fromkeys(correlations["timepoint"]))
    table["_t"] = _timepoint_order(table["timepoint"], order).codes
    return table.sort_values(["score", "_t"]).drop(columns="_t").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------

SCALE_LABELS = {
    "meq30": "MEQ30",
    "asc5d": "5D-ASC",
    "asc11d": "11D-ASC",
    "madrs": "MADRS",
    "hamd17": "HAM-D17",
    "hamd": "HAM-D17",
    "qids_sr16": "QIDS-SR16",
    "qids": "QIDS-SR16",
    "bdi_ii": "BDI-II",
    "bdi": "BDI-II",
}


def score_label(score: str) -> str:
    """Readable name of a score column: ``meq30_positive_mood`` -> ``MEQ30 positive mood``."""
    scale, _, name = score.partition("_")
    if scale == "asc5d" and name.upper() in {d.upper() for d in questionnaires.ASC5D_DIMENSIONS}:
        name = name.upper()
    return f"{SCALE_LABELS.get(scale, scale)} {name.replace('_', ' ')}"


_label = score_label


def _dose(d: float) -> str:
    if d != d:  # mood per subject: no session, no dose
        return "all participants"
    return "placebo" if d == 0 else f"{d:g} mg/kg"


def _subject_level_paragraph(table: pd.DataFrame, params: AnalysisParameters) -> str:
    primary, tp = params.primary_score, params.primary_timepoint
    at = table[(table["score"] == primary) & (table["timepoint"] == tp)].set_index("quantity")
    mood_label = SCALE_LABELS[params.mood_scale]
    text = "**Peak experience and mood (subject level).** "
    test = "within" if table.loc[table["quantity"] == "within", "estimate"].notna().any() else "between"
    if test == "between" and "between" in at.index:
        b = at.loc["between"]
        text += (
            f"Each subject counts once per time point (one mood course per person; peak scores averaged over "
            f"their sessions), so the test is between subjects: at {tp}, r = {b['estimate']:.2f} between "
            f"{_label(primary)} and {mood_label} improvement (95 % CI {b['ci_low']:.2f} to {b['ci_high']:.2f}, "
            f"{stats.format_p(b['p'])}, {stats.format_p(b['p_fdr'], 'FDR-adjusted p')} in the {b['family']} "
            f"family; {int(b['n_subjects'])} subjects). "
        )
        at = at.drop(index=[q for q in ("between", "pooled") if q in at.index])
    if "within" in at.index and test == "within":
        w = at.loc["within"]
        text += (
            f"At {tp}, across a subject's sessions, more {_label(primary)} went with more "
            f"{mood_label} improvement: within-subject r_rm = {w['estimate']:.2f} (95 % CI "
            f"{w['ci_low']:.2f} to {w['ci_high']:.2f}, {stats.format_p(w['p'])}, "
            f"{stats.format_p(w['p_fdr'], 'FDR-adjusted p')} in the {w['family']} family; "
            f"{int(w['n_subjects'])} subjects, {int(w['n_obs'])} sessions, subject-cluster bootstrap-t). "
        )
    if "within_partial" in at.index and test == "within":
        a = at.loc["within_partial"]
        adjusted = (
            a["covariates"]
            .removeprefix("subject, ")
            .replace(DOSE, "dose")
            .replace(f"{params.mood_score}_baseline", "baseline severity")
        )
        text += (
            f"Adjusted for {adjusted} (within subjects): partial r = {a['estimate']:.2f} "
            f"(95 % CI {a['ci_low']:.2f} to {a['ci_high']:.2f}, {stats.format_p(a['p'])}). "
        )
    if "between" in at.index:
        b = at.loc["between"]
        text += (
            f"Between subjects (subject means, the trait-level association): r = {b['estimate']:.2f} "
            f"(95 % CI {b['ci_low']:.2f} to {b['ci_high']:.2f}, {stats.format_p(b['p'])}, "
            f"{int(b['n_subjects'])} subjects). "
        )
    if "pooled" in at.index:
        text += (
            f"Pooled over all {int(at.loc['pooled', 'n_obs'])} sessions, r = "
            f"{at.loc['pooled', 'estimate']:.2f} (description only: it mixes the two and is not a test). "
        )
    within = table[table["quantity"] == test]
    for family, words in (("primary", "primary (confirmatory)"), ("secondary", "secondary")):
        fam = within[within["family"] == family]
        if fam.empty:
            continue
        sig = fam[fam["significant_fdr"]]
        text += (
            f"In the {words} family of {test}-subject tests ({fam['score'].nunique()} scores × "
            f"{fam['timepoint'].nunique()} time points), {len(sig)} of {len(fam)} were significant at "
            f"FDR {params.fdr_alpha:g}"
            + (f" (at {', '.join(t for t in params.timepoints if t in set(sig['timepoint']))})" if len(sig) else "")
            + ". "
        )
    return text.strip()


def _data_paragraph(scores: ScoreSet, params: AnalysisParameters) -> str:
    """**Data.**: participants, sessions, the peak scales and mood time points, and the missing-item rule."""
    n_subjects = scores.peak["participant_id"].nunique()
    n_sessions = int((scores.peak[DOSE] > 0).sum())
    n_placebo = int((scores.peak[DOSE] == 0).sum())
    present = scores.report[scores.report["present"]]
    touched = int(present["n_prorated"].sum())
    left = int(present["n_missing_scores"].sum())
    text = (
        f"**Data.** {n_subjects} participants, {n_sessions} active dose sessions"
        + (f" and {n_placebo} placebo sessions" if n_placebo else " (no placebo session)")
        + " with "
        f"peak-experience scores ({', '.join(SCALE_LABELS[s] for s in params.scales if s not in scores.absent)}); "
        f"{SCALE_LABELS[params.mood_scale]} at {', '.join(params.timepoints)} against {params.baseline}. "
        f"Missing items (rule: {params.missing_items}"
        + (
            f", up to {100 * params.max_missing_fraction:g} % of a score's items"
            if params.max_missing_fraction is not None
            else ""
        )
        + f"): {touched} score(s) prorated, {left} left missing."
    )
    if scores.absent:
        text += " **Absent tables:** " + "; ".join(scores.messages) + "."
    return text


def _dose_paragraph(dose_effects: pd.DataFrame | None, by_dose: pd.DataFrame | None, primary: str) -> str | None:
    """**Dose and peak experience.**: the primary score's range over doses and its mixed-model slope, or None."""
    if dose_effects is None or by_dose is None or primary not in set(dose_effects["score"]):
        return None
    row = dose_effects.set_index("score").loc[primary]
    means = by_dose[by_dose["score"] == primary].sort_values(DOSE)
    lo, hi = means.iloc[0], means.iloc[-1]
    n_sig = int(dose_effects["significant_fdr"].sum())
    return (
        f"**Dose and peak experience.** {_label(primary)} rose from {lo['mean']:.2f} at "
        f"{_dose(lo[DOSE])} to {hi['mean']:.2f} at {_dose(hi[DOSE])} (random-slope mixed-model slope "
        f"{row['estimate']:.2f} per mg/kg, 95 % CI {row['ci_low']:.2f} to {row['ci_high']:.2f}, "
        f"{stats.format_p(row['p'])}); {n_sig} of {len(dose_effects)} peak scores increased with dose "
        f"after FDR."
    )


def _per_timepoint_opening(scores: ScoreSet, r: pd.Series, params: AnalysisParameters, subject_level) -> str:
    """The first sentence on the per-time-point correlation of the primary score at the primary time point."""
    symbol = "ρ" if params.correlation_method == "spearman" else "r"
    return (
        (
            "**Per-time-point description** (one row per subject; see above for the test). "
            if scores.mood_unit == "subject"
            else "**Per-time-point description** (sessions pooled as if independent, so these p-values "
            "are not used for conclusions; see above). "
            if subject_level is not None
            else "**Peak experience and mood.** "
        )
        + f"At {params.primary_timepoint}, {_label(params.primary_score)} correlated with "
        f"{SCALE_LABELS[params.mood_scale]} improvement ({params.correlation_method.capitalize()} {symbol} = "
        f"{r['estimate']:.2f}, 95 % CI {r['ci_low']:.2f} to {r['ci_high']:.2f}, "
        + (
            f"n = {int(r['n'])} subjects). "
            if scores.mood_unit == "subject"
            else f"n = {int(r['n'])} sessions of {int(r['n_subjects'])} subjects). "
        )
    )


def _last_timepoint_sentence(biv: pd.DataFrame, params: AnalysisParameters) -> str:
    """At the last time point (when it is not the primary one): the primary score's and the largest correlation."""
    symbol = "ρ" if params.correlation_method == "spearman" else "r"
    primary, last = params.primary_score, params.timepoints[-1]
    late = biv[biv["timepoint"] == last]
    if last == params.primary_timepoint or late.empty:
        return ""
    own = late[late["score"] == primary]
    strongest = late.loc[late["estimate"].abs().idxmax()]
    return (
        f"At {last}"
        + (
            f" {_label(primary)} {symbol} = {own['estimate'].iloc[0]:.2f} (95 % CI "
            f"{own['ci_low'].iloc[0]:.2f} to {own['ci_high'].iloc[0]:.2f})"
            if len(own)
            else ""
        )
        + f"; the largest |{symbol}| at {last} was {abs(strongest['estimate']):.2f} "
        f"({_label(strongest['score'])})."
    )


def _per_timepoint_paragraph(
    scores: ScoreSet, correlations: pd.DataFrame, params: AnalysisParameters, subject_level
) -> str | None:
    """The per-time-point correlations: description beside ``subject_level``, the conclusions without it
    (then with the FDR counts per family); None without a primary-score row at the primary time point."""
    biv = correlations[correlations["analysis"] == "bivariate"]
    main = biv[(biv["score"] == params.primary_score) & (biv["timepoint"] == params.primary_timepoint)]
    if main.empty:
        return None
    text = _per_timepoint_opening(scores, main.iloc[0], params, subject_level)
    text += _last_timepoint_sentence(biv, params)
    if subject_level is None:
        for family, words in (("primary", "primary (confirmatory)"), ("secondary", "secondary")):
            fam = biv[biv["family"] == family]
            if not fam.empty:
                text += (
                    f" In the {words} family, {int(fam['significant_fdr'].sum())} of {len(fam)} "
                    f"correlations were significant at FDR {params.fdr_alpha:g}."
                )
    return text


def _rates_paragraph(rates: pd.DataFrame | None, params: AnalysisParameters) -> str | None:
    """**Response and remission** at the primary time point per dose (Wilson CIs), or None."""
    if rates is None or rates.empty:
        return None
    tp = params.primary_timepoint
    at = rates[rates["timepoint"] == tp]
    parts = []
    for measure in ("response", "remission"):
        sub = at[at["measure"] == measure].sort_values(DOSE)
        if sub.empty:
            continue
        parts.append(
            f"{measure} "
            + ", ".join(
                f"{int(r['n_events'])}/{int(r['n'])} at {_dose(r[DOSE])} ({100 * r['rate']:.0f} %, "
                f"{100 * r['ci_low']:.0f}–{100 * r['ci_high']:.0f} %)"
                for _, r in sub.iterrows()
            )
        )
    if not parts:
        return None
    return (
        f"**Response and remission at {tp}** (response ≥ 50 % reduction; remission "
        f"{SCALE_LABELS[params.mood_scale]} ≤ {params.remission_threshold:g}; Wilson 95 % CIs): "
        + "; ".join(parts)
        + "."
    )


def _longitudinal_paragraph(longitudinal: pd.DataFrame | None, params: AnalysisParameters) -> str | None:
    """**Longitudinal model**: the peak effect at the primary time point and across time points, or None."""
    if longitudinal is None or longitudinal.empty:
        return None
    tp = params.primary_timepoint
    peak_rows = longitudinal[longitudinal["effect"] == "peak"]
    row = peak_rows[peak_rows["timepoint"] == tp]
    if row.empty:
        return None
    r = row.iloc[0]
    return (
        f"**Longitudinal model** (time × dose × peak, random intercept per subject): at {tp}, "
        f"one SD more {_label(params.primary_score)} went with {r['estimate']:.1f} points more improvement "
        f"at average dose (95 % CI {r['ci_low']:.1f} to {r['ci_high']:.1f}, {stats.format_p(r['p'])}); "
        + ", ".join(f"{t}: {e:.1f}" for t, e in zip(peak_rows["timepoint"], peak_rows["estimate"]))
        + " points per SD across time points"
        + ("" if bool(longitudinal["converged"].iloc[0]) else " (the fit did not converge)")
        + "."
    )


def _mediated_share(m: pd.DataFrame) -> str:
    """The closing clause of the mediation paragraph: no share when the total effect's CI includes 0, the
    ratio (not a share) when the direct effect points the other way, else the share mediated."""
    ind, c = m.loc["indirect"], m.loc["c"]
    if not (c["ci_low"] > 0 or c["ci_high"] < 0):
        return "; the total effect's CI includes 0, so no proportion mediated is given."
    if not 0 <= ind["proportion_mediated"] <= 1:
        return (
            f"; indirect / total = {100 * ind['proportion_mediated']:.0f} %, not a share: the direct effect "
            "points the other way"
            + (
                " (its CI includes 0)."
                if m.loc["c_prime", "ci_low"] <= 0 <= m.loc["c_prime", "ci_high"]
                else " (inconsistent mediation)."
            )
        )
    return f"; {100 * ind['proportion_mediated']:.0f} % of the total effect was mediated."


def _mediation_paragraph(mediation_table: pd.DataFrame | None, primary: str) -> str | None:
    """**Within-subject mediation**: indirect, total and direct effects of dose via the peak score, or None."""
    if mediation_table is None or mediation_table.empty:
        return None
    m = mediation_table.set_index("path")
    ind, c = m.loc["indirect"], m.loc["c"]
    return (
        f"**Within-subject mediation at {mediation_table['timepoint'].iloc[0]}** (dose → {_label(primary)} → "
        f"improvement, person-mean-centred, {int(ind['n_subjects'])} subjects resampled, "
        f"{int(ind['n'])} sessions"
        + (f" incl. {int(ind['n_placebo_sessions'])} placebo" if ind.get("n_placebo_sessions", 0) else "")
        + "; every path on the same rows, total = direct + indirect): indirect effect "
        f"{ind['estimate']:.1f} points per mg/kg (subject-bootstrap 95 % CI "
        f"{ind['ci_low']:.1f} to {ind['ci_high']:.1f}, {stats.format_p(ind['p'])}) of a total {c['estimate']:.1f} "
        f"(95 % CI {c['ci_low']:.1f} to {c['ci_high']:.1f}); direct effect "
        f"{m.loc['c_prime', 'estimate']:.1f} (95 % CI {m.loc['c_prime', 'ci_low']:.1f} to "
        f"{m.loc['c_prime', 'ci_high']:.1f})" + _mediated_share(m)
    )


def _caveats_paragraph(scores: ScoreSet) -> str:
    """*Caveats:* the unit of analysis and why the correlations are not causal."""
    n_participants = scores.peak["participant_id"].nunique()
    unit = (
        "mood is one course per subject, so every analysis counts each subject once per time point; "
        if scores.mood_unit == "subject"
        else "a subject contributes one session per dose, so conclusions rest on the subject-level rows "
        "(subject-cluster bootstrap), not on the per-time-point tables that treat sessions as independent; "
    )
    return (
        f"*Caveats:* {n_participants} participants; "
        + unit
        + "correlations are not causal, and peak experience is measured after the dose, so it "
        "is a mediator candidate, not a randomised factor."
    )


def summary_text(
    scores: ScoreSet,
    correlations: pd.DataFrame,
    params: AnalysisParameters,
    *,
    dose_effects: pd.DataFrame | None = None,
    by_dose: pd.DataFrame | None = None,
    rates: pd.DataFrame | None = None,
    longitudinal: pd.DataFrame | None = None,
    mediation_table: pd.DataFrame | None = None,
    subject_level: pd.DataFrame | None = None,
) -> str:
    """A short Markdown summary written from the numbers of the result tables (nothing hand-typed).

    With ``subject_level`` (:func:`subject_level_correlations`) the peak↔mood conclusions and the FDR
    counts come from its within-subject rows; the per-time-point ``correlations`` are then description.
    One paragraph per section, each from its own step; a section without its table is left out.
    """
    paragraphs = [
        _data_paragraph(scores, params),
        _dose_paragraph(dose_effects, by_dose, params.primary_score),
        _subject_level_paragraph(subject_level, params)
        if subject_level is not None and not subject_level.empty
        else None,
        _per_timepoint_paragraph(scores, correlations, params, subject_level),
        _rates_paragraph(rates, params),
        _longitudinal_paragraph(longitudinal, params),
        _mediation_paragraph(mediation_table, params.primary_score),
        _caveats_paragraph(scores),
    ]
    return "\n\n".join(p for p in paragraphs if p is not None)


# ---------------------------------------------------------------------------------------------
# One run: what notebook 02 shows
# ---------------------------------------------------------------------------------------------


@dataclass
class PeakMoodResult:
    """Everything notebook 02 shows, from :func:`run`. ``not_applicable``: analysis -> the one-line reason it does
    not apply to this design (mediation, longitudinal model, ...); ``mediation`` is None when it does not apply."""

    params: AnalysisParameters
    scores: ScoreSet
    by_dose: pd.DataFrame
    periods: pd.DataFrame | None
    dose_effects: pd.DataFrame
    placebo_note: str
    outcomes: pd.DataFrame
    trajectory: pd.DataFrame
    rates: pd.DataFrame
    data: pd.DataFrame
    not_applicable: dict[str, str]
    subject_level: pd.DataFrame
    correlations: pd.DataFrame
    truth: pd.DataFrame
    longitudinal: pd.DataFrame
    mediation: pd.DataFrame | None
    summary: str

    def derived_tables(self) -> dict[str, pd.DataFrame]:
        """The tables notebook 02 writes for notebook 04 and the dashboards (:mod:`pipelines.study.derived`)."""
        from pipelines.study import derived

        mood_changes = derived.mood_changes_table(self.outcomes, self.scores.mood_score, self.params.mood_scale)
        return {"peak_scores": self.scores.peak, "mood_changes": mood_changes}


def _mood_tables(scores: ScoreSet, params: AnalysisParameters, study: Study) -> tuple[pd.DataFrame, ...]:
    outcomes = mood_change_table(
        scores,
        baseline=params.baseline,
        remission_threshold=params.remission_threshold,
        timepoint_order=study.manifest.timepoints,
    )
    trajectory = mood_trajectory_table(outcomes, params.mood_score, [params.baseline, *params.timepoints])
    rates = outcome_rate_table(outcomes, params.mood_score, params.timepoints)
    return outcomes, trajectory, rates


def _associations(data: pd.DataFrame, scores: ScoreSet, params: AnalysisParameters, periods) -> tuple:
    """Subject-level correlations (the tests) and the descriptive bivariate/partial/repeated-measures family."""
    p = params
    subject_level = subject_level_correlations(
        data,
        scores.peak_scores,
        p.outcome,
        p.timepoints,
        covariates=[DOSE, f"{p.mood_score}_baseline"],
        periods=periods,
        n_boot=p.n_boot,
        seed=p.seed,
        fdr_alpha=p.fdr_alpha,
        primary_scores=p.primary_scores,
    )
    correlations = peak_vs_mood_correlations(
        data,
        scores.peak_scores,
        p.outcome,
        p.timepoints,
        method=p.correlation_method,
        baseline_column=f"{p.mood_score}_baseline",
        n_boot=p.n_boot,
        seed=p.seed,
        fdr_alpha=p.fdr_alpha,
        primary_scores=p.primary_scores,
    )
    return subject_level, correlations


def run(study: Study, params: PeakMoodParameters | dict | None = None) -> PeakMoodResult:
    """Notebook 02's analysis: scores, the dose effect on the peak, mood change, the subject-level peak-mood
    associations (and the descriptive correlations), the longitudinal model, the within-subject mediation and
    the summary, each as the design allows (:func:`not_applicable` says why one does not)."""
    p = PeakMoodParameters.model_validate(params or {}).resolve(study)
    scores = load_scores(
        study, p.scales, p.mood_scale, missing_items=p.missing_items, max_missing_fraction=p.max_missing_fraction
    )
    by_dose = peak_by_dose(scores)
    periods = session_periods(study)  # None unless the manifest declares design.session_order_column
    dose_effects = dose_effect_on_peak(scores, fdr_alpha=p.fdr_alpha, periods=periods, n_boot=p.n_boot, seed=p.seed)
    note = placebo_note(scores, session_doses(study))
    outcomes, trajectory, rates = _mood_tables(scores, p, study)
    data = analysis_table(scores, outcomes, p.timepoints)
    reasons = not_applicable(scores, data)
    subject_level, correlations = _associations(data, scores, p, periods)
    truth = truth_comparison(correlations, study.truth(), p.correlation_method)
    longitudinal = longitudinal_model(data, p.primary_score, p.outcome, p.timepoints, periods=periods)
    mediation = None
    if "mediation" not in reasons:
        mediation = mediation_dose_peak_mood(
            data,
            p.primary_score,
            p.outcome,
            p.primary_timepoint,
            covariates=[f"{p.mood_score}_baseline"],
            periods=periods,
            n_boot=p.n_boot,
            seed=p.seed,
        )
    summary = summary_text(
        scores,
        correlations,
        p,
        dose_effects=dose_effects,
        by_dose=by_dose,
        rates=rates,
        longitudinal=longitudinal,
        mediation_table=mediation,
        subject_level=subject_level,
    )
    return PeakMoodResult(
        p, scores, by_dose, periods, dose_effects, note, outcomes, trajectory, rates, data, reasons,
        subject_level, correlations, truth, longitudinal, mediation, summary,
    )  # fmt: skip
