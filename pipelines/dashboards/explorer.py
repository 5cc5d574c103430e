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
mirrored in the URL query (``/explorer?subject=sub-03&dose=0.5&measure=perm_entropy&time_s=120``), so a view
can be shared as a link.  Values from a link are checked against the study's own subjects, doses, measures and
time range (:mod:`pipelines.dashboards.safety`): an unknown value is ignored with a short notice and never
becomes a selector option; the parameters themselves refuse values outside their options.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import param

from pipelines import viz
from pipelines.dashboards import data
from pipelines.dashboards import figures as fig
from pipelines.dashboards import safety
from pipelines.dashboards.safety import escape_markdown
from pipelines.eeg import dynamics

CSS = """
.kw-summary { font-size: 14px; }
"""


class ExplorerApp(pn.viewable.Viewer):
    """Pick a subject, a dose and a measure; every view follows."""

    # check_on_set: a value outside the options is refused (otherwise param would add it as a new option).
    subject = param.Selector(check_on_set=True, doc="Pseudonymous participant (BIDS sub-XX)")
    dose = param.Selector(check_on_set=True, doc="Dose of the session shown (mg/kg)")
    measure = param.Selector(check_on_set=True, doc="Entropy / complexity measure (mean over channels, change from baseline)")
    time_s = param.Number(default=0.0, doc="Time of the topomap (s from infusion start)")

    def __init__(self, study=None, **params):
        self.manifest = data.manifest_key(study)
        recs = data.recordings(self.manifest)
        settings = data.eeg_settings(self.manifest)
        self.settings = settings
        subjects = sorted(recs["participant_id"].unique())
        doses = sorted(recs["dose_mg_per_kg"].unique())
        self.subjects = subjects
        self.param.subject.objects = subjects
        self.param.dose.objects = {viz.dose_label(d): float(d) for d in doses}
        self.param.measure.objects = settings["entropy_measures"]
        times = settings["time_s"]
        self.param.time_s.bounds = (float(times[0]), float(times[-1]))
        self.param.time_s.step = settings["step_s"]
        params.setdefault("subject", subjects[0])
        params.setdefault("dose", float(max(doses)))
        params.setdefault("measure", settings["params"].entropy_measure)
        plateau_mid = settings["infusion_end_s"] - settings["params"].plateau_s / 2.0
        params.setdefault("time_s", float(times[np.argmin(np.abs(times - plateau_mid))]))
        super().__init__(**params)
        self._scatter_rows = pd.DataFrame()
        self._synced = False
        self.notice = pn.pane.Alert("", alert_type="warning", visible=False, css_classes=[safety.NOTICE_CLASS],
                                    name="url-notice", sizing_mode="stretch_width")

    def url_fields(self) -> dict:
        """How each URL query value is read: only this study's subjects, doses, measures and window times."""
        times = self.settings["time_s"]
        return {"subject": safety.one_of(self.param.subject.objects),
                "dose": safety.closest_number(self.param.dose.objects.values(), labels=self.param.dose.objects),
                "measure": safety.one_of(self.param.measure.objects),
                "time_s": safety.number_in(float(times[0]), float(times[-1]), grid=times)}

    def _show_rejected(self, rejected: list[str]) -> None:
        self.notice.object = safety.notice_text(rejected)
        self.notice.visible = bool(rejected)

    # --- data selections (what the views draw; tested without a browser) ------------------------

    @property
    def session(self) -> str | None:
        """Condition label of the selected subject's recording at the selected dose (None when absent)."""
        recs = data.recordings(self.manifest)
        rows = recs[(recs["participant_id"] == self.subject) & np.isclose(recs["dose_mg_per_kg"], self.dose)]
        return None if rows.empty else str(rows["session"].iloc[0])

    @property
    def _subject_label(self) -> str:
        return self.subject.removeprefix("sub-")

    def _series(self, name: str) -> pd.DataFrame:
        group = data.group_time_course(self.manifest, name)
        rows = group[(group["participant_id"] == self.subject) & (group["session"] == (self.session or ""))]
        rows = rows.sort_values("time_s")[["time_s", "value"]].reset_index(drop=True)
        rows["smoothed"] = dynamics.smooth(rows["value"].to_numpy(), self.settings["params"].smooth_windows)
        return rows

    def alpha_frame(self) -> pd.DataFrame:
        """time_s, value, smoothed: the subject's occipital alpha (dB re baseline) at the selected dose."""
        return self._series("occipital_alpha_db")

    def entropy_frame(self) -> pd.DataFrame:
        """time_s, value, smoothed: the subject's entropy change from baseline (selected measure)."""
        return self._series(self.measure)

    def markers_row(self) -> pd.Series | None:
        table = data.markers(self.manifest)
        rows = table[(table["participant_id"] == self.subject) & (table["session"].astype(str) == (self.session or ""))]
        return None if rows.empty else rows.iloc[0]

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
            now = np.nanmean(values[:, max(0, i - half):i + half + 1], axis=1)
            change = now - np.nanmean(values[:, base], axis=1)
        return pd.DataFrame({"channel": list(map(str, da["channel"].to_numpy())), "change": change})

    def dose_response_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-dose mean with CI, per-recording plateau change) of the selected measure."""
        return data.dose_means(self.manifest, self.measure), data.plateau_changes(self.manifest, self.measure)

    def scatter_frame(self) -> tuple[pd.DataFrame, str, str]:
        """One row per subject at the selected dose: entropy plateau change (x) against MEQ30 total (y), or against
        occipital alpha change where there are no peak-experience ratings (placebo)."""
        changes = data.plateau_changes(self.manifest, self.measure)
        at_dose = changes[np.isclose(changes["dose_mg_per_kg"], self.dose)][["participant_id", "change"]]
        at_dose = at_dose.rename(columns={"change": "entropy_change"})
        peak, _ = _safe_peak(self.manifest)
        y, ylabel = "meq30_total", "MEQ30 total (0–5)"
        if peak is not None and y in peak.columns:
            scores = peak[np.isclose(peak["dose_mg_per_kg"], self.dose)][["participant_id", y]]
            merged = at_dose.merge(scores, on="participant_id", how="left")
        else:
            merged = at_dose.assign(**{y: np.nan})
        if merged[y].notna().sum() < 2:
            alpha = data.plateau_changes(self.manifest, "occipital_alpha_db")
            alpha = alpha[np.isclose(alpha["dose_mg_per_kg"], self.dose)][["participant_id", "change"]]
            merged = at_dose.merge(alpha.rename(columns={"change": "alpha_change_db"}), on="participant_id")
            y, ylabel = "alpha_change_db", "occipital alpha change (dB)"
        merged = merged.dropna(subset=["entropy_change", y]).sort_values("participant_id").reset_index(drop=True)
        return merged.rename(columns={y: "y"}), "entropy_change", ylabel

    def profile_frame(self) -> pd.DataFrame:
        """score (label), column, value (this subject at this dose), group_mean (everyone at this dose); 0-100 scales."""
        from pipelines.peak_mood import score_label

        peak, columns = _safe_peak(self.manifest)
        if peak is None or not columns:
            return pd.DataFrame(columns=["score", "column", "value", "group_mean"])
        at_dose = peak[np.isclose(peak["dose_mg_per_kg"], self.dose)]
        mine = at_dose[at_dose["participant_id"] == self.subject]
        values = mine[columns].iloc[0] if len(mine) else pd.Series(np.nan, index=columns)
        return pd.DataFrame({"score": [score_label(c).replace(" pct max", " (% max)") for c in columns], "column": columns,
                             "value": values.to_numpy(dtype=float), "group_mean": at_dose[columns].mean().to_numpy(dtype=float)})

    def mood_frame(self) -> pd.DataFrame:
        """The subject's mood rows (every session and time point)."""
        outcomes, _, _ = data.mood_outcomes(self.manifest)
        return outcomes[outcomes["participant_id"] == self.subject].reset_index(drop=True)

    def cytokine_frame(self) -> pd.DataFrame:
        """Every subject's ln change per analyte at the selected dose."""
        table = _safe_cytokines(self.manifest)
        if table is None:
            return pd.DataFrame(columns=["participant_id", "analyte", "ln_change", "dose_mg_per_kg"])
        return table[np.isclose(table["dose_mg_per_kg"], self.dose)].reset_index(drop=True)

    def summary_markdown(self) -> str:
        head = f"**{escape_markdown(self.subject)}** at **{escape_markdown(viz.dose_label(self.dose))}**"
        if self.session is None:
            return head + ": no recording at this dose."
        row = self.markers_row()
        text = head + f" (session {escape_markdown(self.session)})"
        if row is None:
            return text + "."
        cfg = self.settings["params"]
        onset = row["alpha_suppression_onset_s"]
        text += (f": alpha suppression below {cfg.threshold_db:g} dB for ≥ {cfg.hold_s:g} s "
                 + (f"from **{onset:.0f} s** after infusion start" if np.isfinite(onset) else "**not reached**")
                 + f"; deepest {row['alpha_suppression_depth_db']:.1f} dB; {escape_markdown(row['entropy_measure'])} peaked at "
                 f"{row['entropy_peak_change']:+.3f} ({row['entropy_peak_time_s']:.0f} s).")
        return text

    # --- views ---------------------------------------------------------------------------------

    # Plot titles are drawn as canvas text by Bokeh (never parsed as HTML) and only ever hold values from the
    # parameters' own options (the parameters refuse anything else).
    def _title(self, what: str) -> str:
        return f"{what} — {self.subject}, {viz.dose_label(self.dose)}"

    @param.depends("subject", "dose")
    def alpha_view(self):
        cfg = self.settings["params"]
        group = data.group_time_course(self.manifest, "occipital_alpha_db")
        row = self.markers_row()
        onset = None if row is None else row["alpha_suppression_onset_s"]
        return fig.subject_time_course(group, self.alpha_frame(), "occipital alpha (dB re baseline)",
                                       self._title("Occipital alpha"), dose=self.dose, threshold=cfg.threshold_db,
                                       infusion_end_s=self.settings["infusion_end_s"], onset_s=onset)

    @param.depends("subject", "dose", "measure")
    def entropy_view(self):
        group = data.group_time_course(self.manifest, self.measure)
        return fig.subject_time_course(group, self.entropy_frame(), f"{self.measure} (change)",
                                       self._title(f"{self.measure}, all channels"), dose=self.dose,
                                       infusion_end_s=self.settings["infusion_end_s"])

    @param.depends("subject", "dose", "measure", "time_s")
    def topomap_view(self):
        return fig.topomap(self.topo_frame(), _safe_positions(self.manifest), f"{self.measure} change",
                           f"{self.measure} at {self.time_s:.0f} s — {self.subject}")

    @param.depends("subject", "dose", "measure")
    def dose_response_view(self):
        per_dose, changes = self.dose_response_frames()
        return fig.dose_response_with_subject(per_dose, changes, self.subject, self.dose, f"{self.measure} plateau change",
                                              f"Dose-response: {self.measure} (95% CI)")

    @param.depends("dose", "measure")
    def _scatter(self):
        frame, x, ylabel = self.scatter_frame()
        self._scatter_rows = frame
        return fig.selection_scatter(frame, x, "y", f"{self.measure} plateau change", ylabel,
                                     f"Tap a subject — {viz.dose_label(self.dose)}")

    @param.depends("subject", "dose", "measure")
    def _highlight(self):
        frame, x, _ = self.scatter_frame()
        return fig.highlight(frame[frame["participant_id"] == self.subject], x, "y")

    def scatter_view(self):
        import holoviews as hv

        points = hv.DynamicMap(self._scatter)
        self._selection = hv.streams.Selection1D(source=points)
        self._selection.add_subscriber(self._on_select)
        return points * hv.DynamicMap(self._highlight)

    def _on_select(self, index):
        if not index:
            return
        rows = self._scatter_rows
        if 0 <= index[0] < len(rows):
            self.subject = str(rows["participant_id"].iloc[index[0]])

    def select_point(self, index: int) -> None:
        """What a tap on the scatter does (also used by tests): select the subject of point ``index``."""
        self._on_select([index])

    @param.depends("subject", "dose")
    def profile_view(self):
        return fig.profile_bars(self.profile_frame(), self._title("Peak experience"))

    @param.depends("subject", "dose")
    def mood_view(self):
        outcomes, score, timepoints = data.mood_outcomes(self.manifest)
        return fig.mood_trajectory(self.mood_frame(), data.mood_trajectory(self.manifest), timepoints, score, self.dose,
                                   self._title("Mood"))

    @param.depends("subject", "dose")
    def cytokine_view(self):
        table = _safe_cytokines(self.manifest)
        analytes, label = ([], "") if table is None else data.cytokine_changes(self.manifest)[1:]
        return fig.cytokine_strip(self.cytokine_frame(), self.subject, analytes, label, self._title("Cytokines"))

    @param.depends("subject", "dose")
    def summary_view(self):
        return pn.pane.Markdown(self.summary_markdown(), css_classes=["kw-summary"], name="explorer-summary",
                                sizing_mode="stretch_width")

    def _sync_location(self):
        if self._synced or not pn.state.location:
            return
        self._synced = True
        safety.QuerySync(self, self.url_fields(), self._show_rejected).start(pn.state.location)

    def __panel__(self):
        self._sync_location()
        widgets = pn.Param(self.param, parameters=["subject", "dose", "measure", "time_s"], show_name=False,
                           widgets={"time_s": {"type": pn.widgets.FloatSlider, "step": self.settings["step_s"],
                                               "label": "topomap time (s from infusion start)"}},
                           width=260)
        study = data.study(self.manifest)
        side = pn.Column(
            pn.pane.Markdown(f"### Study {escape_markdown(study.name)}\n{len(self.subjects)} participants "
                             "(pseudonymous IDs only).", width=260),
            widgets,
            pn.pane.Markdown("Dashed lines: infusion start; dotted: infusion end; red dashed: suppression "
                             "threshold. Red everywhere is the selected subject; tap a point in the scatter to "
                             "select another.", width=260, styles={"font-size": "12px"}),
            width=280)
        pane = lambda f: pn.pane.HoloViews(f, linked_axes=False)  # noqa: E731
        main = pn.Column(
            self.notice,
            self.summary_view,
            pn.FlexBox(pane(self.alpha_view), pane(self.entropy_view)),
            pn.FlexBox(pane(self.topomap_view), pane(self.dose_response_view), pane(self.scatter_view())),
            pn.FlexBox(pane(self.profile_view), pane(self.mood_view), pane(self.cytokine_view)),
            sizing_mode="stretch_width")
        return pn.Row(side, main, sizing_mode="stretch_width", stylesheets=[CSS])


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


def app(manifest=None) -> ExplorerApp:
    """A new explorer session (pn.serve calls this once per visitor)."""
    return ExplorerApp(manifest)


if pn.state.served:  # `panel serve pipelines/dashboards/explorer.py` (KW_MANIFEST picks the study)
    import os

    data.setup_extension()
    app(os.environ.get("KW_MANIFEST")).servable(title="Ketamine workbench — study explorer")
