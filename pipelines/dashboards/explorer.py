"""Study explorer: one subject, one dose, one entropy measure, seen through every branch of the study.

Linked views (the selected subject in red everywhere): occipital alpha and entropy time courses with the
infusion markers, a topomap at a chosen time, the dose-response with CIs, the subject's MEQ30/5D-ASC profile,
their mood trajectory and cytokine changes.  Tapping a point in the "entropy vs peak experience" scatter
selects that subject in every other view.

The same class works everywhere::

    from pipelines.dashboards import ExplorerApp
    ExplorerApp("data_manifests/default.yml")            # JupyterLab: displays inline (after pn.extension())
    ExplorerApp("data_manifests/default.yml").servable() # panel serve this_file.py
    python -m pipelines.dashboards.serve                  # both dashboards, URLs printed

State lives in the parameters below (``subject``, ``dose``, ``measure``, ``time_s``); when served, they are
mirrored in the URL query (``/explorer/interactive?subject=sub-03&dose=0.5&measure=perm_entropy&time_s=120``; the same
query opens the plain first view at ``/explorer``, :mod:`pipelines.dashboards.overview`), so a view
can be shared as a link.  Values from a link are checked against the study's own subjects, doses, measures and
time range (:mod:`pipelines.dashboards.safety`): an unknown value is ignored with a short notice and never
becomes a selector option; the parameters themselves refuse values outside their options.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import param

from pipelines.dashboards import data, safety, views
from pipelines.dashboards.blinding import Blinding, Conditions
from pipelines.dashboards.safety import escape_markdown
from pipelines.dashboards.selection import PARAMS, Choices
from pipelines.dashboards.widgets import RangeInput
from pipelines.eeg import dynamics

# The first tab is what every visitor is sent first: both time courses drawn once per selection as static SVG
# and shared by every session showing it (one model per visitor instead of ~80).  The interactive figures
# (hover, save) are one click away, built with their controls when their tab is first opened, and kept.
OVERVIEW = "Overview"
TABS = [
    (OVERVIEW, []),
    ("Time courses", ["alpha", "entropy"]),
    ("Topomap, dose-response, selection", ["topo", "dose_response", "scatter"]),
    ("Experience, mood, cytokines", ["profile", "mood", "timeline", "cytokines"]),
]
SIDEBAR_WIDTH = 320  # wide enough for the longest option of every select (measure names)
CSS = """
.kw-summary { font-size: 14px; }
"""


class ExplorerApp(pn.viewable.Viewer):
    """Pick a subject, a condition and a measure; every view follows."""

    # check_on_set: a value outside the options is refused (otherwise param would add it as a new option).
    subject = param.Selector(check_on_set=True, doc="Pseudonymous participant (BIDS sub-XX)")
    dose = param.Selector(check_on_set=True, doc="Condition shown: a dose, or a letter when the trial is blinded")
    measure = param.Selector(
        check_on_set=True, doc="Entropy / complexity measure (mean over channels, change from baseline)"
    )
    time_s = param.Number(default=0.0, doc="Time of the topomap (s from infusion start)")

    def __init__(self, study=None, blinding: Blinding | None = None, **params):
        self.manifest = data.manifest_key(study)
        self.choices = Choices(self.manifest, blinding)
        self.settings = self.choices.settings
        self.conditions = self.choices.conditions
        self.subjects = self.choices.subjects
        self.param.subject.objects = self.subjects
        self.param.dose.objects = self.conditions.options
        self.param.measure.objects = self.choices.measures
        times = self.choices.times
        self.param.time_s.bounds = (float(times[0]), float(times[-1]))
        self.param.time_s.step = self.settings["step_s"]
        for name, value in self.choices.defaults().items():
            params.setdefault(name, value)
        super().__init__(**params)
        self._scatter_rows = pd.DataFrame()
        self._synced = False
        self._views: dict = {}
        self._shared_time_range = None
        self._overview = None  # the first tab's static time courses (built with the page)
        self._main = None  # the page's main column (the link notice goes on top of it when needed)
        self._watcher = None
        self._notice = None  # made when a link holds an unknown value (most visits: never)
        self.summary = pn.pane.Markdown(
            self.summary_markdown(), css_classes=["kw-summary"], name="explorer-summary", sizing_mode="stretch_width"
        )

    @property
    def blinded(self) -> bool:
        return self.conditions.blinded

    @property
    def dose_value(self) -> float:
        """The selected condition's dose (server side only: never shown when blinded)."""
        return self.conditions.dose_of(self.dose)

    def url_fields(self) -> dict:
        """How each URL query value is read: only this study's subjects, conditions, measures and window times."""
        return self.choices.url_fields()

    @property
    def notice(self):
        """The warning shown above the summary when a link held an unknown value."""
        if self._notice is None:
            self._notice = safety.url_notice()
        return self._notice

    def _show_rejected(self, rejected: list[str]) -> None:
        if not rejected and self._notice is None:
            return  # nothing to say, and nothing said before
        self.notice.object = safety.notice_text(rejected)
        self.notice.visible = bool(rejected)
        # On the page only once a link held an unknown value (most visits: never; one model less to send).
        if rejected and self._main is not None and self.notice not in self._main.objects:
            self._main.insert(0, self.notice)

    # --- data selections (what the views draw; tested without a browser) ------------------------

    @property
    def session(self) -> str | None:
        """Session label of the selected subject's recording in the selected condition (None when absent).
        Contains the dose (``ket100``): never shown when blinded."""
        return _session_of(self.manifest, self.subject, self.dose_value)

    @property
    def _subject_label(self) -> str:
        return self.subject.removeprefix("sub-")

    def _series(self, name: str) -> pd.DataFrame:
        # Shared by every session showing this recording (the first view of most visitors is the same one).
        return _subject_series(self.manifest, name, self.subject, self.session or "")

    def alpha_frame(self) -> pd.DataFrame:
        """time_s, value, smoothed: the subject's occipital alpha (dB re baseline) in the selected condition."""
        return self._series("occipital_alpha_db")

    def entropy_frame(self) -> pd.DataFrame:
        """time_s, value, smoothed: the subject's entropy change from baseline (selected measure)."""
        return self._series(self.measure)

    def markers_row(self) -> pd.Series | None:
        return _markers_row(self.manifest, self.subject, self.session or "")

    def topo_frame(self) -> pd.DataFrame:
        """channel, change: the measure at ``time_s`` (mean of the smoothing span around it) minus its baseline mean."""
        if self.session is None:
            return pd.DataFrame(columns=["channel", "change"])
        da = data.channel_measure(self.manifest, self.measure).sel(subject=self._subject_label, session=self.session)
        values = da.transpose("channel", "time_s").to_numpy()
        times = self.settings["time_s"]
        i = int(np.argmin(np.abs(times - self.time_s)))
        half = self.settings["params"].smooth_windows // 2
        base = data.baseline_mask(self.manifest)
        with np.errstate(invalid="ignore"), _quiet():
            now = np.nanmean(values[:, max(0, i - half) : i + half + 1], axis=1)
            change = now - np.nanmean(values[:, base], axis=1)
        return pd.DataFrame({"channel": list(map(str, da["channel"].to_numpy())), "change": change})

    def dose_response_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-dose mean with CI, per-recording plateau change) of the selected measure."""
        return data.dose_means(self.manifest, self.measure), data.plateau_changes(self.manifest, self.measure)

    def scatter_frame(self) -> tuple[pd.DataFrame, str, str]:
        """One row per subject in the selected condition: entropy plateau change (x) against MEQ30 total (y), or
        against occipital alpha change where there are no peak-experience ratings (placebo)."""
        dose = self.dose_value
        changes = data.plateau_changes(self.manifest, self.measure)
        at_dose = changes[np.isclose(changes["dose_mg_per_kg"], dose)][["participant_id", "change"]]
        at_dose = at_dose.rename(columns={"change": "entropy_change"})
        peak, _ = _safe_peak(self.manifest)
        y, ylabel = "meq30_total", "MEQ30 total (0–5)"
        if peak is not None and y in peak.columns:
            scores = peak[np.isclose(peak["dose_mg_per_kg"], dose)][["participant_id", y]]
            merged = at_dose.merge(scores, on="participant_id", how="left")
        else:
            merged = at_dose.assign(**{y: np.nan})
        if merged[y].notna().sum() < 2:
            alpha = data.plateau_changes(self.manifest, "occipital_alpha_db")
            alpha = alpha[np.isclose(alpha["dose_mg_per_kg"], dose)][["participant_id", "change"]]
            merged = at_dose.merge(alpha.rename(columns={"change": "alpha_change_db"}), on="participant_id")
            y, ylabel = "alpha_change_db", "occipital alpha change (dB)"
        merged = merged.dropna(subset=["entropy_change", y]).sort_values("participant_id").reset_index(drop=True)
        return merged.rename(columns={y: "y"}), "entropy_change", ylabel

    def profile_frame(self) -> pd.DataFrame:
        """score (label), column, value (this subject in this condition), group_mean (everyone in it); 0-100 scales."""
        from pipelines.analyses.peak_experience_mood import score_label

        peak, columns = _safe_peak(self.manifest)
        if peak is None or not columns:
            return pd.DataFrame(columns=["score", "column", "value", "group_mean"])
        at_dose = peak[np.isclose(peak["dose_mg_per_kg"], self.dose_value)]
        mine = at_dose[at_dose["participant_id"] == self.subject]
        values = mine[columns].iloc[0] if len(mine) else pd.Series(np.nan, index=columns)
        return pd.DataFrame(
            {
                "score": [score_label(c).replace(" pct max", " (% max)") for c in columns],
                "column": columns,
                "value": values.to_numpy(dtype=float),
                "group_mean": at_dose[columns].mean().to_numpy(dtype=float),
            }
        )

    def mood_frame(self) -> pd.DataFrame:
        """The subject's mood rows (every session and time point)."""
        outcomes, _, _ = data.mood_outcomes(self.manifest)
        return outcomes[outcomes["participant_id"] == self.subject].reset_index(drop=True)

    def therapy_frame(self) -> pd.DataFrame:
        """The subject's preparation and integration sessions (hours from each infusion's end)."""
        result, _ = data._safe(data.therapy_sessions, self.manifest)
        if result is None:
            return pd.DataFrame(columns=["participant_id", "session_id", "session_type", "start_h", "dose_mg_per_kg"])
        return result[result["participant_id"] == self.subject].reset_index(drop=True)

    def cytokine_frame(self) -> pd.DataFrame:
        """Every subject's ln change per analyte in the selected condition."""
        table = _safe_cytokines(self.manifest)
        if table is None:
            return pd.DataFrame(columns=["participant_id", "analyte", "ln_change", "dose_mg_per_kg"])
        return table[np.isclose(table["dose_mg_per_kg"], self.dose_value)].reset_index(drop=True)

    def entropy_peak(self) -> tuple[float, float]:
        """(time, value) of the selected measure's smoothed peak change after infusion start (notebook 01's
        definition, pipelines.eeg.dynamics.peak), for the selected recording."""
        frame = self.entropy_frame()
        if frame.empty:
            return float("nan"), float("nan")
        return dynamics.peak(
            frame["time_s"].to_numpy(), frame["value"].to_numpy(), self.settings["params"].smooth_windows
        )

    def summary_markdown(self) -> str:
        # Depends only on these values: computed once per distinct view for the whole server process.
        return _summary(
            self.manifest,
            self.subject,
            self.dose_value,
            self.measure,
            self.conditions.label(self.dose_value),
            self.blinded,
        )

    def overview_html(self) -> str:
        """The first view's time courses (occipital alpha, the selected measure) as static SVG: one string per
        selection, shared by every session showing it (never rebuilt per visitor: it is ~160 kB)."""
        return overview_figures(self.manifest, self.conditions, self.subject, self.dose_value, self.measure)

    # --- views: Bokeh models built once per session, updated in place (pipelines.dashboards.views) ----

    # Plot titles are drawn as canvas text by Bokeh (never parsed as HTML) and only ever hold values from the
    # parameters' own options (the parameters refuse anything else).
    def _title(self, what: str) -> str:
        return view_title(what, self.subject, self.conditions.label(self.dose_value))

    def _make(self, name: str):
        cond, m, s = self.conditions, self.manifest, self.settings
        if name == "alpha":
            view = views.TimeCourse(
                "occipital alpha (dB re baseline)",
                threshold=s["params"].threshold_db,
                infusion_end_s=s["infusion_end_s"],
                x_range=self._time_range(),
            )
            view.set_group(data.group_stats(m, "occipital_alpha_db"), cond.order, cond.label, cond.color)
            return view
        if name == "entropy":
            return views.TimeCourse("entropy change", infusion_end_s=s["infusion_end_s"], x_range=self._time_range())
        if name == "topo":
            return views.Topomap(_safe_positions(m), "change")
        if name == "dose_response":
            return views.DoseResponse(
                [cond.short(d) for d in cond.order],
                "condition" if cond.blinded else "dose (mg/kg)",
                connect=not cond.blinded,
            )
        if name == "scatter":
            return views.SelectionScatter(self._on_select)
        if name == "profile":
            return views.Profile(list(self.profile_frame()["score"]))
        if name == "mood":
            _, score, timepoints = data.mood_outcomes(m)
            return views.Mood(list(timepoints), score)
        if name == "timeline":
            return views.Timeline()
        if name == "cytokines":
            table = _safe_cytokines(m)
            analytes, label = ([], "") if table is None else data.cytokine_changes(m)[1:]
            return views.Cytokines(list(analytes), label)
        raise KeyError(name)

    def _time_range(self):
        """The time axis both time courses share (built with the first of them)."""
        if self._shared_time_range is None:
            from bokeh.models import DataRange1d

            self._shared_time_range = DataRange1d()
        return self._shared_time_range

    def views_for(self, names) -> list:
        """The named views (built on first use, then kept and updated in place)."""
        new = [n for n in names if n not in self._views]
        for n in new:
            self._views[n] = self._make(n)
        if new:
            self._refresh(set(PARAMS), only=new)
        self._follow()
        return [self._views[n] for n in names]

    def _follow(self) -> None:
        """From now on, a change of the selection updates what has been built (once per session)."""
        if self._watcher is None:
            self._watcher = self.param.watch(lambda *events: self._refresh({e.name for e in events}), list(PARAMS))

    def _refresh(self, changed: set[str], only=None) -> None:
        """Update what the changed parameters draw, in the views built so far (or just ``only``)."""
        v = {n: view for n, view in self._views.items() if only is None or n in only}
        cond, dose = self.conditions, self.dose_value
        any_ = lambda *names: bool(changed & set(names))
        if any_("subject", "dose"):
            if "alpha" in v:
                row = self.markers_row()
                v["alpha"].set_subject(
                    self.alpha_frame(),
                    self._title("Occipital alpha"),
                    None if row is None else row["alpha_suppression_onset_s"],
                )
            if "profile" in v:
                v["profile"].update(self.profile_frame(), self._title("Peak experience"))
            if "mood" in v:
                v["mood"].update(
                    self.mood_frame(),
                    data.mood_trajectory(self.manifest),
                    dose,
                    cond.label,
                    cond.color,
                    cond.order,
                    self._title("Mood"),
                )
            if "cytokines" in v:
                v["cytokines"].update(self.cytokine_frame(), self.subject, self._title("Cytokines"))
            if "timeline" in v:
                v["timeline"].update(self.therapy_frame(), cond.label, cond.order, f"Therapy sessions — {self.subject}")
        if any_("measure") and "entropy" in v:
            v["entropy"].set_group(data.group_stats(self.manifest, self.measure), cond.order, cond.label, cond.color)
            v["entropy"].figure.yaxis.axis_label = f"{self.measure} (change)"
        if any_("subject", "dose", "measure"):
            if "entropy" in v:
                v["entropy"].set_subject(self.entropy_frame(), self._title(f"{self.measure}, all channels"))
            if "dose_response" in v:
                per_dose, changes = self.dose_response_frames()
                v["dose_response"].update(
                    per_dose,
                    changes,
                    self.subject,
                    dose,
                    cond.short,
                    f"{self.measure} plateau change",
                    f"Condition-response: {self.measure} (95% CI)"
                    if cond.blinded
                    else f"Dose-response: {self.measure} (95% CI)",
                    cond.order,
                )
        if "scatter" in v:
            if any_("dose", "measure") or only is not None:
                frame, x, ylabel = self.scatter_frame()
                self._scatter_rows = frame
                v["scatter"].update(
                    frame,
                    x,
                    self.subject,
                    f"{self.measure} plateau change",
                    ylabel,
                    f"Tap a subject — {cond.label(dose)}",
                )
            elif any_("subject"):
                v["scatter"].set_subject(self._scatter_rows, "entropy_change", self.subject)
        if "topo" in v and any_("subject", "dose", "measure", "time_s"):
            v["topo"].update(
                self.topo_frame(), f"{self.measure} change", f"{self.measure} at {self.time_s:.0f} s — {self.subject}"
            )
        if only is None:
            self.summary.object = self.summary_markdown()
            if self._overview is not None and any_("subject", "dose", "measure"):
                self._overview.text = self.overview_html()

    def _on_select(self, index):
        if not index:
            return
        rows = self._scatter_rows
        if 0 <= index[0] < len(rows):
            self.subject = str(rows["participant_id"].iloc[index[0]])

    def select_point(self, index: int) -> None:
        """What a tap on the scatter does (also used by tests): select the subject of point ``index``."""
        self._on_select([index])

    def _sync_location(self):
        if self._synced or not pn.state.location:
            return
        self._synced = True
        safety.QuerySync(self, self.url_fields(), self._show_rejected).start(pn.state.location)

    def release(self, *_):
        """Drop this session's models and watchers (called when its browser tab closes), so nothing the
        server keeps refers to them."""
        if self._watcher is not None:
            self.param.unwatch(self._watcher)
            self._watcher = None
        self._views = {}
        self._overview = None
        self._shared_time_range = None
        self._tabs = None
        self._main = None
        self._scatter_rows = pd.DataFrame()
        data.return_freed_memory_soon()

    def __panel__(self):
        self._sync_location()
        # The link's selection was applied above, before anything watches the parameters: the summary follows it.
        self.summary.object = self.summary_markdown()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(self.release)
        width = SIDEBAR_WIDTH - 20
        # description=None: no per-session tooltip models (Panel renders each description's Markdown into a
        # Tooltip per session); the sidebar note says what the selectors mean.
        widgets = (
            pn.widgets.Select.from_param(self.param.subject, name="Subject", width=width, description=None),
            pn.widgets.Select.from_param(
                self.param.dose, name="Condition" if self.blinded else "Dose", width=width, description=None
            ),
            pn.widgets.Select.from_param(self.param.measure, name="Measure", width=width, description=None),
        )
        study = data.study(self.manifest)
        blind_note = (
            "**Blinded:** conditions are shown as letters; doses are hidden until unblinding.\n\n"
            if self.blinded
            else ""
        )
        side = pn.Column(
            pn.pane.Markdown(
                f"## Study {escape_markdown(study.name)}\n{len(self.subjects)} participants (pseudonymous IDs only).",
                width=SIDEBAR_WIDTH - 20,
            ),
            *widgets,  # straight in the sidebar's column (no column of their own: fewer models per visitor)
            pn.pane.Markdown(
                blind_note + "Dashed lines: infusion start; dotted: infusion end; red dashed: suppression "
                "threshold. Red everywhere is the selected subject; tap a point in the scatter to "
                "select another. Measures: entropy / complexity, mean over channels, change from "
                "baseline.",
                width=SIDEBAR_WIDTH - 20,
                styles={"font-size": "13px"},
            ),
            width=SIDEBAR_WIDTH,
            css_classes=["kw-sidebar"],
        )
        # One tab on screen at a time (dynamic): the overview first; the other tabs' views are built (and sent)
        # when the tab is first opened, into an empty column, and kept for the session.  (A lazy
        # pn.param.ParamFunction per tab would cost ~3 ms per visitor each.)
        holders = [self._overview_pane()] + [pn.Column(sizing_mode="stretch_width") for _ in TABS[1:]]
        tabs = pn.Tabs(*zip([t for t, _ in TABS], holders), dynamic=True, sizing_mode="stretch_width")

        def show(index: int) -> None:
            if index and not holders[index].objects:
                holders[index].objects = self._tab_content(TABS[index][1])

        tabs.param.watch(lambda event: show(event.new), "active")
        self._tabs = tabs
        main = pn.Column(
            *([self.notice] if self._notice is not None and self._notice.visible else []),
            self.summary,
            tabs,
            sizing_mode="stretch_width",
        )
        self._main = main
        return pn.Row(side, main, sizing_mode="stretch_width", stylesheets=[CSS])

    def _tab_content(self, names) -> list:
        """An interactive tab: the named views with the controls that act only on them."""
        return [*self._controls_for(names), _wrapping_row([view.figure for view in self.views_for(names)])]

    def _overview_pane(self):
        if self._overview is None:
            from bokeh.models import Div

            self._overview = Div(text=self.overview_html(), name="explorer-overview", sizing_mode="stretch_width")
            self._follow()
        return pn.pane.Bokeh(self._overview, sizing_mode="stretch_width")

    def _controls_for(self, names) -> list:
        """The controls that only act on these views, shown with them (none in the first view)."""
        if "topo" not in names:
            return []
        # A native, labelled range input (Panel's slider handle has no accessible name).
        return [RangeInput.linked(self, "time_s", "Topomap time (s from infusion start)", "s", width=SIDEBAR_WIDTH)]

    def show_tab(self, title: str) -> None:
        """Open the tab named ``title`` (what a click on it does; tests use it)."""
        self._tabs.active = [t for t, _ in TABS].index(title)


