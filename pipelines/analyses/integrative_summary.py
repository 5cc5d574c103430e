"""The integrative view (issue 6, notebook 04): EEG, peak experience, cytokines and mood per subject × dose,
and the hypotheses an integrative ketamine study asks, each an explicit test with effect size, CI and p.

Reads the derived tables that notebooks 01–03 write (:mod:`pipelines.study.derived`); never recomputes a branch.
Statistics come from :mod:`pipelines.stats`. Every test returns tidy rows (:data:`HYPOTHESIS_COLUMNS`).

Conventions
    *Unit of observation*: one subject-session (= subject × dose in the crossover). Peak-experience
    questionnaires are given after placebo sessions too (as real trials do), so every test involving a peak
    score uses every session with a score, placebo included; a study whose questionnaires exist only after
    active doses runs the same tests on the active sessions (:func:`placebo_note` says so in one line).
    *Mood improvement* = baseline − time point (scale points; positive = better), from each session's own
    pre-infusion baseline, as in notebook 02 and ``truth.json``.
    *Entropy change* = plateau change from the pre-infusion baseline of ``entropy_measure`` over all
    channels (notebook 01's ``eeg_plateau_changes``, region ``global``); *occipital alpha change* = the
    plateau change of occipital alpha power (dB); *suppression depth* = the minimum of the smoothed
    occipital alpha curve (dB, more negative = deeper; notebook 01's markers).
    *Cytokine change* = ln(24 h / baseline) per session; *inflamed* = the session's baseline CRP at or above
    notebook 03's threshold (notebook 03 takes it from a screening CRP when there is one); a subject's stratum
    is the common label of its sessions (placebo included: the placebo-controlled contrast needs it).
    *Subject-level inference* (issue 11, docs/statistics.md): a subject contributes one session per dose,
    so associations are split into a within-subject row (repeated-measures r across a subject's
    sessions, subject-cluster bootstrap-t: the test), a between-subject row (r of subject means: the
    trait-level association) and a pooled row over all sessions (description only, no p), from
    :mod:`pipelines.stats`.
    *Crossover terms*: when the manifest declares the session order (``design.session_order_column``),
    every session carries its ``period`` (1..K), ``sequence`` and ``carryover_dose``
    (:attr:`pipelines.study.dataset.Study.session_order`); dose models (H4a) fit period, sequence and carry-over
    where identified (:func:`pipelines.stats.crossover_dose_model`), the other models period (H2b and
    H3d as person-mean-centred period dummies); without
    the order, :func:`crossover_note` says in one line that they are not modelled.
    *Multiplicity*: ``p_fdr`` is Benjamini–Hochberg over the ``confirmatory`` rows of the hypothesis table
    (H1–H4); H5 (many predictors for 12 subjects) is ``exploratory``, with its own BH family; ``description``
    rows have no p. The correlation matrix has its own family per quantity (within, between; each
    unordered pair once).
    *Primary hypothesis*: the manifest may name the pre-registered primary test (notebook 04's
    ``primary_hypothesis``, e.g. ``H2a``); its rows are flagged ``primary`` and lead the table and summary.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from pipelines import stats
from pipelines.core.errors import did_you_mean
from pipelines.core.measures import SPATIOTEMPORAL_MEASURES  # across-channel: no per-channel entropy
from pipelines.stats import (
    stratum_by_treatment_interaction,
    within_between_correlation,
    within_subject_partial_correlation,
)
from pipelines.stats.crossover import CROSSOVER_NOT_MODELLED, crossover_dose_model
from pipelines.stats.effects import within_between_effect
from pipelines.study import derived

__all__ = [
    "PARAMETERS",
    "IntegrativeSummaryParameters",
    "IntegrativeSummaryResult",
    "run",
    "CONFIRMATORY_TESTS",
    "HYPOTHESIS_COLUMNS",
    "IntegrativeParameters",
    "combined_model",
    "correlation_matrix",
    "crossover_note",
    "h1_entropy_tracks_peak",
    "h2_peak_predicts_mood",
    "h3_inflamed_stratum",
    "h4_alpha_depth_dose",
    "hypothesis_tests",
    "join_subject_dose",
    "load_derived",
    "matrix_variables",
    "placebo_note",
    "primary_text",
    "provenance_table",
    "subject_dose_table",
    "summary_text",
    "validate_parameters",
]

KEYS = ["participant_id", "session"]
DOSE = "dose_mg_per_kg"
SUBJECT = "participant_id"
# Cytokines carried into the combined model and the correlation matrix (all analytes are in the table).
PRIMARY_ANALYTES = ("IL6", "CRP")
# Mood time points always shown in the subject × dose table, besides the analysed one.
SHOWN_TIMEPOINTS = ("24h", "7d")
PEAK_PREFIXES = ("meq30_", "asc5d_", "asc11d_")
# Estimates and CIs first (issue 11: the reports lead with estimates and CIs, then tests).
HYPOTHESIS_COLUMNS = [
    "hypothesis",
    "test",
    "primary",
    "effect",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "verdict",
    "direction",
    "family",
    "n",
    "n_subjects",
    "statement",
    "population",
    "method",
]
# Codes of the confirmatory tests (the first word of ``test``): what ``primary_hypothesis`` may name.
CONFIRMATORY_TESTS = {
    "H1a": "entropy change and peak intensity, within subjects, dose- and period-adjusted",
    "H1c": "entropy change and peak intensity, between subjects (dose-adjusted subject means)",
    "H2a": "peak experience and mood improvement, within subjects, given dose, baseline (and period)",
    "H2b": "peak experience and mood improvement, within-subject effect (points per SD), given dose, baseline, period",
    "H2c": "peak experience and mood improvement, between subjects",
    "H3a": "placebo-controlled cytokine fall in the inflamed stratum",
    "H3b": "no placebo-controlled cytokine change in the non-inflamed stratum",
    "H3c": "placebo-controlled stratum x treatment interaction (subject contrasts, Welch t)",
    "H3d": "placebo-controlled stratum x treatment interaction, adjusted for the crossover period",
    "H4a": "alpha-suppression depth vs dose",
    "H4b": "titration endpoint = entropy-maximum dose",
    "H4c": "alpha deepens past the entropy maximum",
}
FAMILIES = ("confirmatory", "exploratory", "description")
TABLES = derived.READERS["04_integrative_summary"]


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrativeParameters:
    """Validated parameters of notebook 04 (stored with its results)."""

    mood_timepoint: str
    entropy_measure: str
    peak_score: str
    fdr_alpha: float
    n_boot: int
    seed: int
    primary_hypothesis: str | None = None

    @property
    def mood_column(self) -> str:
        return f"mood_improvement_{self.mood_timepoint}"

    def as_dict(self) -> dict:
        return asdict(self)


def _peak_score_names() -> list[str]:
    from pipelines.phenotype import questionnaires as q

    return sorted(c for s in ("meq30", "asc5d", "asc11d") for c in q.SCALES[s].score_columns)


def _hint(value, allowed) -> str:
    match = difflib.get_close_matches(str(value), [str(a) for a in allowed], 1)
    return f" — did you mean {match[0]!r}?" if match else ""


def _whole(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
        raise ValueError(f"{name}={value!r} must be a whole number")
    if int(value) < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    return int(value)


class IntegrativeSummaryParameters(BaseModel):
    """Parameters of notebook 04 (``notebooks: 04_integrative_summary:`` in the manifest); :meth:`resolve` checks
    them against the study with the messages of :func:`validate_parameters`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mood_timepoint: str = Field("24h", description="Mood time point of H2 and H5 (a post-baseline time point)")
    entropy_measure: str = Field(
        "lzc_median", description="Entropy measure whose plateau change enters every test (as in notebook 01)"
    )
    peak_score: str = Field("meq30_total", description="Peak-experience score of H1, H2 and H5")
    fdr_alpha: float = Field(
        0.05, description="Benjamini-Hochberg level for the hypothesis table and the correlation matrix"
    )
    n_boot: int = Field(1000, description="Bootstrap resamples of every CI (>= 100)")
    seed: int = Field(0, description="Seed of every bootstrap (>= 0)")
    primary_hypothesis: str | None = Field(
        None, description="Pre-registered primary test, a code such as H2a (CONFIRMATORY_TESTS); None: none named"
    )

    def resolve(self, study) -> IntegrativeParameters:
        return validate_parameters(study, **self.model_dump())


PARAMETERS = IntegrativeSummaryParameters


