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


def dose_dimension(doses, name: str = "dose"):
    """A categorical dose axis ordered by dose, placebo first (a Layout shares one factor range, in the order of
    the first data it meets: recordings listed by session label would put placebo last)."""
    import holoviews as hv

    values = [dose_label(d) for d in sorted({round(float(d), 6) for d in doses})]
    return hv.Dimension(name, values=values)


def recordings_per_dose(table: pd.DataFrame):
    import holoviews as hv

    counts = table.groupby("dose_mg_per_kg").size().rename("recordings").reset_index()
    counts["dose"] = counts["dose_mg_per_kg"].map(dose_label)
    return hv.Bars(counts, kdims=[dose_dimension(counts["dose_mg_per_kg"])], vdims=["recordings"]).opts(
        title="Recordings per dose", width=380, height=280, tools=["hover"], color="#3182bd"
    )


def duration_strip(table: pd.DataFrame):
    import holoviews as hv

    data = dose_order(table).assign(
        dose=lambda d: d["dose_mg_per_kg"].map(dose_label), duration_min=lambda d: d["duration_s"] / 60.0
    )
    return hv.Scatter(data, kdims=[dose_dimension(data["dose_mg_per_kg"])], vdims=["duration_min", "recording"]).opts(
        title="Recording duration", ylabel="minutes", width=380, height=280, size=8, tools=["hover"], jitter=0.3
    )


def dose_order(frame: pd.DataFrame, within: str | list[str] | None = "participant_id") -> pd.DataFrame:
    """Rows ordered by dose with placebo (0 mg/kg) first — within each participant when ``within`` is a column.

    Session labels sort alphabetically as ket025, ket050, ket100, placebo: report tables use this instead.
    Needs a ``dose_mg_per_kg`` column; a ``participant_id`` column is derived from ``recording`` keys when absent."""
    data = frame.copy()
    groups = [within] if isinstance(within, str) else list(within or [])
    if "participant_id" in groups and "participant_id" not in data and "recording" in data:
        data["_participant"] = data["recording"].astype(str).str.extract(r"(sub-[^_]+)")[0]
        groups = ["_participant" if g == "participant_id" else g for g in groups]
    groups = [g for g in groups if g in data]
    keys = groups + ["dose_mg_per_kg"] + [c for c in ("session", "recording") if c in data]
    data = data.sort_values(keys, kind="stable")
    return data.drop(columns=["_participant"], errors="ignore")


def conditions_by_dose(frame: pd.DataFrame, condition: str = "condition") -> list[str]:
    """Distinct values of ``condition`` ordered by their dose (placebo first)."""
    return frame.groupby(condition)["dose_mg_per_kg"].min().sort_values(kind="stable").index.astype(str).tolist()


def qc_heatmap(qc: pd.DataFrame, value: str = "n_bad_channels", title: str = "Bad channels per recording"):
    """Recordings as subject × condition cells; conditions ordered by dose (placebo first) when doses are known."""
    import holoviews as hv

    data = qc.assign(
        subject=qc["recording"].str.extract(r"(sub-[^_]+)")[0],
        condition=qc["recording"].str.extract(r"_(ses-[^_]+|task-[^_]+)")[0].fillna("-"),
    )
    condition = hv.Dimension("condition")
    if "dose_mg_per_kg" in data:
        condition = hv.Dimension("condition", values=conditions_by_dose(data))
    return hv.HeatMap(data, kdims=[condition, "subject"], vdims=[value, "bad_channels"]).opts(
        title=title, width=520, height=360, tools=["hover"], colorbar=True, cmap="Oranges", xrotation=30
    )


# --- EEG dynamics and dose (notebook 01, dashboards) -------------------------------------------------


