"""Cytokine figures (notebook 03): tables from :mod:`pipelines.analyses.cytokines` in, HoloViews out.

Never loads files or computes statistics; every builder takes the tidy table its docstring names.
Changes are natural-log ratios (ln(post/baseline)) or absolute differences (post − baseline), as the tables'
``change_scale`` says (the axis label follows it); 0 is no change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.figures.common import dose_color

STRATUM_COLORS = {
    "inflamed": "#d62728",
    "non-inflamed": "#1f77b4",
    "all": "#555555",
    "undetermined": "#bbbbbb",
    "discordant": "#9467bd",
    "unassigned": "#bbbbbb",
    "excluded": "#8c564b",
}
CENSORING_COLORS = {"observed": "#4c78a8", "below": "#f58518", "above": "#e45756", "missing": "#cccccc"}
STRATEGY_COLORS = {"lloq_half": "#4c78a8", "lloq_sqrt2": "#72b7b2", "censored_mle": "#e45756"}
POOLED_COLOR = "#000000"
LN_LABEL = "ln(post / baseline)"
DIFFERENCE_LABEL = "post − baseline (analyte unit)"


def change_label(table: pd.DataFrame) -> str:
    """Axis label of a table's change: ln ratio unless its ``change_scale`` column says ``difference``."""
    if "change_scale" in table.columns and len(table) and table["change_scale"].iloc[0] == "difference":
        return DIFFERENCE_LABEL
    return LN_LABEL


def _change_column(table: pd.DataFrame) -> str:
    return "change" if "change" in table.columns else "ln_change"


def _hv():
    import holoviews as hv

    return hv


def _group_order(groups) -> list[str]:
    """Dose labels sort as numbers ("0.00 mg/kg" first); anything else (the pooled group) last."""

    def key(label):
        try:
            return (0, float(str(label).split()[0]))
        except ValueError:
            return (1, 0.0)

    return sorted(dict.fromkeys(groups), key=key)


def _group_color(group: str) -> str:
    try:
        return dose_color(float(str(group).split()[0]))
    except ValueError:
        return POOLED_COLOR


def _legend_panel(entries: Sequence[tuple[str, str, str]], width: int, height: int):
    """A panel holding only a legend (label, colour, marker per entry), the size of its neighbours, so a
    grid keeps equal columns and no legend hides data."""
    hv = _hv()
    items = [
        hv.Scatter(([np.nan], [np.nan]), label=label).opts(color=color, marker=marker, size=9)
        for label, color, marker in entries
    ]
    return hv.Overlay(items).opts(
        width=width,
        height=height,
        xaxis=None,
        yaxis=None,
        show_frame=False,
        show_legend=True,
        legend_position="top_left",
        toolbar=None,
        title="",
    )


def _stratum_entries(strata) -> list[tuple[str, str, str]]:
    return [(s, STRATUM_COLORS.get(s, "#888888"), "circle") for s in strata]


# ------------------------------------------------------------------------------------- censoring
def censoring_bars(censoring: pd.DataFrame, title: str = "Censored values per analyte and time point"):
    """Stacked counts of observed / below LLOQ / above ULOQ / missing (``cytokine_analysis.censoring_table``)."""
    hv = _hv()
    levels = [c for c in CENSORING_COLORS if f"n_{c}" in censoring.columns]
    long = censoring.melt(
        id_vars=["analyte", "timepoint"],
        value_vars=[f"n_{c}" for c in levels],
        var_name="censoring",
        value_name="count",
    )
    long["censoring"] = long["censoring"].str.removeprefix("n_")
    long["analyte · time"] = long["analyte"] + " · " + long["timepoint"]
    bars = hv.Bars(long, kdims=["analyte · time", "censoring"], vdims=["count"])
    return bars.opts(
        stacked=True,
        title=title,
        width=760,
        height=320,
        xrotation=45,
        tools=["hover"],
        cmap=[CENSORING_COLORS[c] for c in levels],
        legend_position="right",
        ylabel="values",
    )


