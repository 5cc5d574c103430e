"""Mood outcomes over time for every design (notebook 05): the trial's clinical result.

One shape: ``run(study, params) -> MoodOutcomesResult`` (tidy tables + a summary), used by the notebook and
the tests alike.  What is compared depends on the design (:class:`pipelines.study.dataset.Design`):

* **parallel arms** (arm in ``participants.tsv``): per mood scale and post-baseline time point, the
  baseline-adjusted arm difference (ANCOVA, the test), the risk difference and odds ratio of response and
  remission (Newcombe CI, exact conditional OR, Fisher p), the summary-measure ANCOVA of the mean
  post-baseline score (the test over the whole follow-up), and the trajectory mixed model (description);
  see :mod:`pipelines.stats.groups`.
* **within-subject conditions** (a crossover with mood per session): the paired within-subject contrast of
  change from each session's baseline between every condition and the reference (placebo / lowest dose).
* **one group** (open label, or mood measured once per subject in a multi-session study): mean change from
  baseline with its t CI and d_z, per time point.

Whatever the design: trajectories (mean, t 95 % CI per group and time point) and response/remission rates
(Wilson CIs).  The unit is the subject: a per-subject mood table gives one row per subject and time point,
never duplicated across sessions; a per-session table keeps each session's own baseline.

Conventions: change = time point − baseline (negative = fewer symptoms); response = ≥ 50 % reduction
(inclusive); remission = total ≤ the scale's published cut-off unless the parameters say otherwise
(:mod:`pipelines.phenotype.mood`, :mod:`pipelines.phenotype.questionnaires`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines import stats
from pipelines.core.errors import InputError, did_you_mean
from pipelines.core.labels import condition_order_key
from pipelines.phenotype import mood, questionnaires
from pipelines.stats import groups
from pipelines.study.dataset import MOOD_SCALES, Study

__all__ = ["MoodOutcomeParameters", "MoodOutcomesResult", "run", "summary_text"]

SCORE_COLUMN = {name: questionnaires.SCALES[name].score_column("total") for name in MOOD_SCALES}
SCALE_LABEL = {"madrs": "MADRS", "hamd17": "HAM-D17", "qids_sr16": "QIDS-SR16", "bdi_ii": "BDI-II"}
ALL = "all participants"
# Arm names that mark a control arm: the default reference of between-arm comparisons.
CONTROL_NAMES = ("placebo", "control", "midazolam", "saline", "sham", "waitlist", "wait-list", "usual", "tau")


class MoodOutcomeParameters(BaseModel):
    """Parameters of notebook 05 (``notebooks: 05_mood_outcomes:`` in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scales: list[str] | None = Field(
        None,
        description="Mood scales to analyse (manifest phenotype tables of the "
        "same name); None = every mood table the manifest declares",
    )
    primary_scale: str | None = Field(
        None, description="Scale the summary leads with; None = the first of MADRS, HAM-D17, QIDS-SR16, BDI-II present"
    )
    primary_timepoint: str | None = Field(
        None, description="Time point the summary leads with; None = the last post-baseline time point"
    )
    remission_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Scale -> remission cut-off "
        "(total at or below); a scale not listed uses its published "
        "cut-off (MADRS 10, HAM-D17 7, QIDS-SR16 5, BDI-II 13)",
    )
    reference: str | None = Field(
        None,
        description="Reference arm or condition of the comparisons; None = "
        "placebo/lowest dose, or the first arm alphabetically",
    )
    missing_items: str = Field("prorate", pattern="^(none|prorate)$", description="Missing-item rule")
    max_missing_fraction: float = Field(
        0.2, ge=0, lt=1, description="With prorate: most of a score's items that may be missing"
    )


PARAMETERS = MoodOutcomeParameters  # found by pipelines.analyses.parameters_model


