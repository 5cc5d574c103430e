"""Study-level cytokine analysis (issue 5, notebook 03): one study's assay table, strata, changes, models.

:mod:`pipelines.phenotype.cytokines` owns the definitions (lab strings, units, censoring, strata, paired change);
:mod:`pipelines.stats` owns the correlation and mixed-model machinery. This module only applies them to a
:class:`~pipelines.study.dataset.Study` and adds what needs the study's design:

Dose groups
    Every session is analysed on its own (``group`` = its dose label, e.g. ``"0.50 mg/kg"``; placebo is
    ``"0.00 mg/kg"``), and the active sessions (dose > 0) are also pooled (``group`` =
    :data:`ACTIVE_POOLED`). Pooling is per *subject*: a subject's ln-changes over its active sessions are
    averaged first, so the pooled n counts subjects and repeated sessions are not treated as independent.
    For substitution strategies the subject mean of ln(post/baseline) is analysed by
    :func:`pipelines.phenotype.cytokines.paired_change` (Wilcoxon, paired t, effect sizes, BH-FDR); for
    ``censored_mle`` each session's ln-change is an interval (bounded by the censoring limits), the mean
    of intervals bounds the subject mean exactly, and :func:`pipelines.phenotype.cytokines.censored_normal_mle` fits
    those intervals.

Strata
    :func:`cytokines.define_strata`: from a separate screening CRP when the table has one (time point
    ``screening_timepoint``, ``session_id`` n/a), else the geometric mean of each subject's repeated baselines,
    else each session's own baseline — then with a one-line warning that the stratum contrast is biased by
    regression to the mean. CRP ≥ ``acute_crp_mg_per_l`` (probable acute infection) is flagged and left out
    by ``acute_rule`` (stated in the report). A subject's stratum is its kept sessions' common label.

Primary test
    :func:`strata_interaction`: the placebo-controlled stratum × treatment interaction on the change, the
    subject as the unit (:func:`pipelines.stats.stratum_by_treatment_interaction`, calibrated); the report
    leads with it. Per-stratum changes after active doses are secondary (no placebo control).

Change scale
    ``change_scale``: ``ln_ratio`` (default, ln(post/baseline)) or ``difference`` (post − baseline in the
    analyte's unit), stated beside every result.

Mixed model
    ``ln_value ~ time × inflamed × dose + (1 | participant_id)`` per analyte with two dose codings:
    ``mg_per_kg`` (linear in dose, as the issue states it) and ``active`` (0/1 for dose > 0: the same
    change for every active dose). Terms of the ``active`` coding are named with ``active``.

Values for per-pair plots, the mixed model and mood correlations need numbers for censored values:
with ``censored_mle`` these use ``lloq_half`` (stated in the tables' ``strategy`` column and the text).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.core.errors import InputError
from pipelines.phenotype import cytokines as cy
from pipelines.stats import fdr_bh, format_p, within_between_correlation

__all__ = [
    "ACTIVE_POOLED",
    "PARAMETERS",
    "CytokineParameters",
    "CytokinesResult",
    "censoring_table",
    "change_table",
    "change_vs_mood_data",
    "change_vs_mood_subject_level",
    "change_vs_mood_table",
    "dose_group_label",
    "load_study_cytokines",
    "mixed_models",
    "mood_changes",
    "paired_changes",
    "planted_effects",
    "resolve_analytes",
    "run",
    "sensitivity_table",
    "strata_interaction",
    "strata_statement",
    "study_strata",
    "subject_strata",
    "summary_text",
    "trajectories",
    "truth_comparison",
    "validate_parameters",
]

# Active sessions by definition (placebo is its own group, and the placebo-controlled interaction is the test).
ACTIVE_POOLED = "active (pooled)"
RATIO = "KYN_TRP"
MOOD_SCALES = ("madrs", "hamd17", "qids_sr16", "bdi_ii")
DOSE_CODINGS = ("mg_per_kg", "active")
FALLBACK_SUBSTITUTION = "lloq_half"


# ------------------------------------------------------------------------------------ parameters
def _choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        hint = difflib.get_close_matches(str(value), list(choices), 1)
        raise ValueError(
            f"{name}={value!r} is not one of {list(choices)}" + (f" — did you mean {hint[0]!r}?" if hint else "")
        )
    return value


def _integer(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
        raise ValueError(f"{name}={value!r} must be a whole number")
    if int(value) < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    return int(value)


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


# Parameters whose value is one of a fixed set (checked with a "did you mean" hint).
_CHOICES = {
    "censoring_strategy": cy.STRATEGIES,
    "change_scale": cy.CHANGE_SCALES,
    "strata_source": cy.STRATA_SOURCES,
    "acute_rule": cy.ACUTE_RULES,
    "mood_scale": MOOD_SCALES,
}


class CytokineParameters(BaseModel):
    """Parameters of notebook 03 (``notebooks: 03_cytokines:`` in the manifest).

    Checked on their own when built; :meth:`resolve` checks them against the study (time points among the
    manifest's ``timepoints``, ``mood_scale`` a phenotype table of the manifest).  ValueError with a hint otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analytes: tuple[str, ...] | None = Field(
        None,
        description="Analytes to analyse: None = every analyte in the table plus the derived KYN_TRP ratio; "
        'or one name or a list such as ["IL6", "CRP"] (checked against the table)',
    )
    baseline_timepoint: str = Field("baseline", description="Time point label of the pre-infusion draw")
    post_timepoint: str = Field("24h", description="Time point label compared with baseline")
    censoring_strategy: str = Field(
        "lloq_half", description="Values below the LLOQ: lloq_half | lloq_sqrt2 (substitution) | censored_mle"
    )
    crp_threshold_mg_per_l: float = Field(3.0, description="Inflamed when the stratifying CRP is at least this (mg/L)")
    mood_scale: str = Field(
        "madrs",
        description="Depression scale (a manifest phenotype table) whose change is set against the cytokine change",
    )
    n_boot: int = Field(1000, description="Bootstrap resamples for effect-size and correlation CIs")
    seed: int = Field(0, description="Seed of every bootstrap")
    change_scale: str = Field(
        "ln_ratio", description="ln_ratio: ln(post/baseline); difference: post − baseline in the analyte's unit"
    )
    strata_source: str = Field(
        "auto",
        description="Where strata come from: auto (the first the table supports), screening, mean_baselines or "
        "single_baseline",
    )
    screening_timepoint: str = Field(
        "screening", description="Time point label of the screening CRP draw (session_id n/a)"
    )
    acute_crp_mg_per_l: float | None = Field(
        10.0,
        description="CRP at/above this (mg/L): probable acute infection, left out of the strata; None: off",
    )
    acute_rule: str = Field(
        "session",
        description="What the acute rule leaves out: session (that session; the subject if at screening) or "
        "subject (the whole subject)",
    )

    @field_validator(*_CHOICES, mode="before")
    @classmethod
    def _one_of(cls, value, info):
        return _choice(info.field_name, value, _CHOICES[info.field_name])

    @field_validator("crp_threshold_mg_per_l", mode="before")
    @classmethod
    def _crp_threshold(cls, value):
        if not _number(value):
            raise ValueError(f"crp_threshold_mg_per_l={value!r} must be a number (mg/L)")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"crp_threshold_mg_per_l={value!r} must be a positive concentration in mg/L")
        return float(value)

    @field_validator("n_boot", "seed", mode="before")
    @classmethod
    def _whole(cls, value, info):
        return _integer(info.field_name, value, 0)

    @field_validator("analytes", mode="before")
    @classmethod
    def _analytes(cls, value):
        if value is None:
            return None
        value = (value,) if isinstance(value, str) else tuple(value)
        if not value or not all(isinstance(a, str) and a.strip() for a in value):
            raise ValueError(f"analytes={value!r} must be None or a non-empty list of analyte names")
        if len(set(value)) != len(value):
            raise ValueError(f"analytes={list(value)!r} lists an analyte twice")
        return value

    @field_validator("baseline_timepoint", "post_timepoint", "screening_timepoint", mode="before")
    @classmethod
    def _label(cls, value, info):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{info.field_name}={value!r} must be a time point label")
        return value

    @model_validator(mode="after")
    def _together(self):
        if self.baseline_timepoint == self.post_timepoint:
            raise ValueError(f"baseline_timepoint and post_timepoint are both {self.baseline_timepoint!r}")
        acute = self.acute_crp_mg_per_l
        if acute is not None and not (math.isfinite(acute) and acute > self.crp_threshold_mg_per_l):
            raise ValueError(
                f"acute_crp_mg_per_l={acute!r} must be None (off) or a concentration in mg/L "
                f"above crp_threshold_mg_per_l={self.crp_threshold_mg_per_l:g}"
            )
        return self

    @field_validator("acute_crp_mg_per_l", mode="before")
    @classmethod
    def _acute(cls, value):
        if value is not None and not _number(value):
            raise ValueError(f"acute_crp_mg_per_l={value!r} must be None (off) or a concentration in mg/L")
        return None if value is None else float(value)

    def resolve(self, study) -> CytokineParameters:
        """The checks that need the study: time points among the manifest's, the mood scale a manifest table."""
        known = list(study.manifest.timepoints)
        _choice("baseline_timepoint", self.baseline_timepoint, known)
        _choice("post_timepoint", self.post_timepoint, known)
        if self.mood_scale not in study.manifest.phenotype:
            raise ValueError(
                f"mood_scale={self.mood_scale!r}: the manifest has no phenotype table {self.mood_scale!r} "
                f"(tables: {sorted(study.manifest.phenotype)})"
            )
        return self

    @property
    def change_label(self) -> str:
        """How a change is expressed, in words (stated beside every change in the report)."""
        return cy.CHANGE_SCALE_TEXT[self.change_scale]

    @property
    def change_unit(self) -> str:
        return "ln units" if self.change_scale == "ln_ratio" else "analyte unit"

    @property
    def value_strategy(self) -> str:
        """The substitution used wherever per-pair numbers are needed (plots, mixed model, mood)."""
        return (
            self.censoring_strategy if self.censoring_strategy in cy.SUBSTITUTION_STRATEGIES else FALLBACK_SUBSTITUTION
        )

    def as_dict(self) -> dict:
        return self.model_dump(mode="json")


