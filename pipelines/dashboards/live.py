"""Live mode of the dose-titration monitor: the same view as the replay (/titration), fed by a real LSL stream.

The page follows an EEG stream on this machine through :class:`pipelines.eeg.live.LiveMonitor` (its own
thread: causal filters, per-window channel checks, running baseline, the causal hold criterion, the session
recording to ``build/<study>/derivatives/live/``).  A periodic callback (every ``TICK_MS``) copies the
monitor's state into the view: occipital alpha relative to the pre-infusion baseline and the entropy change,
each per window (faint) and as the trailing mean the criterion judges (bold), the threshold, the alert
(``pn.pane.Alert`` with the replay's CSS class ``kw-suppression-alert``), a status line (CSS class
``kw-live-status``) and the monitor's last status lines (``kw-live-log``): gaps, stalls, flat channels,
reconnections.

Replay mode is the /titration page (a recording replayed window by window from the offline features, at any
speed); to replay a recording through this live pipeline instead, stream it with ``make stream
RECORDING=...`` and follow its stream here.

``stream``, ``running`` and ``record`` are mirrored in the URL (``/live?stream=kw-sub-01_ses-ket100_task-rest&running=true``);
a stream name from a link must be a plain LSL name (letters, digits, ``-_.``), or it is ignored with a notice.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import panel as pn
import param

from pipelines.dashboards import data, safety
from pipelines.dashboards import figures as fig
from pipelines.dashboards.safety import escape_markdown
from pipelines.dashboards.titration import ALERT_CLASS

TICK_MS = 500
STATUS_CLASS = "kw-live-status"
LOG_CLASS = "kw-live-log"
LOG_LINES = 8
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")


def stream_name_field(raw: str) -> str:
    """A stream name from a link: a plain LSL name, or rejected."""
    if not _NAME.match(raw or ""):
        raise safety.Rejected(raw)
    return raw


def trailing_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Causal running mean over the last ``n`` values (NaN-aware), as the live criterion smooths."""
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - n + 1) : i + 1]
        if np.isfinite(chunk).any():
            out[i] = np.nanmean(chunk)
    return out