def validate_parameters(
    study,
    *,
    mood_timepoint="24h",
    entropy_measure="lzc_median",
    peak_score="meq30_total",
    fdr_alpha=0.05,
    n_boot=1000,
    seed=0,
    primary_hypothesis=None,
) -> IntegrativeParameters:
    """Check notebook 04's parameters against the study before anything is read; ValueError with a hint.

    ``mood_timepoint``: a post-baseline time point of the manifest; ``entropy_measure``: a measure the
    features step computed (``eeg.features.measures``); ``peak_score``: a MEQ30/5D-ASC score column
    (e.g. ``meq30_total``, ``asc5d_obn``); ``fdr_alpha`` in (0, 1); ``n_boot`` ≥ 100; ``seed`` ≥ 0;
    ``primary_hypothesis``: the pre-registered primary test, a code of :data:`CONFIRMATORY_TESTS`
    (``H2a`` …) or None (no primary named)."""
    timepoints = [str(t) for t in study.manifest.timepoints]
    if not isinstance(mood_timepoint, str) or mood_timepoint not in timepoints:
        raise ValueError(
            f"mood_timepoint={mood_timepoint!r} is not a time point of the manifest {timepoints}"
            + _hint(mood_timepoint, timepoints)
        )
    if mood_timepoint == timepoints[0] or mood_timepoint == "baseline":
        raise ValueError(
            f"mood_timepoint={mood_timepoint!r} is the baseline; choose a later time point "
            f"({', '.join(t for t in timepoints[1:])})"
        )
    computed = [m for m in study.manifest.eeg.features.measures if m not in SPATIOTEMPORAL_MEASURES]
    if not isinstance(entropy_measure, str) or entropy_measure not in computed:
        raise ValueError(
            f"entropy_measure={entropy_measure!r} was not computed for this study"
            + _hint(entropy_measure, computed)
            + f"; computed: {computed}"
        )
    scores = _peak_score_names()
    if not isinstance(peak_score, str) or peak_score not in scores:
        raise ValueError(f"peak_score={peak_score!r} is not a MEQ30/5D-ASC score" + _hint(peak_score, scores))
    if (
        isinstance(fdr_alpha, bool)
        or not isinstance(fdr_alpha, (int, float, np.floating))
        or not (math.isfinite(fdr_alpha) and 0 < fdr_alpha < 1)
    ):
        raise ValueError(f"fdr_alpha={fdr_alpha!r} must be a number in (0, 1)")
    if primary_hypothesis is not None and (
        not isinstance(primary_hypothesis, str) or primary_hypothesis not in CONFIRMATORY_TESTS
    ):
        raise ValueError(
            f"primary_hypothesis={primary_hypothesis!r} is not a confirmatory test of notebook 04"
            + did_you_mean(primary_hypothesis, CONFIRMATORY_TESTS)
            + f"; tests: {', '.join(CONFIRMATORY_TESTS)} (or null for none)"
        )
    return IntegrativeParameters(
        mood_timepoint=mood_timepoint,
        entropy_measure=entropy_measure,
        peak_score=peak_score,
        fdr_alpha=float(fdr_alpha),
        n_boot=_whole("n_boot", n_boot, 100),
        seed=_whole("seed", seed, 0),
        primary_hypothesis=primary_hypothesis,
    )


# ---------------------------------------------------------------------------------------------
# The subject × dose table
# ---------------------------------------------------------------------------------------------


def load_derived(study) -> dict[str, pd.DataFrame]:
    """The derived tables notebook 04 reads (FileNotFoundError naming the producing notebook if absent)."""
    return {name: derived.read_table(study, name) for name in TABLES}


def _with_session(table: pd.DataFrame) -> pd.DataFrame:
    column = "session" if "session" in table.columns else "session_id"
    out = table.assign(session=derived.session_label(table[column]).to_numpy())
    return out.drop(columns=[c for c in ("session_id",) if c in out.columns])


def _merge(left: pd.DataFrame, right: pd.DataFrame, source: str) -> pd.DataFrame:
    """Left join on subject and session, checking that both sides agree on the dose."""
    if DOSE in right.columns:
        both = left[[*KEYS, DOSE]].merge(right[[*KEYS, DOSE]], on=KEYS, suffixes=("", "_other"))
        bad = ~np.isclose(both[DOSE], both[f"{DOSE}_other"])
        if bad.any():
            row = both[bad].iloc[0]
            raise ValueError(
                f"{source}: {row[SUBJECT]} session {row['session']} has dose "
                f"{row[f'{DOSE}_other']:g} mg/kg, but the EEG tables say {row[DOSE]:g}"
            )
        right = right.drop(columns=DOSE)
    return left.merge(right, on=KEYS, how="left", validate="one_to_one")


def _subject_stratum(labels: pd.Series) -> str:
    # Sessions notebook 03 left out of the strata (acute-infection rule: "excluded", then "unassigned" here)
    # do not make a subject discordant.
    labels = labels.dropna()
    labels = labels[~labels.isin(["excluded", "unassigned"])]
    if labels.empty:
        return "unassigned"
    return labels.iloc[0] if labels.nunique() == 1 else "discordant"


def _eeg_columns(tables: dict[str, pd.DataFrame], params: IntegrativeParameters) -> pd.DataFrame:
    """The EEG part of the joined table: notebook 01's markers and global plateau changes (entropy, occipital
    alpha and, when written, the spectrum-controlled entropy change)."""
    markers = _with_session(tables["eeg_markers"])
    measured = set(markers["entropy_measure"].dropna())
    if measured and measured != {params.entropy_measure}:
        raise ValueError(
            f"eeg_markers holds entropy peaks of {sorted(measured)} (notebook 01's entropy_measure); "
            f"set entropy_measure to {sorted(measured)[0]!r} here, or rerun 01 with "
            f"entropy_measure {params.entropy_measure!r}"
        )
    base = markers[
        [
            *KEYS,
            DOSE,
            "alpha_suppression_onset_s",
            "alpha_suppression_depth_db",
            "entropy_peak_time_s",
            "entropy_peak_change",
            "alpha_recovery_s",
        ]
    ].copy()
    base.insert(3, "active", base[DOSE] > 0)

    changes = _with_session(tables["eeg_plateau_changes"])
    entropy = changes[(changes["measure"] == params.entropy_measure) & (changes["region"] == "global")]
    if entropy.empty:
        available = sorted(changes.loc[changes["region"] == "global", "measure"].unique())
        raise ValueError(
            f"eeg_plateau_changes has no global plateau change of {params.entropy_measure!r} "
            f"(notebook 01's `measures` parameter decides which are written; it has {available})"
        )
    alpha = changes[changes["measure"] == "occipital_alpha_db"]
    base = _merge(base, entropy[[*KEYS, "change"]].rename(columns={"change": "entropy_change"}), "eeg_plateau_changes")
    base = _merge(
        base, alpha[[*KEYS, "change"]].rename(columns={"change": "occipital_alpha_change_db"}), "eeg_plateau_changes"
    )
    controlled = changes[changes["measure"] == f"{params.entropy_measure}_spectrum_controlled"]  # H4c, issue 12
    if not controlled.empty:
        base = _merge(
            base,
            controlled[[*KEYS, "change"]].rename(columns={"change": "entropy_change_spectrum_controlled"}),
            "eeg_plateau_changes",
        )
    return base


def _with_peak_scores(base: pd.DataFrame, tables: dict[str, pd.DataFrame], params: IntegrativeParameters):
    """``base`` joined with notebook 02's peak scores (every score column, not the derived percentages)."""
    peak = _with_session(tables["peak_scores"])
    score_columns = [
        c for c in peak.columns if c.startswith(PEAK_PREFIXES) and not c.endswith(("_pct_max", "_complete_mystical"))
    ]
    if params.peak_score not in score_columns:
        raise ValueError(
            f"peak_score {params.peak_score!r} is not in peak_scores (notebook 02's `scales` "
            f"decide which are written; it has {score_columns})"
        )
    return _merge(base, peak[[*KEYS, DOSE, *score_columns]], "peak_scores")


