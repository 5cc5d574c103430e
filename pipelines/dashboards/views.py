"""The explorer's figures as plain Bokeh models, built once per session and updated in place.

Why not HoloViews here: a HoloViews overlay is re-rendered into new Bokeh models on every widget change
(~45 plot layers per explorer session), which made 20 concurrent sessions take ~20 s on one server.  Each
figure below has a handful of glyphs (one multi-line and one patches glyph for all dose groups, not one per
dose) fed by ColumnDataSources; a widget change replaces the sources' data and nothing else.

Only the columns named here are sent to the browser, so what a tooltip or the page's JSON can show is exactly
what these builders put in: in blinded mode (:mod:`pipelines.dashboards.blinding`) condition letters, never
doses or session labels.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

SUBJECT_COLOR = "#d62728"
GROUP_COLOR = "#9e9e9e"
POINT_COLOR = "#3182bd"
# Every Bokeh model costs the server time to build, register and serialise, once per session: the figures keep
# to a save button and hovers (no pan/zoom tools and their overlays), and glyphs are added without the
# selection/muted copies bokeh.plotting makes for each (add_glyph below).
TOOLS = "save"


def _figure(title: str, width: int, height: int, tools: str = TOOLS, **kw):
    from bokeh.plotting import figure

    p = figure(title=title, width=width, height=height, tools=tools, toolbar_location="above", **kw)
    p.toolbar.logo = None
    return p


def add_glyph(p, glyph_cls, source, legend=None, legend_field=None, **props):
    """One GlyphRenderer with just its glyph (BokehJS derives the unselected/muted looks itself)."""
    from bokeh.core.property.vectorization import field
    from bokeh.models import GlyphRenderer, LegendItem

    renderer = GlyphRenderer(data_source=source, glyph=glyph_cls(**props))
    p.renderers.append(renderer)
    if legend or legend_field:
        item = LegendItem(label=field(legend_field) if legend_field else legend, renderers=[renderer])
        _legend(p).items.append(item)
    return renderer


_LEGENDS: weakref.WeakKeyDictionary | None = None


def _legend(p):
    """The figure's legend, on the right (remembered here: p.select() walks every model of the figure)."""
    global _LEGENDS

    from bokeh.models import Legend

    if _LEGENDS is None:
        _LEGENDS = weakref.WeakKeyDictionary()
    if p not in _LEGENDS:
        _LEGENDS[p] = Legend(items=[], location="top_left", label_text_font_size="11px")
        p.add_layout(_LEGENDS[p], "right")
    return _LEGENDS[p]


def _legend_right(p) -> None:  # legends are created on the right by _legend
    return None