# -------------------------------------------------------------------------------------- spaghetti
def spaghetti(
    trajectories: pd.DataFrame,
    analyte: str,
    *,
    baseline: str = "baseline",
    post: str = "24h",
    width: int = 320,
    height: int = 260,
):
    """One panel: each subject-session's value at ``baseline`` and ``post`` joined by a line, per dose
    group side by side, coloured by stratum, log y axis; censored values (substituted) are crosses.
    ``trajectories``: ``cytokine_analysis.trajectories``."""
    hv = _hv()
    data = trajectories[trajectories["analyte"] == analyte]
    groups = _group_order(data["group"])
    position = {g: 3 * i for i, g in enumerate(groups)}
    data = data.assign(x=data["group"].map(position) + (data["timepoint"] == post).astype(float))
    wide = data.pivot_table(
        index=["participant_id", "session_id", "group", "stratum"], columns="timepoint", values="value", aggfunc="first"
    ).reset_index()
    overlays = []
    for stratum, part in wide.groupby("stratum", sort=True):
        color = STRATUM_COLORS.get(stratum, "#888888")
        part = part.dropna(subset=[baseline, post])
        x0 = part["group"].map(position).to_numpy(float)
        paths = [np.array([[x, b], [x + 1, a]]) for x, b, a in zip(x0, part[baseline], part[post])]
        overlays.append(hv.Path(paths).opts(color=color, alpha=0.55, line_width=1.3))
        dots = data[data["stratum"] == stratum]
        overlays.append(
            hv.Scatter(
                dots, kdims=["x"], vdims=["value", "participant_id", "session_id", "timepoint"], label=stratum
            ).opts(color=color, size=3, alpha=0.7, tools=["hover"])
        )
    censored = data[data["censoring"] != "observed"]
    overlays.append(
        hv.Scatter(
            censored,
            kdims=["x"],
            vdims=["value", "participant_id", "session_id", "censoring"],
            label="censored (substituted)",
        ).opts(marker="x", size=9, color="black", tools=["hover"])
    )
    unit = data["unit"].iloc[0] if len(data) else ""
    ticks = [(position[g] + 0.5, g.replace(" mg/kg", "")) for g in groups]
    return hv.Overlay(overlays).opts(
        title=f"{analyte} ({unit})",
        logy=True,
        xticks=ticks,
        xlabel=f"dose (mg/kg): {baseline} → {post}",
        ylabel=unit,
        width=width,
        height=height,
        show_legend=False,
        xlim=(-0.5, 3 * len(groups) - 1.5),
    )


def spaghetti_grid(
    trajectories: pd.DataFrame, analytes: Sequence[str], *, baseline: str = "baseline", post: str = "24h", cols: int = 3
):
    """:func:`spaghetti` for each analyte; the legend has a panel of its own."""
    hv = _hv()
    panels = [spaghetti(trajectories, a, baseline=baseline, post=post) for a in analytes]
    strata = sorted(trajectories.loc[trajectories["analyte"].isin(list(analytes)), "stratum"].unique())
    panels.append(_legend_panel([*_stratum_entries(strata), ("censored (substituted)", "black", "x")], 320, 260))
    # Units differ between analytes: no shared y axis.
    return hv.Layout(panels).cols(cols).opts(shared_axes=False, title=f"Each subject-session, {baseline} → {post}")