# --- what a view shows, computed once per server process and shared by every session ---------------------
# Keyed by the manifest and the selection only (never by session), on top of the data.py loaders (also
# keyed by the manifest): as fresh as they are, and cleared with them by pn.state.clear_caches().  Callers
# treat the results as read-only.  Bounded: subjects × conditions × measures distinct selections (a few hundred
# in the default study); a few MB at most, plus the overview pictures (at most 128, ~20 MB).


@pn.cache(max_items=1024)
def _session_of(manifest: str, subject: str, dose: float) -> str | None:
    recs = data.recordings(manifest)
    rows = recs[(recs["participant_id"] == subject) & np.isclose(recs["dose_mg_per_kg"], dose)]
    return None if rows.empty else str(rows["session"].iloc[0])


@pn.cache(max_items=1024)
def _subject_series(manifest: str, name: str, subject: str, session: str) -> pd.DataFrame:
    """time_s, value, smoothed of one recording's series (occipital alpha or an entropy measure's change)."""
    group = data.group_time_course(manifest, name)
    rows = group[(group["participant_id"] == subject) & (group["session"] == session)]
    rows = rows.sort_values("time_s")[["time_s", "value"]].reset_index(drop=True)
    rows["smoothed"] = dynamics.smooth(rows["value"].to_numpy(), data.eeg_settings(manifest)["params"].smooth_windows)
    return rows