def padded(values, fraction: float = 0.08, minimum: float = 1e-6) -> tuple[float, float]:
    """(start, end) enclosing every finite value with a margin (the explorer resets ranges to the data)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -1.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    pad = max((hi - lo) * fraction, minimum, abs(hi) * 0.02)
    return lo - pad, hi + pad


# --- time courses ------------------------------------------------------------------------------------


class TimeCourse:
    """Group mean ± SEM per condition and the subject's raw and smoothed curves, infusion start/end, an optional
    threshold and the subject's onset.  Two glyphs in all: one patches glyph for the SEM bands and one
    multi-line glyph for every curve (the condition means, then the subject's curves on top), so a session's
    first view costs few models."""

    def __init__(
        self, ylabel: str, *, threshold: float | None = None, infusion_end_s: float | None = None, x_range=None
    ):
        """``x_range``: a range shared with the session's other time course (one model, and the two time axes
        stay aligned)."""
        from bokeh.models import ColumnDataSource, HoverTool, MultiLine, Patches, Span

        kw = {} if x_range is None else {"x_range": x_range}
        p = _figure("", 640, 300, x_axis_label="time from infusion start (s)", y_axis_label=ylabel, **kw)
        self.bands = ColumnDataSource({"xs": [], "ys": [], "color": []})
        self.lines = ColumnDataSource({"xs": [], "ys": [], "color": [], "label": [], "width": [], "alpha": []})
        self._group = {key: [] for key in self.lines.data}
        self._subject = {key: [] for key in self.lines.data}
        add_glyph(p, Patches, self.bands, xs="xs", ys="ys", fill_color="color", fill_alpha=0.2, line_alpha=0)
        lines = add_glyph(
            p,
            MultiLine,
            self.lines,
            legend_field="label",
            xs="xs",
            ys="ys",
            line_color="color",
            line_width="width",
            line_alpha="alpha",
        )
        p.add_tools(
            HoverTool(renderers=[lines], tooltips=[("", "@label"), ("time (s)", "$x{0}"), ("value", "$y{0.000}")])
        )
        p.add_layout(Span(location=0, dimension="height", line_color="black", line_dash="dashed"))
        if infusion_end_s is not None:
            p.add_layout(Span(location=infusion_end_s, dimension="height", line_color="black", line_dash="dotted"))
        if threshold is not None:
            p.add_layout(Span(location=threshold, dimension="width", line_color=SUBJECT_COLOR, line_dash="dashed"))
        self.onset = Span(
            location=0, dimension="height", line_color=SUBJECT_COLOR, line_dash="dotdash", line_width=2, visible=False
        )
        p.add_layout(self.onset)
        self.figure = p

    def _draw_lines(self) -> None:
        self.lines.data = {key: self._group[key] + self._subject[key] for key in self._group}

    def set_group(self, stats: pd.DataFrame, order: list, label, color) -> None:
        """``stats``: dose_mg_per_kg, time_s, mean, sem; one band and one line per condition, in ``order``."""
        bands = {"xs": [], "ys": [], "color": []}
        group = {key: [] for key in self._group}
        for dose in order:
            g = stats[np.isclose(stats["dose_mg_per_kg"], dose)].sort_values("time_s")
            t, m, s = g["time_s"].to_numpy(), g["mean"].to_numpy(), g["sem"].fillna(0).to_numpy()
            ok = np.isfinite(m)
            t, m, s = t[ok], m[ok], s[ok]
            bands["xs"].append(np.concatenate([t, t[::-1]]))
            bands["ys"].append(np.concatenate([m - s, (m + s)[::-1]]))
            bands["color"].append(color(dose))
            for key, value in (
                ("xs", t),
                ("ys", m),
                ("color", color(dose)),
                ("label", label(dose)),
                ("width", 2.0),
                ("alpha", 1.0),
            ):
                group[key].append(value)
        self.bands.data, self._group = bands, group
        self._draw_lines()

    def set_subject(self, frame: pd.DataFrame, title: str, onset_s: float | None = None) -> None:
        t = frame["time_s"].to_numpy()
        self._subject = {
            "xs": [t, t],
            "ys": [frame["value"].to_numpy(), frame["smoothed"].to_numpy()],
            "color": [SUBJECT_COLOR, SUBJECT_COLOR],
            "label": ["subject (window)", "subject (smoothed)"],
            "width": [1.0, 3.0],
            "alpha": [0.35, 1.0],
        }
        self._draw_lines()
        shown = onset_s is not None and bool(np.isfinite(onset_s))
        self.onset.update(location=float(onset_s) if shown else 0.0, visible=shown)
        self.figure.title.text = title


# --- topomap -----------------------------------------------------------------------------------------


class Topomap:
    def __init__(self, positions: dict, label: str):
        from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper, Range1d, Scatter
        from bokeh.palettes import RdBu11

        xs = [p[0] for p in positions.values()] or [0.0]
        ys = [p[1] for p in positions.values()] or [0.0]
        p = _figure("", 330, 300, x_range=Range1d(*padded(xs, 0.12)), y_range=Range1d(*padded(ys, 0.12)))
        p.axis.visible = False
        p.grid.visible = False
        self.positions = positions
        self.mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=-1, high=1, nan_color="#dddddd")
        self.source = ColumnDataSource({"x": [], "y": [], "change": [], "channel": []})
        r = add_glyph(
            p,
            Scatter,
            self.source,
            x="x",
            y="y",
            size=18,
            line_color="black",
            fill_color={"field": "change", "transform": self.mapper},
        )
        p.add_tools(HoverTool(renderers=[r], tooltips=[("channel", "@channel"), ("change", "@change{0.000}")]))
        self.colorbar = ColorBar(color_mapper=self.mapper, title=label, width=10)
        p.add_layout(self.colorbar, "right")
        self.figure = p

    def update(self, values: pd.DataFrame, label: str, title: str) -> None:
        rows = values[values["channel"].isin(self.positions)]
        change = rows["change"].to_numpy(dtype=float)
        finite = np.abs(change[np.isfinite(change)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        self.mapper.update(low=-limit, high=limit)
        self.source.data = {
            "x": [self.positions[c][0] for c in rows["channel"]],
            "y": [self.positions[c][1] for c in rows["channel"]],
            "change": change,
            "channel": list(rows["channel"]),
        }
        self.colorbar.title = label
        self.figure.title.text = title


# --- dose response (categorical conditions) ------------------------------------------------------------


class DoseResponse:
    """Every subject's plateau change per condition (jittered), per-condition mean with its CI, the subject's
    values on top.  Conditions are categories in display order (dose order, or letter order when blinded);
    lines join the conditions only when that order is the dose order."""

    def __init__(self, factors: list[str], xlabel: str, connect: bool):
        from bokeh.models import ColumnDataSource, HoverTool, Line, Scatter, Segment
        from bokeh.transform import jitter

        p = _figure("", 430, 300, x_range=list(factors), x_axis_label=xlabel)
        self.points = ColumnDataSource({"condition": [], "change": [], "participant_id": []})
        self.means = ColumnDataSource({"condition": [], "mean": [], "low": [], "high": []})
        self.mine = ColumnDataSource({"condition": [], "change": [], "participant_id": []})
        self.chosen = ColumnDataSource({"condition": [], "change": []})
        r = add_glyph(
            p,
            Scatter,
            self.points,
            x=jitter("condition", 0.25, range=p.x_range),
            y="change",
            size=6,
            fill_color="#999999",
            line_color="#999999",
            fill_alpha=0.7,
            line_alpha=0.7,
        )
        add_glyph(
            p,
            Segment,
            self.means,
            x0="condition",
            y0="low",
            x1="condition",
            y1="high",
            line_color="#08306b",
            line_width=2,
        )
        add_glyph(
            p, Scatter, self.means, x="condition", y="mean", marker="dash", size=18, line_width=3, line_color="#08306b"
        )
        if connect:  # only when the axis is in dose order
            add_glyph(p, Line, self.means, x="condition", y="mean", line_color="#08306b", line_width=2)
            add_glyph(
                p,
                Line,
                self.mine,
                x="condition",
                y="change",
                line_color=SUBJECT_COLOR,
                line_width=2,
                line_dash="dashed",
            )
        m = add_glyph(
            p, Scatter, self.mine, x="condition", y="change", size=9, fill_color=SUBJECT_COLOR, line_color=SUBJECT_COLOR
        )
        add_glyph(
            p,
            Scatter,
            self.chosen,
            x="condition",
            y="change",
            size=16,
            fill_alpha=0,
            line_color=SUBJECT_COLOR,
            line_width=2,
        )
        p.add_tools(
            HoverTool(
                renderers=[r, m],
                tooltips=[("subject", "@participant_id"), ("condition", "@condition"), ("change", "@change{0.000}")],
            )
        )
        self.figure = p

    def update(
        self,
        per_dose: pd.DataFrame,
        changes: pd.DataFrame,
        subject: str,
        dose: float,
        label,
        ylabel: str,
        title: str,
        order: list,
    ) -> None:
        rank = {d: i for i, d in enumerate(order)}
        key = lambda doses: [min(rank, key=lambda o: abs(o - d)) for d in doses]
        per_dose = per_dose.assign(_k=[rank[k] for k in key(per_dose["dose_mg_per_kg"])]).sort_values("_k")
        self.points.data = {
            "condition": [label(d) for d in changes["dose_mg_per_kg"]],
            "change": changes["change"].to_numpy(dtype=float),
            "participant_id": list(changes["participant_id"]),
        }
        self.means.data = {
            "condition": [label(d) for d in per_dose["dose_mg_per_kg"]],
            "mean": per_dose["mean"].to_numpy(dtype=float),
            "low": per_dose["ci_low"].to_numpy(dtype=float),
            "high": per_dose["ci_high"].to_numpy(dtype=float),
        }
        mine = changes[changes["participant_id"] == subject]
        mine = mine.assign(_k=[rank[k] for k in key(mine["dose_mg_per_kg"])]).sort_values("_k")
        self.mine.data = {
            "condition": [label(d) for d in mine["dose_mg_per_kg"]],
            "change": mine["change"].to_numpy(dtype=float),
            "participant_id": list(mine["participant_id"]),
        }
        at = mine[np.isclose(mine["dose_mg_per_kg"], dose)]
        self.chosen.data = {
            "condition": [label(d) for d in at["dose_mg_per_kg"]],
            "change": at["change"].to_numpy(dtype=float),
        }
        self.figure.yaxis.axis_label = ylabel
        self.figure.title.text = title


# --- the selection scatter -------------------------------------------------------------------------------


class SelectionScatter:
    """One point per subject; a tap selects that subject.  Its ranges are reset to the data on every update
    (auto-ranging kept the first frame's ranges, leaving most subjects off-screen after a change)."""

    def __init__(self, on_tap):
        from bokeh.models import ColumnDataSource, HoverTool, Range1d, Scatter, TapTool

        p = _figure("", 430, 300, x_range=Range1d(-1, 1), y_range=Range1d(-1, 1))
        self.source = ColumnDataSource({"x": [], "y": [], "participant_id": []})
        self.mine = ColumnDataSource({"x": [], "y": []})
        r = add_glyph(p, Scatter, self.source, x="x", y="y", size=11, fill_color=POINT_COLOR, line_color=POINT_COLOR)
        add_glyph(p, Scatter, self.mine, x="x", y="y", size=20, fill_alpha=0, line_color=SUBJECT_COLOR, line_width=3)
        tap = TapTool(renderers=[r])
        p.add_tools(
            tap,
            HoverTool(renderers=[r], tooltips=[("subject", "@participant_id"), ("x", "@x{0.000}"), ("y", "@y{0.00}")]),
        )
        p.toolbar.active_tap = tap
        self.source.selected.on_change("indices", lambda _attr, _old, new: on_tap(new))
        self.figure = p

    def update(self, frame: pd.DataFrame, x: str, subject: str, xlabel: str, ylabel: str, title: str) -> None:
        xs, ys = frame[x].to_numpy(dtype=float), frame["y"].to_numpy(dtype=float)
        self.source.selected.indices = []
        self.source.data = {"x": xs, "y": ys, "participant_id": list(frame["participant_id"])}
        mine = frame["participant_id"] == subject
        self.mine.data = {"x": xs[mine.to_numpy()], "y": ys[mine.to_numpy()]}
        (x0, x1), (y0, y1) = padded(xs), padded(ys)
        self.figure.x_range.update(start=x0, end=x1, reset_start=x0, reset_end=x1)
        self.figure.y_range.update(start=y0, end=y1, reset_start=y0, reset_end=y1)
        self.figure.xaxis.axis_label, self.figure.yaxis.axis_label = xlabel, ylabel
        self.figure.title.text = title

    def set_subject(self, frame: pd.DataFrame, x: str, subject: str) -> None:
        mine = (frame["participant_id"] == subject).to_numpy()
        self.mine.data = {"x": frame[x].to_numpy(dtype=float)[mine], "y": frame["y"].to_numpy(dtype=float)[mine]}


# --- peak experience, mood, cytokines --------------------------------------------------------------------


class Profile:
    def __init__(self, scores: list[str]):
        from bokeh.models import ColumnDataSource, HBar, HoverTool, Label, Scatter

        factors = list(reversed(scores)) or ["–"]
        p = _figure("", 440, 440, y_range=factors, x_range=(0, 100), x_axis_label="score (0–100)")
        self.source = ColumnDataSource({"score": [], "value": [], "group_mean": []})
        bars = add_glyph(
            p,
            HBar,
            self.source,
            y="score",
            right="value",
            height=0.7,
            fill_color=SUBJECT_COLOR,
            line_color=SUBJECT_COLOR,
            fill_alpha=0.75,
        )
        add_glyph(
            p,
            Scatter,
            self.source,
            x="group_mean",
            y="score",
            marker="diamond",
            size=10,
            fill_color="black",
            line_color="black",
        )
        p.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[("score", "@score"), ("subject", "@value{0.0}"), ("group mean", "@group_mean{0.0}")],
            )
        )
        self.empty = Label(
            x=50,
            y=0,
            x_units="data",
            y_units="screen",
            text="",
            text_align="center",
            text_font_size="13px",
            y_offset=200,
        )
        p.add_layout(self.empty)
        self.figure = p

    def update(self, profile: pd.DataFrame, title: str) -> None:
        missing = profile.empty or profile["value"].isna().all()
        self.source.data = {
            "score": list(profile["score"]),
            "value": profile["value"].fillna(0).to_numpy(dtype=float),
            "group_mean": profile["group_mean"].to_numpy(dtype=float),
        }
        self.empty.text = "no peak-experience ratings for this session" if missing else ""
        self.figure.title.text = title