# ---------------------------------------------------------------------------------- paired change
def paired_change_panel(
    changes: pd.DataFrame, summary: pd.DataFrame, analyte: str, *, seed: int = 0, width: int = 330, height: int = 270
):
    """One panel: every subject-session's ln-change (dots, by dose group and stratum) with the group
    mean and 95% CI (bars; the pooled active group's mean is over subjects).
    ``changes``: ``cytokine_analysis.change_table``; ``summary``: ``cytokine_analysis.paired_changes``."""
    hv = _hv()
    strata = ["inflamed", "non-inflamed"]
    points = changes[(changes["analyte"] == analyte) & changes["stratum"].isin(strata)]
    rows = summary[(summary["analyte"] == analyte) & summary["stratum"].isin(strata)]
    groups = _group_order(list(points["group"]) + list(rows["group"]))
    position = {g: 3 * i for i, g in enumerate(groups)}
    offset = {s: 0.5 * (2 * j - 1) * 0.6 for j, s in enumerate(strata)}
    jitter = np.random.default_rng(seed).uniform(-0.15, 0.15, len(points))
    points = points.assign(x=points["group"].map(position) + points["stratum"].map(offset) + jitter)
    rows = rows.assign(x=rows["group"].map(position) + rows["stratum"].map(offset))
    overlays = [hv.HLine(0).opts(color="#888888", line_dash="dashed", line_width=1)]
    for stratum in strata:
        color = STRATUM_COLORS[stratum]
        p = points[points["stratum"] == stratum]
        overlays.append(
            hv.Scatter(
                p, kdims=["x"], vdims=[_change_column(p), "participant_id", "session_id", "group"], label=stratum
            ).opts(color=color, alpha=0.45, size=5, tools=["hover"])
        )
        r = rows[rows["stratum"] == stratum]
        overlays.append(hv.Segments(r, kdims=["x", "ci_low", "x", "ci_high"]).opts(color=color, line_width=2.5))
        overlays.append(
            hv.Scatter(r, kdims=["x"], vdims=["estimate", "group", "n", "ci_low", "ci_high", "p", "p_fdr"]).opts(
                color=color, marker="diamond", size=11, line_color="black", tools=["hover"]
            )
        )
    ticks = [(position[g], g.replace(" mg/kg", "") if g.endswith("mg/kg") else "pooled") for g in groups]
    return hv.Overlay(overlays).opts(
        title=analyte,
        xticks=ticks,
        xlabel="dose (mg/kg); pooled = all active doses",
        ylabel=change_label(summary),
        width=width,
        height=height,
        show_legend=False,
        xlim=(-1.2, 3 * (len(groups) - 1) + 1.2),
    )


def paired_change_grid(changes: pd.DataFrame, summary: pd.DataFrame, analytes: Sequence[str], cols: int = 3):
    """:func:`paired_change_panel` for each analyte; the legend has a panel of its own."""
    hv = _hv()
    panels = [paired_change_panel(changes, summary, a) for a in analytes]
    panels.append(
        _legend_panel(
            [*_stratum_entries(["inflamed", "non-inflamed"]), ("mean, 95% CI", "#777777", "diamond")], 330, 270
        )
    )
    return (
        hv.Layout(panels)
        .cols(cols)
        .opts(title="Paired change by stratum (dots: subject-sessions; diamonds: mean, 95% CI)")
    )


# ----------------------------------------------------------------------------------------- forest
def _forest(
    rows: pd.DataFrame,
    labels: list[str],
    colors: list[str],
    *,
    title: str,
    xlabel: str,
    marks: pd.DataFrame | None = None,
    width: int = 430,
    hover: Sequence[str] = (),
):
    """Horizontal estimates with CI segments; row i at y = -i (top to bottom as given)."""
    hv = _hv()
    data = rows.assign(y=-np.arange(len(rows), dtype=float), label=labels, color=colors)
    extra = [c for c in hover if c in data.columns and c not in ("estimate", "label")]
    overlays = [
        hv.VLine(0).opts(color="#888888", line_dash="dashed", line_width=1),
        hv.Segments(data, kdims=["ci_low", "y", "ci_high", "y"], vdims=["color"]).opts(color="color", line_width=2),
        hv.Scatter(data, kdims=["estimate"], vdims=["y", "label", "color", *extra]).opts(
            color="color", size=8, tools=["hover"]
        ),
    ]
    if marks is not None and len(marks):
        overlays.append(
            hv.Scatter(marks, kdims=["value"], vdims=["y"], label="planted (truth)").opts(
                marker="x", color="#d62728", size=10, line_width=2
            )
        )
    ticks = list(zip(data["y"], data["label"]))
    return hv.Overlay(overlays).opts(
        title=title,
        yticks=ticks,
        xlabel=xlabel,
        ylabel="",
        width=width,
        height=70 + 16 * len(data),
        show_legend=marks is not None,
        legend_position="bottom_right",
        ylim=(-len(data) + 0.4, 0.6),
    )


