"""Live dose titration: a causal online pipeline over an EEG stream (Lab Streaming Layer, mne-lsl).

What a live system can compute differs from the offline features, which see the whole recording: here every
step uses only samples already received.

* **Filters**: a Butterworth band-pass (order 4, ``l_freq``–``h_freq``) and IIR notches at the line frequency and
  its harmonics in the pass band, as one cascade of second-order sections whose state is carried from chunk to
  chunk (so results do not depend on how samples are chunked).  Causal filters delay the signal (a few tens of
  ms in the alpha band) where the offline zero-phase filters do not.
* **Channels**: judged per window (flat: SD below ``flat_sd_uv``; noisy: SD above ``noisy_min_sd_ratio`` × the
  window's median channel SD): bad channels leave the average reference and the regions for that window only.
* **Windows**: ``window_s`` long every ``step_s``, on a grid whose edge falls on infusion start once it is known
  (the marker stream's ``infusion_start``, or a time given); each is computed as soon as its last sample arrives.
* **Measures**: occipital alpha power (Welch inside the window, as offline) in dB relative to the running mean
  of the pre-infusion windows, and the configured entropy measure from the same kernels as the offline features,
  averaged over the good channels.
* **Criterion** (:class:`TitrationCriterion`): alert when the trailing mean (``smooth_windows``) of occipital
  alpha relative to baseline is at or below ``threshold_db`` and has stayed there for ``hold_s``; never on a
  window without a baseline or without a good occipital channel.

Command line (loopback only; see ``docs/live.md``)::

    python -m pipelines.eeg.live play    data_manifests/default.yml sub-01_ses-ket100_task-rest   # prints the stream name
    python -m pipelines.eeg.live monitor data_manifests/default.yml --stream kw-sub-01_ses-ket100_task-rest
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LIVE_CONVENTION = ("causal: Butterworth order-4 band-pass and IIR notches as one SOS cascade with carried state; "
                   "average reference over the window's good channels; Welch alpha power per window in dB relative to "
                   "the running mean of pre-infusion windows; alert when the trailing mean over smooth_windows stays at "
                   "or below threshold_db for hold_s")


@dataclass(frozen=True)
class LiveConfig:
    l_freq: float = 1.0
    h_freq: float = 45.0
    line_freq: float | None = 50.0
    window_s: float = 2.0
    step_s: float = 2.0
    welch_segment_s: float = 1.0
    alpha_band: tuple[float, float] = (8.0, 13.0)
    occipital: tuple[str, ...] = ("O1", "Oz", "O2")
    entropy_measure: str = "lzc_median"
    flat_sd_uv: float = 1.0
    noisy_min_sd_ratio: float = 3.0
    threshold_db: float = -3.0
    hold_s: float = 20.0
    smooth_windows: int = 3

    @classmethod
    def from_manifest(cls, manifest, **overrides) -> "LiveConfig":
        eeg = manifest.eeg
        occipital = tuple(eeg.rois.get("occipital", ())) + tuple(eeg.roi_fallbacks.get("occipital", ()))
        values = dict(l_freq=eeg.preprocessing.l_freq, h_freq=eeg.preprocessing.h_freq,
                      line_freq=eeg.preprocessing.line_freq or 50.0, window_s=eeg.features.window_s,
                      step_s=eeg.features.step_s, welch_segment_s=eeg.features.welch_segment_s,
                      alpha_band=tuple(eeg.features.bands.get("alpha", (8.0, 13.0))), occipital=occipital,
                      entropy_measure=eeg.dynamics.entropy_measure, flat_sd_uv=eeg.preprocessing.flat_sd_uv,
                      noisy_min_sd_ratio=eeg.preprocessing.noisy_min_sd_ratio,
                      threshold_db=eeg.dynamics.alpha_threshold_db, hold_s=eeg.dynamics.hold_s)
        return cls(**{**values, **overrides})


class CausalFilter:
    """Band-pass and notches as one SOS cascade; ``process`` carries the state across calls."""

    def __init__(self, sfreq: float, n_channels: int, cfg: LiveConfig):
        from scipy import signal

        h_freq = min(cfg.h_freq, 0.45 * sfreq)
        sections = [signal.butter(4, [cfg.l_freq, h_freq], btype="bandpass", fs=sfreq, output="sos")]
        if cfg.line_freq:
            for f in np.arange(cfg.line_freq, sfreq / 2 - 1, cfg.line_freq):
                if f <= h_freq + max(0.25 * h_freq, 2.0):
                    b, a = signal.iirnotch(f, Q=30.0, fs=sfreq)
                    sections.append(signal.tf2sos(b, a))
        self.sos = np.vstack(sections)
        self.state = np.zeros((self.sos.shape[0], n_channels, 2))

    def process(self, chunk: np.ndarray) -> np.ndarray:
        from scipy import signal

        out, self.state = signal.sosfilt(self.sos, chunk, axis=1, zi=self.state)
        return out


@dataclass
class WindowResult:
    time_s: float                  # window centre, s relative to infusion start (or stream start while unknown)
    end_timestamp: float           # LSL timestamp (or sample time) of the window's last sample
    occipital_alpha_uv2: float
    occipital_alpha_db: float      # relative to the running pre-infusion baseline; NaN before one exists
    entropy: float
    n_good_channels: int
    status: str                    # ok | no-baseline | no-occipital-channel


class OnlineFeatures:
    """Feed samples in any chunking; windows come out as soon as they are complete."""

    def __init__(self, sfreq: float, ch_names: list[str], cfg: LiveConfig, infusion_start_s: float | None = None):
        self.sfreq, self.cfg = float(sfreq), cfg
        self.ch_names = list(ch_names)
        lookup = {c.lower(): i for i, c in enumerate(self.ch_names)}
        self.occipital = [lookup[c.lower()] for c in cfg.occipital if c.lower() in lookup][:3]
        self.filter = CausalFilter(self.sfreq, len(ch_names), cfg)
        self.win = int(round(cfg.window_s * self.sfreq))
        self.step = int(round(cfg.step_s * self.sfreq))
        self.buffer = np.zeros((len(ch_names), 0))
        self.times = np.zeros(0)
        self.n_seen = 0            # samples received so far
        self.buffer_start = 0      # sample index of buffer[:, 0]
        self.next_start: int | None = None
        self.infusion_start_s = infusion_start_s
        self.baseline_db: list[float] = []
        self._seen_db: list[tuple[int, float]] = []  # (window start sample, alpha dB) of every window so far
        self.results: list[WindowResult] = []

    def set_infusion_start(self, seconds_from_stream_start: float) -> None:
        """Infusion start became known (a marker arrived): the grid is aligned to it from the next window on,
        and the windows already seen that ended before it become the baseline."""
        if self.infusion_start_s is None:
            self.infusion_start_s = float(seconds_from_stream_start)
            limit = int(round(self.infusion_start_s * self.sfreq))
            self.baseline_db = [db for start, db in self._seen_db if start + self.win <= limit and np.isfinite(db)]

    def _grid_start(self) -> int:
        # The first window start at or after what has not been windowed yet, on a grid through infusion start.
        origin = int(round((self.infusion_start_s or 0.0) * self.sfreq))
        earliest = self.buffer_start if self.next_start is None else self.next_start
        k = int(np.ceil((earliest - origin) / self.step))
        return origin + k * self.step

    def push(self, samples: np.ndarray, timestamps: np.ndarray | None = None) -> list[WindowResult]:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] != len(self.ch_names):
            raise ValueError(f"expected ({len(self.ch_names)}, n) samples, got {samples.shape}")
        n = samples.shape[1]
        if timestamps is None:
            timestamps = (self.n_seen + np.arange(n)) / self.sfreq
        filtered = self.filter.process(samples)
        self.buffer = np.concatenate([self.buffer, filtered], axis=1)
        self.times = np.concatenate([self.times, np.asarray(timestamps, dtype=np.float64)])
        self.n_seen += n
        out = []
        while True:
            start = self._grid_start()
            if start + self.win > self.n_seen:
                break
            offset = start - self.buffer_start
            if offset >= 0:
                out.append(self._window(self.buffer[:, offset:offset + self.win], start,
                                        self.times[offset + self.win - 1]))
            self.next_start = start + self.step
        keep_from = max(0, min(self._grid_start(), self.n_seen) - self.buffer_start)
        self.buffer, self.times = self.buffer[:, keep_from:], self.times[keep_from:]
        self.buffer_start += keep_from
        self.results.extend(out)
        return out

    def _window(self, x_v: np.ndarray, start: int, end_timestamp: float) -> WindowResult:
        from scipy.signal import welch

        from pipelines.eeg import kernels

        x = x_v * 1e6  # µV
        sd = x.std(axis=1)
        median_sd = float(np.median(sd)) if len(sd) else 0.0
        good = (sd >= self.cfg.flat_sd_uv) & (sd <= self.cfg.noisy_min_sd_ratio * max(median_sd, 1e-12))
        if len(self.ch_names) == 1:
            good = sd >= self.cfg.flat_sd_uv
        if good.sum() >= 2:
            x = x - x[good].mean(axis=0, keepdims=True)  # average reference over this window's good channels
        centre_s = (start + self.win / 2) / self.sfreq - (self.infusion_start_s or 0.0)
        occipital = [i for i in self.occipital if good[i]]
        nperseg = min(self.win, max(8, int(round(self.cfg.welch_segment_s * self.sfreq))))
        if not occipital:
            return WindowResult(round(centre_s, 6), float(end_timestamp), np.nan, np.nan, np.nan, int(good.sum()),
                                "no-occipital-channel")
        freqs, psd = welch(x[occipital], fs=self.sfreq, nperseg=nperseg, axis=-1)
        band = (freqs >= self.cfg.alpha_band[0]) & (freqs <= self.cfg.alpha_band[1])
        alpha = float(psd[:, band].sum(axis=-1).mean() * (freqs[1] - freqs[0]))
        alpha_db = 10 * np.log10(alpha) if alpha > 0 else np.nan
        self._seen_db.append((start, alpha_db))
        entropy = float(np.nanmean(kernels.compute_windowed(x[good][:, None, :], self.sfreq, None, None,
                                                            measures=[self.cfg.entropy_measure])[self.cfg.entropy_measure]))
        before_infusion = self.infusion_start_s is not None and centre_s + self.cfg.window_s / 2 <= 1e-9
        if before_infusion and np.isfinite(alpha_db):
            self.baseline_db.append(alpha_db)
        if self.baseline_db and not before_infusion:
            rel, status = alpha_db - float(np.mean(self.baseline_db)), "ok"
        elif self.baseline_db:
            rel, status = alpha_db - float(np.mean(self.baseline_db)), "baseline"
        else:
            rel, status = np.nan, "no-baseline"
        return WindowResult(round(centre_s, 6), float(end_timestamp), alpha, rel, entropy, int(good.sum()), status)


@dataclass
class TitrationCriterion:
    """Causal alert: trailing mean of alpha (dB re baseline) at or below the threshold, held for ``hold_s``."""

    threshold_db: float
    hold_s: float
    smooth_windows: int
    history: list[float] = field(default_factory=list)
    below_since: float | None = None
    alert_time_s: float | None = None

    def update(self, result: WindowResult) -> float | None:
        """Feed one window; returns the alert time (window centre, s re infusion start) the first time it fires."""
        if result.status != "ok" or not np.isfinite(result.occipital_alpha_db):
            self.history.clear()  # garbage or no baseline: the hold restarts, no alert on it
            self.below_since = None
            return None
        self.history = (self.history + [result.occipital_alpha_db])[-self.smooth_windows:]
        smoothed = float(np.mean(self.history))
        if smoothed <= self.threshold_db:
            self.below_since = result.time_s if self.below_since is None else self.below_since
            if self.alert_time_s is None and result.time_s - self.below_since >= self.hold_s:
                self.alert_time_s = result.time_s
                return self.alert_time_s
        else:
            self.below_since = None
        return None


def offline_causal(data_v: np.ndarray, sfreq: float, ch_names: list[str], cfg: LiveConfig,
                   infusion_start_s: float, chunk: int = 32):
    """The live pipeline run over a whole recording in chunks (the reference the live monitor must equal)."""
    import pandas as pd

    online = OnlineFeatures(sfreq, ch_names, cfg, infusion_start_s)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    for i in range(0, data_v.shape[1], chunk):
        for result in online.push(data_v[:, i:i + chunk]):
            criterion.update(result)
    table = pd.DataFrame([vars(r) for r in online.results])
    table.attrs.update(alert_time_s=criterion.alert_time_s, convention=LIVE_CONVENTION)
    return table


# --- over LSL ---------------------------------------------------------------------------------------------

def stream_name(recording_key: str) -> str:
    return f"kw-{recording_key}"


def start_player(raw, name: str, chunk_size: int = 16):
    """Stream a Raw over LSL (loopback), its annotations as the marker stream ``<name>-annotations``."""
    import mne
    from mne_lsl.player import PlayerLSL

    # mne-lsl sends each annotation as a one-hot sample whose value is its duration: an instantaneous event
    # (duration 0) would arrive as all zeros, so give events one sample of duration.
    raw = raw.copy()
    ann = raw.annotations
    raw.set_annotations(mne.Annotations(ann.onset, np.maximum(ann.duration, 1.0 / raw.info["sfreq"]), ann.description,
                                        orig_time=ann.orig_time))
    player = PlayerLSL(raw, chunk_size=chunk_size, name=name, annotations=True, n_repeat=1)
    player.start()
    return player


def monitor(name: str, cfg: LiveConfig, duration_s: float, infusion_event: str = "infusion_start",
            infusion_start_s: float | None = None, poll_s: float = 0.02, connect_timeout_s: float = 10.0) -> dict:
    """Follow stream ``name`` for ``duration_s`` (or until it stops): windows, the alert and latencies.

    Infusion start comes from the marker stream (``<name>-annotations``, one-hot channels named by event) unless
    given.  Latency of a window = LSL clock when its result exists − timestamp of its last sample."""
    from mne_lsl.lsl import local_clock
    from mne_lsl.stream import StreamLSL

    stream = StreamLSL(bufsize=max(10.0, 4 * cfg.window_s), name=name, stype="eeg")
    stream.connect(acquisition_delay=0.005, timeout=connect_timeout_s)
    markers = StreamLSL(bufsize=60.0, name=f"{name}-annotations", stype="annotations")
    try:
        markers.connect(acquisition_delay=0.01, timeout=2.0)
    except Exception:  # a stream without markers: infusion start must then be given
        markers = None
    sfreq, ch_names = stream.info["sfreq"], list(stream.ch_names)
    online = OnlineFeatures(sfreq, ch_names, cfg, infusion_start_s)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    first_ts, latencies, processing, events, last_data = None, [], [], [], time.monotonic()
    t_end = time.monotonic() + duration_s
    try:
        while time.monotonic() < t_end:
            n_new = stream.n_new_samples
            if n_new:
                data, ts = stream.get_data(winsize=n_new / sfreq)
                last_data = time.monotonic()
                first_ts = ts[0] if first_ts is None else first_ts
                if markers is not None and online.infusion_start_s is None and (n_markers := markers.n_new_samples):
                    m_data, m_ts = markers.get_data(winsize=None)
                    m_data, m_ts = m_data[:, -n_markers:], m_ts[-n_markers:]
                    if infusion_event in markers.ch_names:
                        hits = m_ts[m_data[markers.ch_names.index(infusion_event)] > 0]
                        if len(hits):
                            online.set_infusion_start(float(hits[0] - first_ts))
                            events.append({"event": infusion_event, "timestamp": float(hits[0])})
                received = local_clock()
                for result in online.push(data, ts):
                    now = local_clock()
                    # Two clocks of one machine: from the sample's LSL timestamp (the player may stamp a chunk
                    # slightly ahead of sending it) and from its arrival here (our own processing).
                    latencies.append(now - result.end_timestamp)
                    processing.append(now - received)
                    fired = criterion.update(result)
                    if fired is not None:
                        events.append({"event": "alert", "time_s": fired, "timestamp": result.end_timestamp})
            elif time.monotonic() - last_data > 3.0 and online.results:
                events.append({"event": "stream stopped", "time_s": online.results[-1].time_s})
                break
            time.sleep(poll_s)
    finally:
        stream.disconnect()
        if markers is not None:
            markers.disconnect()
    return {"results": online.results, "alert_time_s": criterion.alert_time_s, "events": events,
            "latency_s": latencies, "processing_s": processing, "infusion_start_s": online.infusion_start_s, "convention": LIVE_CONVENTION}


def _lsl_loopback_config() -> Path:
    """liblsl configuration that keeps discovery on this machine (no multicast beyond it)."""
    import os
    import tempfile

    path = Path(tempfile.gettempdir()) / "kw-lsl-loopback.cfg"
    path.write_text("[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n[lab]\nKnownPeers = {127.0.0.1}\n")
    os.environ.setdefault("LSLAPICFG", str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    from pipelines.eeg.io import read_raw
    from pipelines.study import Study

    parser = argparse.ArgumentParser(prog="python -m pipelines.eeg.live", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("play", help="stream a recording of a study over LSL on this machine")
    p.add_argument("manifest")
    p.add_argument("recording", help="recording key, e.g. sub-01_ses-ket100_task-rest")
    p = sub.add_parser("monitor", help="follow a stream and alert when occipital alpha is suppressed and held")
    p.add_argument("manifest")
    p.add_argument("--stream", required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args(argv)
    _lsl_loopback_config()
    study = Study.load(args.manifest)
    if args.command == "play":
        recording = study.recording(args.recording)
        raw = read_raw(recording, study.root, study.manifest.eeg.reader)
        name = stream_name(recording.key)
        player = start_player(raw, name)
        print(f"Streaming {recording.key} as LSL stream {name!r} (markers {name + '-annotations'!r}); Ctrl-C stops",
              flush=True)
        try:
            time.sleep(raw.times[-1] + 1.0)
        except KeyboardInterrupt:
            pass
        player.stop()
        return 0
    cfg = LiveConfig.from_manifest(study.manifest)
    result = monitor(args.stream, cfg, duration_s=args.minutes * 60)
    print(json.dumps({"alert_time_s": result["alert_time_s"], "events": result["events"],
                      "latency_p95_s": float(np.percentile(result["latency_s"], 95)) if result["latency_s"] else None},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