class Mood:
    def __init__(self, timepoints: list[str], score: str):
        from bokeh.models import ColumnDataSource, Line, MultiLine, VArea

        n = max(len(timepoints), 1)
        p = _figure("", 480, 300, x_range=(-0.3, n - 0.7), x_axis_label="time point", y_axis_label=score)
        p.xaxis.ticker = list(range(len(timepoints)))
        p.xaxis.major_label_overrides = {i: tp for i, tp in enumerate(timepoints)}
        self.position = {tp: i for i, tp in enumerate(timepoints)}
        self.band = ColumnDataSource({"t": [], "low": [], "high": []})
        self.mean = ColumnDataSource({"t": [], "mean": []})
        self.subject = ColumnDataSource({"xs": [], "ys": [], "color": [], "width": [], "alpha": [], "label": []})
        add_glyph(
            p,
            VArea,
            self.band,
            legend="group 95% CI",
            x="t",
            y1="low",
            y2="high",
            fill_color=GROUP_COLOR,
            fill_alpha=0.3,
        )
        add_glyph(p, Line, self.mean, legend="group mean", x="t", y="mean", line_color="black", line_width=2)
        add_glyph(
            p,
            MultiLine,
            self.subject,
            legend_field="label",
            xs="xs",
            ys="ys",
            line_color="color",
            line_width="width",
            line_alpha="alpha",
        )
        _legend_right(p)
        self.figure = p
        self.score = score

    def update(
        self, subject_rows: pd.DataFrame, group: pd.DataFrame, dose: float, label, color, order: list, title: str
    ) -> None:
        g = group[np.isclose(group["dose_mg_per_kg"], dose)].copy()
        g["t"] = g["timepoint"].map(self.position)
        g = g.dropna(subset=["t"]).sort_values("t")
        self.band.data = {
            "t": g["t"].to_numpy(dtype=float),
            "low": g["ci_low"].to_numpy(dtype=float),
            "high": g["ci_high"].to_numpy(dtype=float),
        }
        self.mean.data = {"t": g["t"].to_numpy(dtype=float), "mean": g["mean"].to_numpy(dtype=float)}
        lines = {"xs": [], "ys": [], "color": [], "width": [], "alpha": [], "label": []}
        for d in order:
            rows = subject_rows[np.isclose(subject_rows["dose_mg_per_kg"], d)]
            rows = rows.assign(t=rows["timepoint"].map(self.position)).dropna(subset=["t"]).sort_values("t")
            if rows.empty:
                continue
            chosen = bool(np.isclose(d, dose))
            lines["xs"].append(rows["t"].to_numpy(dtype=float))
            lines["ys"].append(rows[self.score].to_numpy(dtype=float))
            lines["color"].append(SUBJECT_COLOR if chosen else color(d))
            lines["width"].append(3.0 if chosen else 1.5)
            lines["alpha"].append(1.0 if chosen else 0.6)
            lines["label"].append(f"subject {label(d)}")
        self.subject.data = lines
        self.figure.title.text = title