@pn.cache(max_items=1024)
def _markers_row(manifest: str, subject: str, session: str) -> pd.Series | None:
    table = data.markers(manifest)
    rows = table[(table["participant_id"] == subject) & (table["session"].astype(str) == session)]
    return None if rows.empty else rows.iloc[0]


@pn.cache(max_items=1024)
def _summary(manifest: str, subject: str, dose: float, measure: str, condition: str, blinded: bool) -> str:
    """The explorer's summary line (Markdown; every value from the data or the options, escaped)."""
    head = f"**{escape_markdown(subject)}** at **{escape_markdown(condition)}**"
    session = _session_of(manifest, subject, dose)
    if session is None:
        return head + ": no recording in this condition."
    row = _markers_row(manifest, subject, session)
    text = head if blinded else head + f" (session {escape_markdown(session)})"
    if row is None:
        return text + "."
    cfg = data.eeg_settings(manifest)["params"]
    onset = row["alpha_suppression_onset_s"]
    frame = _subject_series(manifest, measure, subject, session)  # the selected measure, not the notebook's
    peak_t, peak_v = (
        (float("nan"), float("nan"))
        if frame.empty
        else dynamics.peak(frame["time_s"].to_numpy(), frame["value"].to_numpy(), cfg.smooth_windows)
    )
    peak = f"{peak_v:+.3f} ({peak_t:.0f} s)" if np.isfinite(peak_v) else "no finite value"
    text += (
        f": alpha suppression below {cfg.threshold_db:g} dB for ≥ {cfg.hold_s:g} s "
        + (f"from **{onset:.0f} s** after infusion start" if np.isfinite(onset) else "**not reached**")
        + f"; deepest {row['alpha_suppression_depth_db']:.1f} dB; {escape_markdown(measure)} peaked at {peak}."
    )
    return text


