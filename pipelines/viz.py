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
