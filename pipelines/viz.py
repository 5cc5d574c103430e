"""Figure builders: tables and Datasets in, HoloViews objects out.  Never loads files.

``setup()`` loads the Bokeh backend with its JavaScript inlined, so an exported HTML report opens offline.
"""

from __future__ import annotations

import pandas as pd

DOSE_COLORS = {0.0: "#7f7f7f", 0.25: "#9ecae1", 0.5: "#3182bd", 1.0: "#08306b"}


def setup():
    import holoviews as hv
    import panel as pn

    # Inline resources: Panel/Bokeh embed their JS in the notebook output instead of linking a CDN.
    pn.config.inline = True
    hv.extension("bokeh", inline=True)
    return hv


def dose_color(dose: float) -> str:
    return DOSE_COLORS.get(round(float(dose), 2), "#444444")


def dose_label(dose: float) -> str:
    """Fixed-width label so that categorical axes sort in dose order."""
    return f"{float(dose):.2f} mg/kg"


def recordings_per_dose(table: pd.DataFrame):
    import holoviews as hv

    counts = table.groupby("dose_mg_per_kg").size().rename("recordings").reset_index()
    counts["dose"] = counts["dose_mg_per_kg"].map(dose_label)
    return hv.Bars(counts, kdims=["dose"], vdims=["recordings"]).opts(
        title="Recordings per dose", width=380, height=280, tools=["hover"], color="#3182bd")


def duration_strip(table: pd.DataFrame):
    import holoviews as hv

    data = table.assign(dose=table["dose_mg_per_kg"].map(dose_label),
                        duration_min=table["duration_s"] / 60.0)
    return hv.Scatter(data, kdims=["dose"], vdims=["duration_min", "recording"]).opts(
        title="Recording duration", ylabel="minutes", width=380, height=280, size=8, tools=["hover"], jitter=0.3)


def qc_heatmap(qc: pd.DataFrame, value: str = "n_bad_channels", title: str = "Bad channels per recording"):
    import holoviews as hv

    data = qc.assign(subject=qc["recording"].str.extract(r"(sub-[^_]+)")[0],
                     condition=qc["recording"].str.extract(r"_(ses-[^_]+|task-[^_]+)")[0].fillna("-"))
    return hv.HeatMap(data, kdims=["condition", "subject"], vdims=[value, "bad_channels"]).opts(
        title=title, width=520, height=360, tools=["hover"], colorbar=True, cmap="Oranges", xrotation=30)


# --- EEG dynamics and dose (notebook 01, dashboards) -------------------------------------------------

def time_course(frame: pd.DataFrame, value: str, label: str, threshold: float | None = None,
                infusion_end_s: float | None = None, title: str = ""):
    """Mean ± SEM over subjects of ``value`` against time_s, one curve per dose, with infusion markers.

    ``frame``: long table with columns time_s, dose_mg_per_kg, participant_id, ``value``."""
    import holoviews as hv

    stats = frame.groupby(["dose_mg_per_kg", "time_s"])[value].agg(["mean", "sem"]).reset_index()
    overlays = []
    for dose, group in stats.groupby("dose_mg_per_kg"):
        band = hv.Spread((group["time_s"], group["mean"], group["sem"].fillna(0)), kdims=["time_s"], vdims=[label, "sem"])
        line = hv.Curve((group["time_s"], group["mean"]), "time_s", label, label=dose_label(dose))
        color = dose_color(dose)
        overlays += [band.opts(color=color, alpha=0.2, line_width=0), line.opts(color=color, line_width=2)]
    marks = [hv.VLine(0).opts(color="black", line_dash="dashed")]
    if infusion_end_s is not None:
        marks.append(hv.VLine(infusion_end_s).opts(color="black", line_dash="dotted"))
    if threshold is not None:
        marks.append(hv.HLine(threshold).opts(color="#d62728", line_dash="dashed"))
    return hv.Overlay(overlays + marks).opts(
        title=title, width=620, height=320, legend_position="right", xlabel="time from infusion start (s)",
        tools=["hover"], show_grid=True)


def onset_distribution(markers: pd.DataFrame):
    import holoviews as hv

    data = markers.dropna(subset=["alpha_suppression_onset_s"]).assign(dose=lambda d: d["dose_mg_per_kg"].map(dose_label))
    return hv.Scatter(data, kdims=["dose"], vdims=["alpha_suppression_onset_s", "participant_id"]).opts(
        title="Alpha-suppression onset per subject", ylabel="onset (s after infusion start)", size=9, jitter=0.3,
        width=420, height=320, tools=["hover"], show_grid=True)


def dose_response_plot(per_dose: pd.DataFrame, changes: pd.DataFrame, ylabel: str, title: str):
    """Per-subject changes (dots), per-dose mean with CI (error bars)."""
    import holoviews as hv

    points = hv.Scatter(changes, kdims=["dose_mg_per_kg"], vdims=["change", "participant_id"]).opts(
        color="#999999", size=6, alpha=0.7, jitter=0.02, tools=["hover"])
    means = hv.Curve(per_dose, "dose_mg_per_kg", "mean").opts(color="#08306b", line_width=2)
    errors = hv.ErrorBars((per_dose["dose_mg_per_kg"], per_dose["mean"], per_dose["mean"] - per_dose["ci_low"],
                           per_dose["ci_high"] - per_dose["mean"]), vdims=["y", "yerrneg", "yerrpos"]).opts(color="#08306b")
    return (points * means * errors).opts(title=title, xlabel="dose (mg/kg)", ylabel=ylabel, width=380, height=300, show_grid=True)


def topomap_points(topo: pd.DataFrame, positions: dict, value_label: str, title: str):
    """Channel positions (x, y from the montage) coloured by value, one panel per dose (a point topomap:
    honest about where electrodes are, no interpolation between them)."""
    import holoviews as hv

    data = topo.copy()
    data["x"] = [positions[c][0] if c in positions else float("nan") for c in data["channel"]]
    data["y"] = [positions[c][1] if c in positions else float("nan") for c in data["channel"]]
    data = data.dropna(subset=["x", "y"])
    limit = float(abs(data["change"]).max() or 1.0)
    panels = []
    for dose, group in data.groupby("dose_mg_per_kg"):
        panels.append(hv.Points(group, kdims=["x", "y"], vdims=["change", "channel"]).opts(
            color="change", cmap="RdBu_r", clim=(-limit, limit), size=16, colorbar=True, tools=["hover"],
            title=dose_label(dose), width=260, height=240, xaxis=None, yaxis=None, clabel=value_label))
    return hv.Layout(panels).cols(4).opts(title=title)


def relation_scatter(frame: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str):
    import holoviews as hv

    overlays = [hv.Scatter(group, kdims=[x], vdims=[y, "participant_id"], label=dose_label(dose)).opts(
        color=dose_color(dose), size=8, tools=["hover"]) for dose, group in frame.groupby("dose_mg_per_kg")]
    return hv.Overlay(overlays).opts(title=title, xlabel=xlabel, ylabel=ylabel, width=460, height=320, show_grid=True,
                                     legend_position="right")