def view_title(what: str, subject: str, condition_label: str) -> str:
    """A figure's title: what it shows, for whom, in which condition."""
    return f"{what} — {subject}, {condition_label}"


def overview_figures(manifest: str, conditions: Conditions, subject: str, dose: float, measure: str) -> str:
    """Both time courses of a selection as SVG (the interactive explorer's first tab, the plain first view)."""
    session = _session_of(manifest, subject, dose)
    row = None if session is None else _markers_row(manifest, subject, session)
    label = conditions.label(dose)
    return _overview_html(
        manifest,
        subject,
        session or "",
        measure,
        tuple((d, conditions.label(d), conditions.color(d)) for d in conditions.order),
        (view_title("Occipital alpha", subject, label), view_title(f"{measure}, all channels", subject, label)),
        None if row is None else float(row["alpha_suppression_onset_s"]),
    )


# ~160 kB each: at most 128 selections (~20 MB) kept per server process.
@pn.cache(max_items=128)
def _overview_html(
    manifest: str, subject: str, session: str, measure: str, conditions: tuple, titles: tuple, onset_s: float | None
) -> str:
    """Both time courses of the first view side by side (wrapping on a narrow window)."""
    threshold = float(data.eeg_settings(manifest)["params"].threshold_db)
    alpha = _static_time_course(
        manifest,
        "occipital_alpha_db",
        subject,
        session,
        conditions,
        titles[0],
        "occipital alpha (dB re baseline)",
        threshold,
        onset_s,
    )
    entropy = _static_time_course(
        manifest, measure, subject, session, conditions, titles[1], f"{measure} (change)", None, None
    )
    return f'<div style="display:flex;flex-wrap:wrap;gap:4px 12px">{alpha}{entropy}</div>'