def time_course(
    frame: pd.DataFrame,
    value: str,
    label: str,
    threshold: float | None = None,
    infusion_end_s: float | None = None,
    title: str = "",
):
    """Mean ± SEM over subjects of ``value`` against time_s, one curve per dose, with infusion markers.

    ``frame``: long table with columns time_s, dose_mg_per_kg, participant_id, ``value``."""
    import holoviews as hv

    stats = frame.groupby(["dose_mg_per_kg", "time_s"])[value].agg(["mean", "sem"]).reset_index()
    overlays = []
    for dose, group in stats.groupby("dose_mg_per_kg"):
        band = hv.Spread(
            (group["time_s"], group["mean"], group["sem"].fillna(0)), kdims=["time_s"], vdims=[label, "sem"]
        )
        line = hv.Curve((group["time_s"], group["mean"]), "time_s", label, label=dose_label(dose))
        color = dose_color(dose)
        overlays += [band.opts(color=color, alpha=0.2, line_width=0), line.opts(color=color, line_width=2)]
    marks = [hv.VLine(0).opts(color="black", line_dash="dashed")]
    if infusion_end_s is not None:
        marks.append(hv.VLine(infusion_end_s).opts(color="black", line_dash="dotted"))
    if threshold is not None:
        marks.append(hv.HLine(threshold).opts(color="#d62728", line_dash="dashed"))
    return hv.Overlay(overlays + marks).opts(
        title=title,
        width=620,
        height=320,
        legend_position="right",
        xlabel="time from infusion start (s)",
        tools=["hover"],
        show_grid=True,
    )


def onset_distribution(markers: pd.DataFrame):
    import holoviews as hv

    data = markers.dropna(subset=["alpha_suppression_onset_s"]).assign(
        dose=lambda d: d["dose_mg_per_kg"].map(dose_label)
    )
    return hv.Scatter(
        data, kdims=[dose_dimension(markers["dose_mg_per_kg"])], vdims=["alpha_suppression_onset_s", "participant_id"]
    ).opts(
        title="Alpha-suppression onset per subject",
        ylabel="onset (s after infusion start)",
        size=9,
        jitter=0.3,
        width=420,
        height=320,
        tools=["hover"],
        show_grid=True,
    )


# Units of the EEG measures (change from baseline keeps the unit).  Entropy and complexity measures are
# normalised or ratios: dimensionless ("a.u."), each on its own scale.
MEASURE_UNITS = {
    "occipital_alpha_db": "dB re baseline",
    "aperiodic_exponent": "unitless",
    "frontal_alpha_asymmetry": "ln µV² (right − left)",
    "alpha_peak_frequency_hz": "Hz",
    "gamma_power_uv2": "µV²",
    "alpha_power_uv2": "µV²",
    "alpha_power_rel": "fraction of power",
    "sample_entropy": "nats",
    "lzs_schartner": "ratio to shuffled",
    "lzc_schartner_st": "ratio to shuffled",
}


def measure_unit(measure: str) -> str:
    """Unit of an EEG measure's value (and of its change from baseline)."""
    if measure in MEASURE_UNITS:
        return MEASURE_UNITS[measure]
    for suffix, unit in (("_db", "dB"), ("_uv2", "µV²"), ("_hz", "Hz"), ("_s", "s")):
        if measure.endswith(suffix):
            return unit
    return "a.u."


def measure_axis_label(measure: str, what: str = "change") -> str:
    """E.g. 'lzc_median change (a.u.)', 'occipital_alpha_db change (dB re baseline)'."""
    return f"{measure} {what} ({measure_unit(measure)})"


def dose_response_plot(
    per_dose: pd.DataFrame,
    changes: pd.DataFrame,
    ylabel: str | None = None,
    title: str = "",
    measure: str | None = None,
):
    """Per-subject changes (dots), per-dose mean with CI (error bars).

    The y dimension is named after ``measure`` (or, without it, after ``ylabel``/``title``), so that in a Layout
    each measure keeps its own y-axis, range and unit label: HoloViews links the axes of plots whose dimensions
    are equal, which would put dB and entropy on one scale and flatten the smaller one."""
    import holoviews as hv

    if ylabel is None:
        ylabel = measure_axis_label(measure) if measure else "change from baseline"
    key = measure or title or ylabel
    ydim = hv.Dimension("change_" + "".join(c if c.isalnum() else "_" for c in key), label=ylabel)
    points = (
        hv.Scatter(changes, kdims=["dose_mg_per_kg"], vdims=["change", "participant_id"])
        .redim(change=ydim)
        .opts(color="#999999", size=6, alpha=0.7, jitter=0.02, tools=["hover"])
    )
    means = hv.Curve((per_dose["dose_mg_per_kg"], per_dose["mean"]), "dose_mg_per_kg", ydim).opts(
        color="#08306b", line_width=2
    )
    errors = hv.ErrorBars(
        (
            per_dose["dose_mg_per_kg"],
            per_dose["mean"],
            per_dose["mean"] - per_dose["ci_low"],
            per_dose["ci_high"] - per_dose["mean"],
        ),
        "dose_mg_per_kg",
        [ydim, "yerrneg", "yerrpos"],
    ).opts(color="#08306b")
    return (points * means * errors).opts(
        title=title, xlabel="dose (mg/kg)", ylabel=ylabel, width=380, height=300, show_grid=True
    )


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
        panels.append(
            hv.Points(group, kdims=["x", "y"], vdims=["change", "channel"]).opts(
                color="change",
                cmap="RdBu_r",
                clim=(-limit, limit),
                size=16,
                colorbar=True,
                tools=["hover"],
                title=dose_label(dose),
                width=260,
                height=240,
                xaxis=None,
                yaxis=None,
                clabel=value_label,
            )
        )
    return hv.Layout(panels).cols(4).opts(title=title)


