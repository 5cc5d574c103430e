"""Figures of the peak-experience and mood analysis (notebook 02): tables in, HoloViews objects out.

Every builder takes a tidy table from :mod:`pipelines.analyses.peak_experience_mood` and draws it; nothing here reads files
or computes statistics (the per-dose least-squares lines of :func:`scatter_with_fits` are a visual aid,
not a result). Doses use the shared colours and labels of :mod:`pipelines.figures.common`. Time points are drawn
in the order given, evenly spaced (categorical: 4 h and 14 d are not to scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.analyses.peak_experience_mood import DOSE, score_label
from pipelines.figures import common as viz

__all__ = [
    "correlation_heatmap",
    "longitudinal_effects",
    "mediation_forest",
    "comparison_forest",
    "group_rates",
    "group_trajectories",
    "mood_trajectories",
    "outcome_rates",
    "scatter_with_fits",
    "score_distributions",
]


def _hv():
    import holoviews as hv

    return hv


def _dose_colour_map(doses) -> dict[str, str]:
    return {viz.dose_label(d): viz.dose_color(d) for d in sorted(set(doses))}


def score_distributions(peak: pd.DataFrame, scores: Sequence[str], *, cols: int = 5):
    """One panel per peak score: box plot and subject-session points per active dose."""
    hv = _hv()
    panels = []
    active = peak[peak[DOSE] > 0]
    colours = _dose_colour_map(active[DOSE])
    for score in scores:
        data = (
            active[["participant_id", "session_id", DOSE, score]]
            .dropna()
            .assign(dose=lambda d: d[DOSE].map(viz.dose_label))
        )
        data = data.sort_values(DOSE)
        label = score_label(score)
        box = hv.BoxWhisker(data, kdims=["dose"], vdims=[hv.Dimension(score, label=label)]).opts(
            box_fill_color="dose", cmap=colours, box_alpha=0.35, whisker_color="#555555", outlier_alpha=0
        )
        points = hv.Scatter(data, kdims=["dose"], vdims=[score, "participant_id", "session_id"]).opts(
            color="dose", cmap=colours, size=5, jitter=0.25, tools=["hover"], alpha=0.9
        )
        panels.append(
            (box * points).opts(title=label, width=215, height=240, xlabel="", xrotation=30, show_legend=False)
        )
    return hv.Layout(panels).opts(shared_axes=False).cols(cols)


def correlation_heatmap(
    correlations: pd.DataFrame,
    timepoints: Sequence[str],
    scores: Sequence[str],
    *,
    analysis: str = "bivariate",
    title: str | None = None,
):
    """Score × time point heatmap of correlation estimates (diverging, −1…1); a ``*`` marks
    correlations significant after BH-FDR within their family, a ``|`` separates primary scores."""
    hv = _hv()
    data = correlations[correlations["analysis"] == analysis].copy()
    if data.empty:  # e.g. repeated-measures when each subject has one row per time point
        return hv.Text(0, 0, "not applicable to this design").opts(
            title=title or analysis, width=520, height=220, xaxis=None, yaxis=None
        )
    data["score_label"] = data["score"].map(score_label)
    data["text"] = [f"{e:.2f}{'*' if s else ''}" for e, s in zip(data["estimate"], data["significant_fdr"])]
    data["ci"] = [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(data["ci_low"], data["ci_high"])]
    score_labels = [score_label(s) for s in scores][::-1]  # first score on top
    tp_dim = hv.Dimension("timepoint", label="time point", values=list(timepoints))
    score_dim = hv.Dimension("score_label", label="peak score", values=score_labels)
    vdims = ["estimate", "ci", "p", "p_fdr", "family", "n"]
    heat = hv.HeatMap(data, kdims=[tp_dim, score_dim], vdims=vdims).opts(
        cmap="RdBu_r",
        clim=(-1, 1),
        colorbar=True,
        tools=["hover"],
        width=520,
        height=max(220, 34 * len(scores) + 90),
        xlabel="time point",
        ylabel="",
        title=title or f"{analysis.replace('_', ' ')} correlation with mood improvement (* FDR)",
    )
    labels = hv.Labels(data, kdims=[tp_dim, score_dim], vdims=["text"]).opts(text_font_size="9pt", text_color="black")
    return heat * labels


def scatter_with_fits(
    data: pd.DataFrame, score: str, outcome: str, timepoint: str, *, outcome_label: str = "mood improvement (points)"
):
    """Peak score against mood improvement at one time point, coloured by dose, with a least-squares
    line per dose (solid) and over all active doses (dashed)."""
    hv = _hv()
    part = data[data["timepoint"] == timepoint][["participant_id", "session_id", DOSE, score, outcome]].dropna()
    colours = _dose_colour_map(part[DOSE])
    overlays = []
    for dose, group in part.groupby(DOSE, sort=True):
        label = viz.dose_label(dose)
        overlays.append(
            hv.Scatter(group, kdims=[score], vdims=[outcome, "participant_id", "session_id"], label=label).opts(
                color=colours[label], size=7, tools=["hover"]
            )
        )
        if len(group) >= 3 and group[score].nunique() > 1:
            slope, intercept = np.polyfit(group[score], group[outcome], 1)
            xs = np.array([group[score].min(), group[score].max()])
            overlays.append(
                hv.Curve((xs, intercept + slope * xs), score, outcome, label=label).opts(
                    color=colours[label], line_width=2
                )
            )
    if len(part) >= 3 and part[score].nunique() > 1:
        slope, intercept = np.polyfit(part[score], part[outcome], 1)
        xs = np.array([part[score].min(), part[score].max()])
        overlays.append(
            hv.Curve((xs, intercept + slope * xs), score, outcome, label="all active").opts(
                color="black", line_dash="dashed", line_width=1.5
            )
        )
    return hv.Overlay(overlays).opts(
        title=f"{score_label(score)} vs improvement at {timepoint}",
        width=500,
        height=320,
        xlabel=score_label(score),
        ylabel=outcome_label,
        legend_position="right",
        show_legend=True,
    )


def _time_axis(timepoints: Sequence[str]) -> list[tuple[int, str]]:
    return list(enumerate(timepoints))


def _by_dose(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The table with a ``group`` column of dose labels, and those labels in dose order (for the group figures)."""
    doses = sorted(table[DOSE].unique())
    return table.assign(group=table[DOSE].map(viz.dose_label)), [viz.dose_label(d) for d in doses]


