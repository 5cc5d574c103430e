"""Dose-titration monitor: replays a recording of the study as if it were arriving live.

A periodic callback advances a simulated clock (``speed`` × real time); every analysis window whose end has
been reached by the clock is "received" and the views update: occipital alpha relative to the pre-infusion
baseline and the entropy change, each raw (faint) and smoothed (bold), with the suppression threshold drawn.

The alert uses exactly the marker definition of notebook 01 (:func:`pipelines.eeg.dynamics.suppression_onset`,
same threshold, hold and smoothing), applied to the windows received so far: it is raised as soon as the
smoothed curve has stayed at or below the threshold for ``hold_s`` after infusion start, and then latched (a
clinician acknowledges an alarm; it does not silently disappear).  A centred running mean needs the windows
after a point, so only points whose whole smoothing span has arrived are judged: the live alert fires on
exactly the recordings (and at exactly the onset) the offline marker finds, half a smoothing span after the
hold is complete — never on an edge artefact of partial smoothing.

The alert is a ``pn.pane.Alert`` with CSS class ``kw-suppression-alert`` (name ``suppression-alert``), shown
only when raised — tests and screen readers find it by that name.

``recording``, ``speed`` and ``playing`` are mirrored in the URL; values from a link are checked against the
study's recordings and the parameter bounds (:mod:`pipelines.dashboards.safety`): an unknown value is ignored
with a short notice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import param

from pipelines.dashboards import data, safety
from pipelines.dashboards import figures as fig
from pipelines.dashboards.blinding import Blinding, Conditions
from pipelines.dashboards.safety import escape_markdown
from pipelines.dashboards.widgets import RangeInput
from pipelines.eeg import dynamics
from pipelines.figures import common as viz

ALERT_CLASS = "kw-suppression-alert"
TICK_MS = 200


class TitrationApp(pn.viewable.Viewer):
    """Replay one recording window by window, with the suppression alert."""

    # check_on_set: a value outside the options is refused (otherwise param would add it as a new option).
    recording = param.Selector(check_on_set=True, doc="Recording to replay (pseudonymous subject · session)")
    speed = param.Number(
        default=10.0, bounds=(1.0, 200.0), softbounds=(1.0, 100.0), step=1.0, doc="Replay speed (× real time)"
    )
    threshold_db = param.Number(
        default=-3.0, bounds=(-20.0, -0.5), step=0.5, doc="Suppression threshold (dB re baseline)"
    )
    hold_s = param.Number(default=20.0, bounds=(2.0, 120.0), step=2.0, doc="The threshold must hold this long (s)")
    playing = param.Boolean(default=False, doc="Replay running")
    clock_s = param.Number(default=0.0, doc="Simulated time (s from infusion start)")
    received = param.Integer(default=0, doc="Windows received so far")
    alert_raised = param.Boolean(default=False, doc="Sustained suppression detected")
    onset_s = param.Number(
        default=None, allow_None=True, doc="Onset of the detected suppression (s from infusion start)"
    )
    detected_at_s = param.Number(default=None, allow_None=True, doc="Clock when the alert was raised")

    def __init__(self, study=None, blinding: Blinding | None = None, **params):
        self.manifest = data.manifest_key(study)
        recs = data.recordings(self.manifest)
        self.settings = data.eeg_settings(self.manifest)
        cfg = self.settings["params"]
        self.conditions = cond = Conditions(recs["dose_mg_per_kg"].unique(), blinding)
        # Blinded, a recording is "sub-01 · B" (value sub-01_B): its session label would name the dose.
        rank = {d: i for i, d in enumerate(cond.order)}
        recs = recs.assign(_rank=[rank[min(rank, key=lambda o: abs(o - d))] for d in recs["dose_mg_per_kg"]])
        recs = recs.sort_values(["subject", "_rank"]).reset_index(drop=True)
        shown = [cond.session_label(r.session, r.dose_mg_per_kg) for r in recs.itertuples()]
        values = [f"{r.participant_id}_{c}" for r, c in zip(recs.itertuples(), shown)]
        labels = [
            f"{r.participant_id} · {c}" + ("" if cond.blinded else f" ({viz.dose_label(r.dose_mg_per_kg)})")
            for r, c in zip(recs.itertuples(), shown)
        ]
        self.param.recording.objects = dict(zip(labels, values))
        self._recording_of = {v: (r.subject, r.session) for v, r in zip(values, recs.itertuples())}
        subject, session = params.pop("subject", None), params.pop("session", None)
        if subject is not None and session is not None:
            pid = f"sub-{str(subject).removeprefix('sub-')}"
            match = recs[(recs["participant_id"] == pid) & (recs["session"] == str(session))]
            if len(match):
                session = cond.session_label(str(session), match["dose_mg_per_kg"].iloc[0])
            params["recording"] = f"{pid}_{session}"
        # Default: the first subject's last recording in display order (highest dose; last letter when blinded).
        params.setdefault("recording", values[(recs["subject"] == recs["subject"].iloc[0]).sum() - 1])
        params.setdefault("threshold_db", cfg.threshold_db)
        params.setdefault("hold_s", cfg.hold_s)
        autoplay = params.pop("autoplay", False)
        super().__init__(**params)
        self._callback = None
        self._alert = self._status = self._pipes = None
        self._load_recording()
        self._alert = pn.pane.Alert(
            "",
            alert_type="danger",
            visible=False,
            css_classes=[ALERT_CLASS],
            name="suppression-alert",
            sizing_mode="stretch_width",
        )
        self._status = pn.pane.Markdown(
            "", css_classes=["kw-titration-status"], name="titration-status", sizing_mode="stretch_width"
        )
        self._autoplay = autoplay
        self.notice = safety.url_notice()
        self._update_status()

    def url_fields(self) -> dict:
        """How each URL query value is read: only this study's recordings, speeds within bounds, true/false."""
        lo, hi = self.param.speed.bounds
        return {
            "recording": safety.one_of(self.param.recording.objects.values()),
            "speed": safety.number_in(lo, hi),
            "playing": safety.boolean,
        }

    def _show_rejected(self, rejected: list[str]) -> None:
        self.notice.object = safety.notice_text(rejected)
        self.notice.visible = bool(rejected)

    # --- the replay ------------------------------------------------------------------------------

    @param.depends("recording", watch=True)
    def _load_recording(self):
        label, session = self._recording_of[self.recording]
        times = self.settings["time_s"]
        alpha = data.summary_series(self.manifest, "occipital_alpha_db").sel(subject=label, session=session).to_numpy()
        entropy = (
            data.entropy_change(self.manifest, self.settings["params"].entropy_measure)
            .sel(subject=label, session=session)
            .to_numpy()
        )
        rejected = data.window_rejected(self.manifest).sel(subject=label, session=session).to_numpy()
        self._times, self._alpha, self._entropy = times, alpha, entropy
        self._rejected = rejected
        self._start_clock = float(times[0] - self.settings["window_s"] / 2.0)
        self.reset()

    def reset(self):
        """Back to the start of the recording (alert cleared)."""
        with param.parameterized.batch_call_watchers(self):
            self.clock_s = self._start_clock
            self.received = 0
            self.alert_raised = False
            self.onset_s = None
            self.detected_at_s = None
        if getattr(self, "_alert", None) is not None:
            self._alert.visible = False
            self._push()
            self._update_status()

    @property
    def finished(self) -> bool:
        return self.received >= len(self._times)

    def available(self, clock_s: float) -> int:
        """Windows whose end the clock has reached."""
        return int(np.searchsorted(self._times + self.settings["window_s"] / 2.0, clock_s + 1e-9, side="right"))

    def advance(self, seconds: float) -> None:
        """Move the simulated clock by ``seconds`` (recording time) and receive what became available."""
        self.clock_s = min(self.clock_s + seconds, float(self._times[-1] + self.settings["window_s"] / 2.0))
        n = self.available(self.clock_s)
        if n != self.received:
            self.received = n
            self._evaluate()
            self._push()
            self._update_status()
        if self.finished and self.playing:
            self.playing = False

    def replay_to_end(self) -> None:
        """Receive every window one at a time (what the live replay does, without waiting)."""
        step = self.settings["step_s"]
        while not self.finished:
            self.advance(step)

    def _tick(self):
        self.advance(self.speed * TICK_MS / 1000.0)

    def _evaluate(self):
        if self.alert_raised:
            return
        # Judge only windows whose centred smoothing span has been received in full: their smoothed values are
        # exactly the notebook's, so the live alert fires iff (and at the onset where) the offline marker does,
        # half a smoothing span later.  suppression_onset then runs unsmoothed on those values.
        n = self.received
        sw = self.settings["params"].smooth_windows
        final = n - sw // 2 if n < len(self._times) else n
        if final <= 0:
            return
        smoothed = dynamics.smooth(self._alpha[:n], sw)[:final]
        onset = dynamics.suppression_onset(
            self._times[:final], smoothed, self.threshold_db, self.hold_s, smooth_windows=1
        )
        if np.isfinite(onset):
            self.onset_s = float(onset)
            self.detected_at_s = float(self.clock_s)
            self.alert_raised = True
            self._alert.object = (
                f"**Sustained alpha suppression** — {escape_markdown(self._recording_label())}: occipital alpha at or below "
                f"{self.threshold_db:g} dB for ≥ {self.hold_s:g} s since {onset:.0f} s after infusion "
                f"start (detected at {self.clock_s:.0f} s)."
            )
            self._alert.visible = True

    def _recording_label(self) -> str:
        return next(k for k, v in self.param.recording.objects.items() if v == self.recording)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(alpha, entropy) received so far: time_s, value, smoothed (smoothing over the windows received)."""
        n = self.received
        sw = self.settings["params"].smooth_windows
        out = []
        for values in (self._alpha, self._entropy):
            v = values[:n]
            out.append(
                pd.DataFrame({"time_s": self._times[:n], "value": v, "smoothed": dynamics.smooth(v, sw) if n else v})
            )
        return out[0], out[1]

    @param.depends("threshold_db", "hold_s", watch=True)
    def _criteria_changed(self):
        # New criteria: re-judge what has been received so far (an alert raised under the old ones is cleared).
        self.alert_raised, self.onset_s, self.detected_at_s = False, None, None
        self._alert.visible = False
        self._evaluate()
        self._push()
        self._update_status()

    # --- playback --------------------------------------------------------------------------------

    @param.depends("playing", watch=True)
    def _play(self):
        if self.playing:
            if self.finished:
                self.reset()
            if self._callback is None:
                self._callback = pn.state.add_periodic_callback(self._tick, period=TICK_MS, start=False)
            if not self._callback.running:
                self._callback.start()
        elif self._callback is not None and self._callback.running:
            self._callback.stop()

    def _update_status(self):
        if self._status is None:
            return
        n = self.received
        alpha, entropy = self.frames()
        now = (
            (
                f"alpha {alpha['smoothed'].iloc[-1]:+.1f} dB, {self.settings['params'].entropy_measure} "
                f"{entropy['smoothed'].iloc[-1]:+.3f}"
            )
            if n
            else "waiting for the first window"
        )
        phase = (
            "baseline"
            if self.clock_s < 0
            else "infusion"
            if self.clock_s <= self.settings["infusion_end_s"]
            else "after infusion"
        )
        self._status.object = (
            f"**{escape_markdown(self._recording_label())}** — t = {self.clock_s:.0f} s ({phase}); {n}/{len(self._times)} "
            f"windows; {now}. Threshold {self.threshold_db:g} dB held {self.hold_s:g} s."
        )

    # --- views -----------------------------------------------------------------------------------

    def _limits(self):
        alpha = data.summary_series(self.manifest, "occipital_alpha_db").to_numpy()
        lo = float(np.nanpercentile(alpha, 0.5))
        hi = float(np.nanpercentile(alpha, 99.5))
        entropy = data.entropy_change(self.manifest, self.settings["params"].entropy_measure).to_numpy()
        elo, ehi = float(np.nanpercentile(entropy, 0.5)), float(np.nanpercentile(entropy, 99.5))
        return (min(lo, self.threshold_db) - 1.0, hi + 1.0), (elo - 0.02, ehi + 0.02)

    def _push(self):
        if self._pipes is None:
            return
        alpha, entropy = self.frames()
        self._pipes[0].send(alpha)
        self._pipes[1].send(entropy)

    def _views(self):
        import holoviews as hv

        alpha, entropy = self.frames()
        self._pipes = (hv.streams.Pipe(data=alpha), hv.streams.Pipe(data=entropy))
        alpha_lim, entropy_lim = self._limits()
        xlim = (self._start_clock, float(self._times[-1] + self.settings["window_s"] / 2.0))
        end = self.settings["infusion_end_s"]
        measure = self.settings["params"].entropy_measure

        def alpha_plot(data, threshold_db, onset_s):
            return fig.live_trace(
                data,
                "occipital alpha (dB re baseline)",
                xlim=xlim,
                ylim=alpha_lim,
                threshold=threshold_db,
                infusion_end_s=end,
                onset_s=onset_s,
                title="Occipital alpha relative to baseline",
            )

        def entropy_plot(data):
            return fig.live_trace(
                data,
                f"{measure} (change)",
                xlim=xlim,
                ylim=entropy_lim,
                color="#6a3d9a",
                infusion_end_s=end,
                title=f"Entropy: {measure}, all channels, change from baseline",
            )

        params = hv.streams.Params(self, ["threshold_db", "onset_s"], rename={})
        alpha_dm = hv.DynamicMap(alpha_plot, streams=[self._pipes[0], params])
        entropy_dm = hv.DynamicMap(entropy_plot, streams=[self._pipes[1]])
        return (
            pn.pane.HoloViews(alpha_dm, sizing_mode="stretch_width", linked_axes=False),
            pn.pane.HoloViews(entropy_dm, sizing_mode="stretch_width", linked_axes=False),
        )

    def __panel__(self):
        if pn.state.location and not getattr(self, "_synced", False):
            self._synced = True
            safety.QuerySync(self, self.url_fields(), self._show_rejected).start(pn.state.location)
        play = pn.widgets.Toggle.from_param(
            self.param.playing, label="▶ Play / ❚❚ Pause", color="primary", css_classes=["kw-play"]
        )
        reset = pn.widgets.Button(label="Reset", css_classes=["kw-reset"])
        reset.on_click(lambda _: self.reset())
        controls = pn.Column(
            pn.pane.Markdown("### Dose-titration monitor\nReplays a recording as if it were arriving live.", width=270),
            pn.widgets.Select.from_param(self.param.recording, name="Recording", width=250),
            # Native labelled range inputs: Panel's slider handle and spinner buttons have no accessible name.
            RangeInput.linked(self, "speed", "Speed (× real time)", "×", width=250),
            RangeInput.linked(self, "threshold_db", "Threshold (dB re baseline)", "dB", width=250),
            RangeInput.linked(self, "hold_s", "Hold (s)", "s", width=250),
            pn.Row(play, reset),
            pn.pane.Markdown(
                "The alert uses the onset definition of the EEG report (smoothed occipital alpha at "
                "or below the threshold for the whole hold after infusion start) on the windows "
                "received so far.",
                width=260,
                styles={"font-size": "12px"},
            ),
            width=280,
        )
        alpha_view, entropy_view = self._views()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.param.update(playing=False))
        if self._autoplay:
            pn.state.onload(lambda: setattr(self, "playing", True))
        main = pn.Column(self.notice, self._alert, self._status, alpha_view, entropy_view, sizing_mode="stretch_width")
        return pn.Row(controls, main, sizing_mode="stretch_width")


def app(manifest=None, blinding: Blinding | None = None, **params) -> TitrationApp:
    """A new monitor session (pn.serve calls this once per visitor)."""
    data.ensure_fresh(data.manifest_key(manifest))  # the study's current data, never stale caches
    return TitrationApp(manifest, blinding=blinding, **params)


if pn.state.served:  # `panel serve pipelines/dashboards/titration.py` (KW_MANIFEST picks the study)
    import os

    data.setup_extension()
    app(os.environ.get("KW_MANIFEST")).servable(title="Ketamine workbench — dose-titration monitor")