def frames(
    results: list, smooth_windows: int, window_s: float, infusion_start_s: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(alpha, entropy) tables of the windows received so far (time_s, value, smoothed), in the replay's shape.

    Time is from infusion start once it is known (also for the windows received before it was), else from the
    stream's first sample.  Entropy is the change from the mean of the windows before infusion start."""
    t = np.array([r.stream_time_s for r in results], dtype=float) - (infusion_start_s or 0.0)
    alpha = np.array([r.occipital_alpha_db for r in results], dtype=float)
    entropy = np.array([r.entropy for r in results], dtype=float)
    before = (t + window_s / 2 <= 1e-6) & np.isfinite(entropy) & (infusion_start_s is not None)
    entropy_change = entropy - np.mean(entropy[before]) if before.any() else np.full(len(t), np.nan)
    return (
        pd.DataFrame({"time_s": t, "value": alpha, "smoothed": trailing_mean(alpha, smooth_windows)}),
        pd.DataFrame({"time_s": t, "value": entropy_change, "smoothed": trailing_mean(entropy_change, smooth_windows)}),
    )


class LiveApp(pn.viewable.Viewer):
    """Follow one LSL stream with the live monitor and show it as the replay shows a recording."""

    stream = param.String(default="", doc="Name of the LSL stream to follow (on this machine)")
    running = param.Boolean(default=False, doc="Following the stream")
    record = param.Boolean(
        default=True, doc="Record the session (samples, windows, status lines) to the study's derivatives"
    )
    windows = param.Integer(default=0, doc="Windows received so far")
    alert_raised = param.Boolean(default=False, doc="Sustained suppression detected")
    onset_s = param.Number(default=None, allow_None=True, doc="Alert time (s from infusion start)")

    def __init__(self, study=None, blinding=None, **params):
        from pipelines.eeg.live import LiveConfig

        self.manifest = data.manifest_key(study)
        self.study = data.study(self.manifest)
        self.cfg = LiveConfig.from_manifest(self.study.manifest)
        self.blinded = blinding is not None
        super().__init__(**params)
        self.monitor = None
        self._callback = None
        self._pipes = None
        self._seen_events = 0
        self._alert = pn.pane.Alert(
            "",
            alert_type="danger",
            visible=False,
            css_classes=[ALERT_CLASS],
            name="suppression-alert",
            sizing_mode="stretch_width",
        )
        self._status = pn.pane.Markdown("", css_classes=[STATUS_CLASS], name="live-status", sizing_mode="stretch_width")
        self._log = pn.pane.Markdown(
            "", css_classes=[LOG_CLASS], name="live-log", sizing_mode="stretch_width", styles={"font-size": "12px"}
        )
        self.notice = safety.url_notice()
        self._snapshot = {
            "results": [],
            "events": [],
            "status": "not connected",
            "alert_time_s": None,
            "sfreq": None,
            "n_channels": 0,
            "infusion_start_s": None,
            "stream_time_s": 0.0,
        }
        self._update_text()

    def url_fields(self) -> dict:
        return {"stream": stream_name_field, "running": safety.boolean, "record": safety.boolean}

    def _show_rejected(self, rejected: list[str]) -> None:
        self.notice.object = safety.notice_text(rejected)
        self.notice.visible = bool(rejected)

    # --- the monitor -------------------------------------------------------------------------------

    @param.depends("running", watch=True)
    def _run(self):
        if self.running:
            self._start()
        else:
            self._stop()

    @param.depends("stream", watch=True)
    def _stream_changed(self):
        if self.monitor is not None:
            self._stop()
            self.running = False

    def _start(self) -> None:
        from pipelines.eeg.live import LiveMonitor, _lsl_loopback_config, live_derivatives_dir

        if not self.stream:
            self._status.object = "Type the name of a stream first (`make stream RECORDING=...` prints it)."
            self.running = False
            return
        _lsl_loopback_config()
        self._stop()
        self._alert.visible = False
        self.param.update(windows=0, alert_raised=False, onset_s=None)
        self._seen_events = 0
        self.monitor = LiveMonitor(
            self.stream,
            self.cfg,
            connect_timeout_s=5.0,
            record_to=live_derivatives_dir(self.study.name) if self.record else None,
            meta={"study": self.study.name, "from": "dashboard"},
        ).start()
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=TICK_MS, start=False)
        if not self._callback.running:
            self._callback.start()

    def _stop(self) -> None:
        if self._callback is not None and self._callback.running:
            self._callback.stop()
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.stop()  # finishes the session recording
            self._snapshot = monitor.snapshot()
            self._update_text(stopped=True)

    def refresh(self) -> None:
        """Copy the monitor's state into the view (the periodic callback; also callable directly)."""
        if self.monitor is None:
            return
        snap = self.monitor.snapshot()
        new_windows = len(snap["results"]) != self.windows
        self._snapshot = snap
        if new_windows:
            self.windows = len(snap["results"])
            self._push()
        if snap["alert_time_s"] is not None and not self.alert_raised:
            self.onset_s = snap["alert_time_s"]
            self.alert_raised = True
            self._alert.object = (
                f"**Sustained alpha suppression** — occipital alpha at or below {self.cfg.threshold_db:g} dB "
                f"re baseline held {self.cfg.hold_s:g} s (alert at {snap['alert_time_s']:.0f} s after "
                "infusion start)."
            )
            self._alert.visible = True
        self._update_text()

    # --- text ----------------------------------------------------------------------------------------

    def _update_text(self, stopped: bool = False) -> None:
        snap = self._snapshot
        shown_name = (
            "(name hidden: blinded)" if self.blinded else f"`{escape_markdown(self.stream)}`" if self.stream else "–"
        )
        if self.monitor is None and not snap["results"] and not stopped:
            self._status.object = f"**Stream {shown_name}** — not connected. Threshold {self.cfg.threshold_db:g} dB held {self.cfg.hold_s:g} s."
            self._log.object = ""
            return
        results = snap["results"]
        layout = f"{snap['n_channels']} channels at {snap['sfreq']:g} Hz; " if snap["sfreq"] else ""
        infusion = (
            "infusion start not yet known (no baseline, no alert)"
            if snap["infusion_start_s"] is None
            else f"infusion start at {snap['infusion_start_s']:.0f} s of the stream"
        )
        if results:
            last = results[-1]
            alpha = "–" if not np.isfinite(last.occipital_alpha_db) else f"{last.occipital_alpha_db:+.1f} dB"
            now = f"last window t = {last.time_s:.0f} s: {last.status}, alpha {alpha}"
        else:
            now = "waiting for the first window"
        state = "stopped" if stopped else snap["status"]
        self._status.object = (
            f"**Stream {shown_name}** — {state}; {layout}{infusion}; {len(results)} windows, {now}. "
            f"Threshold {self.cfg.threshold_db:g} dB held {self.cfg.hold_s:g} s."
        )
        lines = [
            f"- {e['level']}: {escape_markdown(e['message'])}"
            for e in snap["events"][-LOG_LINES:]
            if not (self.blinded and e["event"] in ("connected", "restarted", "recording-saved"))
        ]
        self._log.object = "\n".join(lines)

    # --- views -----------------------------------------------------------------------------------

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        snap = self._snapshot
        return frames(snap["results"], self.cfg.smooth_windows, self.cfg.window_s, snap["infusion_start_s"])

    def _push(self) -> None:
        if self._pipes is None:
            return
        alpha, entropy = self.frames()
        self._pipes[0].send(alpha)
        self._pipes[1].send(entropy)

    def _views(self):
        import holoviews as hv

        alpha, entropy = self.frames()
        self._pipes = (hv.streams.Pipe(data=alpha), hv.streams.Pipe(data=entropy))
        measure = self.cfg.entropy_measure

        def limits(frame, floor, pad, default):
            values = frame[["value", "smoothed"]].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            lo, hi = (float(values.min()), float(values.max())) if values.size else default
            lo = min(lo, floor) if floor is not None else lo
            return lo - pad, hi + pad

        def xlim(frame):
            t = frame["time_s"].to_numpy(dtype=float)
            return (
                min(-60.0, float(t.min()) - 5) if t.size else -60.0,
                max(120.0, float(t.max()) + 30) if t.size else 120.0,
            )

        def alpha_plot(data, onset_s):
            return fig.live_trace(
                data,
                "occipital alpha (dB re baseline)",
                xlim=xlim(data),
                ylim=limits(data, self.cfg.threshold_db, 1.0, (-6.0, 3.0)),
                threshold=self.cfg.threshold_db,
                onset_s=onset_s,
                title="Occipital alpha relative to baseline (live, causal)",
            ).opts(framewise=True)

        def entropy_plot(data):
            return fig.live_trace(
                data,
                f"{measure} (change)",
                xlim=xlim(data),
                ylim=limits(data, None, 0.02, (-0.1, 0.1)),
                color="#6a3d9a",
                title=f"Entropy: {measure}, good channels, change from baseline (live)",
            ).opts(framewise=True)

        params = hv.streams.Params(self, ["onset_s"])
        return (
            pn.pane.HoloViews(
                hv.DynamicMap(alpha_plot, streams=[self._pipes[0], params]),
                sizing_mode="stretch_width",
                linked_axes=False,
            ),
            pn.pane.HoloViews(
                hv.DynamicMap(entropy_plot, streams=[self._pipes[1]]), sizing_mode="stretch_width", linked_axes=False
            ),
        )

    def __panel__(self):
        if pn.state.location and not getattr(self, "_synced", False):
            self._synced = True
            safety.QuerySync(self, self.url_fields(), self._show_rejected).start(pn.state.location)
        name = pn.widgets.TextInput.from_param(
            self.param.stream, name="LSL stream", placeholder="kw-sub-01_ses-ket100_task-rest", width=250
        )
        toggle = pn.widgets.Toggle.from_param(
            self.param.running, label="▶ Follow / ❚❚ Stop", color="primary", css_classes=["kw-live-run"]
        )
        record = pn.widgets.Checkbox.from_param(self.param.record, name="Record the session")
        controls = pn.Column(
            pn.pane.Markdown(
                "### Live titration monitor\nFollows an EEG stream on this machine (Lab Streaming Layer). "
                "Replay mode: [/titration](./titration).",
                width=270,
            ),
            name,
            toggle,
            record,
            pn.pane.Markdown(
                "Everything is causal: only samples already received are used. Windows that touch a gap, "
                "the filters' settling after it, or have no good occipital channel never count toward the "
                "alert. Start a stream with `make stream RECORDING=sub-01_ses-ket100`.",
                width=260,
                styles={"font-size": "12px"},
            ),
            width=280,
        )
        alpha_view, entropy_view = self._views()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self._stop())
        main = pn.Column(
            self.notice, self._alert, self._status, alpha_view, entropy_view, self._log, sizing_mode="stretch_width"
        )
        if self.running and self.monitor is None:
            pn.state.onload(self._start)
        return pn.Row(controls, main, sizing_mode="stretch_width")


def app(manifest=None, blinding=None, **params) -> LiveApp:
    """A new live-monitor session (pn.serve calls this once per visitor)."""
    data.ensure_fresh(data.manifest_key(manifest))  # the study's current data, never stale caches
    return LiveApp(manifest, blinding=blinding, **params)


if pn.state.served:  # `panel serve pipelines/dashboards/live.py` (KW_MANIFEST picks the study)
    import os

    data.setup_extension()
    app(os.environ.get("KW_MANIFEST")).servable(title="Ketamine workbench — live titration monitor")