def effect_forest(
    summary: pd.DataFrame, strata: Sequence[str] = ("inflamed", "non-inflamed"), planted: pd.DataFrame | None = None
):
    """Forest plot of paired changes (``cytokine_analysis.paired_changes``): one panel per stratum, a row
    per analyte × dose group (placebo, each dose, pooled active), mean ln-change and 95% CI, coloured by
    dose; with ``planted`` (``cytokine_analysis.planted_effects``) the planted change as a red cross."""
    hv = _hv()
    panels = []
    for stratum in strata:
        rows = summary[summary["stratum"] == stratum].copy()
        if rows.empty:
            continue
        order = {g: i for i, g in enumerate(_group_order(rows["group"]))}
        analytes = list(dict.fromkeys(rows["analyte"]))
        rows["_a"] = rows["analyte"].map({a: i for i, a in enumerate(analytes)})
        rows["_g"] = rows["group"].map(order)
        rows = rows.sort_values(["_a", "_g"]).reset_index(drop=True)
        labels = [f"{r.analyte} · {r.group}" for r in rows.itertuples(index=False)]
        marks = None
        if planted is not None and len(planted):
            truth = planted[planted["stratum"] == stratum].set_index(["analyte", "arm"])["planted"]
            arm = np.where(rows["dose_mg_per_kg"] == 0, "placebo", "active")
            value = [truth.get((a, m), np.nan) for a, m in zip(rows["analyte"], arm)]
            marks = pd.DataFrame({"value": value, "y": -np.arange(len(rows), dtype=float)}).dropna()
        panels.append(
            _forest(
                rows,
                labels,
                [_group_color(g) for g in rows["group"]],
                title=f"{stratum}",
                xlabel=change_label(summary),
                marks=marks if change_label(summary) == LN_LABEL else None,
                hover=["n", "ci_low", "ci_high", "fold_change", "p", "p_fdr", "strategy"],
            )
        )
    return hv.Layout(panels).cols(2).opts(title="Paired change baseline → post with 95% CI")


def interaction_forest(mixed: pd.DataFrame, terms: Sequence[str]):
    """Forest plot of mixed-model terms (``cytokine_analysis.mixed_models``): a row per analyte × dose
    coding for each term in ``terms`` (matching the coding's own term name), estimate and Wald 95% CI."""
    rows = mixed[mixed["term"].isin(list(terms))].reset_index(drop=True)
    if rows.empty:  # one dose only (open label): the model has no dose term to show
        import holoviews as hv

        return hv.Text(0, 0, "no time × inflamed × dose term: the study has one dose").opts(
            title="Mixed model: time × inflamed × dose", width=520, height=160, xaxis=None, yaxis=None
        )
    labels = [f"{r.analyte} · {r.dose_coding}" for r in rows.itertuples(index=False)]
    colors = ["#08306b" if c == "active" else "#6baed6" for c in rows["dose_coding"]]
    return _forest(
        rows,
        labels,
        colors,
        title="Mixed model: time × inflamed × dose",
        xlabel="extra change in the inflamed stratum per unit dose (ln units or analyte unit: see the table)",
        width=520,
        hover=["term", "se", "ci_low", "ci_high", "p", "p_fdr", "n", "n_groups"],
    )


def strata_interaction_forest(interaction: pd.DataFrame):
    """The primary result (``cytokine_analysis.strata_interaction``): per analyte the placebo-controlled
    interaction (dark) and the drug − placebo contrast within each stratum (light), estimate and 95% CI."""
    order = {"interaction": 0, "contrast_in_stratum_1": 1, "contrast_in_stratum_0": 2}
    rows = interaction[interaction["quantity"].isin(list(order))].copy()
    rows["_q"] = rows["quantity"].map(order)
    rows["_a"] = rows["analyte"].map({a: i for i, a in enumerate(dict.fromkeys(rows["analyte"]))})
    rows = rows.sort_values(["_a", "_q"]).reset_index(drop=True)
    names = {
        "interaction": "interaction",
        "contrast_in_stratum_1": "drug − placebo, inflamed",
        "contrast_in_stratum_0": "drug − placebo, non-inflamed",
    }
    labels = [f"{r.analyte} · {names[r.quantity]}" for r in rows.itertuples(index=False)]
    colors = [
        {
            "interaction": "#08306b",
            "contrast_in_stratum_1": STRATUM_COLORS["inflamed"],
            "contrast_in_stratum_0": STRATUM_COLORS["non-inflamed"],
        }[q]
        for q in rows["quantity"]
    ]
    label = DIFFERENCE_LABEL if len(rows) and rows["change_scale"].iloc[0] == "difference" else LN_LABEL
    return _forest(
        rows,
        labels,
        colors,
        title="Placebo-controlled interaction (inflamed − non-inflamed)",
        xlabel=f"difference in drug − placebo change, {label}",
        width=560,
        hover=["quantity", "ci_low", "ci_high", "p", "p_fdr", "n_subjects"],
    )