def outcome_rates(rates: pd.DataFrame, timepoints: Sequence[str], *, remission_label: str = "remission"):
    """Response and remission rates per dose over time, with their Wilson CIs (one panel each)."""
    labelled, groups = _by_dose(rates)
    return group_rates(
        labelled, timepoints, groups, remission_label=remission_label.capitalize(), unit="sessions", connect=True
    )


def mood_trajectories(trajectory: pd.DataFrame, timepoints: Sequence[str], *, ylabel: str = "total"):
    """Mean mood score per dose over time (baseline first) with t 95 % CI bands."""
    labelled, groups = _by_dose(trajectory)
    return group_trajectories(
        labelled, timepoints, groups, title="Mood over time by dose (mean, 95 % CI)", ylabel=ylabel, height=340
    )


def longitudinal_effects(model: pd.DataFrame, timepoints: Sequence[str]):
    """Per-time-point coefficients of the longitudinal model (peak per SD, dose per mg/kg, interaction)
    with Wald 95 % CIs; one panel per effect."""
    hv = _hv()
    panels = []
    units = {
        "peak": "points per SD of the peak score",
        "dose": "points per mg/kg",
        "dose × peak": "points per mg/kg per SD",
        "intercept": "points",
    }
    for effect in ("peak", "dose", "dose × peak"):
        d = model[model["effect"] == effect].copy()
        if d.empty:
            continue
        d["x"] = d["timepoint"].map({t: i for i, t in enumerate(timepoints)})
        d = d.sort_values("x")
        d["minus"], d["plus"] = d["estimate"] - d["ci_low"], d["ci_high"] - d["estimate"]
        panels.append(
            (
                hv.HLine(0).opts(color="#999999", line_dash="dotted")
                * hv.ErrorBars(d, kdims=["x"], vdims=["estimate", "minus", "plus"]).opts(color="#08306b")
                * hv.Scatter(d, kdims=["x"], vdims=["estimate", "p", "timepoint"]).opts(
                    color="#08306b", size=7, tools=["hover"]
                )
            ).opts(
                title=f"{effect} effect on improvement",
                width=330,
                height=280,
                xticks=_time_axis(timepoints),
                xlabel="time point",
                ylabel=units[effect],
            )
        )
    return hv.Layout(panels).opts(shared_axes=False).cols(3)


def mediation_forest(mediation: pd.DataFrame):
    """Paths of the mediation model (a, b, c, c′, indirect a·b) with their 95 % CIs."""
    hv = _hv()
    names = {
        "a": "a: dose → peak",
        "b": "b: peak → mood | dose",
        "c": "c: total dose effect",
        "c_prime": "c′: direct dose effect",
        "indirect": "a·b: indirect (bootstrap CI)",
    }
    d = mediation.assign(label=mediation["path"].map(names)).iloc[::-1].reset_index(drop=True)
    d["y"] = np.arange(len(d))
    d["y_end"] = d["y"]
    yticks = list(zip(d["y"], d["label"]))
    return (
        hv.VLine(0).opts(color="#999999", line_dash="dotted")
        * hv.Segments(d, kdims=["ci_low", "y", "ci_high", "y_end"]).opts(color="#08306b", line_width=2)
        * hv.Scatter(d, kdims=["estimate"], vdims=["y", "ci_low", "ci_high", "p", "label"]).opts(
            color="#08306b", size=8, tools=["hover"]
        )
    ).opts(
        title="Mediation: dose → peak experience → mood improvement",
        width=620,
        height=280,
        yticks=yticks,
        ylabel="",
        xlabel="estimate, 95 % CI (a: score/mg/kg; b: points/score unit; others: points/mg/kg)",
    )


# --- notebook 05: mood outcomes by arm, condition or one group -----------------------------------------------