def relation_scatter(frame: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str):
    import holoviews as hv

    overlays = [
        hv.Scatter(group, kdims=[x], vdims=[y, "participant_id"], label=dose_label(dose)).opts(
            color=dose_color(dose), size=8, tools=["hover"]
        )
        for dose, group in frame.groupby("dose_mg_per_kg")
    ]
    return hv.Overlay(overlays).opts(
        title=title, xlabel=xlabel, ylabel=ylabel, width=460, height=320, show_grid=True, legend_position="right"
    )


def condition_levels_plot(levels: pd.DataFrame, conditions: list[str], measures: list[str]):
    """Per measure: each subject's level in every condition joined by a line (the within-subject contrast),
    conditions on the x axis in analysis order; each measure its own y axis and unit."""
    import holoviews as hv

    panels = []
    for measure in measures:
        part = levels[(levels["measure"] == measure) & levels["session"].isin(conditions)]
        if part.empty:
            continue
        if part["region"].nunique() > 1:
            part = part[part["region"] == part["region"].iloc[0]]
        dim = hv.Dimension("session", label="condition", values=list(conditions))
        lines = [
            hv.Curve(
                g.set_index("session").reindex(conditions).dropna(subset=["level"]).reset_index(),
                kdims=[dim],
                vdims=["level"],
            ).opts(color="#999999", alpha=0.6, line_width=1)
            for _, g in part.groupby("participant_id")
        ]
        means = part.groupby("session")["level"].mean().reindex(conditions).dropna().reset_index()
        mean_curve = hv.Curve(means, kdims=[dim], vdims=["level"]).opts(color="#d62728", line_width=3)
        panels.append(
            hv.Overlay(lines + [mean_curve]).opts(
                title=measure.replace("_", " "),
                ylabel=measure_axis_label(measure, "level"),
                width=380,
                height=300,
                show_legend=False,
            )
        )
    return hv.Layout(panels).cols(2).opts(shared_axes=False) if panels else None


def band_dose_figure(changes: pd.DataFrame, table: pd.DataFrame, region: str = "global"):
    """Every canonical band's plateau change per dose, absolute (dB) and relative (percentage points): one panel
    per band and kind, subjects as dots, mean with t CI (``eeg_analysis.band_changes`` / ``band_dose_table``)."""
    import holoviews as hv

    plots = []
    for kind, unit in (("absolute (dB)", "dB re baseline"), ("relative (pp)", "percentage points")):
        for band in ("delta", "theta", "alpha", "beta", "gamma"):
            sel = changes[(changes["band"] == band) & (changes["kind"] == kind) & (changes["region"] == region)]
            per = table[(table["band"] == band) & (table["kind"] == kind) & (table["region"] == region)]
            if sel.empty or per.empty:
                continue
            per = per.rename(columns={"mean_change": "mean"})
            measure = f"{band}_{'abs_db' if kind.startswith('abs') else 'rel_pp'}"
            plots.append(
                dose_response_plot(
                    per, sel, ylabel=f"{band} {unit}", title=f"{band}, {kind}, {region}", measure=measure
                ).opts(width=260, height=240)
            )
    return hv.Layout(plots).cols(5)