# ------------------------------------------------------------------------------------ sensitivity
def sensitivity_plot(sensitivity: pd.DataFrame, group: str, strata: Sequence[str] = ("inflamed", "non-inflamed")):
    """Estimates and 95% CIs of one dose ``group`` under each censoring strategy
    (``cytokine_analysis.sensitivity_table``), one panel per stratum, strategies side by side per analyte."""
    hv = _hv()
    part = sensitivity[sensitivity["group"] == group]
    strategies = list(dict.fromkeys(part["strategy"]))
    analytes = list(dict.fromkeys(part["analyte"]))
    step = 1.0 / (len(strategies) + 1)
    panels = []
    for stratum in strata:
        rows = part[part["stratum"] == stratum]
        overlays = [hv.VLine(0).opts(color="#888888", line_dash="dashed", line_width=1)]
        for k, strategy in enumerate(strategies):
            r = rows[rows["strategy"] == strategy]
            r = r.assign(y=-r["analyte"].map({a: i for i, a in enumerate(analytes)}).astype(float) + (k - 1) * step)
            color = STRATEGY_COLORS.get(strategy, "#444444")
            overlays.append(hv.Segments(r, kdims=["ci_low", "y", "ci_high", "y"]).opts(color=color, line_width=2))
            overlays.append(
                hv.Scatter(r, kdims=["estimate"], vdims=["y", "analyte", "n", "n_censored", "p"], label=strategy).opts(
                    color=color, size=7, tools=["hover"]
                )
            )
        panels.append(
            hv.Overlay(overlays).opts(
                title=f"{group}, {stratum}",
                yticks=[(-i, a) for i, a in enumerate(analytes)],
                xlabel=change_label(part),
                ylabel="",
                width=430,
                height=80 + 34 * len(analytes),
                legend_position="bottom_left",
            )
        )
    return hv.Layout(panels).cols(2).opts(title="Sensitivity to the censoring strategy")


# ------------------------------------------------------------------------------------------- mood
def mood_scatter(data: pd.DataFrame, analytes: Sequence[str], mood_column: str, cols: int = 4):
    """ln-change of each analyte against the mood change, a dot per subject-session, coloured by stratum
    (``cytokine_analysis.change_vs_mood_data``). Negative mood change = improvement."""
    hv = _hv()
    panels = []
    for analyte in analytes:
        part = data[data["analyte"] == analyte]
        overlays = [hv.VLine(0).opts(color="#bbbbbb", line_width=1), hv.HLine(0).opts(color="#bbbbbb", line_width=1)]
        for stratum, p in part.groupby("stratum", sort=True):
            overlays.append(
                hv.Scatter(
                    p,
                    kdims=[_change_column(p)],
                    vdims=[mood_column, "participant_id", "session_id", "group"],
                    label=stratum,
                ).opts(color=STRATUM_COLORS.get(stratum, "#888888"), size=6, alpha=0.7, tools=["hover"])
            )
        panels.append(
            hv.Overlay(overlays).opts(
                title=analyte, xlabel=change_label(data), ylabel=mood_column, width=245, height=240, show_legend=False
            )
        )
    strata = sorted(data.loc[data["analyte"].isin(list(analytes)), "stratum"].unique())
    panels.append(_legend_panel(_stratum_entries(strata), 245, 240))
    return (
        hv.Layout(panels)
        .cols(cols)
        .opts(shared_axes=False)
        .opts(title=f"Cytokine change vs {mood_column} (every session, placebo included)")
    )