GROUP_PALETTE = ("#08306b", "#e6550d", "#31a354", "#756bb1", "#636363", "#3182bd")


def _group_colours(groups: Sequence[str]) -> dict[str, str]:
    colours = {}
    for i, group in enumerate(groups):
        dose = group.removesuffix(" mg/kg")
        try:
            colours[group] = viz.dose_color(float(dose))
        except ValueError:
            colours[group] = GROUP_PALETTE[i % len(GROUP_PALETTE)]
    return colours


def group_trajectories(
    trajectory: pd.DataFrame,
    timepoints: Sequence[str],
    groups: Sequence[str],
    *,
    title: str,
    ylabel: str,
    height: int = 320,
):
    """Mean score per group over time (baseline first) with t 95 % CI bands (one scale)."""
    hv = _hv()
    colours, x_of = _group_colours(groups), {t: i for i, t in enumerate(timepoints)}
    overlays = []
    for group in groups:
        d = trajectory[trajectory["group"] == group]
        d = d.assign(x=d["timepoint"].map(x_of)).sort_values("x")
        overlays += [
            hv.Spread(
                (d["x"], d["mean"], d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]),
                kdims=["x"],
                vdims=["mean", "minus", "plus"],
            ).opts(color=colours[group], alpha=0.15, line_alpha=0),
            hv.Curve(d, kdims=["x"], vdims=["mean"], label=group).opts(color=colours[group], line_width=2),
            hv.Scatter(d, kdims=["x"], vdims=["mean", "n", "timepoint"], label=group).opts(
                color=colours[group], size=6, tools=["hover"]
            ),
        ]
    return hv.Overlay(overlays).opts(
        title=title,
        width=640,
        height=height,
        xticks=_time_axis(timepoints),
        xlabel="time point (not to scale)",
        ylabel=ylabel,
        legend_position="right",
    )


def group_rates(
    rates: pd.DataFrame,
    timepoints: Sequence[str],
    groups: Sequence[str],
    *,
    remission_label: str,
    unit: str = "subjects",
    connect: bool = False,
):
    """Response and remission rates per group over time with Wilson CIs (one scale; one panel each); ``unit`` is
    what the percentages count, ``connect`` joins each group's points."""
    hv = _hv()
    colours = _group_colours(groups)
    offsets = dict(zip(groups, np.linspace(-0.15, 0.15, len(groups)) if len(groups) > 1 else [0.0]))
    x_of = {t: i for i, t in enumerate(timepoints)}
    panels = []
    for measure in ("response", "remission"):
        overlays = []
        for group in groups:
            d = rates[(rates["measure"] == measure) & (rates["group"] == group)].copy()
            d["x"] = d["timepoint"].map(x_of) + offsets[group]
            d = d.sort_values("x")
            d["rate_pct"] = 100 * d["rate"]
            d["minus"], d["plus"] = d["rate_pct"] - 100 * d["ci_low"], 100 * d["ci_high"] - d["rate_pct"]
            overlays += [
                hv.ErrorBars(d, kdims=["x"], vdims=["rate_pct", "minus", "plus"]).opts(color=colours[group]),
                hv.Scatter(d, kdims=["x"], vdims=["rate_pct", "n_events", "n", "timepoint"], label=group).opts(
                    color=colours[group], size=7, tools=["hover"]
                ),
            ]
            if connect:
                overlays.append(
                    hv.Curve(d, kdims=["x"], vdims=["rate_pct"], label=group).opts(color=colours[group], alpha=0.6)
                )
        title = "Response (≥ 50 % reduction)" if measure == "response" else remission_label
        panels.append(
            hv.Overlay(overlays).opts(
                title=f"{title}, Wilson 95 % CI",
                width=440,
                height=300,
                xticks=_time_axis(timepoints),
                xlabel="time point",
                ylabel=f"% of {unit}",
                ylim=(-3, 103),
                legend_position="top_right",
            )
        )
    return hv.Layout(panels).opts(shared_axes=False).cols(2)


def comparison_forest(comparisons: pd.DataFrame, timepoints: Sequence[str], *, title: str, xlabel: str):
    """Estimate and 95 % CI of each comparison per time point (one scale, one analysis)."""
    hv = _hv()
    d = comparisons.copy()
    order = {t: i for i, t in enumerate(timepoints)}
    d["label"] = d["timepoint"].astype(str) + " · " + d["quantity"].astype(str)
    d["_o"] = d["timepoint"].map(order).fillna(len(order))
    d = d.sort_values(["_o", "quantity"])
    bars = hv.Segments(d, kdims=["ci_low", "label", "ci_high", "label"]).opts(color="#08306b")
    rows = hv.Scatter(d, kdims=["estimate"], vdims=["label", "p", "n_subjects"]).opts(
        color="#08306b", size=7, tools=["hover"]
    )
    return (hv.VLine(0).opts(color="#999999", line_dash="dotted") * bars * rows).opts(
        title=title, width=640, height=max(200, 28 * len(d) + 80), xlabel=xlabel, ylabel=""
    )
