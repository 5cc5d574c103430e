"""The 24–48 h plasticity window (notebook 06): does integration therapy inside it go with more improvement?

One shape: ``run(study, params) -> WindowResult``.  Per infusion: the time from the end of the infusion to the
first integration session (``pipelines.phenotype.therapy``), and whether it falls inside the window
(``window_h``, default 24–48 h after the infusion; Duman et al. 2016 Nat Med 22:238 and Moda-Sava et al. 2019
Science 364:eaat8078 for the synaptogenesis time course that motivates it).  The outcome is mood improvement
(baseline − time point, scale points) at the first time point after the window closes, per infusion when mood is
measured per session.

Effects, with the subject as the unit (:mod:`pipelines.stats.effects`):

* **within-subject** effect of "inside" (a subject's infusions with integration inside vs outside the window,
  adjusted for dose): the estimate of the timing effect that no stable subject trait can confound;
* **between-subject** association (subjects who usually schedule inside vs those who do not): trait-level,
  confounded;
* **moderation** of the within effect by the session's peak-experience score, EEG alpha-suppression depth and
  IL-6 change, each where its table exists;
* **sensitivity** to the window bounds (12–36, 24–48, 24–72 h by default).

Timing is not randomised unless the manifest says so (``design.therapy_timing_randomised``): the report states
that the within-subject estimate is still observational (confounding by indication: a therapist may book an
early session for a patient who is doing badly that week).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines import stats
from pipelines.core.errors import InputError
from pipelines.phenotype.therapy import hours_of
from pipelines.stats.effects import within_between_effect, within_moderation
from pipelines.study.dataset import Study

__all__ = ["WindowParameters", "WindowResult", "hours_of", "run", "summary_text"]

DOSE = "dose_mg_per_kg"


class WindowParameters(BaseModel):
    """Parameters of notebook 06 (``notebooks: 06_plasticity_window:`` in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_h: tuple[float, float] = Field(
        (24.0, 48.0),
        description="The plasticity window, hours after the end of "
        "the infusion: a first integration session starting inside counts as inside",
    )
    sensitivity_windows_h: list[tuple[float, float]] = Field(
        default_factory=lambda: [(12.0, 36.0), (24.0, 48.0), (24.0, 72.0)],
        description="Other window bounds to show the effect for (sensitivity)",
    )
    mood_scale: str | None = Field(
        None, description="Mood scale of the outcome; None = the first of MADRS, HAM-D17, QIDS-SR16, BDI-II present"
    )
    outcome_timepoint: str | None = Field(
        None, description="Time point of the improvement; None = the first manifest time point after the window closes"
    )
    peak_score: str = Field("meq30_total", description="Peak-experience score that may moderate the window effect")
    eeg_marker: str = Field("alpha_suppression_depth_db", description="Column of the eeg_markers table (report 01)")
    cytokine: str = Field("IL6", description="Analyte whose ln-change (report 03) may moderate the window effect")
    n_boot: int = Field(1999, ge=199, description="Subject-cluster bootstrap resamples")
    seed: int = Field(0, ge=0, description="Seed of every bootstrap")


PARAMETERS = WindowParameters  # found by pipelines.analyses.parameters_model


@dataclass
class WindowResult:
    infusions: pd.DataFrame
    timing: pd.DataFrame
    effects: pd.DataFrame
    moderation: pd.DataFrame
    sensitivity: pd.DataFrame
    outcome: str
    outcome_timepoint: str
    window_h: tuple[float, float]
    randomised: bool
    notes: list[str] = field(default_factory=list)


def _status(first_h: float, window: tuple[float, float]) -> str:
    if np.isnan(first_h):
        return "none"
    return "before" if first_h < window[0] else "inside" if first_h <= window[1] else "after"


def infusion_timing(therapy: pd.DataFrame, sessions: pd.DataFrame, window: tuple[float, float]) -> pd.DataFrame:
    """One row per active infusion: the first integration session's start (h after the infusion), the number of
    integration sessions, and the status relative to ``window`` (before / inside / after / none)."""
    active = sessions[(sessions[DOSE] > 0) | sessions[DOSE].isna()][["participant_id", "session_id", DOSE]]
    integration = therapy[therapy["session_type"] == "integration"]
    first = (
        integration.groupby(["participant_id", "session_id"], dropna=False)["start_h"]
        .agg(first_integration_h="min", n_integration="count")
        .reset_index()
    )
    out = active.merge(first, on=["participant_id", "session_id"], how="left")
    out["n_integration"] = out["n_integration"].fillna(0).astype(int)
    out["status"] = [_status(h, window) for h in out["first_integration_h"]]
    out["inside"] = (out["status"] == "inside").astype(float)
    return out


def _timing_summary(infusions: pd.DataFrame) -> pd.DataFrame:
    counts = infusions["status"].value_counts()
    first = infusions["first_integration_h"].dropna()
    return pd.DataFrame(
        [
            {
                "n_infusions": len(infusions),
                "n_subjects": infusions["participant_id"].nunique(),
                "inside": int(counts.get("inside", 0)),
                "before": int(counts.get("before", 0)),
                "after": int(counts.get("after", 0)),
                "none": int(counts.get("none", 0)),
                "share_inside": float(counts.get("inside", 0) / len(infusions)) if len(infusions) else np.nan,
                "median_first_integration_h": float(first.median()) if len(first) else np.nan,
                "iqr_first_integration_h": (
                    f"{first.quantile(0.25):.0f}–{first.quantile(0.75):.0f}" if len(first) else ""
                ),
            }
        ]
    )


def _moderators(study: Study, params: WindowParameters) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Per-session moderator tables (participant_id, session_id, value), and why any is missing."""
    from pipelines.study import derived

    found, notes = {}, []
    try:
        peak = derived.read_table(study, "peak_scores")
        if params.peak_score in peak.columns:
            found["peak"] = (
                peak[["participant_id", "session_id", params.peak_score]]
                .rename(columns={params.peak_score: "value"})
                .assign(moderator=params.peak_score)
            )
        else:
            notes.append(f"peak score {params.peak_score!r} is not in report 02's table: no peak moderation")
    except FileNotFoundError:
        notes.append("no peak-experience scores (report 02): no peak moderation")
    try:
        markers = derived.read_table(study, "eeg_markers")
        if params.eeg_marker in markers.columns:
            found["eeg"] = (
                markers.assign(session_id="ses-" + markers["session"].astype(str))[
                    ["participant_id", "session_id", params.eeg_marker]
                ]
                .rename(columns={params.eeg_marker: "value"})
                .assign(moderator=params.eeg_marker)
            )
    except FileNotFoundError:
        notes.append("no EEG markers (report 01): no EEG moderation")
    try:
        cyto = derived.read_table(study, "cytokine_changes")
        part = cyto[cyto["analyte"] == params.cytokine]
        if len(part):
            found["cytokine"] = (
                part[["participant_id", "session_id", "ln_change"]]
                .rename(columns={"ln_change": "value"})
                .assign(moderator=f"{params.cytokine} ln-change")
            )
    except FileNotFoundError:
        notes.append("no cytokine changes (report 03): no cytokine moderation")
    return found, notes


def run(study: Study, params: WindowParameters | dict | None = None) -> WindowResult:
    """The window analysis (see the module docstring)."""
    from pipelines.analyses import mood_outcomes
    from pipelines.phenotype.therapy import read_therapy

    params = WindowParameters.model_validate(params or {})
    if "therapy" not in study.manifest.phenotype:
        raise InputError("no therapy table in the manifest (phenotype: therapy:): the window analysis does not apply")
    sessions = study.sessions
    therapy = read_therapy(study.table_path("therapy"), study.participants, sessions)
    notes = []
    if therapy.attrs.get("unused_columns"):
        notes.append(f"therapy table columns not used: {', '.join(therapy.attrs['unused_columns'])}")
    mood = mood_outcomes.run(study, {"scales": [params.mood_scale]} if params.mood_scale else {})
    scale = params.mood_scale or mood.primary_scale
    window = tuple(params.window_h)
    timepoint = _outcome_timepoint(params, mood.timepoints, window)
    outcome = mood.outcomes[(mood.outcomes["scale"] == scale) & (mood.outcomes["timepoint"] == timepoint)]
    per_session = outcome["session_id"].notna().all()
    infusions = infusion_timing(therapy, sessions, window)
    keys = ["participant_id", "session_id"] if per_session else ["participant_id"]
    improvement = outcome.assign(improvement=-outcome["change"])[[*keys, "improvement"]]
    data = infusions.merge(improvement, on=keys, how="left")
    if not per_session:
        notes.append(
            f"{scale} is measured per participant, not per infusion: each participant's improvement is "
            "set against the share of their infusions with integration inside the window (between "
            "subjects only)"
        )
    effects, sensitivity = _window_effects(data, therapy, sessions, improvement, keys, window, params)
    moderators, why = _moderators(study, params)
    notes += why
    moderation = _moderation(data, moderators, per_session, params, notes)
    randomised = bool(getattr(study.manifest.design, "therapy_timing_randomised", False))
    data.attrs["outcome"] = f"{scale} improvement (baseline − {timepoint}, points)"
    return WindowResult(
        infusions=data,
        timing=_timing_summary(infusions),
        effects=effects,
        moderation=pd.concat(moderation, ignore_index=True) if moderation else pd.DataFrame(),
        sensitivity=pd.concat(sensitivity, ignore_index=True),
        outcome=f"{scale} improvement",
        outcome_timepoint=timepoint,
        window_h=window,
        randomised=randomised,
        notes=notes,
    )


def _outcome_timepoint(params: WindowParameters, timepoints: list[str], window: tuple[float, float]) -> str:
    """The time point of the improvement: the parameter's, else the first after the window closes."""
    if params.outcome_timepoint:
        timepoint = params.outcome_timepoint
        if timepoint not in timepoints:
            raise ValueError(f"outcome_timepoint {timepoint!r} is not a manifest time point: {timepoints}")
        return timepoint
    after = [t for t in timepoints if (h := hours_of(t)) is not None and h > window[1]]
    if not after:
        raise InputError(f"no time point after the window ({window[1]:g} h) among {timepoints}: set outcome_timepoint")
    return after[0]


def _window_effects(
    data: pd.DataFrame,
    therapy: pd.DataFrame,
    sessions: pd.DataFrame,
    improvement: pd.DataFrame,
    keys: list[str],
    window: tuple[float, float],
    params: WindowParameters,
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The within/between effect of "inside" for the main window, and its rows for every sensitivity window."""

    def effect_of(table: pd.DataFrame) -> pd.DataFrame:
        return within_between_effect(
            table, "improvement", "inside", "participant_id", covariates=[DOSE], n_boot=params.n_boot, seed=params.seed
        )

    effects = effect_of(data)
    sensitivity = []
    for bounds in dict.fromkeys(tuple(b) for b in [*params.sensitivity_windows_h, window]):
        # The main window is already estimated (same data, same seed): its rows are reused, not refitted.
        alt = (
            data
            if bounds == window
            else infusion_timing(therapy, sessions, bounds).merge(improvement, on=keys, how="left")
        )
        rows = effects.copy() if bounds == window else effect_of(alt)
        rows.insert(0, "window_h", f"{bounds[0]:g}–{bounds[1]:g}")
        rows.insert(1, "n_inside", int((alt["status"] == "inside").sum()))
        sensitivity.append(rows)
    return effects, sensitivity


def _moderation(
    data: pd.DataFrame,
    moderators: dict[str, pd.DataFrame],
    per_session: bool,
    params: WindowParameters,
    notes: list[str],
) -> list[pd.DataFrame]:
    """The within effect's moderation by each moderator table; why one is not estimated goes to ``notes``."""
    moderation = []
    for name, table in moderators.items():
        merged = data.merge(table, on=["participant_id", "session_id"], how="inner")
        if merged["value"].notna().sum() < 6 or not per_session:
            notes.append(
                f"{name} moderation not estimated: too few infusions with both values"
                if per_session
                else f"{name} moderation needs mood per infusion"
            )
            continue
        row = within_moderation(
            merged,
            "improvement",
            "inside",
            "value",
            "participant_id",
            covariates=[DOSE],
            n_boot=params.n_boot,
            seed=params.seed,
        )
        moderation.append(row.assign(moderator_kind=name, moderator=table["moderator"].iloc[0]))
    return moderation


def summary_text(result: WindowResult) -> str:
    """The report's conclusions, from the tables (estimates and CIs first)."""
    t = result.timing.iloc[0]
    lo, hi = result.window_h
    lines = [
        f"**Timing.** {t['n_infusions']} active infusions of {t['n_subjects']} participants: first integration "
        f"session inside {lo:g}–{hi:g} h after the infusion for {t['inside']} ({100 * t['share_inside']:.0f} %), "
        f"earlier for {t['before']}, later for {t['after']}, none for {t['none']}; median start "
        f"{t['median_first_integration_h']:.0f} h (IQR {t['iqr_first_integration_h']} h)."
    ]
    rows = result.effects.set_index("quantity")
    w, b = rows.loc["within"], rows.loc["between"]
    if np.isfinite(w["estimate"]):
        lines.append(
            f"**Within participants** (their infusions with integration inside vs outside the window, "
            f"adjusted for {w['covariates']}): {result.outcome} at {result.outcome_timepoint} differed by "
            f"{w['estimate']:.1f} points (95 % CI {w['ci_low']:.1f} to {w['ci_high']:.1f}, "
            f"{stats.format_p(w['p'])}; {int(w['n_subjects'])} participants, {int(w['n_obs'])} infusions; "
            "positive = more improvement inside)."
        )
    else:
        lines.append(
            "**Within participants:** not estimable (no participant has infusions both inside and outside "
            "the window, or mood is measured per participant)."
        )
    if np.isfinite(b["estimate"]):
        lines.append(
            f"**Between participants** (trait-level, confounded by anything that differs between people): "
            f"{b['estimate']:.1f} points per unit share of infusions inside (95 % CI {b['ci_low']:.1f} to "
            f"{b['ci_high']:.1f}, {stats.format_p(b['p'])})."
        )
    if not result.moderation.empty:
        parts = [
            f"{r.moderator}: {r.estimate:.2f} (95 % CI {r.ci_low:.2f} to {r.ci_high:.2f}, {stats.format_p(r.p)})"
            for r in result.moderation.itertuples()
        ]
        lines.append(
            "**Moderation** of the within effect (points per unit of the moderator): " + "; ".join(parts) + "."
        )
    lines.append(
        "*Caveat:* "
        + (
            "the manifest declares the timing randomised, so the within estimate is a randomised comparison."
            if result.randomised
            else "timing was not randomised: even within participants, a session booked early or late "
            "for a reason linked to how the person was doing (confounding by indication) biases "
            "the estimate; read it as an association."
        )
    )
    return "\n\n".join(lines + [f"- {n}." for n in result.notes])