PARAMETERS = CytokineParameters


def validate_parameters(study, **params) -> CytokineParameters:
    """Notebook 03's parameters from keyword arguments, checked on their own and against the study."""
    return CytokineParameters.model_validate(params).resolve(study)


# ---------------------------------------------------------------------------------------- loading
def dose_group_label(dose: float) -> str:
    from pipelines.core.labels import dose_label

    return dose_label(dose)


def load_study_cytokines(study, table: str = "cytokines", *, timepoints: Sequence[str] = ()) -> pd.DataFrame:
    """The study's assay table parsed by :func:`cytokines.load_cytokines` (sidecar beside it), with the
    KYN/TRP ratio appended when both are measured, and each row's ``condition`` and ``dose_mg_per_kg``.

    Subjects must be in participants.tsv and subject-sessions among the study's sessions; each of
    ``timepoints`` must occur in the table. InputError otherwise.
    """
    path = study.table_path(table)
    manifest = getattr(study, "manifest", None)
    declared = manifest.phenotype[table].units if manifest is not None and table in manifest.phenotype else None
    parsed = cy.load_cytokines(path, participants=study.participants, declared_units=declared or None)
    present = set(parsed["analyte"])
    if {"KYN", "TRP"} <= present and RATIO not in present:
        parsed = cy.add_kyn_trp_ratio(parsed)
    missing_tp = [t for t in timepoints if t not in set(parsed["timepoint"])]
    if missing_tp:
        raise InputError(
            f"time point(s) {missing_tp} not in the table (it has {sorted(set(parsed['timepoint']))})",
            file=path.name,
            field="timepoint",
        )
    sessions = study.sessions[["participant_id", "session_id", "condition", "dose_mg_per_kg"]]
    merged = parsed.merge(sessions, on=["participant_id", "session_id"], how="left", validate="many_to_one")
    # A subject-level draw (screening, session_id n/a) belongs to no session and has no dose.
    unknown = merged["dose_mg_per_kg"].isna() & (merged["session_id"] != cy.NO_SESSION)
    if unknown.any():
        row = merged[unknown].iloc[0]
        raise InputError(
            "subject-session has no dose in the study (not among its recordings' sessions)",
            file=path.name,
            subject=row["participant_id"],
            session=row["session_id"],
            field="session_id",
        )
    merged.attrs = dict(parsed.attrs)
    return merged


def resolve_analytes(parsed: pd.DataFrame, analytes: Sequence[str] | None) -> list[str]:
    """The analytes to analyse: all in the table (measured, then derived) or the requested ones, checked."""
    present = list(dict.fromkeys(parsed["analyte"]))
    if analytes is None:
        return present
    unknown = [a for a in analytes if a not in present]
    if unknown:
        hints = [
            f"{a!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(a, present, 1)) else "")
            for a in unknown
        ]
        raise ValueError(f"analytes {', '.join(hints)} not in the table; it has {present}")
    return list(analytes)


def _measured(parsed: pd.DataFrame) -> pd.DataFrame:
    return parsed[~parsed["source"].astype(str).str.startswith("derived")]