def _choose(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not one of {list(allowed)}" + did_you_mean(value, allowed))
    return value


@dataclass
class MoodOutcomesResult:
    """What notebook 05 shows. ``outcomes``: one row per subject[-session]-time point and scale."""

    design: str
    grouping: str  # "arm", "condition" or "one group"
    groups: list[str]
    reference: str | None
    baseline: str
    timepoints: list[str]
    scales: list[str]
    primary_scale: str
    primary_timepoint: str
    outcomes: pd.DataFrame
    trajectory: pd.DataFrame
    rates: pd.DataFrame
    comparisons: pd.DataFrame
    trajectory_model: pd.DataFrame
    reading: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _score(study: Study, scale: str, params: MoodOutcomeParameters) -> tuple[pd.DataFrame, dict]:
    from pipelines.analyses.peak_experience_mood import score_manifest_table

    participants = study.root / "participants.tsv"
    result, row = score_manifest_table(
        study,
        scale,
        missing=params.missing_items,
        max_missing_fraction=params.max_missing_fraction if params.missing_items == "prorate" else None,
        participants=participants if participants.is_file() else None,
    )
    if result is None:
        return pd.DataFrame(), row
    scores = result.scores.copy()
    if "timepoint" not in scores.columns:
        raise InputError(
            f"{scale} needs a timepoint column (one row per subject[-session] and time point)",
            file=result.source,
            field="timepoint",
        )
    unknown = sorted(set(scores["timepoint"].astype(str)) - set(study.manifest.timepoints))
    if unknown:
        raise InputError(
            f"time points {unknown} are not among the manifest's timepoints {study.manifest.timepoints}",
            file=result.source,
            field="timepoint",
        )
    scores.attrs["source"] = result.source
    return scores, row


def _grouping(study: Study, scores: pd.DataFrame) -> tuple[str, pd.Series]:
    """How subjects (or sessions) are grouped for comparison, and each row's group."""
    design = study.design
    if len(design.arms) >= 2:
        column = study.manifest.design.arm_column or "arm"
        arms = study.participants.set_index("participant_id")[column].astype(str)
        group = scores["participant_id"].map(arms)
        if group.isna().any():
            subject = scores.loc[group.isna(), "participant_id"].iloc[0]
            raise InputError(
                f"participant has no {column!r} in participants.tsv",
                subject=str(subject),
                file=str(study.root / "participants.tsv"),
                field=column,
            )
        return "arm", group
    if "session_id" in scores.columns and scores["session_id"].notna().all() and len(design.conditions) >= 2:
        from pipelines.analyses.peak_experience_mood import session_doses
        from pipelines.core.labels import dose_label

        doses = session_doses(study).set_index(["participant_id", "session_id"])["dose_mg_per_kg"]
        keys = pd.MultiIndex.from_frame(scores[["participant_id", "session_id"]])
        dose = pd.Series(doses.reindex(keys).to_numpy(), index=scores.index)
        label = scores["session_id"].astype(str).str.removeprefix("ses-")
        group = pd.Series(
            np.where(dose.notna(), dose.map(lambda d: dose_label(d) if d == d else ""), label), index=scores.index
        )
        # A pre/post study whose mood was rated in one condition only has nothing to contrast within subjects.
        if group.nunique() >= 2:
            return "condition", group
    return "one group", pd.Series(ALL, index=scores.index)


def _order_groups(study: Study, grouping: str, outcomes: pd.DataFrame) -> list[str]:
    if grouping != "condition":
        return sorted(outcomes["group"].unique())
    doses = outcomes.groupby("group", sort=False)["dose_mg_per_kg"].first()
    return sorted(doses.index, key=lambda group: (*condition_order_key(doses[group]), group))


def _outcomes(
    study: Study, scale: str, scores: pd.DataFrame, baseline: str, threshold: float | None
) -> tuple[pd.DataFrame, str]:
    grouping, group = _grouping(study, scores)
    per_session = "session_id" in scores.columns and scores["session_id"].notna().any()
    keys = ("participant_id", "session_id") if per_session else ("participant_id",)
    score = SCORE_COLUMN[scale]
    out = mood.mood_outcomes(
        scores.assign(group=group), score, baseline=baseline, keys=keys, remission_threshold=threshold
    )
    if grouping == "condition":
        from pipelines.analyses.peak_experience_mood import session_doses

        doses = session_doses(study)
        out = out.merge(doses, on=["participant_id", "session_id"], how="left")
    renamed = {
        score: "value",
        f"{score}_baseline": "baseline",
        f"{score}_change": "change",
        f"{score}_pct_change": "pct_change",
        f"{score}_response": "response",
        f"{score}_remission": "remission",
    }
    out = out.rename(columns=renamed)
    out.insert(0, "scale", scale)
    if "session_id" not in out.columns:
        out["session_id"] = None
    out["timepoint"] = out["timepoint"].astype(str)
    columns = [
        "scale",
        "participant_id",
        "session_id",
        "group",
        "timepoint",
        "value",
        "baseline",
        "change",
        "pct_change",
        "response",
        "remission",
    ] + (["dose_mg_per_kg"] if "dose_mg_per_kg" in out else [])
    return out[columns], grouping


def _trajectory(outcomes: pd.DataFrame, timepoints: list[str]) -> pd.DataFrame:
    table = stats.mean_t_ci(outcomes, ["scale", "group", "timepoint"], "value")
    table["_t"] = pd.Categorical(table["timepoint"], categories=timepoints).codes
    return table.sort_values(["scale", "group", "_t"]).drop(columns="_t").reset_index(drop=True)


def _rates(outcomes: pd.DataFrame, post: list[str]) -> pd.DataFrame:
    part = outcomes[outcomes["timepoint"].isin(post)]
    rates = pd.concat(
        [
            mood.outcome_rates(part, kind, by=("scale", "group", "timepoint")).assign(measure=kind)
            for kind in ("response", "remission")
        ],
        ignore_index=True,
    )
    rates["_t"] = pd.Categorical(rates["timepoint"], categories=post).codes
    return rates.sort_values(["scale", "measure", "group", "_t"]).drop(columns="_t").reset_index(drop=True)


def _between_arms(
    outcomes: pd.DataFrame, post: list[str], reference: str, timepoints: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, models = [], []
    for scale, part in outcomes.groupby("scale", sort=False):
        for tp in post:
            at = part[part["timepoint"] == tp]
            ancova = groups.ancova_difference(
                at, "value", "group", "participant_id", baseline="baseline", reference=reference
            )
            rows.append(ancova.assign(scale=scale, timepoint=tp, analysis="ANCOVA (adjusted for baseline)"))
            for kind in ("response", "remission"):
                binary = groups.binary_difference(at, kind, "group", "participant_id", reference=reference)
                if not binary.empty:
                    rows.append(binary.assign(scale=scale, timepoint=tp, analysis=kind))
        follow_up = (
            part[part["timepoint"].isin(post)]
            .groupby(["participant_id", "group"], as_index=False)
            .agg(value=("value", "mean"), baseline=("baseline", "first"))
        )
        summary = groups.ancova_difference(
            follow_up, "value", "group", "participant_id", baseline="baseline", reference=reference
        )
        rows.append(
            summary.assign(
                scale=scale,
                timepoint="mean of " + ", ".join(post),
                analysis="summary-measure ANCOVA (mean post-baseline score)",
            )
        )
        model = groups.trajectory_mixed_model(
            part[part["timepoint"].isin(post)],
            "value",
            "group",
            "timepoint",
            "participant_id",
            "baseline",
            timepoints,
            reference=reference,
        )
        if not model.empty:
            models.append(model.assign(scale=scale))
    return (
        pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
        pd.concat(models, ignore_index=True) if models else pd.DataFrame(),
    )


def _within_conditions(outcomes: pd.DataFrame, post: list[str], reference: str, groups_: list[str]) -> pd.DataFrame:
    rows = []
    for scale, part in outcomes.groupby("scale", sort=False):
        for tp in post:
            at = part[part["timepoint"] == tp]
            for level in groups_:
                if level == reference:
                    continue
                row = stats.paired_contrast(at, "change", "group", "participant_id", reference, level)
                rows.append(
                    {
                        "routine": "paired_contrast",
                        "quantity": f"{level} − {reference}",
                        "estimate": row["mean_difference"],
                        "ci_low": row["ci_low"],
                        "ci_high": row["ci_high"],
                        "p": row["p"],
                        "n_subjects": row["n_subjects"],
                        "n_obs": 2 * row["n_subjects"],
                        "method": "paired t on change from each session's baseline",
                        "convention": row["convention"],
                        "n_unpaired": row["n_unpaired"],
                        "hedges_g_av": row["hedges_g_av"],
                        "group": level,
                        "reference": reference,
                        "scale": scale,
                        "timepoint": tp,
                        "analysis": "within-subject contrast of change",
                    }
                )
    return pd.DataFrame(rows)


def _one_group(outcomes: pd.DataFrame, post: list[str]) -> pd.DataFrame:
    rows = []
    for (scale, group), part in outcomes.groupby(["scale", "group"], sort=False):
        for tp in post:
            at = part[part["timepoint"] == tp]
            if at["session_id"].notna().any():  # one subject's sessions: average them, one row per subject
                at = at.groupby("participant_id", as_index=False)["change"].mean()
            row = groups.change_from_baseline(at, "change", "participant_id")
            rows.append(
                {**row, "scale": scale, "timepoint": tp, "group": group, "analysis": "change from baseline (one group)"}
            )
    return pd.DataFrame(rows)


def run(study: Study, params: MoodOutcomeParameters | dict | None = None) -> MoodOutcomesResult:
    """Every mood analysis the design supports (see module docstring)."""
    params = MoodOutcomeParameters.model_validate(params or {})
    declared = [s for s in MOOD_SCALES if s in study.manifest.phenotype]
    scales = [_choose(s, list(MOOD_SCALES), "scales") for s in (params.scales or declared)]
    if not scales:
        raise InputError(
            "no mood scale (MADRS, HAM-D17, QIDS-SR16, BDI-II) in the manifest's phenotype tables; "
            f"tables declared: {', '.join(study.manifest.phenotype) or 'none'}"
        )
    from pipelines.analyses.peak_experience_mood import baseline_label

    baseline = baseline_label(study)
    timepoints = list(study.manifest.timepoints)
    post = [t for t in timepoints if t != baseline]
    outcomes, reading, grouping = _all_outcomes(study, scales, params, baseline)
    present = list(dict.fromkeys(outcomes["scale"]))
    primary_scale = _choose(params.primary_scale, present, "primary_scale") if params.primary_scale else present[0]
    observed_post = [t for t in post if t in set(outcomes["timepoint"])]
    if not observed_post:
        raise InputError(
            f"no post-baseline time point in the mood tables (baseline {baseline!r}, manifest time points {timepoints})"
        )
    primary_timepoint = (
        _choose(params.primary_timepoint, observed_post, "primary_timepoint")
        if params.primary_timepoint
        else observed_post[-1]
    )
    groups_ = _order_groups(study, grouping, outcomes)
    reference = None
    if grouping != "one group":
        controls = [g for g in groups_ if any(name in g.lower() for name in CONTROL_NAMES)]
        default = controls[0] if grouping == "arm" and controls else groups_[0]
        reference = _choose(params.reference, groups_, "reference") if params.reference else default
    comparisons, model, notes = _comparisons(study, grouping, outcomes, observed_post, reference, groups_, timepoints)
    per_subject_tables = [s for s in present if outcomes.loc[outcomes["scale"] == s, "session_id"].isna().all()]
    if per_subject_tables and len(study.design.conditions) >= 2:
        notes.append(
            f"{', '.join(per_subject_tables)}: measured per subject, so each subject counts once per time "
            "point (never once per session)"
        )
    return MoodOutcomesResult(
        design=study.design.kind,
        grouping=grouping,
        groups=groups_,
        reference=reference,
        baseline=baseline,
        timepoints=timepoints,
        scales=present,
        primary_scale=primary_scale,
        primary_timepoint=primary_timepoint,
        outcomes=outcomes,
        trajectory=_trajectory(outcomes, timepoints),
        rates=_rates(outcomes, observed_post),
        comparisons=comparisons,
        trajectory_model=model,
        reading=reading,
        notes=notes,
    )


def _all_outcomes(
    study: Study, scales: list[str], params: MoodOutcomeParameters, baseline: str
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Every scale's outcomes stacked, how each table was read, and the grouping (of the last scale read)."""
    tables, reading, grouping = [], [], "one group"
    for scale in scales:
        scores, row = _score(study, scale, params)
        reading.append(row)
        if scores.empty:
            continue
        threshold = params.remission_thresholds.get(scale)
        out, grouping = _outcomes(study, scale, scores, baseline, threshold)
        tables.append(out)
    reading = pd.DataFrame(reading)
    if not tables:
        raise InputError("no mood table could be read: " + "; ".join(reading["message"]))
    return pd.concat(tables, ignore_index=True), reading, grouping


def _comparisons(
    study: Study,
    grouping: str,
    outcomes: pd.DataFrame,
    post: list[str],
    reference: str | None,
    groups_: list[str],
    timepoints: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The comparisons the grouping allows, the trajectory model (arms only) and a note saying which."""
    if grouping == "arm":
        comparisons, model = _between_arms(outcomes, post, reference, timepoints)
        note = (
            f"parallel arms ({', '.join(groups_)}): between-arm comparisons against {reference}; each "
            "subject contributes one row per time point"
        )
    elif grouping == "condition":
        comparisons, model = _within_conditions(outcomes, post, reference, groups_), pd.DataFrame()
        note = (
            f"{len(groups_)} conditions within subjects: paired contrasts of change against {reference}; "
            "no between-arm comparison (no arms)"
            + (
                "; pre/post without a control condition: a difference is not a drug effect alone (time, "
                "expectancy and order are confounded with it)"
                if study.design.kind == "pre_post"
                else ""
            )
        )
    else:
        comparisons, model = _one_group(outcomes, post), pd.DataFrame()
        measured = "in one condition only" if outcomes["session_id"].notna().any() else "per subject, not per condition"
        why = (
            "open-label, single arm"
            if study.design.kind == "open_label"
            else f"pre/post, single arm (no arms, and mood is measured {measured})"
            if study.design.kind == "pre_post"
            else f"one group (no arms, and mood is measured {measured})"
        )
        note = f"{why}: change from baseline only; no controlled comparison is possible"
    return comparisons, model, [note]


def _ci(row) -> str:
    return f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def summary_text(result: MoodOutcomesResult) -> str:
    """The report's conclusions, written from the tables (primary scale and time point first)."""
    scale, tp = result.primary_scale, result.primary_timepoint
    label = SCALE_LABEL.get(scale, scale)
    lines = [f"**Design:** {result.design}; {result.notes[0]}."]
    comp = result.comparisons
    at = comp[(comp["scale"] == scale) & (comp["timepoint"] == tp)] if not comp.empty else comp
    if result.grouping == "arm" and not at.empty:
        for _, row in at[at["routine"] == "ancova_difference"].iterrows():
            lines.append(
                f"**{label} at {tp}** (primary): {row['quantity']} = {_ci(row)} points, adjusted for "
                f"baseline ({stats.format_p(row['p'])}, n = {row['n_subjects']} subjects)."
            )
        for _, row in at[at["routine"] == "binary_difference"].iterrows():
            scale_pct = 100 if row["quantity"].startswith("risk") else 1
            value = (
                f"{scale_pct * row['estimate']:.0f} percentage points [{scale_pct * row['ci_low']:.0f}, "
                f"{scale_pct * row['ci_high']:.0f}]"
                if scale_pct == 100
                else _ci(row)
            )
            lines.append(
                f"- {row['analysis']}: {row['quantity']} {value} ({int(row['events_group'])}/{int(row['n_group'])} vs "
                f"{int(row['events_reference'])}/{int(row['n_reference'])}; {stats.format_p(row['p'])})."
            )
        whole = comp[(comp["scale"] == scale) & comp["analysis"].str.startswith("summary-measure")]
        for _, row in whole.iterrows():
            lines.append(
                f"- Over the whole follow-up (mean post-baseline score): {row['quantity']} = {_ci(row)} "
                f"points ({stats.format_p(row['p'])})."
            )
    elif result.grouping == "condition" and not at.empty:
        for _, row in at.iterrows():
            lines.append(
                f"**{label} change at {tp}**, {row['quantity']}: {_ci(row)} points within subjects "
                f"({stats.format_p(row['p'])}, {row['n_subjects']} subjects with both)."
            )
    elif not at.empty:
        for _, row in at.iterrows():
            lines.append(
                f"**{label} change from baseline at {tp}**: {_ci(row)} points ({stats.format_p(row['p'])}, "
                f"d_z = {row['d_z']:.2f}, n = {row['n_subjects']}); uncontrolled: regression to the mean "
                "and expectancy are not separated from the treatment."
            )
    rates = result.rates[(result.rates["scale"] == scale) & (result.rates["timepoint"] == tp)]
    for measure, part in rates.groupby("measure", sort=False):
        shown = "; ".join(f"{r.group} {100 * r.rate:.0f} % ({r.n_events}/{r.n})" for r in part.itertuples())
        lines.append(f"- {measure.capitalize()} at {tp}: {shown} (Wilson CIs in the table).")
    lines += [f"- {note}." for note in result.notes[1:]]
    return "\n".join(lines)