def _with_cytokines(base: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``base`` joined with notebook 03's ln changes (one column per analyte), stratum and ``inflamed``."""
    cytokines = _with_session(tables["cytokine_changes"])
    wide = cytokines.pivot_table(index=KEYS, columns="analyte", values="ln_change", aggfunc="first")
    wide.columns = [f"{a.lower()}_ln_change" for a in wide.columns]
    strata = cytokines.groupby(KEYS)["stratum"].agg(_subject_stratum).rename("stratum")
    cyto = pd.concat([wide, strata], axis=1).reset_index()
    cyto["inflamed"] = cyto["stratum"].map({"inflamed": 1.0, "non-inflamed": 0.0})
    return _merge(base, cyto, "cytokine_changes")


def _with_mood(base: pd.DataFrame, tables: dict[str, pd.DataFrame], params: IntegrativeParameters) -> pd.DataFrame:
    """``base`` joined with the mood baseline, improvement and response at the shown time points, and the scale."""
    mood = _with_session(tables["mood_changes"])
    scales = mood["scale"].dropna().unique()
    if len(scales) != 1:
        raise ValueError(f"mood_changes must hold one scale, has {list(scales)}")
    if params.mood_timepoint not in set(mood["timepoint"]):
        raise ValueError(
            f"mood_changes has no time point {params.mood_timepoint!r}; it has {sorted(mood['timepoint'].unique())}"
        )
    shown = [t for t in dict.fromkeys([*SHOWN_TIMEPOINTS, params.mood_timepoint]) if t in set(mood["timepoint"])]
    first = mood.drop_duplicates(KEYS)[[*KEYS, DOSE, "baseline"]].rename(columns={"baseline": "mood_baseline"})
    for tp in shown:
        at = mood[mood["timepoint"] == tp].set_index(KEYS)
        first = first.join(at["improvement"].rename(f"mood_improvement_{tp}"), on=KEYS)
        first = first.join(at["response"].astype(float).rename(f"mood_response_{tp}"), on=KEYS)
    base = _merge(base, first, "mood_changes")
    base.insert(3, "mood_scale", str(scales[0]))
    return base


def _with_session_order(base: pd.DataFrame, session_order: pd.DataFrame) -> pd.DataFrame:
    """``base`` joined with the recorded session order; a session without one is an error naming it."""
    order = _with_session(session_order)[[*KEYS, DOSE, "session_order", "period", "sequence", "carryover_dose"]]
    base = _merge(base, order, "session order (sessions.tsv)")
    if base["period"].isna().any():
        row = base[base["period"].isna()].iloc[0]
        raise ValueError(f"sessions.tsv gives no session order for {row[SUBJECT]} session {row['session']}")
    return base


def join_subject_dose(
    tables: dict[str, pd.DataFrame], params: IntegrativeParameters, session_order: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per subject × session (dose) joining every branch; see :func:`subject_dose_table`.
    ``session_order`` (:attr:`pipelines.study.dataset.Study.session_order`) adds ``period``, ``sequence``,
    ``carryover_dose`` and ``session_order``."""
    base = _eeg_columns(tables, params)
    base = _with_peak_scores(base, tables, params)
    base = _with_cytokines(base, tables)
    base = _with_mood(base, tables, params)
    # Over every session (placebo included): the placebo-controlled contrast of H3 needs one label per subject.
    base["subject_stratum"] = (
        base[SUBJECT].map(base.groupby(SUBJECT)["stratum"].agg(_subject_stratum)).fillna("unassigned")
    )
    if session_order is not None:
        base = _with_session_order(base, session_order)
    return base.sort_values([SUBJECT, DOSE]).reset_index(drop=True)


def has_order(table: pd.DataFrame) -> bool:
    """Whether the table carries the crossover period of every session."""
    return "period" in table.columns and table["period"].notna().all()


def crossover_note(table: pd.DataFrame) -> str:
    """One line: which crossover terms the models of this report include, or that they are not modelled."""
    if not has_order(table):
        return CROSSOVER_NOT_MODELLED
    return (
        "crossover period (1..K from the recorded session order) in every model (categorical, "
        "person-mean-centred in the within-subject correlations); the dose model H4a also fits sequence "
        "and carry-over (previous period's dose) where identified"
    )


def subject_dose_table(study, params: IntegrativeParameters) -> pd.DataFrame:
    """One row per subject × session (dose): EEG markers (alpha-suppression onset, depth and recovery;
    entropy peak time and change), plateau changes (``entropy_change`` of ``entropy_measure``,
    ``occipital_alpha_change_db``), every peak-experience score (MEQ30 subscales and total, 5D-ASC
    dimensions and 11 factors; NaN after placebo), ln-change of every cytokine (``il6_ln_change``, …),
    the session's inflammation ``stratum`` (and ``inflamed`` 0/1, the subject's ``subject_stratum``),
    the mood scale's baseline and improvement (+ response 0/1) at 24 h, 7 d and ``mood_timepoint``.

    Session labels are normalised (``ses-ket050`` → ``ket050``); doses must agree across branches. When
    the manifest declares the session order, ``session_order``, ``period``, ``sequence`` and
    ``carryover_dose`` are added (:attr:`pipelines.study.dataset.Study.session_order`)."""
    return join_subject_dose(load_derived(study), params, study.session_order)


# ---------------------------------------------------------------------------------------------
# Small statistics (tidy rows)
# ---------------------------------------------------------------------------------------------


def _row(
    hypothesis,
    test,
    statement,
    population,
    method,
    effect,
    n,
    n_subjects,
    estimate,
    ci_low,
    ci_high,
    p,
    direction,
    family="confirmatory",
) -> dict:
    return {
        "hypothesis": hypothesis,
        "test": test,
        "family": family,
        "statement": statement,
        "population": population,
        "method": method,
        "effect": effect,
        "n": int(n),
        "n_subjects": int(n_subjects),
        "estimate": float(estimate),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p": float(p),
        "direction": direction,
    }


def _mean_t(values) -> tuple[float, float, float, float, int]:
    """Mean, t-based 95 % CI and one-sample t-test p against 0."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = v.size
    if n < 2:
        return (float(v.mean()) if n else np.nan), np.nan, np.nan, np.nan, n
    mean, se = v.mean(), v.std(ddof=1) / np.sqrt(n)
    half = sps.t.ppf(0.975, n - 1) * se
    p = float(sps.ttest_1samp(v, 0.0).pvalue) if se > 0 else np.nan
    return float(mean), float(mean - half), float(mean + half), p, n


def _corr_row(table: pd.DataFrame, **labels) -> dict:
    row = table.iloc[0]
    return _row(
        n=row["n"],
        n_subjects=labels.pop("n_subjects"),
        estimate=row["estimate"],
        ci_low=row["ci_low"],
        ci_high=row["ci_high"],
        p=row["p"],
        **labels,
    )


def _model_row(fit: pd.DataFrame, term: str, **labels) -> dict:
    row = fit.set_index("term").loc[term]
    method = labels.pop("method") + ("" if bool(row["converged"]) else " (did not converge)")
    return _row(
        n=row["n"],
        n_subjects=row["n_groups"],
        estimate=row["estimate"],
        ci_low=row["ci_low"],
        ci_high=row["ci_high"],
        p=row["p"],
        method=method,
        **labels,
    )


def _mixed_model(data: pd.DataFrame, formula: str) -> pd.DataFrame:
    """:func:`pipelines.stats.mixed_model` with a random intercept per subject, its optimiser warnings
    silenced: convergence is reported in the table (``converged``) and in each row's method."""
    import warnings

    # Imported first: statsmodels adds an "always" filter for its warnings when first imported.
    import statsmodels.formula.api  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stats.mixed_model(data, formula, SUBJECT)


LABELS = {
    DOSE: "dose (mg/kg)",
    "alpha_suppression_depth_db": "alpha suppression depth (dB)",
    "occipital_alpha_change_db": "occipital alpha change (dB)",
    "entropy_change": "entropy change",
    "entropy_peak_change": "entropy peak change",
    "mood_baseline": "baseline severity",
    "inflamed": "inflamed (0/1)",
}


def _label(column: str) -> str:
    """A readable name of a subject × dose table column."""
    from pipelines.analyses.peak_experience_mood import score_label

    if column in LABELS:
        return LABELS[column]
    if column.startswith(PEAK_PREFIXES):
        return score_label(column)
    if column.endswith("_ln_change"):
        return f"{column.removesuffix('_ln_change').upper().replace('_', '/')} ln change"
    if column.startswith("mood_improvement_"):
        return f"mood improvement {column.removeprefix('mood_improvement_')}"
    return column.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# Hypotheses
# ---------------------------------------------------------------------------------------------


def _inference_row(row: pd.Series, **labels) -> dict:
    """A hypothesis row from a :mod:`pipelines.stats` result row (n = sessions used)."""
    return _row(
        n=row["n_obs"],
        n_subjects=row["n_subjects"],
        estimate=row["estimate"],
        ci_low=row["ci_low"],
        ci_high=row["ci_high"],
        p=row["p"],
        method=labels.pop("method", row["method"]),
        **labels,
    )


def _dose_adjusted(active: pd.DataFrame, column: str) -> pd.Series:
    """``column`` minus its mean at the same dose over subjects: the part a dose curve does not explain."""
    return active[column] - active.groupby(DOSE)[column].transform("mean")


def _period_terms(table: pd.DataFrame) -> list[str]:
    return ["period"] if has_order(table) and table["period"].nunique() > 1 else []


def _with_period_dummies(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``data`` with 0/1 columns ``period_2`` … (period 1 the reference) when the order is known, and their names;
    the routines that take numeric covariates person-mean centre them (the period terms of a crossover)."""
    if not _period_terms(data):
        return data, []
    dummies = pd.get_dummies(data["period"].astype(int), prefix="period", drop_first=True, dtype=float)
    return pd.concat([data, dummies], axis=1), list(dummies.columns)


PEAK_POPULATION = "subject-sessions with a peak score (placebo included when rated)"
# The one active-only analysis of this report, and why (printed in H4b's population).
TITRATION_ACTIVE_ONLY = "active doses only: placebo cannot be a titration endpoint or an entropy-maximum dose"


def placebo_note(table: pd.DataFrame, peak_score: str) -> str:
    """One line: whether the peak tests include placebo sessions, or that placebo is missing and why."""
    placebo = table[~table["active"]]
    rated = int(placebo[peak_score].notna().sum()) if peak_score in table.columns else 0
    if placebo.empty:
        return "No placebo sessions in this design: the peak tests use the active sessions"
    if rated:
        return f"Placebo included: {rated} placebo session(s) with a peak score enter every test of a peak score"
    return (
        f"Placebo missing: the peak questionnaires exist only after active doses ({len(placebo)} placebo session(s) "
        "without one), so the tests of a peak score (H1, H2, H5) use the active sessions only"
    )


def h1_entropy_tracks_peak(table: pd.DataFrame, params: IntegrativeParameters) -> pd.DataFrame:
    """H1 — the entropy increase tracks peak-experience intensity *beyond what dose explains* (every session
    with a peak score: placebo included when rated).

    Both entropy and the peak score move with dose, so a correlation across a subject's doses would only
    compare two dose curves (its sign follows their shapes: an inverted U against a saturating curve).
    H1 is therefore posed dose-adjusted:

    * **H1a within subjects** — partial repeated-measures r of entropy change and the peak score given the
      dose *level* (categorical: each dose's own mean, whatever the curve's shape) and the crossover period
      when the order is known: in sessions where a subject's entropy rose more than usual for that dose
      and period, was the experience more intense than usual? (:func:`pipelines.stats.
      within_subject_partial_correlation`; subject-cluster bootstrap-SE t(G−1) on Fisher z.)
    * **H1c between subjects** — r of subject means of the dose-adjusted values (each value minus the mean
      of all subjects at that dose; with every subject at every dose this equals r of the raw subject
      means): do subjects whose entropy responds more also report more intense experiences — the component
      a shared trait (sensitivity to ketamine) produces (bootstrap-SE t(G−1)).
    * **H1b pooled** — Pearson r of the raw values over the sessions: description only (no p)."""
    peak = params.peak_score
    active = table.dropna(subset=["entropy_change", peak]).copy()  # placebo included when rated
    pop = PEAK_POPULATION
    active["dose_level"] = active[DOSE].map(lambda d: f"{d:g}")
    adjust = ["dose_level", *_period_terms(active)]
    partial = within_subject_partial_correlation(
        active, "entropy_change", peak, SUBJECT, categorical=adjust, n_boot=params.n_boot, seed=params.seed
    ).iloc[0]
    active["entropy_dose_adjusted"] = _dose_adjusted(active, "entropy_change")
    active["peak_dose_adjusted"] = _dose_adjusted(active, peak)
    between = (
        within_between_correlation(
            active, "entropy_dose_adjusted", "peak_dose_adjusted", SUBJECT, n_boot=params.n_boot, seed=params.seed
        )
        .set_index("quantity")
        .loc["between"]
    )
    pooled = (
        within_between_correlation(active, "entropy_change", peak, SUBJECT, n_boot=params.n_boot, seed=params.seed)
        .set_index("quantity")
        .loc["pooled"]
    )
    what = f"{params.entropy_measure} change vs {_label(peak)}"
    given = "dose level" + (" and period" if "period" in adjust else "")
    return pd.DataFrame(
        [
            _inference_row(
                partial,
                hypothesis="H1",
                test="H1a within subject, dose-adjusted",
                statement=f"At a given dose{' and period' if 'period' in adjust else ''}, sessions in which a "
                f"subject's entropy rises more than usual are sessions with a more intense peak "
                f"experience ({what}; partial r_rm given {given})",
                population=pop,
                effect="partial r_rm",
                direction="+",
            ),
            _inference_row(
                pooled,
                hypothesis="H1",
                test="H1b pooled (description)",
                statement=f"Over all sessions, entropy increase and peak intensity rise together ({what}); "
                "description only, not a test: it mixes the dose curves, H1a and H1c",
                population=pop,
                effect="r pooled (description)",
                direction="+",
                family="description",
            ),
            _inference_row(
                between,
                hypothesis="H1",
                test="H1c between subjects, dose-adjusted",
                statement=f"Subjects with larger entropy increases have more intense peak experiences "
                f"(subject means of dose-adjusted values: each minus the mean at its dose; {what})",
                population="subjects (means over their sessions with a peak score)",
                effect="r between subjects",
                direction="+",
            ),
        ]
    )


def _h2b_within_effect(data: pd.DataFrame, params: IntegrativeParameters, scale: str, periods: list[str]) -> dict:
    """H2b: the within part of the within/between decomposition, points of improvement per SD of the peak score
    (``peak_z``), dose, baseline and period dummies person-mean centred; wild cluster bootstrap-t over subjects."""
    peak, mood = params.peak_score, params.mood_column
    data, dummies = _with_period_dummies(data)
    effect = within_between_effect(
        data,
        mood,
        "peak_z",
        SUBJECT,
        covariates=[DOSE, "mood_baseline", *dummies],
        n_boot=params.n_boot,
        seed=params.seed,
    ).set_index("quantity")
    return _inference_row(
        effect.loc["within"],
        hypothesis="H2",
        test="H2b within-subject effect",
        statement=f"{scale} improvement at {params.mood_timepoint} is larger in a subject's sessions with a "
        f"more intense {_label(peak)} than that subject's average, at fixed dose and baseline severity"
        f"{' and period' if periods else ''}",
        population=PEAK_POPULATION,
        method="within/between decomposition: OLS on person-mean-centred improvement, peak_z, dose, "
        f"baseline{' and period dummies' if periods else ''} (subject fixed effects); wild cluster "
        f"bootstrap-t over subjects ({params.n_boot} Webb draws); covariates used: "
        f"{effect.loc['within', 'covariates']}",
        effect=f"{scale} points per SD of {_label(peak)} (within subjects)",
        direction="+",
    )


def h2_peak_predicts_mood(table: pd.DataFrame, params: IntegrativeParameters) -> pd.DataFrame:
    """H2 — peak experience predicts mood improvement at ``mood_timepoint`` beyond dose and baseline severity,
    over every session with a peak score (placebo included when rated).

    H2a: within-subject partial correlation of the peak score with improvement given dose and the
    session's baseline severity (and the crossover period when the order is known;
    :func:`pipelines.stats.within_subject_partial_correlation`; all person-mean centred,
    subject-cluster bootstrap). H2b: the within-subject effect in scale points,
    ``improvement ~ peak_z + dose + baseline [+ period dummies]`` all person-mean centred (= subject fixed
    effects; :func:`pipelines.stats.effects.within_between_effect`), wild cluster bootstrap-t over subjects:
    points of improvement per SD of the peak score (SD over the sessions analysed) when a subject's session
    is more intense than that subject's own average, at fixed dose, baseline and period. H2c between subjects:
    r of subject means (trait-level); H2d pooled r over sessions, description only."""
    peak, mood = params.peak_score, params.mood_column
    data = table.dropna(subset=[peak, mood, "mood_baseline", DOSE]).copy()  # placebo included when rated
    data["peak_z"] = (data[peak] - data[peak].mean()) / data[peak].std(ddof=1)
    scale = str(table["mood_scale"].iloc[0]).upper()
    periods = _period_terms(data)
    partial = within_subject_partial_correlation(
        data,
        peak,
        mood,
        SUBJECT,
        covariates=[DOSE, "mood_baseline"],
        categorical=periods,
        n_boot=params.n_boot,
        seed=params.seed,
    ).iloc[0]
    wb = within_between_correlation(data, peak, mood, SUBJECT, n_boot=params.n_boot, seed=params.seed).set_index(
        "quantity"
    )
    what = f"{_label(peak)} vs {scale} improvement at {params.mood_timepoint}"
    return pd.DataFrame(
        [
            _inference_row(
                partial,
                hypothesis="H2",
                test="H2a within-subject partial correlation",
                statement=f"Across a subject's sessions, {_label(peak)} correlates with {scale} improvement "
                f"at {params.mood_timepoint} after removing dose and baseline severity"
                f"{' and period' if periods else ''} (covariates used: {partial['covariates_used']})",
                population=PEAK_POPULATION,
                effect="partial r_rm",
                direction="+",
            ),
            _h2b_within_effect(data, params, scale, periods),
            _inference_row(
                wb.loc["between"],
                hypothesis="H2",
                test="H2c between subjects",
                statement=f"Subjects with more intense peak experiences improve more (subject means; {what})",
                population="subjects (means over their sessions with a peak score)",
                effect="r between subjects",
                direction="+",
            ),
            _inference_row(
                wb.loc["pooled"],
                hypothesis="H2",
                test="H2d pooled (description)",
                statement=f"Over all sessions ({what}); description only, not a test",
                population=PEAK_POPULATION,
                effect="r pooled (description)",
                direction="+",
                family="description",
            ),
        ]
    )


def _stratum_rows(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Sessions with a change and an assigned session stratum (notebook 03's acute-infection sessions are left
    out), with ``inflamed_subject`` 0/1 from the subject's common label (NaN for discordant/unassigned) and
    ``active_dose`` 0/1."""
    data = table[table["stratum"].isin(["inflamed", "non-inflamed"])].dropna(subset=[column])
    return data.assign(
        inflamed_subject=data["subject_stratum"].map({"inflamed": 1.0, "non-inflamed": 0.0}),
        active_dose=data["active"].astype(float),
    )


def h3_inflamed_stratum(table: pd.DataFrame, params: IntegrativeParameters, analytes=PRIMARY_ANALYTES) -> pd.DataFrame:
    """H3 — the anti-inflammatory change appears only in the inflamed stratum (per analyte), placebo-controlled
    and with the subject as the unit (:func:`pipelines.stats.stratum_by_treatment_interaction`).

    Per subject, dᵢ = mean ln(24 h/baseline) over its active sessions − the same over its placebo session(s)
    (strata are the subject's label: a screening CRP when notebook 03 had one; the placebo contrast removes
    the regression to the mean a baseline-defined stratum carries). H3a/H3b: mean d in the inflamed /
    non-inflamed stratum (one-sample t over subjects; H3b is expected to include 0 — consistent with, not
    proof of, no change). H3c: the interaction, inflamed − non-inflamed mean d (Welch t over subjects). H3d
    (when the session order is known): the same interaction adjusted for the crossover period — dᵢ regressed on
    stratum and the subject's period composition (which periods its placebo and active sessions fell in),
    OLS with a per-stratum sandwich variance, Welch–Satterthwaite t (``period=`` of the same routine)."""
    rows = []
    for analyte in analytes:
        column = f"{analyte.lower()}_ln_change"
        if column not in table.columns:
            continue
        data = _stratum_rows(table, column)
        result = stratum_by_treatment_interaction(
            data, column, "active", "inflamed_subject", SUBJECT, labels=("non-inflamed", "inflamed")
        ).set_index("quantity")
        pop = "subjects with active and placebo sessions (per-subject active − placebo ln change)"
        for test, quantity, label, direction in (
            ("H3a", "contrast_in_stratum_1", "inflamed", "-"),
            ("H3b", "contrast_in_stratum_0", "non-inflamed", "0"),
        ):
            rows.append(
                _inference_row(
                    result.loc[quantity],
                    hypothesis="H3",
                    test=f"{test} {analyte} {label}",
                    statement=f"{analyte} falls after ketamine relative to placebo in the {label} stratum"
                    if direction == "-"
                    else f"{analyte} does not change after ketamine relative to placebo in the {label} stratum",
                    population=f"{label} {pop}",
                    method="one-sample t over subjects of (mean active − mean placebo ln change), t 95% CI",
                    effect="mean ln(24h/baseline), active − placebo",
                    direction=direction,
                )
            )
        rows.append(
            _inference_row(
                result.loc["interaction"],
                hypothesis="H3",
                test=f"H3c {analyte} interaction",
                statement=f"{analyte} falls more after ketamine (relative to placebo) in the inflamed than in the "
                "non-inflamed stratum",
                population=pop,
                method="Welch t over subjects of per-subject (active − placebo) ln change, inflamed − non-inflamed",
                effect="difference in active − placebo ln change (inflamed − non-inflamed)",
                direction="-",
            )
        )
        if not has_order(data):
            continue  # H3d is H3c adjusted for the crossover period; crossover_note says period is not modelled
        adjusted = stratum_by_treatment_interaction(
            data, column, "active", "inflamed_subject", SUBJECT, labels=("non-inflamed", "inflamed"), period="period"
        ).set_index("quantity")
        rows.append(
            _inference_row(
                adjusted.loc["interaction"],
                hypothesis="H3",
                test=f"H3d {analyte} interaction, period-adjusted",
                statement=f"{analyte} falls more after ketamine (relative to placebo) in the inflamed than in the "
                "non-inflamed stratum, adjusted for the crossover period of each subject's sessions",
                population=pop,
                effect="difference in active − placebo ln change (inflamed − non-inflamed), period-adjusted",
                direction="-",
            )
        )
    return pd.DataFrame(rows)


def titration_doses(table: pd.DataFrame) -> pd.DataFrame:
    """Per subject over active doses: ``entropy_max_dose`` (largest plateau entropy change),
    ``alpha_endpoint_dose`` (lowest dose at which notebook 01 detected sustained suppression below its
    threshold; NaN if never), the depth at both and at the top dose. Active doses only, and only here: a
    titration endpoint is a dose one would give, and no peak score is involved (:data:`TITRATION_ACTIVE_ONLY`)."""
    active = table[table["active"]].dropna(subset=["entropy_change"])
    rows = []
    top = active[DOSE].max()
    for subject, group in active.groupby(SUBJECT):
        group = group.sort_values(DOSE)
        at_max = group.loc[group["entropy_change"].idxmax()]
        reached = group[group["alpha_suppression_onset_s"].notna()]
        at_top = group[group[DOSE] == top]
        rows.append(
            {
                SUBJECT: subject,
                "entropy_max_dose": at_max[DOSE],
                "alpha_endpoint_dose": reached[DOSE].min() if len(reached) else np.nan,
                "depth_at_entropy_max_db": at_max["alpha_suppression_depth_db"],
                "depth_at_top_dose_db": at_top["alpha_suppression_depth_db"].iloc[0] if len(at_top) else np.nan,
                "entropy_at_max": at_max["entropy_change"],
                "entropy_at_top_dose": at_top["entropy_change"].iloc[0] if len(at_top) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def agreement_permutation(first, second, n_perm: int, seed: int) -> tuple[float, float, float]:
    """Agreement of two per-subject labels against chance from their marginals.

    Returns (observed proportion of subjects whose labels agree, chance agreement Σ_d p_d·q_d from the
    two marginal distributions, one-sided permutation p): ``second`` is permuted across subjects
    ``n_perm`` times (keeping both marginals), p = (1 + #{permuted agreement ≥ observed}) / (n_perm + 1)."""
    a, b = np.asarray(first), np.asarray(second)
    n = len(a)
    if n == 0:
        return np.nan, np.nan, np.nan
    observed = int((a == b).sum())
    levels = np.union1d(a, b)
    chance = float(sum(np.mean(a == d) * np.mean(b == d) for d in levels))
    rng = np.random.default_rng(seed)
    permuted = np.array([(a == rng.permutation(b)).sum() for _ in range(n_perm)])
    return observed / n, chance, float((1 + (permuted >= observed).sum()) / (n_perm + 1))


def _h4a_row(table: pd.DataFrame, params: IntegrativeParameters) -> dict:
    """H4a: depth vs dose over every session (:func:`pipelines.stats.crossover_dose_model`)."""
    data = table.dropna(subset=["alpha_suppression_depth_db", DOSE])
    fit = crossover_dose_model(
        data,
        "alpha_suppression_depth_db",
        DOSE,
        SUBJECT,
        "session_order" if has_order(data) else None,
        n_boot=params.n_boot,
        seed=params.seed,
    ).iloc[0]
    return _inference_row(
        fit,
        hypothesis="H4",
        test="H4a depth vs dose",
        statement="Occipital alpha suppression deepens with dose",
        population="all subject-sessions (placebo included)",
        method=f"{fit['formula']}; {fit['method']}; {fit['crossover_note']}",
        effect="dB per mg/kg",
        direction="-",
    )


def _h4b_row(doses: pd.DataFrame, params: IntegrativeParameters) -> dict:
    """H4b: agreement of titration endpoint and entropy maximum against chance (permutation, Wilson CI)."""
    known = doses.dropna(subset=["alpha_endpoint_dose"])
    estimate, chance, p = agreement_permutation(
        known["alpha_endpoint_dose"], known["entropy_max_dose"], params.n_boot, params.seed
    )
    low = high = np.nan
    if len(known):
        agree = int(round(estimate * len(known)))
        ci = sps.binomtest(agree, len(known)).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = ci.low, ci.high
    return _row(
        "H4",
        "H4b titration endpoint = entropy maximum",
        "The lowest dose at which sustained alpha suppression is reached is the dose of maximal "
        f"entropy increase more often than chance (chance agreement from the marginals: {chance:.2f})",
        f"subjects who reached suppression at some active dose ({TITRATION_ACTIVE_ONLY})",
        f"permutation of entropy-maximum doses across subjects ({params.n_boot} permutations, "
        f"one-sided) vs chance agreement {chance:.2f} from the two marginal distributions; Wilson 95% CI",
        "proportion of subjects in agreement",
        len(known),
        len(known),
        estimate,
        low,
        high,
        p,
        "+",
    )


def _h4c_row(doses: pd.DataFrame, table: pd.DataFrame, test: str, statement: str, population: str, **family) -> dict:
    """H4c: paired depth difference top dose − entropy-maximum dose among subjects whose entropy (as in
    ``doses``) peaks below the top dose (t CI)."""
    beyond = doses[doses["entropy_max_dose"] < table.loc[table["active"], DOSE].max()]
    mean, low, high, p, n = _mean_t(beyond["depth_at_top_dose_db"] - beyond["depth_at_entropy_max_db"])
    return _row(
        "H4",
        test,
        statement,
        population,
        "paired t, t 95% CI",
        "depth at top dose − depth at entropy-maximum dose (dB)",
        n,
        n,
        mean,
        low,
        high,
        p,
        "-",
        **family,
    )


def h4_alpha_depth_dose(table: pd.DataFrame, params: IntegrativeParameters) -> pd.DataFrame:
    """H4 — alpha-suppression depth marks the effective dose (and the entropy maximum).

    H4a: depth deepens with dose — :func:`pipelines.stats.crossover_dose_model` over every session:
    random dose slopes, period, sequence and carry-over where the recorded order identifies them,
    subject-cluster bootstrap-t (dB per mg/kg; negative = deeper). H4b: the titration endpoint marks the
    entropy maximum — per subject, does the lowest active dose at which sustained suppression was reached
    (notebook 01's threshold and hold time) equal the active dose with the largest entropy increase?
    Estimate: the proportion of subjects in agreement (Wilson 95 % CI); p: one-sided permutation test
    across subjects (:func:`agreement_permutation`, ``n_boot`` permutations) against the chance agreement
    of the two marginal distributions — not 1 / (number of doses), which would hold only if both doses
    were uniform over the doses. H4c: past the entropy maximum alpha still
    deepens — among subjects whose entropy peaks below the top dose, the paired depth difference top
    dose − entropy-maximum dose (t CI; negative = deeper at the top dose while entropy has fallen).

    (Choosing "the deepest suppression among doses whose entropy is preserved" instead would make the
    comparison with the entropy maximum nearly true by construction when depth rises monotonically
    with dose, so H4b uses the threshold criterion clinicians titrate with.)"""
    rows = [_h4a_row(table, params)]
    doses = titration_doses(table)
    rows += [
        _h4b_row(doses, params),
        _h4c_row(
            doses,
            table,
            "H4c alpha deepens past the entropy maximum",
            "Beyond the dose of maximal entropy, alpha suppression still deepens (depth dissociates from "
            "entropy at high dose)",
            "subjects whose entropy peaks below the top dose",
        ),
    ]
    if "entropy_change_spectrum_controlled" in table.columns:
        # Issue 12: entropy tracks the spectrum; the entropy maximum taken from the spectrum-controlled change
        # (notebook 01: entropy change minus its fitted alpha and aperiodic terms) asks whether H4c survives it.
        controlled = titration_doses(
            table.drop(columns="entropy_change").rename(
                columns={"entropy_change_spectrum_controlled": "entropy_change"}
            )
        )
        rows.append(
            _h4c_row(
                controlled,
                table,
                "H4c (spectrum-controlled entropy)",
                "As H4c, with the entropy maximum of the spectrum-controlled entropy change (alpha and "
                "aperiodic-exponent changes as covariates)",
                "subjects whose controlled entropy peaks below the top dose",
                family="description",
            )
        )  # a sensitivity row: no FDR family
    return pd.DataFrame(rows)


def combined_predictors(table: pd.DataFrame, params: IntegrativeParameters) -> list[str]:
    """One or two predictors from every branch: design (dose, baseline severity), EEG (entropy change,
    occipital alpha change), peak experience, cytokines (IL-6 ln change, inflamed)."""
    wanted = [
        DOSE,
        "mood_baseline",
        "entropy_change",
        "occipital_alpha_change_db",
        params.peak_score,
        "il6_ln_change",
        "inflamed",
    ]
    return [c for c in wanted if c in table.columns and table[c].notna().any()]


def combined_model(table: pd.DataFrame, params: IntegrativeParameters) -> pd.DataFrame:
    """H5 — a combined model of mood improvement with predictors from every branch.

    Every variable z-scored over the rows analysed (every session with complete data, placebo included when
    its peak score was rated), then
    ``improvement_z ~ Σ predictor_z + (1 | subject)`` (MixedLM REML, Wald 95 % CI): standardised
    coefficients. Columns also give the variance inflation factor of each predictor (collinearity) and
    the caveat: observations and subjects per predictor."""
    predictors = combined_predictors(table, params)
    mood = params.mood_column
    data = table.dropna(subset=[mood, *predictors]).copy()
    z = {c: f"z_{c}" for c in [mood, *predictors]}
    for column, name in z.items():
        sd = data[column].std(ddof=1)
        data[name] = (data[column] - data[column].mean()) / sd if sd > 0 else np.nan
    formula = f"{z[mood]} ~ " + " + ".join(z[c] for c in predictors)
    fit = _mixed_model(data, formula)
    fit = fit[fit["term"] != "Intercept"].copy()
    fit["predictor"] = fit["term"].str.removeprefix("z_")
    corr = np.corrcoef(data[[z[c] for c in predictors]].to_numpy(float), rowvar=False)
    vif = np.diag(np.linalg.pinv(corr))
    fit["vif"] = fit["predictor"].map(dict(zip(predictors, vif)))
    fit["n_predictors"] = len(predictors)
    fit["obs_per_predictor"] = len(data) / len(predictors)
    fit["subjects_per_predictor"] = data[SUBJECT].nunique() / len(predictors)
    fit["outcome"] = mood
    return fit.reset_index(drop=True)


def _combined_rows(model: pd.DataFrame, params: IntegrativeParameters, scale: str) -> pd.DataFrame:
    rows = []
    for _, r in model.iterrows():
        rows.append(
            _row(
                "H5",
                f"H5 {r['predictor']}",
                f"In the combined model, {_label(r['predictor'])} predicts {scale} improvement at "
                f"{params.mood_timepoint} given every other branch",
                "subject-sessions with every predictor (placebo included when rated)",
                "MixedLM REML on z-scores, random intercept per subject; "
                f"{int(r['n_predictors'])} predictors, "
                f"{r['obs_per_predictor']:.1f} observations and {r['subjects_per_predictor']:.1f} subjects "
                f"per predictor (VIF {r['vif']:.1f})",
                "standardised coefficient (SD of improvement per SD)",
                r["n"],
                r["n_groups"],
                r["estimate"],
                r["ci_low"],
                r["ci_high"],
                r["p"],
                "+" if r["predictor"] == params.peak_score else "?",
                family="exploratory",
            )
        )
    return pd.DataFrame(rows)


def _verdict(row, alpha: float) -> str:
    if row["family"] == "description":
        return "description only (no test)"
    if row["family"] == "exploratory":
        return (
            "exploratory: "
            + ("significant" if row["p_fdr"] <= alpha else "not significant")
            + " within the exploratory family"
        )
    if not np.isfinite(row["estimate"]) or not np.isfinite(row["p"]):
        return "not estimable"
    if row["direction"] == "0":
        return (
            "consistent (CI includes 0; not evidence of absence)"
            if row["ci_low"] <= 0 <= row["ci_high"]
            else "contradicts (a change)"
        )
    significant = row["p_fdr"] <= alpha
    if row["direction"] == "?":
        return "significant" if significant else "not significant"
    if row["test"].startswith("H4b"):  # proportion vs chance: the direction is 'above chance'
        return "supports" if significant else "not supported"
    sign = "+" if row["estimate"] > 0 else "-"
    if significant:
        return "supports" if sign == row["direction"] else "significant, opposite direction"
    return "not supported"


def hypothesis_tests(
    table: pd.DataFrame, params: IntegrativeParameters, combined: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every hypothesis row (H1–H5), with BH-FDR within each ``family`` — the confirmatory rows (H1–H4) are
    one family, H5's exploratory rows another; description rows have no p — and a verdict against the
    stated direction (``+``/``-``; ``0`` = no change expected; ``?`` = no direction stated) at ``fdr_alpha``.
    ``primary`` flags the rows of ``params.primary_hypothesis``; they come first. Columns:
    :data:`HYPOTHESIS_COLUMNS` (estimate and CI first)."""
    combined = combined_model(table, params) if combined is None else combined
    scale = str(table["mood_scale"].iloc[0]).upper()
    out = pd.concat(
        [
            h1_entropy_tracks_peak(table, params),
            h2_peak_predicts_mood(table, params),
            h3_inflamed_stratum(table, params),
            h4_alpha_depth_dose(table, params),
            _combined_rows(combined, params, scale),
        ],
        ignore_index=True,
    )
    out["p_fdr"] = np.nan
    for family in ("confirmatory", "exploratory"):
        mask = (out["family"] == family).to_numpy()
        out.loc[mask, "p_fdr"] = stats.fdr_bh(out.loc[mask, "p"].to_numpy(float))
    out["verdict"] = [_verdict(r, params.fdr_alpha) for _, r in out.iterrows()]
    out["primary"] = out["test"].str.split().str[0].eq(params.primary_hypothesis) & out["family"].eq("confirmatory")
    # The pre-registered primary test leads the table; the others keep their order.
    out = out.sort_values("primary", ascending=False, kind="stable").reset_index(drop=True)
    return out[HYPOTHESIS_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Cross-branch correlation matrix
# ---------------------------------------------------------------------------------------------


def matrix_variables(table: pd.DataFrame, params: IntegrativeParameters) -> dict[str, str]:
    """Variable -> branch, in display order, for the cross-branch correlation matrix."""
    variables = {
        DOSE: "design",
        "alpha_suppression_depth_db": "EEG",
        "occipital_alpha_change_db": "EEG",
        "entropy_change": "EEG",
        "entropy_peak_change": "EEG",
        "meq30_total": "peak",
        "meq30_mystical": "peak",
        "asc5d_obn": "peak",
        params.peak_score: "peak",
        **{f"{a.lower()}_ln_change": "cytokines" for a in PRIMARY_ANALYTES},
        "mood_baseline": "mood",
        **{f"mood_improvement_{t}": "mood" for t in SHOWN_TIMEPOINTS},
        params.mood_column: "mood",
    }
    return {v: b for v, b in variables.items() if v in table.columns and table[v].notna().any()}


MATRIX_QUANTITIES = ("within", "between", "pooled")


def correlation_matrix(table: pd.DataFrame, params: IntegrativeParameters) -> pd.DataFrame:
    """Every pair of :func:`matrix_variables` over every subject-session, placebo included (pairwise complete),
    split by :func:`pipelines.stats.within_between_correlation` into ``quantity`` rows: ``within`` (r_rm across
    a subject's doses; a shared response to dose shows up here), ``between`` (r of subject means:
    trait-level) and ``pooled`` (r over sessions, description only, p NaN). Subject-cluster bootstrap
    CIs (``n_boot``, ``seed``); BH-FDR over the unique pairs within each of ``within`` and ``between`` at
    ``fdr_alpha``. Columns: x, y, quantity, n (sessions), n_subjects, estimate, ci_low, ci_high, p,
    p_fdr, significant_fdr, method, x_branch, y_branch."""
    variables = matrix_variables(table, params)
    names = list(variables)
    active = table  # every session: placebo included wherever the variables are measured
    # A variable whose subject means are all equal (dose: every subject had every dose) has no
    # between-subject association; the routine would return r ≈ 0 from rounding noise, so it is set NaN.
    means = active.groupby(SUBJECT)[names].mean()
    constant = {v for v in names if means[v].std(ddof=0) <= 1e-9 * max(1.0, float(active[v].abs().max()))}
    parts = []
    for i, x in enumerate(names[:-1]):
        for y in names[i + 1 :]:
            # exactly equal subject means (placebo + every dose) make the between r 0/0: set NaN below
            with np.errstate(invalid="ignore", divide="ignore"):
                rows = within_between_correlation(active, x, y, SUBJECT, n_boot=params.n_boot, seed=params.seed)
            if x in constant or y in constant:
                undefined = (rows["quantity"] == "between").to_numpy()
                rows.loc[undefined, ["estimate", "ci_low", "ci_high", "p", "p_parametric"]] = np.nan
                rows.loc[undefined, "method"] = "undefined: a variable's subject means do not vary"
            parts.append(rows)
    out = pd.concat(parts, ignore_index=True).rename(columns={"n_obs": "n"})
    out["p_fdr"] = np.nan
    for quantity in ("within", "between"):
        mask = (out["quantity"] == quantity).to_numpy()
        out.loc[mask, "p_fdr"] = stats.fdr_bh(out.loc[mask, "p"].to_numpy(float))
    out["significant_fdr"] = out["p_fdr"] <= params.fdr_alpha
    out["x_branch"] = out["x"].map(variables)
    out["y_branch"] = out["y"].map(variables)
    out["_q"] = out["quantity"].map({q: i for i, q in enumerate(MATRIX_QUANTITIES)})
    out = out.sort_values("_q", kind="stable").drop(columns="_q").reset_index(drop=True)
    return out[
        [
            "x",
            "y",
            "quantity",
            "n",
            "n_subjects",
            "estimate",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "significant_fdr",
            "method",
            "x_branch",
            "y_branch",
        ]
    ]


# ---------------------------------------------------------------------------------------------
# Provenance and summary
# ---------------------------------------------------------------------------------------------


def provenance_table(study) -> pd.DataFrame:
    """Each derived table read: its producing notebook, rows, modification time (UTC) and sha256."""
    import hashlib
    from datetime import datetime

    rows = []
    for name in TABLES:
        path = derived.table_path(study, name)
        data = path.read_bytes()
        rows.append(
            {
                "table": name,
                "written by": derived.PRODUCERS[name],
                "rows": data.count(b"\n") - 1,
                "modified (UTC)": datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "sha256": hashlib.sha256(data).hexdigest()[:16],
            }
        )
    return pd.DataFrame(rows)


def _effect(row, digits: int = 2, unit: str = "") -> str:
    if not np.isfinite(row["p"]):  # a description row: estimate only
        return f"{row['estimate']:.{digits}f}{unit} (description, n = {row['n']})"
    return (
        f"{row['estimate']:.{digits}f}{unit} (95% CI {row['ci_low']:.{digits}f} to {row['ci_high']:.{digits}f}, "
        f"{stats.format_p(row['p'])}, {stats.format_p(row['p_fdr'], 'p_FDR')}, n = {row['n']} sessions of "
        f"{row['n_subjects']} subjects)"
    )


def primary_text(hypotheses: pd.DataFrame, params: IntegrativeParameters) -> str:
    """One paragraph on the pre-registered primary hypothesis (estimate, CI, p, p_FDR, verdict), or a line
    saying none is named; the report and its summary lead with it."""
    primary = hypotheses[hypotheses["primary"]] if "primary" in hypotheses else hypotheses.iloc[:0]
    if params.primary_hypothesis is None:
        return (
            "**Primary hypothesis.** None is named in the manifest (notebook 04's `primary_hypothesis`); every "
            "confirmatory row carries equal weight within its FDR family."
        )
    if primary.empty:
        return (
            f"**Pre-registered primary hypothesis ({params.primary_hypothesis}).** Not estimable in this study "
            "(no row was produced)."
        )
    return (
        f"**Pre-registered primary hypothesis ({params.primary_hypothesis}: "
        f"{CONFIRMATORY_TESTS[params.primary_hypothesis]}).** "
        + "; ".join(f"{r['test']}: {r['effect']} = {_effect(r)} — {r['verdict']}" for _, r in primary.iterrows())
        + ". "
        + " ".join(dict.fromkeys(str(r["statement"]) for _, r in primary.iterrows()))
        + "."
    )


def _data_paragraph(table: pd.DataFrame, hypotheses: pd.DataFrame, params: IntegrativeParameters) -> str:
    """**Data.**: subjects, doses and sessions, the unit of analysis, the FDR families and the crossover note."""
    active = table[table["active"]]
    return (
        f"**Data.** {table[SUBJECT].nunique()} subjects × {table[DOSE].nunique()} doses "
        f"({len(table)} subject-sessions, {len(active)} active; {placebo_note(table, params.peak_score)}); every test and its population is stated "
        f"in the table above. The subject is the unit: associations are within-subject (across a subject's "
        f"doses) or between-subject (subject means) rows with subject-cluster bootstrap CIs; pooled "
        f"over-session correlations are description only. p_FDR is Benjamini–Hochberg over the "
        f"{int((hypotheses['family'] == 'confirmatory').sum())} confirmatory rows (H1–H4); H5 is exploratory "
        f"and has its own family. Crossover: {crossover_note(table)}."
    )


def _first_test(by: pd.DataFrame, prefix: str) -> pd.Series | None:
    """The first row of ``by`` (hypothesis rows indexed by test) whose test starts with ``prefix``, or None."""
    rows = by[by.index.str.startswith(prefix)]
    return None if rows.empty else rows.iloc[0]


def _h1_paragraph(by: pd.DataFrame, table: pd.DataFrame) -> str | None:
    """**H1**: within-subject, between-subject and pooled entropy ↔ peak rows, or None without all three."""
    h1 = [_first_test(by, "H1a"), _first_test(by, "H1b"), _first_test(by, "H1c")]
    if not all(r is not None for r in h1):
        return None
    return (
        f"**H1 (entropy ↔ peak experience, dose-adjusted).** Both move with dose, so H1 asks what dose does not "
        f"explain. Within subjects, at a given dose level{' and period' if has_order(table) else ''}: partial "
        f"r_rm = {_effect(h1[0])} — {h1[0]['verdict']}; between subjects (subject means of dose-adjusted values) "
        f"r = {_effect(h1[2])} — {h1[2]['verdict']}; pooled over sessions (raw values, mixing the dose curves) "
        f"r = {_effect(h1[1])}."
        + (
            " The association lives between subjects: those whose EEG responds more also report more intense "
            "experiences, while session-to-session deviations at a fixed dose do not go together."
            if h1[2]["verdict"] == "supports" and h1[0]["verdict"] != "supports"
            else ""
        )
    )


def _h2_paragraph(by: pd.DataFrame, params: IntegrativeParameters, scale: str) -> str | None:
    """**H2**: peak experience → mood within (and between) subjects, or None without H2a and H2b."""
    h2a, h2b, h2c = _first_test(by, "H2a"), _first_test(by, "H2b"), _first_test(by, "H2c")
    if h2a is None or h2b is None:
        return None
    return (
        f"**H2 (peak experience → mood).** {_label(params.peak_score)} and {scale} improvement at "
        f"{params.mood_timepoint}, within subjects and adjusting for dose and baseline severity: partial "
        f"r_rm = {_effect(h2a)} — {h2a['verdict']}"
        + (f"; between subjects (subject means) r = {_effect(h2c)} — {h2c['verdict']}" if h2c is not None else "")
        + f"; within-subject effect (subject fixed effects, wild cluster bootstrap) {_effect(h2b, 1)} {scale} "
        f"points per SD — {h2b['verdict']}."
    )


def _h3_analyte(by: pd.DataFrame, analyte: str) -> str | None:
    """One analyte's H3 rows (inflamed, non-inflamed, interaction, period-adjusted) in words, or None."""
    a, b, c, d = (_first_test(by, f"H3{k} {analyte}") for k in "abcd")
    if a is None:
        return None
    return (
        f"{analyte}: inflamed {a['estimate']:+.2f} ln units (95% CI {a['ci_low']:.2f} to "
        f"{a['ci_high']:.2f}, {np.expm1(a['estimate']):+.0%}, n = {a['n_subjects']} subjects), non-inflamed "
        f"{b['estimate']:+.2f} ({b['ci_low']:.2f} to {b['ci_high']:.2f}, n = {b['n_subjects']}), "
        f"interaction {c['estimate']:+.2f} ({c['ci_low']:.2f} to {c['ci_high']:.2f}, {stats.format_p(c['p'])})"
        + (
            f", period-adjusted {d['estimate']:+.2f} "
            f"({d['ci_low']:.2f} to {d['ci_high']:.2f}, {stats.format_p(d['p'])})"
            if d is not None
            else ""
        )
    )


def _h3_paragraph(by: pd.DataFrame, hypotheses: pd.DataFrame) -> str | None:
    """**H3**: the placebo-controlled cytokine change per stratum for every primary analyte, or None."""
    h3 = hypotheses[hypotheses["hypothesis"] == "H3"]
    parts = [part for part in (_h3_analyte(by, analyte) for analyte in PRIMARY_ANALYTES) if part is not None]
    if not parts:
        return None
    only = all(
        _first_test(by, f"H3a {a}") is None
        or (
            _first_test(by, f"H3a {a}")["verdict"] == "supports"
            and _first_test(by, f"H3b {a}")["verdict"].startswith("consistent")
        )
        for a in PRIMARY_ANALYTES
    )
    return (
        "**H3 (inflamed stratum, placebo-controlled).** Per subject, mean ln(24h/baseline) after ketamine minus "
        "after placebo, averaged over the subjects of each stratum — "
        + "; ".join(parts)
        + (
            ". The decrease appears in the inflamed stratum only (the non-inflamed CI includes 0, "
            "which is consistent with, not proof of, no change)."
            if only and len(h3)
            else ". The pattern 'decrease only when inflamed' is not established for every analyte."
        )
    )


def _h4_paragraph(by: pd.DataFrame, table: pd.DataFrame) -> str | None:
    """**H4**: depth vs dose, titration endpoint vs entropy maximum, depth past the maximum; None without H4a."""
    h4a, h4b, h4c = _first_test(by, "H4a"), _first_test(by, "H4b"), _first_test(by, "H4c")
    if h4a is None:
        return None
    doses = titration_doses(table)
    text = (
        f"**H4 (alpha depth and dose).** Suppression depth changes with dose by "
        f"{_effect(h4a, 1, ' dB per mg/kg')} ({h4a['verdict']})."
    )
    if h4b is not None and np.isfinite(h4b["estimate"]):
        modal = doses["entropy_max_dose"].mode()
        chance = re.search(r"chance agreement ([0-9.]+)", h4b["method"])
        text += (
            f" The titration endpoint (lowest dose with sustained suppression) equals the entropy-maximum "
            f"dose in {h4b['estimate']:.0%} of subjects (95% CI {h4b['ci_low']:.0%} to {h4b['ci_high']:.0%}; "
            f"chance agreement from the two marginal distributions "
            f"{float(chance.group(1)) if chance else float('nan'):.0%}, permutation across subjects "
            f"{stats.format_p(h4b['p'])}; {h4b['verdict']}); entropy peaks most often at "
            f"{modal.iloc[0]:g} mg/kg."
        )
    if h4c is not None and h4c["n"] > 1:
        text += (
            f" From the entropy-maximum dose to the top dose, suppression depth changes by "
            f"{h4c['estimate']:+.1f} dB (95% CI "
            f"{h4c['ci_low']:.1f} to {h4c['ci_high']:.1f}, n = {h4c['n']}, {h4c['verdict']}) while entropy "
            "falls: depth marks dose, and beyond the entropy peak it no longer marks entropy."
        )
    return text


def _h5_paragraph(hypotheses: pd.DataFrame, params: IntegrativeParameters) -> str | None:
    """**H5**: the exploratory combined model's predictors that survive FDR, or None without H5 rows."""
    h5 = hypotheses[hypotheses["hypothesis"] == "H5"]
    if not len(h5):
        return None
    sig = h5[h5["p_fdr"] <= params.fdr_alpha]
    first = h5.iloc[0]
    ratio = first["n"] / len(h5)
    return (
        f"**H5 (combined model, exploratory — outside the confirmatory FDR family).** {len(h5)} standardised predictors from every branch on {first['n']} "
        f"sessions of {first['n_subjects']} subjects ({ratio:.1f} observations and "
        f"{first['n_subjects'] / len(h5):.1f} subjects per predictor): "
        + (
            ", ".join(
                f"{_label(t.removeprefix('H5 '))} β = {r['estimate']:+.2f} ({r['ci_low']:.2f} to {r['ci_high']:.2f})"
                for t, r in sig.set_index("test").iterrows()
            )
            or "no predictor"
        )
        + f" {'survives' if len(sig) == 1 else 'survive'} FDR within the exploratory family. With this few subjects per predictor and "
        "correlated EEG/dose predictors the model is "
        "exploratory: coefficients are unstable and should not be read as independent effects."
    )


def _listed_significant(rows: pd.DataFrame) -> str:
    """Up to five FDR-significant correlations of ``rows`` (smallest p first) as ``": x – y r = … (CI); …"``;
    an empty string when none is significant."""
    sig = rows[rows["significant_fdr"]].sort_values("p")
    return (
        ": "
        + "; ".join(
            f"{_label(r.x)} – {_label(r.y)} r = {r.estimate:+.2f} (95% CI {r.ci_low:.2f} to {r.ci_high:.2f})"
            for r in sig.head(5).itertuples()
        )
        if len(sig)
        else ""
    )


def _cross_branch_paragraph(correlations: pd.DataFrame, params: IntegrativeParameters) -> str | None:
    """**Cross-branch correlations**: within- and between-subject pairs across branches, or None without any."""
    if not len(correlations):
        return None
    cross = correlations[correlations["x_branch"] != correlations["y_branch"]]
    within, between = cross[cross["quantity"] == "within"], cross[cross["quantity"] == "between"]
    n_pairs = int((correlations["quantity"] == "within").sum())
    return (
        f"**Cross-branch correlations** (every session, placebo included; split at the subject level). Within subjects "
        f"(across a subject's doses, so a shared response to dose shows up here): "
        f"{int(within['significant_fdr'].sum())} of {len(within)} between-branch pairs are significant at "
        f"FDR {params.fdr_alpha:g} (of {n_pairs} pairs in the family)"
        + _listed_significant(within)
        + f". Between subjects (subject means, trait-level): {int(between['significant_fdr'].sum())} of "
        f"{len(between)}" + _listed_significant(between) + ". Pooled over-session correlations are shown as "
        "description only."
    )


def summary_text(
    table: pd.DataFrame, hypotheses: pd.DataFrame, correlations: pd.DataFrame, params: IntegrativeParameters
) -> str:
    """A short written summary generated from the numbers (markdown): the primary hypothesis, the data, then
    one paragraph per hypothesis and the cross-branch correlations, each from its own step (left out when
    its rows are absent)."""
    by = hypotheses.set_index("test")
    scale = str(table["mood_scale"].iloc[0]).upper()
    data = _data_paragraph(table, hypotheses, params)
    paragraphs = [
        primary_text(hypotheses, params),
        data,
        _h1_paragraph(by, table),
        _h2_paragraph(by, params, scale),
        _h3_paragraph(by, hypotheses),
        _h4_paragraph(by, table),
        _h5_paragraph(hypotheses, params),
        _cross_branch_paragraph(correlations, params),
    ]
    return "\n\n".join(p for p in paragraphs if p is not None)


# ---------------------------------------------------------------------------------------------
# One run: what notebook 04 shows
# ---------------------------------------------------------------------------------------------


@dataclass
class IntegrativeSummaryResult:
    """Everything notebook 04 shows, from :func:`run`: the subject x dose table, the combined model, the
    hypothesis table (confirmatory family first), the cross-branch correlation matrix and the summary."""

    params: IntegrativeParameters
    table: pd.DataFrame
    crossover_note: str
    placebo_note: str
    combined: pd.DataFrame
    hypotheses: pd.DataFrame
    primary: str
    titration_doses: pd.DataFrame
    correlations: pd.DataFrame
    variables: list[str]
    summary: str


def run(study, params: IntegrativeSummaryParameters | dict | None = None) -> IntegrativeSummaryResult:
    """Notebook 04's analysis from the derived tables of notebooks 01-03 (:data:`TABLES`)."""
    p = IntegrativeSummaryParameters.model_validate(params or {}).resolve(study)
    table = subject_dose_table(study, p)
    notes = crossover_note(table), placebo_note(table, p.peak_score)  # in the notebook's order
    combined = combined_model(table, p)
    hypotheses = hypothesis_tests(table, p, combined)
    primary, doses = primary_text(hypotheses, p), titration_doses(table)
    correlations = correlation_matrix(table, p)
    variables = list(matrix_variables(table, p))
    return IntegrativeSummaryResult(
        p, table, *notes, combined, hypotheses, primary, doses, correlations, variables,
        summary_text(table, hypotheses, correlations, p),
    )  # fmt: skip