class Cytokines:
    def __init__(self, analytes: list[str], ylabel: str):
        from bokeh.models import ColumnDataSource, HoverTool, Scatter, Span
        from bokeh.transform import jitter

        p = _figure("", 480, 300, x_range=list(analytes) or ["–"], y_axis_label=ylabel)
        p.xaxis.major_label_orientation = 0.5
        self.others = ColumnDataSource({"analyte": [], "ln_change": [], "participant_id": []})
        self.mine = ColumnDataSource({"analyte": [], "ln_change": [], "participant_id": []})
        r = add_glyph(
            p,
            Scatter,
            self.others,
            x=jitter("analyte", 0.3, range=p.x_range),
            y="ln_change",
            size=7,
            fill_color=GROUP_COLOR,
            line_color=GROUP_COLOR,
            fill_alpha=0.8,
        )
        m = add_glyph(
            p,
            Scatter,
            self.mine,
            x="analyte",
            y="ln_change",
            size=12,
            marker="diamond",
            fill_color=SUBJECT_COLOR,
            line_color=SUBJECT_COLOR,
        )
        p.add_layout(Span(location=0, dimension="width", line_color="black", line_dash="dashed", line_width=1))
        p.add_tools(
            HoverTool(
                renderers=[r, m],
                tooltips=[("subject", "@participant_id"), ("analyte", "@analyte"), ("ln change", "@ln_change{0.000}")],
            )
        )
        self.analytes = list(analytes)
        self.figure = p

    def update(self, changes: pd.DataFrame, subject: str, title: str) -> None:
        data = changes[changes["analyte"].isin(self.analytes)]
        cols = lambda d: {
            "analyte": list(d["analyte"]),
            "ln_change": d["ln_change"].to_numpy(dtype=float),
            "participant_id": list(d["participant_id"]),
        }
        self.others.data = cols(data)
        self.mine.data = cols(data[data["participant_id"] == subject])
        self.figure.title.text = title


