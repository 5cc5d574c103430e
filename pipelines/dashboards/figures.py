"""Dashboard-only figure builders: tables in, HoloViews objects out (the shared ones live in pipelines.figures.common).

Like pipelines.figures.common, nothing here loads files or computes statistics: a builder draws what it is given.
The selected subject is drawn in one colour everywhere (SUBJECT_COLOR) so the linked views read together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.figures import common as viz

SUBJECT_COLOR = "#d62728"
GROUP_COLOR = "#9e9e9e"


def subject_time_course(
    group: pd.DataFrame,
    subject: pd.DataFrame,
    label: str,
    title: str,
    *,
    dose: float,
    threshold: float | None = None,
    infusion_end_s: float | None = None,
    onset_s: float | None = None,
    width: int = 620,
    height: int = 300,
):
    """Group mean ± SEM per dose (pipelines.figures.common.time_course) with one subject's recording on top.

    ``group``: long table (time_s, dose_mg_per_kg, participant_id, value); ``subject``: time_s, value, smoothed."""
    import holoviews as hv

    base = viz.time_course(group, "value", label, threshold=threshold, infusion_end_s=infusion_end_s)
    raw = hv.Curve(subject, "time_s", ["value"], label="subject (window)").opts(
        color=SUBJECT_COLOR, alpha=0.35, line_width=1
    )
    smooth = hv.Curve(subject, "time_s", ["smoothed"], label=f"subject at {viz.dose_label(dose)}").opts(
        color=SUBJECT_COLOR, line_width=3
    )
    smooth = smooth.redim(smoothed=label)
    raw = raw.redim(value=label)
    layers = [base, raw, smooth]
    if onset_s is not None and np.isfinite(onset_s):
        layers.append(hv.VLine(onset_s).opts(color=SUBJECT_COLOR, line_dash="dotdash", line_width=2))
    return (
        hv.Overlay(layers)
        .collate()
        .opts(
            title=title,
            width=width,
            height=height,
            legend_position="right",
            xlabel="time from infusion start (s)",
            show_grid=True,
            tools=["hover"],
        )
    )


def topomap(
    values: pd.DataFrame,
    positions: dict,
    label: str,
    title: str,
    clim: float | None = None,
    width: int = 300,
    height: int = 280,
):
    """Channels at their montage positions coloured by ``change`` (a point topomap, no interpolation)."""
    import holoviews as hv

    data = values.copy()
    data["x"] = [positions[c][0] if c in positions else np.nan for c in data["channel"]]
    data["y"] = [positions[c][1] if c in positions else np.nan for c in data["channel"]]
    data = data.dropna(subset=["x", "y"])
    finite = data["change"].abs().replace([np.inf], np.nan).dropna()
    limit = clim or float(finite.max()) if len(finite) else 1.0
    limit = limit if np.isfinite(limit) and limit > 0 else 1.0
    return hv.Points(data, kdims=["x", "y"], vdims=["change", "channel"]).opts(
        color="change",
        cmap="RdBu_r",
        clim=(-limit, limit),
        size=18,
        colorbar=True,
        tools=["hover"],
        title=title,
        width=width,
        height=height,
        xaxis=None,
        yaxis=None,
        clabel=label,
        padding=0.15,
        line_color="black",
    )


def dose_response_with_subject(
    per_dose: pd.DataFrame, changes: pd.DataFrame, participant_id: str, dose: float, ylabel: str, title: str
):
    """pipelines.figures.common.dose_response_plot (every subject, per-dose mean with CI) with one subject's path on top."""
    import holoviews as hv

    base = viz.dose_response_plot(per_dose, changes, ylabel, title)
    mine = changes[changes["participant_id"] == participant_id].sort_values("dose_mg_per_kg")
    path = hv.Curve(mine, "dose_mg_per_kg", "change").opts(color=SUBJECT_COLOR, line_width=2, line_dash="dashed")
    points = hv.Scatter(mine, "dose_mg_per_kg", ["change", "participant_id"]).opts(color=SUBJECT_COLOR, size=9)
    chosen = hv.Scatter(
        mine[np.isclose(mine["dose_mg_per_kg"], dose)], "dose_mg_per_kg", ["change", "participant_id"]
    ).opts(color=SUBJECT_COLOR, size=16, marker="circle", fill_alpha=0, line_width=2)
    return (base * path * points * chosen).opts(title=title, width=420, height=300, show_grid=True)


def selection_scatter(frame: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str):
    """One point per subject (participant_id column); tap a point to select that subject."""
    import holoviews as hv

    return hv.Scatter(frame, kdims=[x], vdims=[y, "participant_id"]).opts(
        size=11,
        color="#3182bd",
        tools=["tap", "hover"],
        nonselection_alpha=0.35,
        selection_color="#3182bd",
        title=title,
        xlabel=xlabel,
        ylabel=ylabel,
        width=420,
        height=300,
        show_grid=True,
        active_tools=["tap"],
    )


def highlight(frame: pd.DataFrame, x: str, y: str):
    import holoviews as hv

    return hv.Scatter(frame, kdims=[x], vdims=[y, "participant_id"]).opts(
        size=20, color=SUBJECT_COLOR, fill_alpha=0, line_width=3, tools=[]
    )


