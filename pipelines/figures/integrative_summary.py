"""Figures of the integrative notebook (04): tables in, HoloViews objects out. Never loads files.

Inputs are the subject × dose table and the tidy result tables of :mod:`pipelines.analyses.integrative_summary`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.analyses.integrative_summary import DOSE, SUBJECT, _label
from pipelines.figures import common as viz

__all__ = [
    "coefficient_forest",
    "correlation_heatmap",
    "depth_entropy_by_dose",
    "dose_adjusted_within",
    "hypothesis_forest",
    "relation_by_dose",
    "stratum_changes",
    "subject_means_scatter",
]


def _hv():
    import holoviews as hv

    return hv


def relation_by_dose(table: pd.DataFrame, x: str, y: str, title: str = ""):
    """Subject-sessions with both values (placebo included when measured): ``y`` against ``x``, coloured by dose, one grey line per subject
    (the within-subject path across doses that a repeated-measures correlation reads)."""
    hv = _hv()
    data = table.dropna(subset=[x, y]).sort_values([SUBJECT, DOSE])
    paths = [hv.Curve(group, x, y).opts(color="#bbbbbb", line_width=1) for _, group in data.groupby(SUBJECT)]
    points = [
        hv.Scatter(
            group.assign(dose=viz.dose_label(dose)), kdims=[x], vdims=[y, SUBJECT, "dose"], label=viz.dose_label(dose)
        ).opts(color=viz.dose_color(dose), size=8, tools=["hover"])
        for dose, group in data.groupby(DOSE)
    ]
    return hv.Overlay(paths + points).opts(
        title=title or f"{_label(y)} vs {_label(x)}",
        xlabel=_label(x),
        ylabel=_label(y),
        width=540,
        height=340,
        legend_position="right",
    )


def subject_means_scatter(table: pd.DataFrame, x: str, y: str, title: str = ""):
    """Each subject's mean over the sessions with both values (placebo included when measured; the
    between-subject view, as H1c and H2c compute it)."""
    hv = _hv()
    means = table.dropna(subset=[x, y]).groupby(SUBJECT)[[x, y]].mean().reset_index()
    return hv.Scatter(means, kdims=[x], vdims=[y, SUBJECT]).opts(
        title=title or "Subject means over their sessions",
        xlabel=_label(x),
        ylabel=_label(y),
        size=9,
        color="#3182bd",
        tools=["hover"],
        width=400,
        height=340,
    )


def dose_adjusted_within(table: pd.DataFrame, x: str, y: str, title: str = ""):
    """The within-subject, dose-adjusted view (H1a): for every session with both values, ``x`` and ``y`` each minus the mean
    of all subjects at that dose, then minus the subject's own mean of that — what is left once the dose
    curve and the subject's level are removed (the period is not removed here; H1a's r also adjusts it)."""
    hv = _hv()
    data = table.dropna(subset=[x, y]).copy()
    for column in (x, y):
        adjusted = data[column] - data.groupby(DOSE)[column].transform("mean")
        data[f"{column}_within"] = adjusted - adjusted.groupby(data[SUBJECT]).transform("mean")
    points = [
        hv.Scatter(
            group.assign(dose=viz.dose_label(dose)),
            kdims=[f"{x}_within"],
            vdims=[f"{y}_within", SUBJECT, "dose"],
            label=viz.dose_label(dose),
        ).opts(color=viz.dose_color(dose), size=8, tools=["hover"])
        for dose, group in data.groupby(DOSE)
    ]
    return hv.Overlay(points).opts(
        title=title or "Within subjects, dose-adjusted",
        xlabel=f"{_label(x)} (dose- and subject-centred)",
        ylabel=f"{_label(y)} (dose- and subject-centred)",
        width=460,
        height=340,
        legend_position="right",
    )


def stratum_changes(table: pd.DataFrame, analytes: list[str]):
    """Per subject, the mean ln(24 h / baseline) over active sessions and over placebo, by stratum
    (points; bars: means), one panel per analyte; the dashed line is no change."""
    hv = _hv()
    panels = []
    for analyte in analytes:
        column = f"{analyte.lower()}_ln_change"
        if column not in table.columns:
            continue
        data = table.dropna(subset=[column]).assign(arm=lambda d: np.where(d["active"], "ketamine", "placebo"))
        data = data[data["subject_stratum"].isin(["inflamed", "non-inflamed"])]
        per_subject = data.groupby([SUBJECT, "subject_stratum", "arm"])[column].mean().reset_index()
        per_subject["group"] = per_subject["subject_stratum"] + " · " + per_subject["arm"]
        order = [f"{s} · {a}" for s in ("non-inflamed", "inflamed") for a in ("placebo", "ketamine")]
        means = per_subject.groupby("group")[column].mean().reindex(order).reset_index()
        bars = hv.Bars(means, kdims=[hv.Dimension("group", values=order)], vdims=[column]).opts(
            color="#c6dbef", line_color="#6baed6"
        )
        points = hv.Scatter(per_subject, kdims=[hv.Dimension("group", values=order)], vdims=[column, SUBJECT]).opts(
            color="#08306b", size=7, jitter=0.3, tools=["hover"]
        )
        panels.append(
            (bars * points * hv.HLine(0).opts(color="black", line_dash="dashed")).opts(
                title=f"{analyte}: ln(24h/baseline) per subject",
                ylabel="ln change",
                xlabel="",
                width=440,
                height=320,
                xrotation=20,
            )
        )
    return hv.Layout(panels).cols(2)


def depth_entropy_by_dose(table: pd.DataFrame):
    """Per-dose mean ± SEM of alpha-suppression depth and of the entropy change (two panels): depth keeps
    deepening while entropy follows an inverted U."""
    hv = _hv()
    panels = []
    for column in ("alpha_suppression_depth_db", "entropy_change"):
        stats = table.groupby(DOSE)[column].agg(["mean", "sem"]).reset_index()
        curve = hv.Curve(stats, DOSE, "mean").opts(color="#3182bd", line_width=2)
        bars = hv.ErrorBars(stats, DOSE, ["mean", "sem"]).opts(color="#3182bd")
        subjects = hv.Overlay(
            [
                hv.Curve(g.sort_values(DOSE), DOSE, column).opts(color="#dddddd", line_width=1)
                for _, g in table.groupby(SUBJECT)
            ]
        )
        panels.append(
            (subjects * curve * bars).opts(
                title=f"{_label(column)} by dose", xlabel="dose (mg/kg)", ylabel=_label(column), width=420, height=300
            )
        )
    return hv.Layout(panels).opts(shared_axes=False).cols(2)


def hypothesis_forest(
    hypotheses: pd.DataFrame,
    effects: tuple[str, ...] = ("r_rm", "partial r_rm", "r between subjects", "Spearman rho", "partial rho"),
):
    """Correlation-type hypothesis rows (effects on the −1…1 scale): estimate and 95 % CI per test."""
    hv = _hv()
    data = hypotheses[hypotheses["effect"].isin(effects)].reset_index(drop=True)
    labels = list(data["test"])[::-1]
    data = data.assign(label=data["test"])
    dim = hv.Dimension("label", label="test", values=labels)
    segments = hv.Segments(data, kdims=["ci_low", dim, "ci_high", dim]).opts(color="#3182bd", line_width=3)
    points = hv.Scatter(data, kdims=["estimate"], vdims=[dim, "p", "p_fdr", "verdict"]).opts(
        color="#08306b", size=9, tools=["hover"]
    )
    return (segments * points * hv.VLine(0).opts(color="black", line_dash="dashed")).opts(
        title="Correlation tests (95% CI)",
        xlabel="correlation",
        ylabel="",
        xlim=(-1, 1),
        width=620,
        height=60 + 40 * len(labels),
    )


def coefficient_forest(model: pd.DataFrame):
    """Standardised coefficients of the combined model with 95 % CIs (labels carry the VIF)."""
    hv = _hv()
    data = model.assign(label=[f"{_label(p)} (VIF {v:.1f})" for p, v in zip(model["predictor"], model["vif"])])
    labels = list(data["label"])[::-1]
    dim = hv.Dimension("label", label="predictor", values=labels)
    segments = hv.Segments(data, kdims=["ci_low", dim, "ci_high", dim]).opts(color="#756bb1", line_width=3)
    points = hv.Scatter(data, kdims=["estimate"], vdims=[dim, "p"]).opts(color="#3f007d", size=9, tools=["hover"])
    return (segments * points * hv.VLine(0).opts(color="black", line_dash="dashed")).opts(
        title=f"Combined model, standardised β ({_label(model['outcome'].iloc[0])})",
        xlabel="SD of improvement per SD of predictor",
        ylabel="",
        width=680,
        height=60 + 40 * len(labels),
    )


def correlation_heatmap(correlations: pd.DataFrame, variables: list[str], title: str = ""):
    """Symmetric heatmap of a pairwise correlation table (each pair once); ``*`` marks pairs significant
    after BH-FDR; hover shows the CI, p and p_FDR."""
    hv = _hv()
    both = pd.concat([correlations, correlations.rename(columns={"x": "y", "y": "x"})], ignore_index=True)
    both["text"] = [
        f"{e:.2f}{'*' if s else ''}" if np.isfinite(e) else "–"  # undefined (e.g. between r with dose)
        for e, s in zip(both["estimate"], both["significant_fdr"])
    ]
    both["ci"] = [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(both["ci_low"], both["ci_high"])]
    names = [_label(v) for v in variables]
    both["x_label"], both["y_label"] = both["x"].map(_label), both["y"].map(_label)
    x_dim = hv.Dimension("x_label", label="variable", values=names)
    y_dim = hv.Dimension("y_label", label="variable ", values=names[::-1])
    vdims = ["estimate", "ci", "p", "p_fdr", "n"]
    heat = hv.HeatMap(both, kdims=[x_dim, y_dim], vdims=vdims).opts(
        cmap="RdBu_r",
        clim=(-1, 1),
        colorbar=True,
        tools=["hover"],
        width=780,
        height=680,
        xrotation=45,
        xlabel="",
        ylabel="",
        title=title or "Cross-branch Spearman correlations (active sessions; * BH-FDR)",
    )
    labels = hv.Labels(both, kdims=[x_dim, y_dim], vdims=["text"]).opts(text_font_size="8pt", text_color="black")
    return heat * labels