class Timeline:
    """A subject's infusions (one row each, labelled by condition) and their preparation and integration sessions,
    in hours from the end of the infusion, with the plasticity window shaded (report 06)."""

    def __init__(self, window_h: tuple[float, float] = (24.0, 48.0)):
        from bokeh.models import BoxAnnotation, ColumnDataSource, FactorRange, Scatter, Span

        p = _figure("", 480, 300, y_range=FactorRange(), x_axis_label="hours from the end of the infusion")
        p.add_layout(BoxAnnotation(left=window_h[0], right=window_h[1], fill_color=POINT_COLOR, fill_alpha=0.15))
        p.add_layout(Span(location=0, dimension="height", line_color="black", line_dash="dashed"))
        self.points = ColumnDataSource({"h": [], "row": [], "kind": [], "color": [], "marker": []})
        add_glyph(
            p,
            Scatter,
            self.points,
            legend_field="kind",
            x="h",
            y="row",
            size=11,
            fill_color="color",
            line_color="color",
            marker="marker",
        )
        _legend_right(p)
        self.figure = p

    def update(self, sessions: pd.DataFrame, label, order: list, title: str) -> None:
        rows = [label(d) for d in order]
        self.figure.y_range.factors = rows[::-1]  # first condition on top
        data = {"h": [], "row": [], "kind": [], "color": [], "marker": []}
        for r in sessions.itertuples(index=False):
            if r.dose_mg_per_kg != r.dose_mg_per_kg:
                continue
            data["h"].append(float(r.start_h))
            data["row"].append(label(r.dose_mg_per_kg))
            integration = r.session_type == "integration"
            data["kind"].append("integration" if integration else "preparation")
            data["color"].append(SUBJECT_COLOR if integration else GROUP_COLOR)
            data["marker"].append("circle" if integration else "triangle")
        self.points.data = data
        self.figure.title.text = title