def profile_bars(profile: pd.DataFrame, title: str, width: int = 420, height: int = 440):
    """Horizontal bars of one subject's scores (``value``) with the dose group's mean (``group_mean``) as
    diamonds; ``profile`` has columns score (readable label), value, group_mean, in display order."""
    import holoviews as hv

    if profile.empty or profile["value"].isna().all():
        return hv.Text(0.5, 0.5, "no peak-experience ratings\nfor this session").opts(
            title=title, width=width, height=height, xaxis=None, yaxis=None, text_font_size="12pt"
        )
    order = list(profile["score"])[::-1]
    bars = (
        hv.Bars(profile, kdims=["score"], vdims=["value"])
        .redim.values(score=order)
        .opts(invert_axes=True, color=SUBJECT_COLOR, alpha=0.75, tools=["hover"])
    )
    means = (
        hv.Scatter(profile, kdims=["score"], vdims=["group_mean"])
        .redim.values(score=order)
        .opts(invert_axes=True, color="black", marker="diamond", size=9, tools=["hover"])
    )
    return (bars * means).opts(
        title=title, width=width, height=height, xlim=(0, 100), xlabel="score (0–100)", ylabel="", show_grid=True
    )


def mood_trajectory(
    subject_rows: pd.DataFrame, group: pd.DataFrame, timepoints: Sequence[str], score: str, dose: float, title: str
):
    """The subject's mood score at every time point of each session (faint; the selected dose bold) with the
    dose group's mean and 95 % CI; time points evenly spaced (categorical, not to scale)."""
    import holoviews as hv

    position = {tp: i for i, tp in enumerate(timepoints)}
    layers = []
    g = group[np.isclose(group["dose_mg_per_kg"], dose)].copy()
    g["t"] = g["timepoint"].map(position)
    g = g.dropna(subset=["t"]).sort_values("t")
    if len(g):
        layers.append(
            hv.Area((g["t"], g["ci_low"], g["ci_high"]), "t", ["ci_low", "ci_high"], label="group 95% CI").opts(
                color=GROUP_COLOR, alpha=0.3, line_width=0
            )
        )
        layers.append(
            hv.Curve((g["t"], g["mean"]), "t", score, label=f"group mean {viz.dose_label(dose)}").opts(
                color="black", line_width=2
            )
        )
    for session_dose, rows in subject_rows.groupby("dose_mg_per_kg"):
        rows = rows.assign(t=rows["timepoint"].map(position)).dropna(subset=["t"]).sort_values("t")
        chosen = np.isclose(session_dose, dose)
        layers.append(
            hv.Curve((rows["t"], rows[score]), "t", score, label=f"subject {viz.dose_label(session_dose)}").opts(
                color=SUBJECT_COLOR if chosen else viz.dose_color(session_dose),
                line_width=3 if chosen else 1.5,
                alpha=1.0 if chosen else 0.6,
            )
        )
    if not layers:
        return hv.Text(0.5, 0.5, "no mood ratings").opts(title=title, width=460, height=300)
    ticks = [(i, tp) for tp, i in position.items()]
    return hv.Overlay(layers).opts(
        title=title,
        width=460,
        height=300,
        xticks=ticks,
        xlabel="time point",
        ylabel=score,
        legend_position="right",
        show_grid=True,
    )


def cytokine_strip(changes: pd.DataFrame, participant_id: str, analytes: Sequence[str], ylabel: str, title: str):
    """Every subject's change per analyte at one dose (grey), the selected subject in colour, zero line."""
    import holoviews as hv

    data = changes[changes["analyte"].isin(analytes)]
    if data.empty:
        return hv.Text(0.5, 0.5, "no cytokine data").opts(title=title, width=460, height=300)
    others = (
        hv.Scatter(data, "analyte", ["ln_change", "participant_id"])
        .redim.values(analyte=list(analytes))
        .opts(color=GROUP_COLOR, size=7, jitter=0.3, alpha=0.8, tools=["hover"])
    )
    mine = (
        hv.Scatter(data[data["participant_id"] == participant_id], "analyte", ["ln_change", "participant_id"])
        .redim.values(analyte=list(analytes))
        .opts(color=SUBJECT_COLOR, size=12, marker="diamond", tools=["hover"])
    )
    zero = hv.HLine(0).opts(color="black", line_dash="dashed", line_width=1)
    return (others * mine * zero).opts(
        title=title, width=460, height=300, ylabel=ylabel, xlabel="", show_grid=True, xrotation=30
    )


def live_trace(
    frame: pd.DataFrame,
    label: str,
    *,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    color: str = "#08306b",
    threshold: float | None = None,
    infusion_end_s: float | None = None,
    onset_s: float | None = None,
    title: str = "",
    height: int = 280,
):
    """What the titration monitor draws each tick: the windows received so far (raw, faint; smoothed, bold),
    infusion start/end markers, the threshold and, once raised, the onset."""
    import holoviews as hv

    raw = hv.Curve(frame, "time_s", "value").opts(color=color, alpha=0.3, line_width=1)
    smooth = hv.Curve(frame, "time_s", "smoothed").opts(color=color, line_width=3)
    layers = [raw, smooth, hv.VLine(0).opts(color="black", line_dash="dashed")]
    if infusion_end_s is not None:
        layers.append(hv.VLine(infusion_end_s).opts(color="black", line_dash="dotted"))
    if threshold is not None:
        layers.append(hv.HLine(threshold).opts(color=SUBJECT_COLOR, line_dash="dashed", line_width=2))
    # Always drawn (off-screen until there is an onset): a live DynamicMap keeps the layers of its first frame.
    shown = onset_s is not None and np.isfinite(onset_s)
    layers.append(
        hv.VLine(onset_s if shown else xlim[0] - 10 * (xlim[1] - xlim[0])).opts(color=SUBJECT_COLOR, line_width=2)
    )
    return hv.Overlay(layers).opts(
        title=title,
        xlim=xlim,
        ylim=ylim,
        ylabel=label,
        xlabel="time from infusion start (s)",
        responsive=True,
        height=height,
        show_grid=True,
        toolbar=None,
    )