def censoring_table(parsed: pd.DataFrame, analytes: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`cytokines.censoring_summary` per analyte × time point over the *measured* values
    (derived ratios inherit their members' censoring and are not counted again)."""
    data = _measured(parsed)
    if analytes is not None:
        data = data[data["analyte"].isin(list(analytes))]
    return cy.censoring_summary(data)


# ----------------------------------------------------------------------------------------- strata
def study_strata(parsed: pd.DataFrame, params: CytokineParameters) -> pd.DataFrame:
    """Inflammation stratum of every subject-session (:func:`cytokines.define_strata`): from the screening
    CRP when the table has one, else the mean of repeated baselines, else the session's own baseline (with
    the regression-to-the-mean warning in ``attrs["warning"]``); acute-infection rule from ``params``."""
    return cy.define_strata(
        parsed,
        baseline=params.baseline_timepoint,
        screening=params.screening_timepoint,
        source=params.strata_source,
        threshold=params.crp_threshold_mg_per_l,
        threshold_unit="mg/L",
        acute_threshold=params.acute_crp_mg_per_l,
        acute_rule=params.acute_rule,
    )


def strata_statement(strata: pd.DataFrame) -> str:
    """The strata definition, the regression-to-the-mean warning (if any) and the acute-infection rule, as
    Markdown lines (the report states them beside every stratified result)."""
    lines = [f"**Strata definition.** {strata.attrs['definition']}."]
    if strata.attrs.get("warning"):
        lines.append(f"**{strata.attrs['warning']}**")
    excluded = strata[strata["stratum"] == "excluded"]
    detail = "; ".join(f"{r.participant_id} {r.session_id}: {r.excluded_reason}" for r in excluded.itertuples())
    lines.append(strata.attrs["acute_rule"] + (f" Left out: {detail}." if len(excluded) else " Nothing was left out."))
    return "\n\n".join(lines)


def _common_label(labels: pd.Series) -> str:
    return labels.iloc[0] if labels.nunique() == 1 else "discordant"


def subject_strata(strata: pd.DataFrame, sessions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per subject: ``stratum`` (its sessions' common label or ``discordant``), ``n_sessions``,
    the median and range of baseline CRP over sessions (``crp_unit``), and, with ``sessions``,
    ``stratum_active`` over its active (dose > 0) sessions only."""
    # Sessions left out by the acute-infection rule do not make a subject discordant.
    labels = strata["stratum"].where(strata["stratum"] != "excluded")
    common = labels.groupby(strata["participant_id"]).agg(
        lambda s: "excluded" if s.isna().all() else _common_label(s.dropna())
    )
    grouped = strata.groupby("participant_id", sort=True)
    out = grouped.agg(
        n_sessions=("session_id", "nunique"),
        crp_baseline_median=("crp_baseline", "median"),
        crp_baseline_min=("crp_baseline", "min"),
        crp_baseline_max=("crp_baseline", "max"),
        crp_unit=("crp_unit", "first"),
    )
    out.insert(0, "stratum", common)
    out["n_sessions_excluded"] = (strata["stratum"] == "excluded").groupby(strata["participant_id"]).sum()
    if "crp_screening" in strata.columns:
        out["crp_screening"] = grouped["crp_screening"].first()
    if sessions is not None:
        active = strata.merge(
            sessions[["participant_id", "session_id", "dose_mg_per_kg"]],
            on=["participant_id", "session_id"],
            how="left",
        )
        active = active[(active["dose_mg_per_kg"] > 0) & (active["stratum"] != "excluded")]
        out["stratum_active"] = active.groupby("participant_id")["stratum"].agg(_common_label)
    return out.reset_index()


# ------------------------------------------------------------------------------- paired changes
def _with_dose(table: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Add ``dose_mg_per_kg`` and ``group`` to a table keyed by participant_id and session_id."""
    doses = sessions[["participant_id", "session_id", "dose_mg_per_kg"]]
    out = table.merge(doses, on=["participant_id", "session_id"], how="left", validate="many_to_one")
    out["group"] = out["dose_mg_per_kg"].map(dose_group_label)
    return out


def _by_dose(parsed: pd.DataFrame, strata: pd.DataFrame, sessions: pd.DataFrame):
    """Relabel sessions by their dose group, so that a crossover whose session labels are visits (a dose
    in a different visit for each subject) is analysed per dose. One session per subject and dose."""
    groups = sessions[["participant_id", "session_id"]].assign(group=sessions["dose_mg_per_kg"].map(dose_group_label))
    # A dose given more than once per subject (e.g. two open-label infusions): each session of that dose is its own
    # group ("0.5 mg/kg · ses-2"), so every group still has one session per subject and nothing is pooled twice.
    repeated = groups.loc[groups.duplicated(["participant_id", "group"], keep=False), "group"].unique()
    if len(repeated):
        again = groups["group"].isin(repeated)
        groups.loc[again, "group"] = groups.loc[again, "group"] + " · " + groups.loc[again, "session_id"].astype(str)
    twice = groups.duplicated(["participant_id", "group"], keep=False)
    if twice.any():
        row = groups[twice].iloc[0]
        raise ValueError(
            f"subject {row['participant_id']} has more than one session at {row['group']}; "
            "per-dose paired changes need one"
        )

    def relabel(table):
        out = table.merge(groups, on=["participant_id", "session_id"], how="left", validate="many_to_one")
        return out.drop(columns="session_id").rename(columns={"group": "session_id"})

    return relabel(parsed), relabel(strata)


def _active_subject_strata(strata: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    sub = subject_strata(strata, sessions)
    return sub[["participant_id"]].assign(session_id=ACTIVE_POOLED, stratum=sub["stratum_active"].fillna("unassigned"))


def _pooled_substitution(parsed, sessions, strata, analytes, params, strategy, n_boot) -> pd.DataFrame:
    active_keys = sessions.loc[sessions["dose_mg_per_kg"] > 0, ["participant_id", "session_id"]]
    active = parsed.merge(active_keys, on=["participant_id", "session_id"])
    changes = cy.log_change_table(
        active, params.baseline_timepoint, params.post_timepoint, strategy=strategy, analytes=analytes
    )
    per_subject = (
        changes.groupby(["participant_id", "analyte"], sort=False)
        .agg(
            ln_baseline=("ln_baseline", "mean"),
            ln_post=("ln_post", "mean"),
            value_baseline=("value_baseline", "mean"),
            value_post=("value_post", "mean"),
            any_censored=("any_censored", "any"),
        )
        .reset_index()
    )
    # Subject means as observed values: paired_change then analyses the mean change per subject (geometric
    # means on the ln-ratio scale, arithmetic means for differences: the mean of differences).
    ln = params.change_scale == "ln_ratio"
    pseudo = pd.concat(
        [
            per_subject.assign(
                timepoint=tp, value=np.exp(per_subject[f"ln_{col}"]) if ln else per_subject[f"value_{col}"]
            )
            for tp, col in ((params.baseline_timepoint, "baseline"), (params.post_timepoint, "post"))
        ],
        ignore_index=True,
    ).assign(session_id=ACTIVE_POOLED, censoring="observed", limit=np.nan)
    pooled_strata = _active_subject_strata(strata, sessions)
    table = cy.paired_change(
        pseudo,
        params.baseline_timepoint,
        params.post_timepoint,
        strategy=strategy,
        strata=pooled_strata,
        n_boot=n_boot,
        seed=params.seed,
        scale=params.change_scale,
    )
    censored = per_subject.merge(pooled_strata[["participant_id", "stratum"]], on="participant_id", how="left")
    censored = pd.concat([censored, censored.assign(stratum="all")])
    counts = censored.groupby(["stratum", "analyte"])["any_censored"].sum()
    table["n_censored"] = [int(counts.get((s, a), 0)) for s, a in zip(table["stratum"], table["analyte"])]
    return table


def _pooled_mle(parsed, sessions, strata, analytes, params) -> pd.DataFrame:
    active_keys = sessions.loc[sessions["dose_mg_per_kg"] > 0, ["participant_id", "session_id"]]
    data = parsed.merge(active_keys, on=["participant_id", "session_id"])
    data = data[data["analyte"].isin(analytes)]
    keys = ["participant_id", "session_id", "analyte"]
    sides = {}
    bounds = cy.ln_bounds if params.change_scale == "ln_ratio" else cy.value_bounds
    for name, tp in (("b", params.baseline_timepoint), ("p", params.post_timepoint)):
        part = data[(data["timepoint"] == tp) & (data["censoring"] != "missing")]
        low, high = bounds(part)
        sides[name] = part[keys].assign(
            **{f"lo_{name}": low, f"hi_{name}": high, f"cens_{name}": part["censoring"].to_numpy()}
        )
    pairs = sides["b"].merge(sides["p"], on=keys)
    with np.errstate(invalid="ignore"):
        pairs["lower"] = pairs["lo_p"] - pairs["hi_b"]
        pairs["upper"] = pairs["hi_p"] - pairs["lo_b"]
    pairs["censored"] = (pairs["cens_b"] != "observed") | (pairs["cens_p"] != "observed")
    with np.errstate(invalid="ignore"):
        # The mean of intervals bounds the mean: [mean(lower), mean(upper)]; -inf and +inf together -> NaN
        # (uninformative), which censored_normal_mle counts and leaves out.
        per_subject = (
            pairs.groupby(["participant_id", "analyte"], sort=False)
            .agg(lower=("lower", "mean"), upper=("upper", "mean"), censored=("censored", "any"))
            .reset_index()
        )
    pooled_strata = _active_subject_strata(strata, sessions)
    per_subject = per_subject.merge(pooled_strata[["participant_id", "stratum"]], on="participant_id", how="left")
    per_subject = pd.concat([per_subject, per_subject.assign(stratum="all")], ignore_index=True)
    rows = []
    for (stratum, analyte), group in per_subject.groupby(["stratum", "analyte"], sort=False):
        fit = cy.censored_normal_mle(group["lower"].to_numpy(), group["upper"].to_numpy())
        rows.append(
            {
                "analyte": analyte,
                "session_id": ACTIVE_POOLED,
                "stratum": stratum,
                "n": fit["n"],
                "n_censored": int(group["censored"].sum()),
                "n_uninformative": fit["n_uninformative"],
                "estimate": fit["mean"],
                "ci_low": fit["ci_low"],
                "ci_high": fit["ci_high"],
                "sd_change": fit["sd"],
                "p_mle": fit["p"],
                "p": fit["p"],
            }
        )
    table = pd.DataFrame(rows)
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("stratum").groups.items():
        table.loc[idx, "p_fdr"] = fdr_bh(table.loc[idx, "p"].to_numpy(float))
    table["significant_fdr"] = table["p_fdr"] <= 0.05
    for col in ("estimate", "ci_low", "ci_high"):
        table[col.replace("estimate", "fold_change").replace("ci_", "fold_ci_")] = (
            np.exp(table[col]) if params.change_scale == "ln_ratio" else np.nan
        )
    table["baseline"], table["post"], table["strategy"] = (
        params.baseline_timepoint,
        params.post_timepoint,
        "censored_mle",
    )
    table["change_scale"] = params.change_scale
    table["estimand"] = f"mean over subjects of the mean {params.change_label} of their active sessions"
    table["method"] = (
        f"{cy.STRATEGY_DESCRIPTIONS['censored_mle']} on subject means of active-session intervals; "
        "p from likelihood-ratio test; BH-FDR across analytes within stratum; Wald CI"
    )
    return table


def paired_changes(
    parsed: pd.DataFrame,
    sessions: pd.DataFrame,
    strata: pd.DataFrame,
    params: CytokineParameters,
    analytes: Sequence[str],
    *,
    strategy: str | None = None,
) -> pd.DataFrame:
    """Paired ln-change baseline → post per dose group × stratum × analyte under ``strategy``
    (default ``params.censoring_strategy``): each session (:func:`cytokines.paired_change`) and the
    subject-level pool of active sessions (``group`` = :data:`ACTIVE_POOLED`, ``n`` = subjects).

    Columns of :func:`cytokines.paired_change` plus ``group``, ``dose_mg_per_kg`` (NaN when pooled) and
    ``unit_of_analysis``; ``session_id`` is the group (sessions are grouped by dose, so session labels
    may be visits). Strata: ``inflamed``, ``non-inflamed`` and ``all``.
    """
    strategy = strategy or params.censoring_strategy
    analytes = list(analytes)
    by_dose, dose_strata = _by_dose(parsed, strata, sessions)
    per_session = cy.paired_change(
        by_dose,
        params.baseline_timepoint,
        params.post_timepoint,
        strategy=strategy,
        analytes=analytes,
        strata=dose_strata,
        n_boot=params.n_boot,
        seed=params.seed,
        scale=params.change_scale,
    )
    dose_of = {dose_group_label(d): d for d in sessions["dose_mg_per_kg"].unique()}
    per_session = per_session.assign(
        group=per_session["session_id"],
        dose_mg_per_kg=per_session["session_id"].map(dose_of),
        unit_of_analysis="subject-session",
    )
    if strategy == "censored_mle":
        pooled = _pooled_mle(parsed, sessions, strata, analytes, params)
    else:
        pooled = _pooled_substitution(parsed, sessions, strata, analytes, params, strategy, params.n_boot)
    pooled = pooled.assign(
        group=ACTIVE_POOLED, dose_mg_per_kg=np.nan, unit_of_analysis="subject (mean over active sessions)"
    )
    table = pd.concat([per_session, pooled[[c for c in per_session.columns if c in pooled.columns]]], ignore_index=True)
    order = {a: i for i, a in enumerate(analytes)}
    table["_g"] = table["dose_mg_per_kg"].fillna(np.inf)
    table["_a"] = table["analyte"].map(order)
    table = table.sort_values(["_g", "stratum", "_a"], kind="stable").drop(columns=["_g", "_a"])
    table = table.drop(columns="session_id")
    # Sessions left out of the strata analysis (acute infection) or without a stratum get no stratum rows.
    table = table[table["stratum"].isin(["all", "inflamed", "non-inflamed"])]
    first = ["analyte", "group", "stratum", "dose_mg_per_kg"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def sensitivity_table(
    parsed, sessions, strata, params: CytokineParameters, analytes, strategies: Sequence[str] = cy.STRATEGIES
) -> pd.DataFrame:
    """:func:`paired_changes` under each censoring strategy, stacked (column ``strategy``)."""
    return pd.concat(
        [paired_changes(parsed, sessions, strata, params, analytes, strategy=s) for s in strategies], ignore_index=True
    )


def sensitivity_spread(sensitivity: pd.DataFrame, group: str = ACTIVE_POOLED) -> pd.DataFrame:
    """Per analyte × stratum of ``group``: the estimate under each strategy (columns) and ``spread`` =
    max − min across strategies (ln units), with the number of censored units."""
    part = sensitivity[sensitivity["group"] == group]
    wide = part.pivot_table(index=["analyte", "stratum"], columns="strategy", values="estimate", sort=False)
    wide.columns.name = None
    wide["spread"] = wide.max(axis=1) - wide.min(axis=1)
    wide["n_censored"] = part.groupby(["analyte", "stratum"], sort=False)["n_censored"].max()
    return wide.reset_index()


# ------------------------------------------------------------------------------- per-pair values
def trajectories(parsed, sessions, strata, params: CytokineParameters, analytes) -> pd.DataFrame:
    """Per subject-session-timepoint-analyte at the two time points: ``value`` (substituted with
    ``params.value_strategy``; censored values flagged by ``censoring``), dose, group and stratum."""
    data = parsed[
        parsed["analyte"].isin(list(analytes))
        & parsed["timepoint"].isin([params.baseline_timepoint, params.post_timepoint])
    ]
    data = cy.substitute_censored(data, params.value_strategy)
    data = data.merge(
        strata[["participant_id", "session_id", "stratum"]], on=["participant_id", "session_id"], how="left"
    )
    data["stratum"] = data["stratum"].fillna("unassigned")
    data["group"] = data["dose_mg_per_kg"].map(dose_group_label)
    return data[
        [
            "participant_id",
            "session_id",
            "timepoint",
            "analyte",
            "unit",
            "value_substituted",
            "censoring",
            "dose_mg_per_kg",
            "group",
            "stratum",
            "strategy",
        ]
    ].rename(columns={"value_substituted": "value"})


def change_table(parsed, sessions, strata, params: CytokineParameters, analytes) -> pd.DataFrame:
    """Per subject-session-analyte ln-change (:func:`cytokines.log_change_table`, ``params.value_strategy``)
    with dose, group and stratum."""
    changes = cy.log_change_table(
        parsed,
        params.baseline_timepoint,
        params.post_timepoint,
        strategy=params.value_strategy,
        analytes=list(analytes),
        scale=params.change_scale,
    )
    changes = _with_dose(changes, sessions)
    changes = changes.merge(
        strata[["participant_id", "session_id", "stratum"]], on=["participant_id", "session_id"], how="left"
    )
    changes["stratum"] = changes["stratum"].fillna("unassigned")
    return changes


# ----------------------------------------------------------------------------------- mixed model
def mixed_models(
    parsed, sessions, strata, params: CytokineParameters, analytes, dose_codings: Sequence[str] = DOSE_CODINGS
) -> pd.DataFrame:
    """:func:`cytokines.stratum_mixed_model` per analyte for each dose coding (``mg_per_kg``: linear in
    dose; ``active``: 0/1 for dose > 0, terms renamed ``active``). Analytes not measured at both time
    points are skipped. Column ``dose_coding``; ``strategy`` is ``params.value_strategy``."""
    wanted = [
        a
        for a in analytes
        if {params.baseline_timepoint, params.post_timepoint} <= set(parsed.loc[parsed["analyte"] == a, "timepoint"])
    ]
    tables = []
    for coding in dose_codings:
        if coding not in DOSE_CODINGS:
            raise ValueError(f"dose coding {coding!r} is not one of {DOSE_CODINGS}")
        design = sessions[["participant_id", "session_id", "dose_mg_per_kg"]].copy()
        if coding == "active":
            design["dose_mg_per_kg"] = (design["dose_mg_per_kg"] > 0).astype(float)
        fit = cy.stratum_mixed_model(
            parsed,
            design,
            strata,
            analytes=wanted,
            timepoints=(params.baseline_timepoint, params.post_timepoint),
            strategy=params.value_strategy,
            scale=params.change_scale,
        )
        if coding == "active":
            fit["term"] = fit["term"].str.replace("dose_mg_per_kg", "active", regex=False)
            fit["formula"] = fit["formula"].str.replace("dose_mg_per_kg", "active", regex=False)
        tables.append(fit.assign(dose_coding=coding))
    return pd.concat(tables, ignore_index=True)


def strata_interaction(
    changes: pd.DataFrame, params: CytokineParameters, analytes, *, fdr_alpha: float = 0.05
) -> pd.DataFrame:
    """The primary test of the strata (issue 11): per analyte, the placebo-controlled stratum × treatment
    interaction on the change (``params.change_scale``), the subject as the unit
    (:func:`pipelines.stats.stratum_by_treatment_interaction`): per subject, mean change over its active
    sessions − change under placebo; inflamed − non-inflamed difference of that, Welch t. Rows ``interaction``
    (BH-FDR across analytes), the drug-minus-placebo contrast within each stratum, and the
    ``stratum_contrast_treated`` (active sessions only, no placebo control: exposed to regression to the mean
    when strata come from the baseline). Sessions outside both strata (acute infection, undetermined) are left
    out. A subject whose sessions have different strata (single-baseline strata) is left out of the
    interaction and counted in ``n_subjects_dropped``. ``changes``: :func:`change_table`."""
    from pipelines.stats import stratum_by_treatment_interaction

    data = changes[changes["stratum"].isin(["inflamed", "non-inflamed"])].copy()
    data["inflamed"] = (data["stratum"] == "inflamed").astype(float)
    data["active"] = data["dose_mg_per_kg"] > 0
    concordant = data.groupby("participant_id")["inflamed"].transform("nunique") == 1
    n_discordant = data.loc[~concordant, "participant_id"].nunique()
    data = data[concordant]
    parts = []
    for analyte in analytes:
        rows = data[data["analyte"] == analyte]
        if rows.empty or rows["participant_id"].nunique() < 4:
            continue
        result = stratum_by_treatment_interaction(
            rows, "change", "active", "inflamed", "participant_id", labels=("non-inflamed", "inflamed")
        )
        parts.append(result.assign(analyte=analyte))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    out["n_subjects_dropped"] = out["n_subjects_dropped"] + n_discordant
    out["p_fdr"] = np.nan
    is_inter = out["quantity"] == "interaction"
    out.loc[is_inter, "p_fdr"] = fdr_bh(out.loc[is_inter, "p"].to_numpy(float))
    out["change_scale"] = params.change_scale
    out["change_definition"] = params.change_label
    first = [
        "analyte",
        "quantity",
        "estimate",
        "ci_low",
        "ci_high",
        "p",
        "p_fdr",
        "n_subjects",
        "n_subjects_stratum_1",
        "n_subjects_stratum_0",
        "n_subjects_dropped",
    ]
    return out[first + [c for c in out.columns if c not in first]]


def interaction_term(params: CytokineParameters, coding: str = "active") -> str:
    """Name of the time × inflamed × dose term (the subgroup-specific dose effect on the change)."""
    dose = "active" if coding == "active" else "dose_mg_per_kg"
    return f"time_{cy._safe_name(params.post_timepoint)}:inflamed:{dose}"


# ------------------------------------------------------------------------------------------ mood
def mood_changes(study, params: CytokineParameters) -> pd.DataFrame:
    """Mood change from baseline to ``post_timepoint`` per subject-session (scored with
    :func:`questionnaires.score_items`, outcomes from :func:`mood.mood_outcomes`): columns
    participant_id, session_id, ``<scale>_total``, ``_change``, ``_pct_change`` (negative = improvement)."""
    from pipelines.phenotype import mood, questionnaires

    key = questionnaires.SCALES[params.mood_scale]
    table = study.manifest.phenotype[params.mood_scale]
    if table.scored:
        result = questionnaires.read_scored_table(
            study.table_path(params.mood_scale), params.mood_scale, participants=study.participants
        )
    else:
        result = questionnaires.score_items(
            study.table_path(params.mood_scale),
            params.mood_scale,
            response_scale=table.response_scale,
            participants=study.participants,
        )
    total = key.score_column("total")
    scores = result.scores
    per_subject = "session_id" not in scores.columns  # one mood course per person (open label, parallel arms)
    keys = ("participant_id",) if per_subject else ("participant_id", "session_id")
    outcomes = mood.mood_outcomes(scores, total, baseline=params.baseline_timepoint, keys=keys)
    at_post = outcomes[outcomes["timepoint"].astype(str) == params.post_timepoint]
    if at_post.empty:
        raise InputError(
            f"no {params.mood_scale} ratings at time point {params.post_timepoint!r}",
            file=result.source,
            field="timepoint",
        )
    if per_subject:
        at_post = at_post.assign(session_id=None)
    out = at_post[["participant_id", "session_id", total, f"{total}_change", f"{total}_pct_change"]].reset_index(
        drop=True
    )
    out.attrs["per_subject"] = per_subject
    return out


PER_SUBJECT_SESSION = "mean of active sessions"
# The one active-only step of the cytokine ↔ mood analysis, and why (stored in the tables' ``population``).
PER_SUBJECT_ACTIVE_REASON = (
    "mood is one course per subject, so a subject's cytokine change is the mean over its active sessions "
    "(a placebo session is not part of the ketamine course whose outcome is measured)"
)
ALL_SESSIONS = "every session, placebo included (cytokines and mood are measured after placebo too)"


def _per_subject_mood_table(table: pd.DataFrame) -> bool:
    return "population" in table.columns and str(table["population"].iloc[0]).startswith("subjects")


def _per_subject_mood(mood: pd.DataFrame) -> bool:
    return bool(mood.attrs.get("per_subject")) or bool(mood["session_id"].isna().all())


def change_vs_mood_table(
    parsed,
    sessions,
    strata,
    mood: pd.DataFrame,
    params: CytokineParameters,
    analytes,
    *,
    active_only: bool = False,
    method: str = "spearman",
) -> pd.DataFrame:
    """Correlation of each analyte's ln-change with the mood change (``<scale>_total_change``) over
    subject-sessions (every session by default, placebo included, as the peak-experience analysis; active ones
    with ``active_only``), per stratum (``all``,
    ``inflamed``, ``non-inflamed``), through :func:`cytokines.change_vs_mood` and the shared
    :func:`pipelines.stats.correlation_table`. BH-FDR within each stratum across analytes."""
    outcome = [c for c in mood.columns if c.endswith("_total_change")]
    if _per_subject_mood(mood):  # one mood change per person: one row per subject, the cytokine change averaged
        return _change_vs_mood_per_subject(
            change_table(parsed, sessions, strata, params, analytes), mood, params, outcome[0], method
        )
    keys = sessions[["participant_id", "session_id", "dose_mg_per_kg"]]
    if active_only:
        keys = keys[keys["dose_mg_per_kg"] > 0]
    mood = mood.merge(keys[["participant_id", "session_id"]], on=["participant_id", "session_id"])
    labelled = mood.merge(
        strata[["participant_id", "session_id", "stratum"]], on=["participant_id", "session_id"], how="left"
    )
    tables = []
    for stratum in ["all", *sorted(s for s in labelled["stratum"].dropna().unique())]:
        part = labelled if stratum == "all" else labelled[labelled["stratum"] == stratum]
        table = cy.change_vs_mood(
            parsed,
            part.drop(columns="stratum"),
            outcome,
            baseline=params.baseline_timepoint,
            post=params.post_timepoint,
            strategy=params.value_strategy,
            analytes=list(analytes),
            method=method,
            n_boot=params.n_boot,
            seed=params.seed,
            scale=params.change_scale,
        )
        tables.append(table.assign(stratum=stratum, population="active sessions" if active_only else ALL_SESSIONS))
    out = pd.concat(tables, ignore_index=True)
    out.insert(0, "analyte", out["x"].str.removesuffix("_ln_change").str.removesuffix("_change"))
    return out


def change_vs_mood_data(changes: pd.DataFrame, mood: pd.DataFrame, *, active_only: bool = False) -> pd.DataFrame:
    """Per subject-session-analyte ln-change (:func:`change_table`) beside the mood change (the points
    behind :func:`change_vs_mood_table`): every session, placebo included (``active_only``: active ones). When
    mood is measured once per subject, one row per subject and analyte: the change averaged over the subject's
    active sessions (:data:`PER_SUBJECT_ACTIVE_REASON`), never the mood copied to each session."""
    if _per_subject_mood(mood):
        used = changes[changes["dose_mg_per_kg"] > 0]  # PER_SUBJECT_ACTIVE_REASON
        value = "change" if "change" in used.columns else "ln_change"
        averaged = used.groupby(["participant_id", "analyte"], as_index=False).agg(
            **{
                value: (value, "mean"),
                "dose_mg_per_kg": ("dose_mg_per_kg", "mean"),
                "stratum": ("stratum", lambda s: s.iloc[0] if s.nunique() == 1 else "discordant"),
                "n_sessions": (value, "count"),
            }
        )
        data = averaged.merge(mood.drop(columns="session_id"), on="participant_id", how="inner")
        return data.assign(session_id=PER_SUBJECT_SESSION, group=PER_SUBJECT_SESSION)
    data = changes.merge(mood, on=["participant_id", "session_id"], how="inner")
    return data[data["dose_mg_per_kg"] > 0].reset_index(drop=True) if active_only else data


def _change_vs_mood_per_subject(
    changes: pd.DataFrame, mood: pd.DataFrame, params: CytokineParameters, outcome: str, method: str
) -> pd.DataFrame:
    """:func:`change_vs_mood_table` when mood is one course per subject: correlations over subjects."""
    from pipelines.stats import correlation_table

    data = change_vs_mood_data(changes, mood)
    value = "change" if "change" in data.columns else "ln_change"
    tables = []
    for stratum in ["all", *sorted(s for s in data["stratum"].dropna().unique() if s != "discordant")]:
        part = data if stratum == "all" else data[data["stratum"] == stratum]
        if part["participant_id"].nunique() < 4:
            continue
        table = correlation_table(
            part, [value], [outcome], method=method, n_boot=params.n_boot, seed=params.seed, group="analyte"
        )
        tables.append(
            table.rename(columns={"group": "analyte"}).assign(
                stratum=stratum, population="subjects (cytokine change averaged over active sessions)"
            )
        )
    out = pd.concat(tables, ignore_index=True)
    return out[["analyte", *[c for c in out.columns if c != "analyte"]]]


def change_vs_mood_subject_level(
    changes: pd.DataFrame, mood: pd.DataFrame, params: CytokineParameters, analytes, *, fdr_alpha: float = 0.05
) -> pd.DataFrame:
    """Cytokine ln-change against mood change at the subject level (issue 11; docs/statistics.md).

    A subject contributes one row per session (placebo included), so each analyte's association is split by
    :func:`pipelines.stats.within_between_correlation` into ``within`` (repeated-measures r across a
    subject's sessions, subject-cluster bootstrap-t: the test), ``between`` (r of subject means:
    the trait-level association) and ``pooled`` (r over sessions: description only, p NaN). Strata
    ``all`` and each session stratum (``inflamed``, ``non-inflamed``; few subjects, so wide CIs —
    subject-level inference with ≤ 7 clusters is not covered by the calibration). BH-FDR within each
    quantity × stratum across analytes. ``changes``: :func:`change_table`; ``mood``: :func:`mood_changes`."""
    data = change_vs_mood_data(changes, mood)
    outcome = next(c for c in mood.columns if c.endswith("_total_change"))
    parts = []
    for stratum in ["all", *sorted(s for s in data["stratum"].dropna().unique())]:
        part = data if stratum == "all" else data[data["stratum"] == stratum]
        for analyte in analytes:
            rows = part[part["analyte"] == analyte]
            if rows["participant_id"].nunique() < 3:
                continue
            change = "change" if "change" in rows.columns else "ln_change"
            table = within_between_correlation(
                rows, change, outcome, "participant_id", n_boot=params.n_boot, seed=params.seed
            )
            parts.append(table.assign(analyte=analyte, stratum=stratum))
    out = pd.concat(parts, ignore_index=True).rename(columns={"n_obs": "n"})
    out["p_fdr"] = np.nan
    for (quantity, _), index in out.groupby(["quantity", "stratum"]).groups.items():
        if quantity != "pooled":
            out.loc[index, "p_fdr"] = fdr_bh(out.loc[index, "p"].to_numpy(float))
    out["significant_fdr"] = out["p_fdr"] <= fdr_alpha
    out["y"] = outcome
    out["population"] = PER_SUBJECT_ACTIVE_REASON if _per_subject_mood(mood) else ALL_SESSIONS
    order = {"within": 0, "between": 1, "pooled": 2}
    out = out.sort_values(
        ["quantity", "stratum"],
        key=lambda c: c.map(order) if c.name == "quantity" else c.map(lambda s: (s != "all", s)),
        kind="stable",
    ).reset_index(drop=True)
    return out[
        [
            "analyte",
            "stratum",
            "quantity",
            "n",
            "n_subjects",
            "estimate",
            "ci_low",
            "ci_high",
            "p",
            "p_fdr",
            "significant_fdr",
            "y",
            "population",
            "method",
            "convention",
        ]
    ]


# ----------------------------------------------------------------------------------------- truth
def planted_effects(truth: dict | None) -> pd.DataFrame:
    """The planted and realised mean ln fold changes of a synthetic study's ``truth.json`` as a table
    (analyte, stratum, arm ``placebo``/``active``, planted, realised); empty without truth. Planted effects are
    by the true (set-point) stratum; realised means by the screening-CRP stratum when the study has one."""
    columns = ["analyte", "stratum", "arm", "planted", "realised"]
    if not truth or "cytokines" not in truth:
        return pd.DataFrame(columns=columns)
    cyto = truth["cytokines"]
    # Realised means by the stratum an analysis sees (the screening draw) when the generator wrote one.
    realised_by = cyto.get("realised_mean_log_fold_change_24h_by_screening_stratum") or cyto.get(
        "realised_mean_log_fold_change_24h", {}
    )
    rows = []
    for stratum, arms in cyto.get("log_fold_change_24h", {}).items():
        for arm, values in arms.items():
            for analyte, planted in values.items():
                realised = realised_by.get(stratum, {}).get(arm, {}).get(analyte, np.nan)
                rows.append(
                    {
                        "analyte": RATIO if analyte == "KYN_TRP_ratio" else analyte,
                        "stratum": stratum.replace("non_inflamed", "non-inflamed"),
                        "arm": arm,
                        "planted": float(planted),
                        "realised": float(realised),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def truth_comparison(changes: pd.DataFrame, planted: pd.DataFrame) -> pd.DataFrame:
    """Estimated vs planted and realised ln-change per analyte × stratum for placebo (``0.00 mg/kg``) and
    the pooled active group, with ``covers_realised`` (the 95% CI contains the realised mean, which is
    computed by the generator before censoring)."""
    if planted.empty:
        return pd.DataFrame()
    rows = changes[
        changes["stratum"].isin(["inflamed", "non-inflamed"])
        & ((changes["group"] == ACTIVE_POOLED) | (changes["dose_mg_per_kg"] == 0))
    ]
    rows = rows.assign(arm=np.where(rows["group"] == ACTIVE_POOLED, "active", "placebo"))
    out = rows.merge(planted, on=["analyte", "stratum", "arm"], how="inner")
    out["covers_realised"] = (out["ci_low"] <= out["realised"]) & (out["realised"] <= out["ci_high"])
    return out[
        [
            "analyte",
            "stratum",
            "arm",
            "n",
            "planted",
            "realised",
            "estimate",
            "ci_low",
            "ci_high",
            "covers_realised",
            "strategy",
        ]
    ]


# --------------------------------------------------------------------------------------- summary
def pct_change(ln_change: float) -> float:
    """Percent change of the geometric mean for a mean ln-change."""
    return 100.0 * math.expm1(ln_change)


def format_change(row, scale: str = "ln_ratio", unit: str = "") -> str:
    """``-46% (95% CI -60% to -27%)`` from a paired-change row (estimate, ci_low, ci_high in ln units), or
    ``-0.81 pg/mL (95% CI -1.2 to -0.4)`` on the difference scale."""
    if scale == "difference":
        return (f"{row['estimate']:+.3g} {unit} (95% CI {row['ci_low']:+.3g} to {row['ci_high']:+.3g})").replace(
            "  ", " "
        )
    return (
        f"{pct_change(row['estimate']):+.0f}% (95% CI {pct_change(row['ci_low']):+.0f}% to "
        f"{pct_change(row['ci_high']):+.0f}%)"
    )


def interaction_sentence(interaction: pd.DataFrame, params: CytokineParameters, units: dict | None = None) -> str:
    """The primary result in words: each analyte's placebo-controlled interaction with its 95% CI."""
    rows = interaction[interaction["quantity"] == "interaction"]
    if rows.empty or rows["estimate"].isna().all():  # e.g. an open-label study: no placebo session to control for
        return (
            "**Primary test (placebo-controlled interaction)** not available: it needs subjects with both "
            "active and placebo changes in both strata (this study has none with both), so the stratum changes "
            "below are uncontrolled."
        )
    units = units or {}
    first = rows.iloc[0]
    n_inflamed, n_other = int(first["n_subjects_stratum_1"]), int(first["n_subjects_stratum_0"])
    if rows["ci_low"].isna().all() and min(n_inflamed, n_other) < 2:
        return (
            f"**Primary test (placebo-controlled interaction)** not testable: {n_inflamed} inflamed and {n_other} "
            "non-inflamed subjects with both active and placebo changes; a Welch t needs 2 or more in each "
            "stratum. The stratum changes below are description."
        )
    items = []
    for r in rows.itertuples(index=False):
        if params.change_scale == "ln_ratio":
            value = (
                f"{r.estimate:+.2f} ln units (×{math.exp(r.estimate):.2f}; 95% CI {r.ci_low:+.2f} to {r.ci_high:+.2f})"
            )
        else:
            value = f"{r.estimate:+.3g} {units.get(r.analyte, '')} (95% CI {r.ci_low:+.3g} to {r.ci_high:+.3g})"
        items.append(f"{r.analyte} {value}, {format_p(r.p)}, {format_p(r.p_fdr, 'p_FDR')}")
    return (
        f"**Primary test: placebo-controlled interaction** (inflamed − non-inflamed difference of each subject's "
        f"mean change after active doses minus its change after placebo; change = {params.change_label}; "
        f"{params.baseline_timepoint} → {params.post_timepoint}; subject = unit, Welch t; "
        f"{n_inflamed} inflamed and {n_other} non-inflamed subjects"
        + (f", {int(first['n_subjects_dropped'])} left out" if first["n_subjects_dropped"] else "")
        + "; negative = a larger fall in the inflamed stratum): "
        + "; ".join(items)
        + "."
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _change_sentence(rows: pd.DataFrame, scale: str = "ln_ratio", units: dict | None = None) -> str:
    down = rows[rows["ci_high"] < 0]
    up = rows[rows["ci_low"] > 0]
    parts = []
    units = units or {}
    for label, part in (("decreased", down), ("increased", up)):
        if len(part):
            items = [
                f"{r.analyte} {format_change(r._asdict(), scale, units.get(r.analyte, ''))}, {format_p(r.p)}, "
                f"{format_p(r.p_fdr, 'p_FDR')}"
                for r in part.itertuples(index=False)
            ]
            parts.append(f"{label}: " + "; ".join(items))
    if not parts:
        return "no analyte changed (every 95% CI included zero)"
    return "; ".join(parts)


def _smallest_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value possible with n pairs (all signs equal)."""
    return min(1.0, 2.0 / 2**n)


STRATA_SOURCE_TEXT = {
    "screening": "screening CRP",
    "mean_baselines": "mean baseline CRP",
    "single_baseline": "baseline CRP",
}


def _strata_line(params: CytokineParameters, subjects: pd.DataFrame, strata: pd.DataFrame | None) -> str:
    source = "CRP" if strata is None else STRATA_SOURCE_TEXT[strata.attrs["source"]]
    inflamed = subjects.loc[subjects["stratum"] == "inflamed", "participant_id"].tolist()
    non = subjects.loc[subjects["stratum"] == "non-inflamed", "participant_id"].tolist()
    other = subjects.loc[~subjects["stratum"].isin(["inflamed", "non-inflamed"]), "participant_id"].tolist()
    return (
        f"**Strata.** {len(subjects)} participants: {len(inflamed)} inflamed ({source} ≥ "
        f"{params.crp_threshold_mg_per_l:g} mg/L: {', '.join(inflamed) or 'none'}), {len(non)} non-inflamed"
        + (f", {len(other)} with sessions left out, undetermined or discordant ({', '.join(other)})" if other else "")
        + f". Change = {params.change_label}."
    )


def _censoring_line(params: CytokineParameters, censoring: pd.DataFrame) -> str:
    n_total = int(censoring["n"].sum())
    n_below, n_above = int(censoring["n_below"].sum()), int(censoring["n_above"].sum())
    per_analyte = censoring.groupby("analyte", sort=False)[["n_below", "n_above", "n"]].sum()
    per_analyte = per_analyte[(per_analyte["n_below"] + per_analyte["n_above"]) > 0]
    detail = ", ".join(f"{a} {int(r.n_below + r.n_above)} of {int(r.n)}" for a, r in per_analyte.iterrows())
    return (
        f"**Censoring.** {n_below + n_above} of {n_total} measured values were censored ({n_below} below the "
        f"LLOQ, {n_above} above the ULOQ)" + (f": {detail}" if detail else "") + ". "
        f"Main analysis: {cy.STRATEGY_DESCRIPTIONS[params.censoring_strategy]} (`{params.censoring_strategy}`)."
    )


def _stratum_change_lines(params: CytokineParameters, changes: pd.DataFrame, units: dict | None) -> list[str]:
    """The secondary per-stratum changes: after active doses (pooled per subject), then after placebo."""
    lines = []
    pooled = changes[changes["group"] == ACTIVE_POOLED]
    placebo = changes[changes["dose_mg_per_kg"] == 0]
    for stratum in ("inflamed", "non-inflamed"):
        rows = pooled[pooled["stratum"] == stratum]
        if len(rows):
            n = int(rows["n"].max())
            lines.append(
                f"**After active doses, {stratum}** (secondary, no placebo control; n = {n} subjects, mean "
                f"change over their active sessions, {params.baseline_timepoint} → {params.post_timepoint}): "
                f"{_change_sentence(rows, params.change_scale, units)}."
                + (
                    f" With {n} subjects the smallest possible two-sided Wilcoxon "
                    f"{format_p(_smallest_wilcoxon_p(n))}, so the CIs (t) carry the evidence here."
                    if _smallest_wilcoxon_p(n) > 0.05 and params.censoring_strategy != "censored_mle"
                    else ""
                )
            )
    for stratum in ("inflamed", "non-inflamed"):
        rows = placebo[placebo["stratum"] == stratum]
        if len(rows):
            lines.append(
                f"**After placebo, {stratum}** (n = {int(rows['n'].max())}): "
                f"{_change_sentence(rows, params.change_scale, units)}."
            )
    return lines


def _mixed_line(params: CytokineParameters, mixed: pd.DataFrame) -> str | None:
    term = interaction_term(params, "active")
    inter = mixed[(mixed["dose_coding"] == "active") & (mixed["term"] == term)]
    if not len(inter):
        return None
    sig = inter[inter["p_fdr"] <= 0.05]
    items = "; ".join(
        f"{r.analyte} {r.estimate:+.2f} (95% CI {r.ci_low:+.2f} to {r.ci_high:+.2f}, {format_p(r.p_fdr, 'p_FDR')})"
        for r in sig.itertuples(index=False)
    )
    return (
        f"**Mixed model** (secondary; {'ln value' if params.change_scale == 'ln_ratio' else 'value'} ~ time × "
        f"inflamed × active + (1 | subject), Wald z, {params.value_strategy}): the "
        f"time × inflamed × active interaction (extra ln-change after active doses in the inflamed stratum) "
        + (
            f"was significant after FDR for {len(sig)} of {len(inter)} analytes: {items}."
            if len(sig)
            else f"was not significant after FDR for any of {len(inter)} analytes."
        )
    )


def _sensitivity_line(params: CytokineParameters, spread: pd.DataFrame) -> str | None:
    if not len(spread):
        return None
    worst = spread.loc[spread["spread"].idxmax()]
    return (
        f"**Sensitivity.** Across censoring strategies ({', '.join(c for c in cy.STRATEGIES if c in spread.columns)}) "
        f"the pooled active estimates differed by at most {worst['spread']:.3f} {params.change_unit} "
        f"({worst['analyte']}, {worst['stratum']}, {_plural(int(worst['n_censored']), 'subject')} with censored values)."
    )


def _subject_r(r) -> str:
    return (
        f"{r['analyte']} r = {r['estimate']:+.2f} (95% CI {r['ci_low']:+.2f} to {r['ci_high']:+.2f}, "
        f"{format_p(r['p'])}, {format_p(r['p_fdr'], 'p_FDR')}, {int(r['n_subjects'])} subjects)"
    )


def _mood_subject_level_text(params: CytokineParameters, sl: pd.DataFrame, mood: pd.DataFrame) -> str:
    """Cytokine change vs mood change at the subject level: within (the test), between, within strata; the
    session-level table quoted as description."""
    within = sl[(sl["quantity"] == "within") & (sl["stratum"] == "all") & sl["p"].notna()]
    between = sl[(sl["quantity"] == "between") & (sl["stratum"] == "all")]
    text_unit = (
        "mood is measured once per subject, so each subject counts once (cytokine change averaged "
        "over the active sessions) and the between-subject rows are the test. "
        if within.empty and len(between)  # mood is one course per subject: the between rows are the test
        else ""
    )
    text = (
        f"**Mood** ({sl['y'].iloc[0]}, negative = improvement, against the cytokine change = "
        f"{params.change_label}; {sl['population'].iloc[0]}; the subject is the unit). " + text_unit
    )
    if len(within):
        sig = within[within["significant_fdr"]]
        best = within.loc[within["p"].idxmin()]
        text += (
            f"Within subjects (across a subject's active sessions), {len(sig)} of {len(within)} analytes' "
            f"ln-changes correlated with the mood change after FDR"
            + (
                ": " + "; ".join(_subject_r(r) for _, r in sig.iterrows())
                if len(sig)
                else f"; the strongest was {_subject_r(best)}"
            )
            + ". "
        )
    if len(between):
        sig = between[between["significant_fdr"]]
        text += (
            f"Between subjects (subject means, trait-level), {len(sig)} of {len(between)} did"
            + (": " + "; ".join(_subject_r(r) for _, r in sig.iterrows()) if len(sig) else "")
            + ". "
        )
    within_strata = sl[(sl["quantity"] == "within") & (sl["stratum"] != "all") & sl["p"].notna()]
    if len(within_strata):
        text += (
            f"Within strata, {int(within_strata['significant_fdr'].sum())} of {len(within_strata)} "
            "within-subject correlations survived FDR. "
        )
    if len(mood):
        pooled_rows = mood[mood["stratum"] == "all"]
        text += (
            f"The {mood['method'].iloc[0]} table over {mood['population'].iloc[0]} is "
            if _per_subject_mood_table(mood)
            else f"The session-level {mood['method'].iloc[0]} table (sessions pooled as if independent) is "
            f"description only: {int(pooled_rows['significant_fdr'].sum())} of {len(pooled_rows)} "
            "analytes there had p_FDR ≤ 0.05, which is not used for conclusions."
        )
    return text.strip()


def _pooled_r(r) -> str:
    return (
        f"{r['analyte']} {r['method']} r = {r['estimate']:+.2f} (95% CI {r['ci_low']:+.2f} to "
        f"{r['ci_high']:+.2f}, n = {int(r['n'])}, {format_p(r['p'])}, {format_p(r['p_fdr'], 'p_FDR')})"
    )


def _mood_pooled_text(mood: pd.DataFrame) -> str:
    """Cytokine change vs mood change over sessions (used when there is no subject-level table)."""
    pooled_rows = mood[mood["stratum"] == "all"]
    within = mood[mood["stratum"] != "all"]
    text = f"**Mood** ({mood['y'].iloc[0]}, negative = improvement; {mood['population'].iloc[0]}). "
    if len(pooled_rows):
        sig = pooled_rows[pooled_rows["significant_fdr"]]
        text += (
            f"Over both strata, {len(sig)} of {len(pooled_rows)} analytes' ln-changes correlated with the mood "
            f"change after FDR" + (": " + "; ".join(_pooled_r(r) for _, r in sig.iterrows()) if len(sig) else "") + ". "
        )
    if len(within):
        sig = within[within["significant_fdr"]]
        best = within.loc[within["p"].idxmin()]
        text += (
            f"Within strata, {len(sig)} of {len(within)} correlations survived FDR; the strongest was "
            f"{_pooled_r(best)} in the {best['stratum']} stratum."
        )
        if len(pooled_rows) and pooled_rows["significant_fdr"].any() and not len(sig):
            text += (
                " A correlation over both strata that holds in neither can arise from the strata differing "
                "in both cytokine change and mood change."
            )
    return text


def summary_text(
    *,
    params: CytokineParameters,
    subjects: pd.DataFrame,
    censoring: pd.DataFrame,
    changes: pd.DataFrame,
    mixed: pd.DataFrame,
    spread: pd.DataFrame,
    mood: pd.DataFrame,
    mood_subject_level: pd.DataFrame | None = None,
    interaction: pd.DataFrame | None = None,
    strata: pd.DataFrame | None = None,
    units: dict | None = None,
) -> str:
    """A short written summary (Markdown) generated from the result tables; every number is read from them.

    With ``mood_subject_level`` (:func:`change_vs_mood_subject_level`) the cytokine ↔ mood conclusions
    come from its within-subject rows; ``mood`` (sessions pooled) is then quoted as description.

    ``subjects``: :func:`subject_strata`; ``censoring``: :func:`censoring_table`; ``changes``:
    :func:`paired_changes` under the chosen strategy; ``mixed``: :func:`mixed_models`; ``spread``:
    :func:`sensitivity_spread`; ``mood``: :func:`change_vs_mood_table`.
    """
    lines = []
    if interaction is not None:
        lines.append(interaction_sentence(interaction, params, units))
    if strata is not None:
        lines.append(strata_statement(strata))
    lines.append(_strata_line(params, subjects, strata))
    lines.append(_censoring_line(params, censoring))
    lines += _stratum_change_lines(params, changes, units)
    lines += [line for line in (_mixed_line(params, mixed), _sensitivity_line(params, spread)) if line]
    if mood_subject_level is not None and len(mood_subject_level):
        lines.append(_mood_subject_level_text(params, mood_subject_level, mood))
    elif len(mood):
        lines.append(_mood_pooled_text(mood))
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------ run(study, params)
@dataclass
class CytokinesResult:
    """What notebook 03 shows, in its order; ``summary`` is written from these tables."""

    params: CytokineParameters
    table: str  # the cytokine table, relative to the study root
    analytes: list[str]
    units: dict[str, str]
    parsed: pd.DataFrame  # every value, parsed (censoring flags, substituted values), with dose
    strata: pd.DataFrame  # per subject-session; attrs: source, warning, flags
    per_pair: pd.DataFrame  # change per subject-session-analyte
    interaction: pd.DataFrame  # the primary test
    censoring: pd.DataFrame
    subjects: pd.DataFrame
    trajectories: pd.DataFrame
    sensitivity: pd.DataFrame  # paired changes under every censoring strategy
    changes: pd.DataFrame  # paired changes under params.censoring_strategy
    planted: pd.DataFrame
    mixed: pd.DataFrame
    mixed_terms: list[str]
    spread: pd.DataFrame
    mood: pd.DataFrame  # mood change per subject[-session]
    mood_subject_level: pd.DataFrame
    correlations: pd.DataFrame  # description: sessions pooled
    mood_data: pd.DataFrame  # per-pair change beside the mood change (the scatter)
    comparison: pd.DataFrame  # recovered vs planted (synthetic studies)
    summary: str = ""
    notes: list[str] = field(default_factory=list)

    def derived_tables(self) -> dict[str, pd.DataFrame]:
        """The table notebook 03 writes for the integrative notebook (04) and the dashboards."""
        from pipelines.study import derived

        table = derived.cytokine_changes_table(
            self.per_pair, self.params.baseline_timepoint, self.params.post_timepoint
        )
        return {"cytokine_changes": table}


def _mood_analyses(study, params, parsed, sessions, strata, per_pair, analytes) -> dict:
    mood = mood_changes(study, params)
    return {
        "mood": mood,
        "mood_subject_level": change_vs_mood_subject_level(per_pair, mood, params, analytes),
        "correlations": change_vs_mood_table(parsed, sessions, strata, mood, params, analytes),
        "mood_data": change_vs_mood_data(per_pair, mood),
    }


def run(study, params: CytokineParameters | dict | None = None) -> CytokinesResult:
    """The whole cytokine analysis of notebook 03 (see the module docstring), in the report's order."""
    params = CytokineParameters.model_validate(params or {}).resolve(study)
    parsed = load_study_cytokines(study, timepoints=[params.baseline_timepoint, params.post_timepoint])
    analytes = resolve_analytes(parsed, params.analytes)
    sessions = study.sessions
    strata = study_strata(parsed, params)
    per_pair = change_table(parsed, sessions, strata, params, analytes)
    sensitivity = sensitivity_table(parsed, sessions, strata, params, analytes)
    planted = planted_effects(study.truth())
    changes = sensitivity[sensitivity["strategy"] == params.censoring_strategy].reset_index(drop=True)
    out = CytokinesResult(
        params=params,
        table=str(study.table_path("cytokines").relative_to(study.root)),
        analytes=analytes,
        units={a: u for a, u in parsed.groupby("analyte")["unit"].first().items()},
        parsed=parsed,
        strata=strata,
        per_pair=per_pair,
        interaction=strata_interaction(per_pair, params, analytes),
        censoring=censoring_table(parsed, analytes),
        subjects=subject_strata(strata, sessions),
        trajectories=trajectories(parsed, sessions, strata, params, analytes),
        sensitivity=sensitivity,
        changes=changes,
        planted=planted,
        mixed=mixed_models(parsed, sessions, strata, params, analytes),
        mixed_terms=[interaction_term(params, coding) for coding in ("mg_per_kg", "active")],
        spread=sensitivity_spread(sensitivity),
        **_mood_analyses(study, params, parsed, sessions, strata, per_pair, analytes),
        comparison=truth_comparison(changes, planted),
    )
    out.summary = summary_text(
        params=params,
        subjects=out.subjects,
        censoring=out.censoring,
        changes=changes,
        mixed=out.mixed,
        spread=out.spread,
        mood=out.correlations,
        mood_subject_level=out.mood_subject_level,
        interaction=out.interaction,
        strata=strata,
        units=out.units,
    )
    return out