# --- static time course (the explorer's first view) --------------------------------------------------------
# What a visitor is sent first: the same time course as TimeCourse (condition means ± SEM, the subject's raw and
# smoothed curves, infusion start/end, threshold and onset), drawn here once as SVG text that every session
# showing the same selection shares (one HTML model per visitor instead of ~40 Bokeh models); the interactive
# figures are one click away.  Every text in it is escaped; in blinded mode it holds letters, never doses.

SVG_SIZE = (640, 300)
_MARGIN = {"left": 62, "right": 175, "top": 30, "bottom": 44}


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 × 10^k apart) inside [lo, hi]."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return [lo] if np.isfinite(lo) else []
    raw = (hi - lo) / max(n - 1, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.ceil(lo / step) * step
    return [round(float(v), 10) + 0.0 for v in np.arange(first, hi + step * 1e-9, step)]  # + 0.0: no "-0"


def _svg_number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg_path(xs, ys, sx, sy) -> str:
    """SVG path data for a curve, broken where a value is missing (NaN)."""
    parts, pen_down = [], False
    for x, y in zip(xs, ys):
        if not (np.isfinite(x) and np.isfinite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_svg_number(sx(x))},{_svg_number(sy(y))}")
        pen_down = True
    return "".join(parts)


def _svg_axes(x_range, y_range, sx, sy, xlabel: str, ylabel: str) -> list[str]:
    from html import escape

    (x0, x1), (y0, y1) = x_range, y_range
    w, h = SVG_SIZE
    left, bottom, right = _MARGIN["left"], h - _MARGIN["bottom"], w - _MARGIN["right"]
    out = [
        f'<rect x="{left}" y="{_MARGIN["top"]}" width="{right - left}" height="{bottom - _MARGIN["top"]}" '
        'fill="white" stroke="#cccccc"/>'
    ]
    for t in nice_ticks(x0, x1, 7):
        x = _svg_number(sx(t))
        out.append(f'<line x1="{x}" x2="{x}" y1="{_MARGIN["top"]}" y2="{bottom}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x}" y="{bottom + 14}" text-anchor="middle">{t:g}</text>')
    for t in nice_ticks(y0, y1, 6):
        y = _svg_number(sy(t))
        out.append(f'<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#eeeeee"/>')
        out.append(f'<text x="{left - 5}" y="{y}" dy="0.32em" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{(left + right) / 2:.0f}" y="{h - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(
        f'<text transform="translate(14,{(_MARGIN["top"] + bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">'
        f"{escape(ylabel)}</text>"
    )
    return out


def _svg_legend(items: list[tuple[str, str, float, str]]) -> list[str]:
    """One row per (label, colour, width, dash) on the right of the plot area."""
    from html import escape

    x, out = SVG_SIZE[0] - _MARGIN["right"] + 12, []
    for i, (label, color, width, dash) in enumerate(items):
        y = _MARGIN["top"] + 10 + 17 * i
        out.append(
            f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="{width:g}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        out.append(f'<text x="{x + 28}" y="{y}" dy="0.32em">{escape(label)}</text>')
    return out


def _time_course_curves(stats: pd.DataFrame, conditions, subject: pd.DataFrame) -> list[tuple]:
    """(label, colour, width, opacity, xs, ys, band or None) of every curve, as TimeCourse draws them."""
    curves = []
    for dose, label, color in conditions:
        g = stats[np.isclose(stats["dose_mg_per_kg"], dose)].sort_values("time_s")
        g = g[np.isfinite(g["mean"].to_numpy(dtype=float))]
        t, m, s = (g[c].to_numpy(dtype=float) for c in ("time_s", "mean", "sem"))
        s = np.nan_to_num(s)
        curves.append((label, color, 2.0, 1.0, t, m, (m - s, m + s)))
    t = subject["time_s"].to_numpy(dtype=float)
    curves.append(("subject (window)", SUBJECT_COLOR, 1.0, 0.35, t, subject["value"].to_numpy(dtype=float), None))
    curves.append(("subject (smoothed)", SUBJECT_COLOR, 3.0, 1.0, t, subject["smoothed"].to_numpy(dtype=float), None))
    return curves


def static_time_course(
    stats: pd.DataFrame,
    conditions: list[tuple[float, str, str]],
    subject: pd.DataFrame,
    title: str,
    ylabel: str,
    *,
    threshold: float | None = None,
    infusion_end_s: float | None = None,
    onset_s: float | None = None,
) -> str:
    """TimeCourse's picture as one SVG element.  ``stats``: dose_mg_per_kg, time_s, mean, sem (data.group_stats);
    ``conditions``: (dose, label, colour) in display order; ``subject``: time_s, value, smoothed."""
    from html import escape

    curves = _time_course_curves(stats, conditions, subject)
    xs = np.concatenate([c[4] for c in curves] + [[0.0]])
    ys = np.concatenate([c[5] for c in curves] + [b for c in curves if c[6] is not None for b in c[6]])
    if threshold is not None:
        ys = np.append(ys, threshold)
    (x0, x1), (y0, y1) = padded(xs, 0.0), padded(ys, 0.06)
    w, h = SVG_SIZE
    left, right, top, bottom = _MARGIN["left"], w - _MARGIN["right"], _MARGIN["top"], h - _MARGIN["bottom"]
    sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)
    sy = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        *_svg_axes((x0, x1), (y0, y1), sx, sy, "time from infusion start (s)", ylabel),
    ]
    for _label, color, _w, _a, tt, _m, band in curves:
        if band is not None and len(tt):
            outline = _svg_path(np.concatenate([tt, tt[::-1]]), np.concatenate([band[0], band[1][::-1]]), sx, sy)
            out.append(f'<path d="{outline}Z" fill="{color}" fill-opacity="0.2" stroke="none"/>')
    refs = [(0.0, "4 4", "black", "infusion start")]
    if infusion_end_s is not None:
        refs.append((infusion_end_s, "1 3", "black", "infusion end"))
    if onset_s is not None and np.isfinite(onset_s):
        refs.append((float(onset_s), "6 3 2 3", SUBJECT_COLOR, "subject's suppression onset"))
    for x, dash, color, what in refs:
        if x0 <= x <= x1:
            out.append(
                f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top}" y2="{bottom}" stroke="{color}" '
                f'stroke-dasharray="{dash}"><title>{escape(what)}</title></line>'
            )
    if threshold is not None:
        out.append(
            f'<line x1="{left}" x2="{right}" y1="{sy(threshold):.1f}" y2="{sy(threshold):.1f}" '
            f'stroke="{SUBJECT_COLOR}" stroke-dasharray="4 4"><title>threshold {threshold:g}</title></line>'
        )
    for label, color, width, alpha, tt, m, _band in curves:
        out.append(
            f'<path d="{_svg_path(tt, m, sx, sy)}" fill="none" stroke="{color}" stroke-width="{width:g}" '
            f'stroke-opacity="{alpha:g}"><title>{escape(label)}</title></path>'
        )
    out += _svg_legend([(c[0], c[1], c[2], "") for c in curves])
    out.append("</svg>")
    return "".join(out)