def _static_time_course(
    manifest: str,
    name: str,
    subject: str,
    session: str,
    conditions: tuple,
    title: str,
    ylabel: str,
    threshold: float | None,
    onset_s: float | None,
) -> str:
    """One time course as SVG (views.static_time_course); ``conditions``: (dose, label, colour) in order."""
    settings = data.eeg_settings(manifest)
    return views.static_time_course(
        data.group_stats(manifest, name),
        list(conditions),
        _subject_series(manifest, name, subject, session),
        title,
        ylabel,
        threshold=threshold,
        infusion_end_s=settings["infusion_end_s"],
        onset_s=onset_s,
    )


def _wrapping_row(figures: list):
    """The figures side by side, wrapping onto the next line when the window is narrow: one plain Bokeh Row in
    one pane (pn.FlexBox would be a ReactiveHTML component rendered per session; a pn.Row would be given a
    minimum width of all its figures side by side, and never wrap)."""
    from bokeh.models import Row
    from panel.io.model import remove_root

    for figure in figures:
        if figure.document is not None:  # the app shown again (a second notebook cell): the figures move here
            remove_root(figure)
    return pn.pane.Bokeh(
        Row(children=figures, sizing_mode="stretch_width", styles={"flex-wrap": "wrap"}), sizing_mode="stretch_width"
    )


def _safe_peak(manifest: str):
    result, _ = data._safe(data.peak_scores, manifest)
    return result if result is not None else (None, [])


def _safe_cytokines(manifest: str):
    result, _ = data._safe(data.cytokine_changes, manifest)
    return None if result is None else result[0]


def _safe_positions(manifest: str) -> dict:
    result, _ = data._safe(data.channel_positions, manifest)
    return result or {}


class _quiet:
    """Silence numpy's 'mean of empty slice' for all-NaN channels (the value stays NaN, drawn as missing)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def app(manifest=None, blinding: Blinding | None = None) -> ExplorerApp:
    """A new explorer session (pn.serve calls this once per visitor), on the study's current data."""
    data.ensure_fresh(data.manifest_key(manifest))
    return ExplorerApp(manifest, blinding=blinding)


if pn.state.served:  # `panel serve pipelines/dashboards/explorer.py` (KW_MANIFEST picks the study)
    import os

    data.setup_extension()
    app(os.environ.get("KW_MANIFEST")).servable(title="Ketamine workbench — study explorer")
