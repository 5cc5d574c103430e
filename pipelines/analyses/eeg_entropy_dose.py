"""Study-level EEG analysis behind notebook 01: parameters, time courses, markers, dose-response, summary.

One shape: ``run(study, params) -> EEGEntropyDoseResult`` (tidy tables + a summary), used by the notebook, the
dashboards and the tests alike.  Reads the derived features (pipelines.eeg.features.open_features); never
recomputes them.  What applies follows the design: time courses, markers and plateau changes need an infusion
with a baseline before it (:func:`has_infusion_window`); dose models need 3+ doses
(``Study.design.supports('dose_trend')``); levels by condition apply to every design with 2+ conditions.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.core.measures import SPATIOTEMPORAL_MEASURES  # across-channel: no per-channel entropy
from pipelines.core.sections import report_section
from pipelines.eeg import dynamics
from pipelines.eeg.features import baseline_windows, dose_table
from pipelines.study.derived import write_tables  # noqa: F401  (re-exported: notebook 01 calls eeg_analysis.write_tables)
from pipelines.study.manifest import alpha_threshold_db

DEFAULT_MEASURES = ["lzc_median", "spectral_entropy_welch", "lzs_schartner", "perm_entropy", "sample_entropy"]


class EEGParameters(BaseModel):
    """Parameters of notebook 01 (``notebooks: 01_eeg_entropy_dose:`` in the manifest).

    A value of None means the manifest's value; :meth:`resolve` fills those in and checks the parameters
    against what the features step computed (measures, regions, windows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measures: list[str] | None = Field(
        None,
        description="Entropy measures to show; None: those of lzc_median, spectral_entropy_welch, lzs_schartner, "
        "perm_entropy, sample_entropy that were computed (eeg.features.measures)",
    )
    regions: list[str] | None = Field(None, description="Regions of interest from eeg.rois; None: all of them")
    threshold_db: float | None = Field(
        None,
        description="Titration threshold of occipital alpha power relative to baseline, in dB or percent of "
        "baseline power (-10 or '10%'), negative in dB; None: eeg.dynamics.alpha_threshold_db",
    )
    hold_s: float | None = Field(
        20.0, ge=0, description="Suppression must hold this long (s) to count as onset; None: eeg.dynamics.hold_s"
    )
    smooth_windows: int | None = Field(
        9, ge=1, description="Windows of the centred running mean before thresholds; None: eeg.dynamics.smooth_windows"
    )
    plateau_s: float | None = Field(
        60.0,
        gt=0,
        description="Dose-response uses the last plateau_s seconds of the infusion; None: eeg.dynamics.plateau_s",
    )
    entropy_measure: str | None = Field(
        "lzc_median",
        description="Entropy measure for peaks, shape tests and the suppression-entropy relation; "
        "None: eeg.dynamics.entropy_measure",
    )
    window_s: float | None = Field(
        None, description="Window length (s); must equal eeg.features.window_s when given (None: that value)"
    )
    step_s: float | None = Field(
        None, description="Window step (s); must equal eeg.features.step_s when given (None: that value)"
    )

    @field_validator("threshold_db", mode="before")
    @classmethod
    def _threshold_units(cls, value):
        return None if value is None else alpha_threshold_db(value)

    def resolve(self, study) -> EEGParameters:
        """Every None replaced by the manifest's value, checked against what the features step computed."""
        eeg = study.manifest.eeg
        features, dyn = eeg.features, eeg.dynamics
        available = [m for m in features.measures if m not in SPATIOTEMPORAL_MEASURES]
        measures = list(self.measures) if self.measures is not None else [m for m in DEFAULT_MEASURES if m in available]
        for name in measures:
            if name not in available:
                hint = difflib.get_close_matches(name, available, 1)
                raise ValueError(
                    f"measure {name!r} was not computed for this study"
                    + (f" — did you mean {hint[0]!r}?" if hint else "")
                    + f"; computed: {available} (eeg.features.measures in the manifest)"
                )
        regions = list(self.regions) if self.regions is not None else list(eeg.rois)
        for region in regions:
            if region not in eeg.rois:
                raise ValueError(f"region {region!r} is not in eeg.rois of the manifest: {sorted(eeg.rois)}")
        for given, computed, name in (
            (self.window_s, features.window_s, "window_s"),
            (self.step_s, features.step_s, "step_s"),
        ):
            if given is not None and float(given) != computed:
                raise ValueError(
                    f"{name}={given} differs from the computed features ({computed}); windows are computed once "
                    f"by the features step: set eeg.features.{name} in the manifest instead"
                )
        threshold_db = dyn.alpha_threshold_db if self.threshold_db is None else self.threshold_db
        if threshold_db >= 0:
            raise ValueError(f"threshold_db must be negative (a suppression), got {threshold_db}")
        entropy_measure = self.entropy_measure or dyn.entropy_measure
        if entropy_measure not in available:
            raise ValueError(f"entropy_measure {entropy_measure!r} was not computed; computed: {available}")
        return EEGParameters(
            measures=measures,
            regions=regions,
            threshold_db=threshold_db,
            hold_s=dyn.hold_s if self.hold_s is None else float(self.hold_s),
            smooth_windows=dyn.smooth_windows if self.smooth_windows is None else int(self.smooth_windows),
            plateau_s=dyn.plateau_s if self.plateau_s is None else float(self.plateau_s),
            entropy_measure=entropy_measure,
            window_s=features.window_s,
            step_s=features.step_s,
        )

    def dynamics_config(self, base):
        return base.model_copy(
            update={
                "alpha_threshold_db": self.threshold_db,
                "hold_s": self.hold_s,
                "smooth_windows": self.smooth_windows,
                "plateau_s": self.plateau_s,
                "entropy_measure": self.entropy_measure,
            }
        )


PARAMETERS = EEGParameters


def validate_parameters(study, **params) -> EEGParameters:
    """Notebook 01's parameters (keyword arguments; None means the manifest's value), resolved against the study."""
    return EEGParameters.model_validate(params).resolve(study)


def infusion_end_rel_s(qc: pd.DataFrame) -> float:
    """Infusion duration (end − start) shared by the study's recordings (median, with a check)."""
    durations = (qc["infusion_end_s"] - qc["infusion_start_s"]).dropna()
    if durations.empty:
        raise ValueError("no recording has an infusion end event: set eeg.infusion_end_event in the manifest")
    return float(durations.median())


def time_course_frame(
    features,
    name: str,
    kind: str = "summary",
    region_channels: list[str] | None = None,
    baseline_window_s: float | None = None,
) -> pd.DataFrame:
    """Long table (participant_id, session, dose_mg_per_kg, time_s, value) of one measure.

    ``kind='summary'`` takes a summary measure; ``kind='channel'`` averages a per-channel measure over
    ``region_channels`` (all channels when None).  With ``baseline_window_s`` the pre-infusion mean is
    subtracted per recording (change from baseline)."""
    if kind == "summary":
        da = features["summary_measures"].sel(summary_measure=name)
    else:
        da = features["channel_measures"].sel(measure=name)
        channels = [c for c in (region_channels or list(features["channel"].to_numpy())) if c in features["channel"]]
        da = da.sel(channel=channels).mean("channel", skipna=True)
    da = da.load()
    if baseline_window_s is not None:
        import xarray as xr

        base = xr.DataArray(baseline_windows(features["time_s"].to_numpy(), baseline_window_s), dims="time_s")
        da = da - da.where(base).mean("time_s", skipna=True)
    frame = da.to_dataframe(name="value").reset_index()[["subject", "session", "time_s", "value"]]
    doses = dose_table(features)
    frame = frame.merge(doses, on=["subject", "session"])
    frame["participant_id"] = "sub-" + frame["subject"].astype(str)
    return frame.dropna(subset=["dose_mg_per_kg"])


def dose_response_tables(
    changes: pd.DataFrame, pairs: list[tuple[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fixed effects, per-dose means and peak doses for each (measure, region)."""
    models, per_dose, peaks = [], [], []
    for measure, region in pairs:
        result = dynamics.dose_response(changes, measure, region)
        models.append(result["model"])
        per_dose.append(result["per_dose"])
        peaks.append(
            {
                "measure": measure,
                "region": region,
                "dose_of_max_mean_change": result["dose_of_max"],
                "parabola_vertex_mg_per_kg": result["vertex_mg_per_kg"],
            }
        )
    return pd.concat(models, ignore_index=True), pd.concat(per_dose, ignore_index=True), pd.DataFrame(peaks)


def suppression_entropy_relation(markers: pd.DataFrame, changes: pd.DataFrame, entropy_measure: str):
    """Depth of alpha suppression vs entropy change on the plateau, across active-dose sessions:
    repeated-measures correlation (within subject) and Spearman (pooled), via pipelines.stats."""
    from pipelines import stats

    entropy = changes[(changes["measure"] == entropy_measure) & (changes["region"] == "global")][
        ["participant_id", "session", "change"]
    ]
    alpha = changes[(changes["measure"] == "occipital_alpha_db")][["participant_id", "session", "change"]]
    joined = alpha.rename(columns={"change": "alpha_change_db"}).merge(
        entropy.rename(columns={"change": "entropy_change"}), on=["participant_id", "session"]
    )
    joined = joined.merge(markers[["participant_id", "session", "dose_mg_per_kg"]], on=["participant_id", "session"])
    active = joined[joined["dose_mg_per_kg"] > 0].dropna()
    pooled = stats.correlation_table(
        active, ["alpha_change_db"], ["entropy_change"], method="spearman", n_boot=1000, seed=0
    )
    within = stats.rm_correlation(active, "alpha_change_db", "entropy_change", "participant_id")
    return joined, pooled, within


def summary_text(
    markers: pd.DataFrame,
    per_dose: pd.DataFrame,
    peaks: pd.DataFrame,
    models: pd.DataFrame,
    params: EEGParameters,
    shape_tests: pd.DataFrame | None = None,
) -> str:
    """A short written summary generated from the numbers (p-values by :func:`pipelines.stats.format_p`)."""
    from pipelines import stats

    lines = []
    alpha = per_dose[per_dose["measure"] == "occipital_alpha_db"].sort_values("dose_mg_per_kg")
    if not alpha.empty:
        parts = [
            f"{r.dose_mg_per_kg:g} mg/kg: {r['mean']:.1f} dB (95% CI {r.ci_low:.1f} to {r.ci_high:.1f})"
            for _, r in alpha.iterrows()
        ]
        lines.append("Occipital alpha on the infusion plateau, relative to baseline — " + "; ".join(parts) + ".")
    onset = markers.groupby("dose_mg_per_kg").agg(
        n=("participant_id", "size"),
        reached=("alpha_suppression_onset_s", lambda s: int(s.notna().sum())),
        median_onset=("alpha_suppression_onset_s", "median"),
    )
    parts = [
        f"{dose:g} mg/kg: {int(r.reached)}/{int(r.n)}"
        + (f" (median onset {r.median_onset:.0f} s)" if r.reached else "")
        for dose, r in onset.iterrows()
    ]
    lines.append(
        f"Sustained suppression below {params.threshold_db:g} dB for ≥ {params.hold_s:g} s was reached in "
        + "; ".join(parts)
        + "."
    )
    entropy = peaks[(peaks["measure"] == params.entropy_measure) & (peaks["region"] == "global")]
    if not entropy.empty:
        row = entropy.iloc[0]
        quad = models[
            (models["measure"] == params.entropy_measure)
            & (models["region"] == "global")
            & (models["term"] == "dose_sq")
        ]
        q = quad.iloc[0] if not quad.empty else None
        text = f"Entropy ({params.entropy_measure}, all channels) rose most at {row.dose_of_max_mean_change:g} mg/kg"
        if q is not None:
            # Description only: a negative dose² term does not show an inverted U (see dose_effect_tests).
            text += (
                f"; the quadratic term of the descriptive parabola is {q.estimate:.3f} (95% CI {q.ci_low:.3f} to "
                f"{q.ci_high:.3f}, {stats.format_p(q.p)}), which does not by itself show an inverted U"
            )
        lines.append(text + ".")
    if shape_tests is not None and not shape_tests.empty:
        sentence = shape_sentence(shape_tests, params.entropy_measure)
        if sentence:
            lines.append("Shape, tested at the subject level: " + sentence)
    return " ".join(lines)


def qc_table(qc: pd.DataFrame) -> pd.DataFrame:
    """QC per recording, readable: bad channels as text."""
    out = qc[
        [
            "recording",
            "dose_mg_per_kg",
            "n_channels",
            "n_windows",
            "n_rejected_windows",
            "fraction_kept",
            "median_channel_sd_uv",
        ]
    ].copy()
    out["bad_channels"] = [
        ", ".join(f"{k} ({v.split(' ')[0]})" for k, v in json.loads(b).items()) for b in qc["bad_channels"]
    ]
    # Regions whose channels were missing or replaced, and preprocessing notes: what a reader must know.
    out["roi_substitutions"] = [
        "; ".join(n for n in json.loads(r) if "missing" in n or "instead" in n or "none of" in n) for r in qc["rois"]
    ]
    out["notes"] = ["; ".join(json.loads(n)) for n in qc["notes"]]
    return out


# --- designs without an infusion or a dose trend (two conditions, eyes open / closed, drug vs placebo) -------

LEVEL_CONVENTION = (
    "absolute level: mean of the measure over the recording's retained (non-rejected) windows, per "
    "recording; regions average their channels first"
)


def condition_levels(features, names: list[str], region_channels: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per recording and measure (and region, for per-channel measures): its absolute level.

    Summary measures (``features.summary_measure``) are taken as they are; per-channel measures are averaged
    over each region's channels (all channels when ``region_channels`` is None).  Conditions without a dose
    are kept (no dose is needed to compare conditions)."""
    rows = []
    rejected = features["window_rejected"].load()
    summary_names = set(features["summary_measure"].to_numpy())
    channel_names = set(features["measure"].to_numpy())
    regions = region_channels or {"all": list(features["channel"].to_numpy())}
    for name in names:
        if name in summary_names:
            pieces = {"-": features["summary_measures"].sel(summary_measure=name)}
        elif name in channel_names:
            da = features["channel_measures"].sel(measure=name)
            pieces = {}
            for region, channels in regions.items():
                present = [c for c in channels if c in features["channel"]]
                if present:
                    pieces[region] = da.sel(channel=present).mean("channel", skipna=True)
        else:
            raise ValueError(f"no measure {name!r} in the features")
        for region, da in pieces.items():
            level = da.load().where(~rejected).mean("time_s", skipna=True)
            frame = level.to_dataframe(name="level").reset_index()[["subject", "session", "level"]]
            frame["measure"], frame["region"] = name, region
            rows.append(frame)
    out = pd.concat(rows, ignore_index=True).merge(dose_table(features), on=["subject", "session"])
    out["participant_id"] = "sub-" + out["subject"].astype(str)
    out = out.dropna(subset=["level"])
    out.attrs["convention"] = LEVEL_CONVENTION
    return out[["participant_id", "session", "dose_mg_per_kg", "measure", "region", "level"]]


def condition_contrasts(levels: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Paired within-subject contrasts of absolute levels between the first condition and each other one
    (``pipelines.stats.paired_contrast``), one row per measure, region and contrast, BH-FDR across the table."""
    from pipelines.stats import fdr_bh, paired_contrast

    if len(conditions) < 2:
        raise ValueError(f"a contrast needs two conditions; the study has {conditions}")
    reference, rows = conditions[0], []
    for (measure, region), part in levels.groupby(["measure", "region"], sort=False):
        for other in conditions[1:]:
            row = paired_contrast(part, "level", "session", "participant_id", reference, other)
            rows.append({"measure": measure, "region": region, **row})
    table = pd.DataFrame(rows)
    table["p_fdr"] = fdr_bh(table["p"].to_numpy())
    return table


#: Columns the report shows of a contrast table: paired (within subjects) or between arms, whichever applies.
CONTRAST_COLUMNS = [
    "measure", "region", "a", "b", "n_subjects", "n_a", "n_b", "n_unpaired", "mean_a", "mean_b", "mean_difference",
    "ci_low", "ci_high", "p", "p_wilcoxon", "hedges_g_av", "hedges_g", "p_fdr",
]  # fmt: skip


def between_arm_contrasts(levels: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Between-subject differences of absolute levels when each subject has one condition (parallel arms):
    ``b − a`` from OLS on the arm (= Student's pooled-variance t, ``pipelines.stats.groups.ancova_difference``
    without a baseline) and Hedges' g with the pooled SD; one row per measure, region and arm, BH-FDR across
    the table. Same columns as :func:`condition_contrasts` where they apply (``n_unpaired`` 0)."""
    import numpy as np

    from pipelines.stats import fdr_bh
    from pipelines.stats.groups import ancova_difference

    reference, rows = conditions[0], []
    for (measure, region), part in levels.groupby(["measure", "region"], sort=False):
        for other in conditions[1:]:
            two = part[part["session"].isin([reference, other])]
            fit = ancova_difference(two, "level", "session", "participant_id", reference=reference).iloc[0]
            a = two.loc[two["session"] == reference, "level"].to_numpy(float)
            b = two.loc[two["session"] == other, "level"].to_numpy(float)
            dof = len(a) + len(b) - 2
            pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / dof) if dof > 0 else np.nan
            correction = 1 - 3 / (4 * dof - 1) if dof > 0 else np.nan
            rows.append(
                {
                    "measure": measure,
                    "region": region,
                    "a": reference,
                    "b": other,
                    "n_subjects": int(len(a) + len(b)),
                    "n_a": len(a),
                    "n_b": len(b),
                    "n_unpaired": 0,
                    "mean_a": float(a.mean()) if len(a) else np.nan,
                    "mean_b": float(b.mean()) if len(b) else np.nan,
                    "mean_difference": fit["estimate"],
                    "ci_low": fit["ci_low"],
                    "ci_high": fit["ci_high"],
                    "p": fit["p"],
                    "hedges_g": (b.mean() - a.mean()) / pooled * correction if pooled > 0 else np.nan,
                    "method": "between subjects: OLS on arm (pooled-variance t)",
                }
            )
    table = pd.DataFrame(rows)
    table["p_fdr"] = fdr_bh(table["p"].to_numpy(dtype=float))
    return table


def change_contrasts(changes: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Plateau change from the pre-infusion baseline compared between conditions, for studies with an infusion
    and fewer than 3 doses (ketamine vs placebo): each condition against the first, per measure and region.

    Within subjects (a subject has 2+ conditions): paired contrast of the change (``paired_contrast``). Between
    subjects (parallel arms): OLS ANCOVA of the plateau on the arm adjusted for the subject's baseline
    (``ancova_difference``; Vickers & Altman 2001), except for measures already relative to the baseline
    (occipital alpha in dB re baseline), whose change is compared unadjusted. BH-FDR across the table."""
    from pipelines.stats import fdr_bh, paired_contrast
    from pipelines.stats.groups import ancova_difference

    within = bool((changes.groupby("participant_id")["session"].nunique() >= 2).any())
    reference, rows = conditions[0], []
    for (measure, region), part in changes.dropna(subset=["change"]).groupby(["measure", "region"], sort=False):
        for other in conditions[1:]:
            two = part[part["session"].isin([reference, other])]
            if within:
                row = paired_contrast(two, "change", "session", "participant_id", reference, other)
                estimate, method = row["mean_difference"], "paired t on the plateau change (within subjects)"
            else:
                relative = measure == "occipital_alpha_db"
                row = ancova_difference(
                    two, "change" if relative else "plateau", "session", "participant_id",
                    baseline=None if relative else "baseline", reference=reference,
                ).iloc[0].to_dict()  # fmt: skip
                estimate = row["estimate"]
                method = (
                    "between subjects: OLS on the arm (change already relative to the baseline)"
                    if relative
                    else "between subjects: OLS ANCOVA of the plateau adjusted for the baseline"
                )
            rows.append(
                {"measure": measure, "region": region, "a": reference, "b": other, "n_subjects": row["n_subjects"],
                 "estimate": estimate, "ci_low": row["ci_low"], "ci_high": row["ci_high"], "p": row["p"],
                 "method": method}
            )  # fmt: skip
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_fdr"] = fdr_bh(table["p"].to_numpy(dtype=float))
    return table


def has_infusion_window(qc: pd.DataFrame) -> tuple[bool, str]:
    """Whether time courses relative to an infusion apply: a baseline before it and an end to it."""
    if (qc["n_baseline_windows"] == 0).all():
        return False, "no window before time zero (no pre-infusion baseline): absolute levels by condition instead"
    if (qc["infusion_end_s"] - qc["infusion_start_s"]).dropna().empty:
        return False, "no infusion end in any recording (eeg.infusion_end_event or eeg.infusion_end_s): no plateau"
    return True, ""


def _change_lines(change: pd.DataFrame) -> list[str]:
    """The plateau-change contrasts of occipital alpha and the global entropy measures, as summary lines."""
    from pipelines.stats import format_p

    keep = change[(change["measure"] == "occipital_alpha_db") | (change["region"] == "global")]
    lines = []
    for row in keep.sort_values("p_fdr").head(4).itertuples():
        lines.append(
            f"- {row.measure} ({row.region}), plateau change: {row.b} − {row.a} = {row.estimate:.3g} "
            f"[{row.ci_low:.3g}, {row.ci_high:.3g}], n = {row.n_subjects} subjects, {format_p(row.p)}, "
            f"{format_p(row.p_fdr, 'p_FDR')} ({row.method})"
        )
    return lines


def contrast_summary_text(contrasts: pd.DataFrame, design, change: pd.DataFrame | None = None) -> str:
    """The report's summary when there is no dose trend: what the design supports, the plateau-change contrasts
    when there is an infusion (``change``, :func:`change_contrasts`), and the contrasts of absolute levels
    between conditions (paired within subjects, or between arms when each subject has one condition) with their
    CIs, FDR-significant ones first."""
    from pipelines.stats import format_p

    header = [f"**Design**: {design.kind}, conditions {', '.join(c for c, _ in design.conditions)}."]
    ok, reason = design.supports("dose_trend")
    if not ok:
        header.append(f"No dose-response model: {reason}.")
    if design.kind == "pre_post":
        header.append(
            "Before/after without a control condition: a difference between conditions is not a drug effect "
            "alone (time, expectancy and order are confounded with it)."
        )
    if change is not None and not change.empty:
        header.append(
            "**Plateau change from the pre-infusion baseline** (the infusion effect):\n\n"
            + "\n".join(_change_lines(change))
            + "\n\n**Absolute levels over the whole recording:**"
        )
    if contrasts is None or contrasts.empty:
        header.append("No contrast between conditions could be computed.")
        return "\n\n".join(header)
    ordered = contrasts.sort_values("p_fdr")
    between = "hedges_g" in ordered.columns
    if between:
        header.append("Each subject has one condition: the arms are compared between subjects (pooled-variance t).")
    bullets = []
    for row in ordered.head(6).itertuples():
        effect = f"g = {row.hedges_g:.2f}" if between else f"g_av = {row.hedges_g_av:.2f}"
        bullets.append(
            f"- {row.measure} ({row.region}): {row.b} − {row.a} = {row.mean_difference:.3g} "
            f"[{row.ci_low:.3g}, {row.ci_high:.3g}], n = {row.n_subjects} subjects, "
            f"{format_p(row.p)}, {format_p(row.p_fdr, 'p_FDR')}, {effect}"
        )
    return "\n".join(header) + "\n\n" + "\n".join(bullets)


def dose_effect_tests(
    changes: pd.DataFrame,
    pairs: list[tuple[str, str]],
    n_boot: int = 499,
    seed: int = 0,
    session_order: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Subject-level dose inference per (measure, region), calibrated by simulation (docs/statistics.md):

    * ``dose_effect``: fixed dose slope of ``change ~ dose + crossover terms + (1 + dose | subject)`` with
      subject-cluster bootstrap-t CI and p (``pipelines.stats.crossover_dose_model``; a fallback to a
      random intercept is stated in the row). Crossover terms (period, sequence, carry-over) come from
      ``session_order`` (:attr:`pipelines.study.dataset.Study.session_order`) where identified; ``crossover_note``
      says in one line what is modelled, or that nothing is when the order is not recorded;
    * ``slope_low`` / ``slope_high``: Simonsohn's two-lines test (``pipelines.stats.two_lines_test``, with
      period terms when the order is known), whose ``verdict`` is the only basis for calling the dose-response
      an inverted U (a negative dose² term is not: it is significant under a monotone saturating truth too)."""
    from pipelines.stats.crossover import crossover_dose_model
    from pipelines.stats.dose_models import two_lines_test

    order = None
    if session_order is not None:
        order = session_order.assign(session=session_order["session_id"].str.removeprefix("ses-"))[
            ["participant_id", "session", "session_order", "period", "sequence", "carryover_dose"]
        ]
    rows = []
    for measure, region in pairs:
        data = changes[(changes["measure"] == measure) & (changes["region"] == region)].dropna(subset=["change"])
        if data["dose_mg_per_kg"].nunique() < 3:
            continue
        if order is not None:
            data = data.merge(order, on=["participant_id", "session"], how="left", validate="many_to_one")
        model = crossover_dose_model(
            data,
            "change",
            "dose_mg_per_kg",
            "participant_id",
            None if order is None else "session_order",
            n_boot=n_boot,
            seed=seed,
        )
        dose_row = model.iloc[[0]].assign(test="dose_effect")
        lines = two_lines_test(
            data,
            "change",
            "dose_mg_per_kg",
            "participant_id",
            period=None if order is None else "period",
            n_boot=n_boot,
            seed=seed,
        )
        lines = lines[lines["quantity"].isin(["slope_low", "slope_high"])].assign(test=lambda d: d["quantity"])
        for part in (dose_row, lines):
            rows.append(part.assign(measure=measure, region=region))
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    front = ["measure", "region", "test", "estimate", "ci_low", "ci_high", "p", "n_subjects", "n_obs"]
    extra = [
        c
        for c in (
            "verdict",
            "breakpoint",
            "random_effects",
            "fallback_reason",
            "converged",
            "warnings",
            "crossover_note",
            "method",
            "convention",
        )
        if c in table
    ]
    return table[[c for c in front if c in table] + extra]


def shape_sentence(tests: pd.DataFrame, measure: str, region: str = "global") -> str:
    """One sentence on the dose-response shape of ``measure`` from the two-lines verdict and the dose effect."""
    from pipelines.stats import format_p

    part = tests[(tests["measure"] == measure) & (tests["region"] == region)]
    if part.empty:
        return ""
    dose = part[part["test"] == "dose_effect"].iloc[0]
    low, high = (part[part["test"] == t].iloc[0] for t in ("slope_low", "slope_high"))
    verdict = str(low.get("verdict", "no U-shape shown"))
    return (
        f"{measure} ({region}): dose slope {dose.estimate:.3g} per mg/kg [{dose.ci_low:.3g}, {dose.ci_high:.3g}], "
        f"{format_p(dose.p)} (random dose slopes, subject bootstrap); two-lines test: rising {low.estimate:.3g} "
        f"({format_p(low.p)}) then {high.estimate:.3g} ({format_p(high.p)}) — {verdict}."
        + (f" Dose model: {dose.crossover_note}." if isinstance(dose.get("crossover_note"), str) else "")
    )


# --- issue 12: all bands, raw vs surrogate-controlled entropy, Schartner conventions, spectrum-controlled
#     entropy, titration onsets ------------------------------------------------------------------------------

BANDS = ("delta", "theta", "alpha", "beta", "gamma")
BAND_CONVENTION = (
    "plateau (last plateau_s of the infusion) vs pre-infusion baseline, per recording, channels of the "
    "region averaged first: absolute power as 10·log10(plateau / baseline) in dB; relative power "
    "(band / 1–45 Hz total) as the difference in percentage points"
)


def band_changes(
    features, cfg, window_s: float, infusion_end_s: float, regions: dict[str, list[str]] | None = None, bands=BANDS
) -> pd.DataFrame:
    """Plateau change of every canonical band's absolute (dB) and relative (percentage points) power, long
    format like :func:`pipelines.eeg.dynamics.plateau_changes` (measure ``<band>_abs_db`` / ``<band>_rel_pp``)."""
    import numpy as np

    present = set(features["measure"].to_numpy())
    names = [f"{b}_power_{k}" for b in bands for k in ("uv2", "rel") if f"{b}_power_{k}" in present]
    raw = dynamics.plateau_changes(features, names, cfg, window_s, infusion_end_s, regions=regions)
    out = raw.copy()
    absolute = out["measure"].str.endswith("_uv2")
    with np.errstate(divide="ignore", invalid="ignore"):
        out.loc[absolute, "change"] = 10 * np.log10(out.loc[absolute, "plateau"] / out.loc[absolute, "baseline"])
    out.loc[~absolute, "change"] = 100 * (out.loc[~absolute, "plateau"] - out.loc[~absolute, "baseline"])
    out["band"] = out["measure"].str.split("_").str[0]
    out["kind"] = np.where(absolute, "absolute (dB)", "relative (pp)")
    out["measure"] = out["band"] + np.where(absolute, "_abs_db", "_rel_pp")
    out.attrs["convention"] = BAND_CONVENTION
    return out


def band_dose_table(changes: pd.DataFrame, band_effects: dict | None = None, ci: float = 0.95) -> pd.DataFrame:
    """Per band × kind × region × dose: mean plateau change with a t CI and n; with ``band_effects`` (truth.json's
    ``eeg.band_effects``: published direction and citations) the published direction beside it."""
    import numpy as np
    from scipy import stats as sps

    rows = []
    for (band, kind, region, dose), part in changes.groupby(["band", "kind", "region", "dose_mg_per_kg"], sort=False):
        values = part["change"].dropna()
        n = len(values)
        mean = values.mean() if n else np.nan
        half = sps.t.ppf(0.5 + ci / 2, n - 1) * values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        rows.append(
            {
                "band": band,
                "kind": kind,
                "region": region,
                "dose_mg_per_kg": dose,
                "n": n,
                "mean_change": mean,
                "ci_low": mean - half,
                "ci_high": mean + half,
            }
        )
    table = pd.DataFrame(rows)
    order = {b: i for i, b in enumerate(BANDS)}
    table = table.sort_values(
        ["kind", "region", "band", "dose_mg_per_kg"], key=lambda s: s.map(order) if s.name == "band" else s
    )
    if band_effects:
        table["published_direction"] = table["band"].map(lambda b: band_effects.get(b, {}).get("direction", ""))
    return table.reset_index(drop=True)


def band_dose_wide(table: pd.DataFrame, regions=("global", "occipital")) -> pd.DataFrame:
    """:func:`band_dose_table` as one row per kind, region and band, one column per dose: 'mean [CI]'."""
    t = table[table["region"].isin(regions)].copy()
    t["cell"] = [f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for m, lo, hi in zip(t["mean_change"], t["ci_low"], t["ci_high"])]
    index = ["kind", "region", "band"] + (["published_direction"] if "published_direction" in t else [])
    wide = t.pivot_table(index=index, columns="dose_mg_per_kg", values="cell", aggfunc="first")
    wide.columns = [f"{d:g} mg/kg" for d in wide.columns]
    order = {b: i for i, b in enumerate(BANDS)}
    return wide.reset_index().sort_values(
        ["kind", "region", "band"], key=lambda c: c.map(order) if c.name == "band" else c, ignore_index=True
    )


def raw_and_surrogate_entropy(changes: pd.DataFrame, measures: list[str], region: str = "global") -> pd.DataFrame:
    """Per measure and dose: the raw plateau change next to the change of its surrogate ratio (``<m>_surr_ratio``:
    value / mean of phase-randomised surrogates with the window's spectrum) — what is left after the spectrum.
    Relative changes in % of the baseline mean, so the two columns are comparable."""
    rows = []
    for measure in measures:
        for name, label in ((measure, "raw"), (f"{measure}_surr_ratio", "surrogate-controlled")):
            part = changes[(changes["measure"] == name) & (changes["region"] == region)].dropna(subset=["change"])
            if part.empty:
                continue
            for dose, g in part.groupby("dose_mg_per_kg"):
                rows.append(
                    {
                        "measure": measure,
                        "variant": label,
                        "stored_as": name,
                        "dose_mg_per_kg": dose,
                        "mean_change": g["change"].mean(),
                        "mean_change_pct_of_baseline": 100 * g["change"].mean() / g["baseline"].mean(),
                        "n": len(g),
                    }
                )
    return pd.DataFrame(rows)


def measure_definitions(features, names: list[str]) -> pd.DataFrame:
    """The stored definition, convention, caveat and citation of each measure (``features.zarr`` attribute
    ``measure_definitions``), one row per measure."""
    stored = json.loads(features.attrs.get("measure_definitions", "{}"))
    rows = []
    for name in names:
        wildcard = "*" + name[name.rindex("_surr_") :] if "_surr_" in name else None
        info = stored.get(name) or (stored.get(wildcard, "") if wildcard else "")
        rows.append({"measure": name, "definition": info if isinstance(info, str) else json.dumps(info)})
    return pd.DataFrame(rows)


def spectrum_controlled_entropy(changes: pd.DataFrame, entropy_measure: str, region: str = "global") -> dict:
    """Entropy change with the spectral change as covariate ("spectrum-controlled entropy").

    Per subject-session: the plateau change of ``entropy_measure`` (``region``), of occipital alpha (dB) and of
    the aperiodic exponent. Two mixed models with a random intercept per subject (``pipelines.stats.mixed_model``),
    dose as a factor (each dose against placebo / the lowest dose, so an inverted U is not forced into a line):
    ``entropy ~ C(dose)`` (raw) and ``entropy ~ C(dose) + alpha_change_db + aperiodic_change`` (spectrum-controlled).
    Returns {'data', 'raw', 'controlled' (fixed effects), 'comparison' (each dose's effect in both models, one row
    per dose and model), 'residual' in data: the per-session entropy change minus the fitted spectral terms}."""

    from pipelines import stats

    keys = ["participant_id", "session", "dose_mg_per_kg"]
    part = lambda m, r: changes[(changes["measure"] == m) & (changes["region"] == r)][keys + ["change"]]
    data = (
        part(entropy_measure, region)
        .rename(columns={"change": "entropy_change"})
        .merge(part("occipital_alpha_db", "summary").rename(columns={"change": "alpha_change_db"}), on=keys)
        .merge(part("aperiodic_exponent", "summary").rename(columns={"change": "aperiodic_change"}), on=keys)
    )
    data = data.dropna().rename(columns={"dose_mg_per_kg": "dose"})
    raw = stats.mixed_model(data, "entropy_change ~ C(dose)", groups="participant_id")
    controlled = stats.mixed_model(
        data, "entropy_change ~ C(dose) + alpha_change_db + aperiodic_change", groups="participant_id"
    )
    coef = controlled.set_index("term")["estimate"]
    data["entropy_change_spectrum_controlled"] = (
        data["entropy_change"]
        - coef["alpha_change_db"] * data["alpha_change_db"]
        - coef["aperiodic_change"] * data["aperiodic_change"]
    )
    rows = []
    for label, fit in (("raw: entropy ~ dose", raw), ("controlled: + Δalpha (dB) + Δaperiodic exponent", controlled)):
        for _, r in fit[fit["term"].str.startswith("C(dose)")].iterrows():
            rows.append(
                {
                    "dose_mg_per_kg": float(r["term"].split("[T.")[1].rstrip("]")),
                    "model": label,
                    "effect_vs_lowest_dose": r["estimate"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "p": r["p"],
                    "n": r["n"],
                }
            )
    comparison = pd.DataFrame(rows).sort_values(["dose_mg_per_kg", "model"], ascending=[True, False], ignore_index=True)
    return {
        "data": data.rename(columns={"dose": "dose_mg_per_kg"}),
        "raw": raw,
        "controlled": controlled,
        "comparison": comparison,
    }


def spectrum_controlled_rows(controlled: dict, entropy_measure: str) -> pd.DataFrame:
    """The spectrum-controlled entropy change as plateau-change rows (measure ``<m>_spectrum_controlled``,
    region ``global``), so it travels with ``eeg_plateau_changes`` to the integrative report (H4c)."""
    d = controlled["data"]
    return pd.DataFrame(
        {
            "participant_id": d["participant_id"],
            "session": d["session"],
            "dose_mg_per_kg": d["dose_mg_per_kg"],
            "measure": f"{entropy_measure}_spectrum_controlled",
            "region": "global",
            "change": d["entropy_change_spectrum_controlled"],
        }
    )


def titration_onset_table(markers: pd.DataFrame, step_s: float, truth: dict | None = None) -> pd.DataFrame:
    """Per dose: how many recordings reached the titration threshold, the median onset, and — with the study's
    truth (synthetic studies) — the planted onsets at the same threshold, the median |error| and the median
    signed error (detected − planted), misses and false alerts."""
    import numpy as np

    thr = float(markers["alpha_threshold_db"].iloc[0]) if "alpha_threshold_db" in markers else np.nan
    rows = []
    for dose, g in markers.groupby("dose_mg_per_kg"):
        onset = g["alpha_suppression_onset_s"]
        row = {
            "dose_mg_per_kg": dose,
            "n_recordings": len(g),
            "n_reached": int(onset.notna().sum()),
            "median_onset_s": onset.median(),
            "median_entropy_plateau_s": g["entropy_plateau_time_s"].median()
            if "entropy_plateau_time_s" in g
            else np.nan,
        }
        if truth is not None:
            recs = truth["eeg"]["recordings"]
            planted = np.array(
                [
                    recs.get(f"{pid}_ses-{s}", {}).get("occipital_alpha_onset_s_by_threshold_db", {}).get(f"{thr:g}")
                    for pid, s in zip(g["participant_id"], g["session"])
                ],
                dtype=float,
            )
            err = onset.to_numpy() - planted
            both = np.isfinite(err)
            row.update(
                {
                    "n_planted": int(np.isfinite(planted).sum()),
                    "median_abs_error_s": float(np.median(np.abs(err[both]))) if both.any() else np.nan,
                    "median_error_s": float(np.median(err[both])) if both.any() else np.nan,
                    "misses": int((np.isfinite(planted) & onset.isna().to_numpy()).sum()),
                    "false_alerts": int((~np.isfinite(planted) & onset.notna().to_numpy()).sum()),
                    "window_step_s": step_s,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


# --- run(study, params): the whole of notebook 01 ---------------------------------------------------------

# Summary measures and per-channel measures whose plateau change the dose models use (besides params.measures).
DOSE_SUMMARY_MEASURES = [
    "occipital_alpha_db",
    "aperiodic_exponent",
    "frontal_alpha_asymmetry",
    "alpha_peak_frequency_hz",
]
DOSE_CHANNEL_MEASURES = ["gamma_power_uv2", "alpha_power_uv2"]
LEVEL_MEASURES = ["occipital_alpha_power_uv2", "alpha_peak_frequency_hz", "aperiodic_exponent"]
SCHARTNER_PAIRS = [("lzs_schartner_lzw", "lzs_schartner"), ("lzc_schartner_lzw", "lzc_schartner_st")]


def shape_pairs(entropy_measure: str) -> list[tuple[str, str]]:
    """(measure, region) pairs whose dose-response shape is tested and drawn, in the report's order."""
    return [
        (entropy_measure, "global"),
        ("occipital_alpha_db", "summary"),
        ("gamma_power_uv2", "global"),
        ("aperiodic_exponent", "summary"),
    ]


@dataclass
class EEGEntropyDoseResult:
    """What notebook 01 shows.  Tables the design does not support are empty; ``timing_reason`` /
    ``trend_reason`` say in one line why (empty when they apply)."""

    params: EEGParameters  # resolved: no None left
    dynamics: object  # the manifest's eeg.dynamics with these parameters (pipelines.study.manifest.DynamicsConfig)
    design: object
    timing_ok: bool
    timing_reason: str
    trend_ok: bool
    trend_reason: str
    infusion_end_s: float | None
    features_created_utc: str
    features_git_commit: str
    definitions: pd.DataFrame  # measure -> stored definition (features attribute measure_definitions)
    preprocessing: pd.DataFrame  # one row: the preprocessing the features were computed with
    qc: pd.DataFrame  # per recording, as the features step wrote it
    qc_view: pd.DataFrame  # readable: bad channels and ROI substitutions as text
    conditions: list[str]
    levels: pd.DataFrame
    contrasts: pd.DataFrame
    change_contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)  # infusion, < 3 doses: plateau change
    time_courses: dict[str, pd.DataFrame] = field(default_factory=dict)
    markers: pd.DataFrame = field(default_factory=pd.DataFrame)
    marker_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    changes: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # plateau changes (+ surrogate, spectrum-controlled rows)
    models: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_dose: pd.DataFrame = field(default_factory=pd.DataFrame)
    peaks: pd.DataFrame = field(default_factory=pd.DataFrame)
    shape_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    bands: pd.DataFrame = field(default_factory=pd.DataFrame)
    band_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    band_effects: dict = field(default_factory=dict)
    band_effects_caveat: str = ""
    surrogate_measures: list[str] = field(default_factory=list)
    surrogate: pd.DataFrame = field(default_factory=pd.DataFrame)
    surrogate_definitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    schartner: pd.DataFrame = field(default_factory=pd.DataFrame)
    schartner_definitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    spectrum_controlled: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)
    topography_entropy: pd.DataFrame = field(default_factory=pd.DataFrame)
    topography_alpha: pd.DataFrame = field(default_factory=pd.DataFrame)
    relation: pd.DataFrame = field(default_factory=pd.DataFrame)  # per session: alpha change vs entropy change
    relation_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    onsets: pd.DataFrame = field(default_factory=pd.DataFrame)
    onset_truth: bool = False  # onsets compared with the generator's planted onsets at this threshold
    planted_entropy_peak_dose: float | None = None
    summary: str = ""

    def derived_tables(self) -> dict[str, pd.DataFrame]:
        """The tables notebook 01 writes for the integrative notebook (04) and the dashboards."""
        tables = {"eeg_condition_levels": self.levels, "eeg_condition_contrasts": self.contrasts}
        if self.timing_ok:
            tables |= {"eeg_markers": self.markers, "eeg_plateau_changes": self.changes}
        if not self.change_contrasts.empty:
            tables["eeg_change_contrasts"] = self.change_contrasts
        if self.timing_ok and self.trend_ok:
            tables |= {
                "eeg_dose_models": self.models,
                "eeg_dose_means": self.per_dose,
                "eeg_dose_shape_tests": self.shape_tests,
            }
        return tables


def _present(features) -> set[str]:
    return set(features["measure"].to_numpy()) | set(features["summary_measure"].to_numpy())


def _levels(features, params: EEGParameters, design) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Absolute levels per recording and the paired contrasts between conditions (every design)."""
    conditions = [c for c, _ in design.conditions if c in set(features["session"].to_numpy())]
    names = LEVEL_MEASURES + params.measures + ["alpha_power_rel", "gamma_power_rel"]
    levels = condition_levels(features, [n for n in names if n in _present(features)])
    if len(conditions) < 2:
        contrasts = pd.DataFrame()
    elif (levels.groupby("participant_id")["session"].nunique() >= 2).any():
        contrasts = condition_contrasts(levels, conditions)
    else:  # each subject in one condition: the arms are compared between subjects
        contrasts = between_arm_contrasts(levels, conditions)
    return conditions, levels, contrasts


def _time_courses(features, params: EEGParameters) -> dict[str, pd.DataFrame]:
    courses = {"occipital_alpha_db": time_course_frame(features, "occipital_alpha_db")}
    for name in params.measures + ["gamma_power_uv2"]:
        courses[name] = time_course_frame(features, name, kind="channel", baseline_window_s=params.window_s)
    return courses


def _marker_summary(markers: pd.DataFrame) -> pd.DataFrame:
    return markers.groupby("dose_mg_per_kg").agg(
        sessions=("participant_id", "size"),
        reached=("alpha_suppression_onset_s", "count"),
        median_onset_s=("alpha_suppression_onset_s", "median"),
        median_depth_db=("alpha_suppression_depth_db", "median"),
        median_entropy_peak_s=("entropy_peak_time_s", "median"),
        median_entropy_peak_change=("entropy_peak_change", "median"),
        entropy_plateau_reached=("entropy_plateau_time_s", "count"),
        median_entropy_plateau_s=("entropy_plateau_time_s", "median"),
    )


def _dose_response(out: EEGEntropyDoseResult, study, features) -> None:
    """Plateau changes per subject-session; with 3+ doses the dose models, per-dose means and shape tests."""
    params, cfg = out.params, out.dynamics
    channel_names = params.measures + DOSE_CHANNEL_MEASURES
    region_map = {r: study.manifest.eeg.rois[r] for r in params.regions}
    out.changes = dynamics.plateau_changes(
        features, DOSE_SUMMARY_MEASURES + channel_names, cfg, params.window_s, out.infusion_end_s, regions=region_map
    )
    if not out.trend_ok:
        if len(out.conditions) >= 2:
            out.change_contrasts = change_contrasts(out.changes, out.conditions)
        return
    pairs = [(m, "summary") for m in DOSE_SUMMARY_MEASURES] + [
        (m, r) for m in channel_names for r in ["global"] + params.regions
    ]
    out.models, out.per_dose, out.peaks = dose_response_tables(out.changes, pairs)
    out.shape_tests = dose_effect_tests(
        out.changes, shape_pairs(params.entropy_measure), session_order=study.session_order
    )


def _bands(out: EEGEntropyDoseResult, study, features) -> None:
    params = out.params
    region_map = {r: study.manifest.eeg.rois[r] for r in params.regions}
    out.bands = band_changes(features, out.dynamics, params.window_s, out.infusion_end_s, regions=region_map)
    truth_eeg = (study.truth() or {}).get("eeg", {})
    out.band_effects = truth_eeg.get("band_effects") or {}
    out.band_effects_caveat = truth_eeg.get("band_effects_caveat", "")
    out.band_table = band_dose_table(out.bands, truth_eeg.get("band_effects"))


def _entropy_variants(out: EEGEntropyDoseResult, features) -> None:
    """Raw vs surrogate-controlled entropy and the Schartner LZ conventions; surrogate rows join the changes."""
    params, cfg = out.params, out.dynamics
    measure_names = set(features["measure"].to_numpy())
    out.surrogate_measures = [m for m in params.measures if f"{m}_surr_ratio" in measure_names]
    if out.surrogate_measures:
        names = out.surrogate_measures + [f"{m}_surr_ratio" for m in out.surrogate_measures]
        entropy_changes = dynamics.plateau_changes(features, names, cfg, params.window_s, out.infusion_end_s)
        out.surrogate = raw_and_surrogate_entropy(entropy_changes, out.surrogate_measures)
        out.surrogate_definitions = measure_definitions(features, names)
        new = entropy_changes[~entropy_changes["measure"].isin(out.changes["measure"])]
        out.changes = pd.concat([out.changes, new], ignore_index=True)
    names = [m for pair in SCHARTNER_PAIRS for m in pair if m in _present(features)]
    if names:
        schartner = dynamics.plateau_changes(features, names, cfg, params.window_s, out.infusion_end_s)
        out.schartner = schartner[schartner["region"].isin(["global", "summary"])]
        out.schartner_definitions = measure_definitions(features, names)


def schartner_table(schartner: pd.DataFrame) -> pd.DataFrame:
    """Per Schartner measure, convention and dose: mean baseline, plateau and change (published LZW vs LZ76)."""
    import numpy as np

    conv = schartner.assign(
        convention=np.where(schartner["measure"].str.endswith("_lzw"), "published (LZW)", "LZ76 variant")
    )
    return conv.groupby(["measure", "convention", "dose_mg_per_kg"]).agg(
        n=("change", "count"),
        baseline=("baseline", "mean"),
        plateau=("plateau", "mean"),
        mean_change=("change", "mean"),
    )


def _spectrum_controlled(out: EEGEntropyDoseResult, features) -> None:
    params = out.params
    names = ["aperiodic_exponent", "occipital_alpha_db", params.entropy_measure]
    spectral = dynamics.plateau_changes(features, names, out.dynamics, params.window_s, out.infusion_end_s)
    out.spectrum_controlled = spectrum_controlled_entropy(spectral, params.entropy_measure)
    rows = spectrum_controlled_rows(out.spectrum_controlled, params.entropy_measure)
    out.changes = pd.concat([out.changes, rows], ignore_index=True)


def _topographies(out: EEGEntropyDoseResult, features) -> None:
    from pipelines.eeg.montage import standard_positions

    params, cfg = out.params, out.dynamics
    out.positions = standard_positions(features["channel"].to_numpy())
    out.topography_entropy = dynamics.topography(
        features, params.entropy_measure, cfg, params.window_s, out.infusion_end_s
    )
    out.topography_alpha = dynamics.topography(features, "alpha_power_rel", cfg, params.window_s, out.infusion_end_s)


def _relation_and_onsets(out: EEGEntropyDoseResult, study) -> None:
    out.relation, pooled, within = suppression_entropy_relation(out.markers, out.changes, out.params.entropy_measure)
    out.relation_tests = pd.concat(
        [pooled.assign(analysis="pooled Spearman"), within.assign(analysis="repeated-measures")], ignore_index=True
    )
    truth = study.truth()
    recordings = (truth or {}).get("eeg", {}).get("recordings", {})
    first = next(iter(recordings.values()), {})
    out.onset_truth = f"{out.dynamics.alpha_threshold_db:g}" in first.get("occipital_alpha_onset_s_by_threshold_db", {})
    out.onsets = titration_onset_table(out.markers, out.params.step_s, truth if out.onset_truth else None)
    if truth is not None and "eeg" in truth:
        out.planted_entropy_peak_dose = truth["eeg"]["expected_entropy_peak_dose_mg_per_kg"]


def _infusion_analyses(out: EEGEntropyDoseResult, study, features) -> None:
    """Everything relative to the infusion: time courses, markers, plateau changes, bands, entropy variants,
    spectrum-controlled entropy (3+ doses), topographies, the suppression-entropy relation, titration onsets."""
    params = out.params
    with report_section("Time courses"):
        out.time_courses = _time_courses(features, params)
    with report_section("Titration markers per subject and dose"):
        out.markers = dynamics.recording_markers(features, out.dynamics, params.window_s, out.infusion_end_s)
        out.marker_summary = _marker_summary(out.markers)
    with report_section("Dose-response"):
        _dose_response(out, study, features)
    with report_section("All canonical bands"):
        _bands(out, study, features)
    with report_section("Entropy: raw and surrogate-controlled"):
        _entropy_variants(out, features)
    if out.trend_ok:
        with report_section("Spectrum-controlled entropy"):
            _spectrum_controlled(out, features)
    with report_section("Topographies per dose"):
        _topographies(out, features)
    with report_section("Alpha suppression and entropy"):
        _relation_and_onsets(out, study)


def run(study, params: EEGParameters | dict | None = None, *, features=None) -> EEGEntropyDoseResult:
    """Every EEG analysis the design supports (see the module docstring), from the computed features.

    ``params``: notebook 01's parameters (None values resolved from the manifest, checked against the features
    step's settings); ``features``: the opened feature store (default: :func:`pipelines.eeg.features.open_features`)."""
    from pipelines.eeg.features import open_features, read_qc

    params = EEGParameters.model_validate(params or {}).resolve(study)
    features = open_features(study) if features is None else features
    qc = read_qc(study)
    design = study.design
    timing_ok, timing_reason = has_infusion_window(qc)
    trend_ok, trend_reason = design.supports("dose_trend")
    definitions = json.loads(features.attrs["measure_definitions"])
    shown = [m for m in params.measures + [params.entropy_measure] if m in definitions]
    with report_section("Levels by condition"):
        conditions, levels, contrasts = _levels(features, params, design)
    out = EEGEntropyDoseResult(
        params=params,
        dynamics=params.dynamics_config(study.manifest.eeg.dynamics),
        design=design,
        timing_ok=timing_ok,
        timing_reason=timing_reason,
        trend_ok=trend_ok,
        trend_reason=trend_reason,
        infusion_end_s=infusion_end_rel_s(qc) if timing_ok else None,
        features_created_utc=features.attrs["created_utc"],
        features_git_commit=features.attrs["git_commit"],
        definitions=pd.DataFrame({"definition": {m: definitions[m] for m in shown}}),
        preprocessing=pd.Series(json.loads(features.attrs["parameters"])["preprocessing"], name="preprocessing")
        .to_frame()
        .T,
        qc=qc,
        qc_view=qc_table(qc),
        conditions=conditions,
        levels=levels,
        contrasts=contrasts,
    )
    if timing_ok:
        _infusion_analyses(out, study, features)
    if timing_ok and trend_ok:
        out.summary = summary_text(out.markers, out.per_dose, out.peaks, out.models, params, out.shape_tests)
    else:
        out.summary = contrast_summary_text(contrasts, design, out.change_contrasts)
    return out
