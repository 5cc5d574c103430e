"""Live dose titration: a causal online pipeline over an EEG stream (Lab Streaming Layer, mne-lsl).

What a live system can compute differs from the offline features, which see the whole recording: here every
step uses only samples already received.

* **Filters**: a Butterworth band-pass (order 4, ``l_freq``–``h_freq``) and IIR notches at the line frequency and
  its harmonics in the pass band, as one cascade of second-order sections whose state is carried from chunk to
  chunk (so results do not depend on how samples are chunked), started at the steady state of the first sample.
  Causal filters delay the signal (a few tens of ms in the alpha band) where the offline zero-phase filters do not.
* **Channels**: judged per window (flat: SD below ``flat_sd_uv`` in any quarter of it; noisy: SD above
  ``noisy_min_sd_ratio`` × the window's median channel SD): bad channels leave the average reference and the
  regions for that window only.
* **Windows**: ``window_s`` long every ``step_s``, on a grid whose edge falls on infusion start once it is known
  (the marker stream's ``infusion_start``, or a time given); each is computed as soon as its last sample arrives.
* **Measures**: occipital alpha power (Welch inside the window, as offline) in dB relative to the running mean
  of the pre-infusion windows, and the configured entropy measure from the same kernels as the offline features,
  averaged over the good channels.
* **Criterion** (:class:`TitrationCriterion`): alert when the trailing mean (``smooth_windows``) of occipital
  alpha relative to baseline is at or below ``threshold_db`` and has stayed there for ``hold_s``; never on a
  window without a baseline, without a good occipital channel, or touching a discontinuity.
* **Discontinuities** (:class:`LiveMonitor`): sample timestamps are checked chunk by chunk.  Missing samples (a
  dropout, a restarted source) insert their time, so windows stay on the recording's clock; a clock jump
  inserts none; NaN/inf samples are zeroed.  Each restarts the filters, and windows overlapping it or the
  ``settle_s`` after it are ``gap``/``settling``/``non-finite`` (NaN, they restart the hold).  A stalled stream
  is reported, and a restarted one (same name) is found again.  Every such event is a status line.
* **Recording** (:class:`SessionRecorder`): samples with their LSL timestamps, windows and status lines, to
  ``build/<study>/derivatives/live/<stream>_<UTC>/``, atomically; :func:`read_session` reads it back.

Command line (loopback only; see ``docs/live.md``)::

    python -m pipelines.eeg.live play    data_manifests/default.yml sub-01_ses-ket100   # prints the stream name
    python -m pipelines.eeg.live monitor data_manifests/default.yml --stream kw-sub-01_ses-ket100_task-rest
    python -m pipelines.eeg.live synth   --channels 64 --sfreq 500 --suppress-at-s 120  # no study needed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC
from pathlib import Path

import numpy as np

LIVE_CONVENTION = (
    "causal: Butterworth order-4 band-pass and IIR notches as one SOS cascade with carried state "
    "(steady state of the first sample at the start and after each break); "
    "average reference over the window's good channels; Welch alpha power per window in dB relative to "
    "the running mean of pre-infusion windows; alert when the trailing mean over smooth_windows stays at "
    "or below threshold_db for hold_s"
)


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
    # Stream robustness (see "Discontinuities" in the module docstring).
    settle_s: float = (
        3.0  # after a start or a discontinuity the filters settle this long; windows touching it do not count
    )
    max_jitter_s: float = 0.1  # a jump in sample timestamps beyond one sample period + this is a discontinuity
    stall_s: float = 2.0  # no samples this long: the stream is reported stalled
    reconnect_every_s: float = 3.0  # while stalled, look for a restarted stream of the same name this often

    @classmethod
    def from_manifest(cls, manifest, **overrides) -> "LiveConfig":
        eeg = manifest.eeg
        occipital = tuple(eeg.rois.get("occipital", ())) + tuple(eeg.roi_fallbacks.get("occipital", ()))
        values = dict(
            l_freq=eeg.preprocessing.l_freq,
            h_freq=eeg.preprocessing.h_freq,
            line_freq=eeg.preprocessing.line_freq or 50.0,
            window_s=eeg.features.window_s,
            step_s=eeg.features.step_s,
            welch_segment_s=eeg.features.welch_segment_s,
            alpha_band=tuple(eeg.features.bands.get("alpha", (8.0, 13.0))),
            occipital=occipital,
            entropy_measure=eeg.dynamics.entropy_measure,
            flat_sd_uv=eeg.preprocessing.flat_sd_uv,
            noisy_min_sd_ratio=eeg.preprocessing.noisy_min_sd_ratio,
            threshold_db=eeg.dynamics.alpha_threshold_db,
            hold_s=eeg.dynamics.hold_s,
        )
        return cls(**{**values, **overrides})


class CausalFilter:
    """Band-pass and notches as one SOS cascade; ``process`` carries the state across calls.

    The state starts (and restarts after :meth:`reset`) at the steady state for the first sample it sees, so an
    amplifier's DC offset does not ring through the band-pass."""

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
        self._zi_unit = signal.sosfilt_zi(self.sos)  # (n_sections, 2): steady state for a unit step
        self.n_channels = n_channels
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        from scipy import signal

        if chunk.shape[1] == 0:
            return chunk
        if self.state is None:
            self.state = self._zi_unit[:, None, :] * chunk[None, :, :1]
        out, self.state = signal.sosfilt(self.sos, chunk, axis=1, zi=self.state)
        return out


@dataclass
class WindowResult:
    time_s: float  # window centre, s relative to infusion start (or stream start while unknown)
    end_timestamp: float  # LSL timestamp (or sample time) of the window's last sample; NaN for a gap window
    occipital_alpha_uv2: float
    occipital_alpha_db: float  # relative to the running pre-infusion baseline; NaN before one exists
    entropy: float
    n_good_channels: int
    status: str  # ok | baseline | no-baseline | no-occipital-channel | gap | settling | non-finite
    flat_channels: str = ""  # comma-separated, judged in this window
    noisy_channels: str = ""
    stream_time_s: float = (
        np.nan
    )  # window centre, s from the stream's first sample (time_s before infusion start is known)

    @property
    def counts(self) -> bool:
        """Whether the window may count toward an alert."""
        return self.status == "ok" and bool(np.isfinite(self.occipital_alpha_db))


# Window statuses that are not computed from data (the window overlaps a gap, a filter settling span, or
# non-finite samples): measures are NaN and the hold restarts.
INVALID_STATUSES = ("gap", "settling", "non-finite")


class OnlineFeatures:
    """Feed samples in any chunking; windows come out as soon as they are complete.

    Time is the sample count (``n_seen / sfreq``); a dropout of k samples (:meth:`mark_break`) advances it by k,
    so windows stay on the clock of the recording.  Windows overlapping a break or the filters' settling span
    after it are emitted with an invalid status and NaN measures."""

    def __init__(self, sfreq: float, ch_names: list[str], cfg: LiveConfig, infusion_start_s: float | None = None):
        self.sfreq, self.cfg = float(sfreq), cfg
        self.ch_names = list(ch_names)
        lookup = {c.lower(): i for i, c in enumerate(self.ch_names)}
        self.occipital = [lookup[c.lower()] for c in cfg.occipital if c.lower() in lookup][:3]
        self.filter = CausalFilter(self.sfreq, len(ch_names), cfg)
        self.win = int(round(cfg.window_s * self.sfreq))
        self.step = int(round(cfg.step_s * self.sfreq))
        self.settle = int(round(cfg.settle_s * self.sfreq))
        self.buffer = np.zeros((len(ch_names), 0))
        self.times = np.zeros(0)
        self.n_seen = 0  # samples received so far, plus those missing in dropouts
        self.buffer_start = 0  # sample index of buffer[:, 0]
        self.next_start: int | None = None
        self.invalid: list[tuple[int, int, str]] = [(0, self.settle, "settling")]  # [start, stop) sample spans
        self.infusion_start_s = infusion_start_s
        self.baseline_db: list[float] = []
        self._seen_db: list[tuple[int, float]] = []  # (window start sample, alpha dB) of every valid window so far
        self.results: list[WindowResult] = []

    @property
    def time_s(self) -> float:
        """Stream time of the next sample (s from the first sample)."""
        return self.n_seen / self.sfreq

    def set_infusion_start(self, seconds_from_stream_start: float) -> None:
        """Infusion start became known (a marker arrived): the grid is aligned to it from the next window on,
        and the windows already seen that ended before it become the baseline."""
        if self.infusion_start_s is None:
            self.infusion_start_s = float(seconds_from_stream_start)
            limit = int(round(self.infusion_start_s * self.sfreq))
            self.baseline_db = [db for start, db in self._seen_db if start + self.win <= limit and np.isfinite(db)]

    def mark_break(self, missing_samples: int = 0, reason: str = "gap") -> list[WindowResult]:
        """A discontinuity before the next sample: ``missing_samples`` were lost (0 for a clock jump).  The
        filters restart, and windows overlapping the break or the settling span after it do not count."""
        missing = max(0, int(missing_samples))
        self.invalid.append((self.n_seen - 1, self.n_seen + missing, reason))
        self.n_seen += missing
        self.invalid.append((self.n_seen, self.n_seen + self.settle, "settling"))
        self.filter.reset()
        self.buffer, self.times = self.buffer[:, :0], self.times[:0]
        self.buffer_start = self.n_seen
        out = self._drain()
        self.results.extend(out)
        return out

    def warm_up(self) -> None:
        """Compute one throw-away window (compiles and imports what a window needs) so that the first real
        window is not late."""
        probe = OnlineFeatures(self.sfreq, self.ch_names, self.cfg, infusion_start_s=0.0)
        noise = np.random.default_rng(0).standard_normal((len(self.ch_names), self.win)) * 10e-6
        probe._window(noise, 0, 0.0)

    def _grid_start(self) -> int:
        # The first window start at or after what has not been windowed yet, on a grid through infusion start.
        origin = int(round((self.infusion_start_s or 0.0) * self.sfreq))
        earliest = 0 if self.next_start is None else self.next_start
        k = int(np.ceil((earliest - origin) / self.step))
        return origin + k * self.step

    def push(self, samples: np.ndarray, timestamps: np.ndarray | None = None) -> list[WindowResult]:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] != len(self.ch_names):
            raise ValueError(f"expected ({len(self.ch_names)}, n) samples, got {samples.shape}")
        n = samples.shape[1]
        if timestamps is None:
            timestamps = (self.n_seen + np.arange(n)) / self.sfreq
        finite = np.isfinite(samples).all(axis=0)
        if not finite.all():
            # NaN/inf would poison the filter state for good: zero them and let the windows around them not count.
            bad = np.flatnonzero(~finite)
            samples = np.where(np.isfinite(samples), samples, 0.0)
            self.invalid.append((self.n_seen + int(bad[0]), self.n_seen + int(bad[-1]) + 1, "non-finite"))
            self.invalid.append(
                (self.n_seen + int(bad[-1]) + 1, self.n_seen + int(bad[-1]) + 1 + self.settle, "settling")
            )
        filtered = self.filter.process(samples)
        self.buffer = np.concatenate([self.buffer, filtered], axis=1)
        self.times = np.concatenate([self.times, np.asarray(timestamps, dtype=np.float64)])
        self.n_seen += n
        out = self._drain()
        self.results.extend(out)
        return out

    def _drain(self) -> list[WindowResult]:
        out = []
        while True:
            start = self._grid_start()
            if start + self.win > self.n_seen:
                break
            offset = start - self.buffer_start
            reason = self._invalid_reason(start, start + self.win)
            if reason is None and offset < 0:
                reason = "gap"  # its first samples were dropped with a break
            if reason is not None:
                out.append(self._invalid_window(start, reason))
            else:
                out.append(
                    self._window(self.buffer[:, offset : offset + self.win], start, self.times[offset + self.win - 1])
                )
            self.next_start = start + self.step
        keep_from = max(0, min(self._grid_start(), self.n_seen) - self.buffer_start)
        self.buffer, self.times = self.buffer[:, keep_from:], self.times[keep_from:]
        self.buffer_start += keep_from
        self.invalid = [span for span in self.invalid if span[1] > (self.next_start or 0)]
        return out

    def _invalid_reason(self, start: int, stop: int) -> str | None:
        for lo, hi, reason in self.invalid:
            if lo < stop and start < hi:
                return reason
        return None

    def _centre_s(self, start: int) -> float:
        return round((start + self.win / 2) / self.sfreq - (self.infusion_start_s or 0.0), 6)

    def _invalid_window(self, start: int, reason: str) -> WindowResult:
        return WindowResult(
            self._centre_s(start), np.nan, np.nan, np.nan, np.nan, 0, reason, stream_time_s=self._stream_centre_s(start)
        )

    def _stream_centre_s(self, start: int) -> float:
        return round((start + self.win / 2) / self.sfreq, 6)

    def _window(self, x_v: np.ndarray, start: int, end_timestamp: float) -> WindowResult:
        from scipy.signal import welch

        from pipelines.eeg import kernels

        x = x_v * 1e6  # µV
        sd = x.std(axis=1)
        median_sd = float(np.median(sd)) if len(sd) else 0.0
        # Flat in any quarter of the window counts as flat: a lead that comes off mid-window still has the SD
        # of its good half, and its vanished alpha must not pass for suppression.
        quarter = self.win // 4
        flat = x[:, : 4 * quarter].reshape(len(x), 4, quarter).std(axis=2).min(axis=1) < self.cfg.flat_sd_uv
        noisy = (sd > self.cfg.noisy_min_sd_ratio * max(median_sd, 1e-12)) & ~flat
        if len(self.ch_names) == 1:
            noisy[:] = False
        good = ~flat & ~noisy
        names = dict(
            flat_channels=",".join(c for c, f in zip(self.ch_names, flat) if f),
            noisy_channels=",".join(c for c, f in zip(self.ch_names, noisy) if f),
            stream_time_s=self._stream_centre_s(start),
        )
        if good.sum() >= 2:
            x = x - x[good].mean(axis=0, keepdims=True)  # average reference over this window's good channels
        centre_s = self._centre_s(start)
        occipital = [i for i in self.occipital if good[i]]
        nperseg = min(self.win, max(8, int(round(self.cfg.welch_segment_s * self.sfreq))))
        if not occipital:
            return WindowResult(
                centre_s, float(end_timestamp), np.nan, np.nan, np.nan, int(good.sum()), "no-occipital-channel", **names
            )
        freqs, psd = welch(x[occipital], fs=self.sfreq, nperseg=nperseg, axis=-1)
        band = (freqs >= self.cfg.alpha_band[0]) & (freqs <= self.cfg.alpha_band[1])
        alpha = float(psd[:, band].sum(axis=-1).mean() * (freqs[1] - freqs[0]))
        alpha_db = 10 * np.log10(alpha) if alpha > 0 else np.nan
        self._seen_db.append((start, alpha_db))
        entropy = float(
            np.nanmean(
                kernels.compute_windowed(
                    x[good][:, None, :], self.sfreq, None, None, measures=[self.cfg.entropy_measure]
                )[self.cfg.entropy_measure]
            )
        )
        before_infusion = self.infusion_start_s is not None and centre_s + self.cfg.window_s / 2 <= 1e-9
        if before_infusion and np.isfinite(alpha_db):
            self.baseline_db.append(alpha_db)
        if self.baseline_db and not before_infusion:
            rel, status = alpha_db - float(np.mean(self.baseline_db)), "ok"
        elif self.baseline_db:
            rel, status = alpha_db - float(np.mean(self.baseline_db)), "baseline"
        else:
            rel, status = np.nan, "no-baseline"
        return WindowResult(centre_s, float(end_timestamp), alpha, rel, entropy, int(good.sum()), status, **names)


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
        if not result.counts:
            self.history.clear()  # garbage, a gap or no baseline: the hold restarts, no alert on it
            self.below_since = None
            return None
        self.history = (self.history + [result.occipital_alpha_db])[-self.smooth_windows :]
        smoothed = float(np.mean(self.history))
        if smoothed <= self.threshold_db:
            self.below_since = result.time_s if self.below_since is None else self.below_since
            if self.alert_time_s is None and result.time_s - self.below_since >= self.hold_s:
                self.alert_time_s = result.time_s
                return self.alert_time_s
        else:
            self.below_since = None
        return None


def offline_causal(
    data_v: np.ndarray, sfreq: float, ch_names: list[str], cfg: LiveConfig, infusion_start_s: float, chunk: int = 32
):
    """The live pipeline run over a whole recording in chunks (the reference the live monitor must equal)."""
    import pandas as pd

    online = OnlineFeatures(sfreq, ch_names, cfg, infusion_start_s)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    for i in range(0, data_v.shape[1], chunk):
        for result in online.push(data_v[:, i : i + chunk]):
            criterion.update(result)
    table = pd.DataFrame([vars(r) for r in online.results])
    table.attrs.update(alert_time_s=criterion.alert_time_s, convention=LIVE_CONVENTION)
    return table


# --- session recording ------------------------------------------------------------------------------------

RECORDING_FILES = ("samples.npy", "timestamps.npy", "windows.tsv", "events.tsv", "session.json")


def live_derivatives_dir(study_name: str) -> Path:
    """Where session recordings go: ``build/<study>/derivatives/live/`` (never the study's raw data)."""
    from pipelines.core.paths import build_dir

    return build_dir(study_name) / "derivatives" / "live"


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".-") or "stream"


class SessionRecorder:
    """Record a live session: every sample with its LSL timestamp, every window and every status line.

    While the session runs, everything goes to a hidden folder ``.<name>_<UTC>.partial`` next to the final one
    (samples in numbered chunk files, the logs appended and flushed line by line, so a crash leaves a readable
    partial folder).  :meth:`close` assembles ``samples.npy`` (float32, samples × channels, volts) and
    ``timestamps.npy`` (float64, LSL seconds), writes ``session.json``, and renames the folder into place in
    one step.  An existing folder is never overwritten (a suffix is added)."""

    FLUSH_SAMPLES_S = 5.0

    def __init__(self, parent: Path, name: str, ch_names: list[str], sfreq: float, meta: dict | None = None):
        from datetime import datetime

        self.started = datetime.now(UTC)
        self.parent = Path(parent)
        self.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"{_safe_name(name)}_{self.started.strftime('%Y%m%dT%H%M%SZ')}"
        self.partial = Path(tempfile.mkdtemp(prefix=f".{self.name}.", suffix=".partial", dir=self.parent))
        self.ch_names, self.sfreq, self.meta = list(ch_names), float(sfreq), dict(meta or {})
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self._parts = 0
        self.n_samples = 0
        self._windows = open(self.partial / "windows.tsv", "w", encoding="utf-8")
        self._windows.write("\t".join(f.name for f in fields(WindowResult)) + "\n")
        self._events = open(self.partial / "events.tsv", "w", encoding="utf-8")
        self._events.write("lsl_time\tutc\tstream_time_s\tlevel\tevent\tmessage\n")
        self.path: Path | None = None

    def add_samples(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """``data``: (n_channels, n) volts as received."""
        self._pending.append(
            (np.asarray(data, dtype=np.float32).T.copy(), np.asarray(timestamps, dtype=np.float64).copy())
        )
        self._pending_n += data.shape[1]
        if self._pending_n >= self.FLUSH_SAMPLES_S * self.sfreq:
            self._flush_samples()

    def _flush_samples(self) -> None:
        if not self._pending:
            return
        self._parts += 1
        data = np.concatenate([d for d, _ in self._pending])
        ts = np.concatenate([t for _, t in self._pending])
        np.save(self.partial / f"part-{self._parts:06d}-samples.npy", data)
        np.save(self.partial / f"part-{self._parts:06d}-timestamps.npy", ts)
        self.n_samples += len(ts)
        self._pending, self._pending_n = [], 0

    def add_window(self, result: WindowResult) -> None:
        self._windows.write("\t".join(_tsv(getattr(result, f.name)) for f in fields(WindowResult)) + "\n")
        self._windows.flush()

    def add_event(self, event: dict) -> None:
        self._events.write(
            "\t".join(_tsv(event.get(k)) for k in ("lsl_time", "utc", "stream_time_s", "level", "event", "message"))
            + "\n"
        )
        self._events.flush()

    def close(self, summary: dict | None = None) -> Path:
        """Assemble the recording and move it into place; returns its folder."""
        if self.path is not None:
            return self.path
        from datetime import datetime

        self._flush_samples()
        self._windows.close()
        self._events.close()
        n_ch = len(self.ch_names)
        samples = np.lib.format.open_memmap(
            self.partial / "samples.npy", mode="w+", dtype=np.float32, shape=(self.n_samples, n_ch)
        )
        timestamps = np.lib.format.open_memmap(
            self.partial / "timestamps.npy", mode="w+", dtype=np.float64, shape=(self.n_samples,)
        )
        at = 0
        for part in range(1, self._parts + 1):  # chunk by chunk: a long session never sits in memory whole
            d = np.load(self.partial / f"part-{part:06d}-samples.npy")
            samples[at : at + len(d)] = d
            timestamps[at : at + len(d)] = np.load(self.partial / f"part-{part:06d}-timestamps.npy")
            at += len(d)
        samples.flush()
        timestamps.flush()
        del samples, timestamps
        for part in range(1, self._parts + 1):
            (self.partial / f"part-{part:06d}-samples.npy").unlink()
            (self.partial / f"part-{part:06d}-timestamps.npy").unlink()
        meta = {
            **self.meta,
            "ch_names": self.ch_names,
            "sfreq": self.sfreq,
            "n_samples": self.n_samples,
            "samples": "samples.npy: float32 (n_samples, n_channels), volts, as received (before any filter)",
            "timestamps": "timestamps.npy: float64 LSL timestamps (s) of each sample, as received",
            "started_utc": self.started.isoformat(),
            "finished_utc": datetime.now(UTC).isoformat(),
            **(summary or {}),
        }
        (self.partial / "session.json").write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
        # Reserve the name with mkdir (fails if it exists: nothing is ever overwritten), then swap the complete
        # folder onto the empty reservation in one rename.
        target, k = self.parent / self.name, 1
        while True:
            try:
                target.mkdir()
                break
            except FileExistsError:
                k += 1
                target = self.parent / f"{self.name}-{k}"
        os.replace(self.partial, target)
        self.path = target
        return target


def _tsv(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else repr(round(value, 9))
    return str(value).replace("\t", " ").replace("\n", " ")


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value))


def read_session(path: Path) -> dict:
    """A recorded session back: ``samples`` (n_channels, n) volts, ``timestamps``, ``windows`` and ``events``
    tables, ``meta`` (session.json) and ``raw`` (an mne RawArray of the samples)."""
    import mne
    import pandas as pd

    path = Path(path)
    missing = [f for f in RECORDING_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a complete live session recording (missing {', '.join(missing)})")
    meta = json.loads((path / "session.json").read_text())
    samples = np.load(path / "samples.npy", mmap_mode="r").T
    info = mne.create_info(meta["ch_names"], meta["sfreq"], "eeg")
    return {
        "meta": meta,
        "samples": samples,
        "timestamps": np.load(path / "timestamps.npy"),
        "windows": pd.read_csv(path / "windows.tsv", sep="\t", na_values="n/a", keep_default_na=False),
        "events": pd.read_csv(path / "events.tsv", sep="\t", na_values="n/a", keep_default_na=False),
        "raw": mne.io.RawArray(np.asarray(samples, dtype=np.float64), info, verbose="error"),
    }


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
    raw.set_annotations(
        mne.Annotations(
            ann.onset, np.maximum(ann.duration, 1.0 / raw.info["sfreq"]), ann.description, orig_time=ann.orig_time
        )
    )
    # Our own source id: liblsl recovers a lost inlet by name, type, channels, rate and source id, so a restarted
    # player of the same recording is found again (the mne-lsl default "MNE-LSL" is shared by every player).
    player = PlayerLSL(raw, chunk_size=chunk_size, name=name, source_id=name, annotations=True, n_repeat=1)
    player.start()
    return player


class ArrayOutlet:
    """A real-time LSL source from an array: each chunk is sent when its last sample is due and stamped with
    that time (as an amplifier would), in a thread.  For tests, benchmarks and a synthetic stream to try.

    ``markers``: {description: seconds from the first sample}, sent as ``<name>-annotations`` in mne-lsl's one-hot
    encoding.  ``drop``: (from_s, to_s) spans whose samples are never sent (a dropout).  ``clock_offset_s``: added
    to every timestamp (a source whose clock differs from ours).  ``stop_at_s``: stop there (a stream that stops)."""

    def __init__(
        self,
        data_v: np.ndarray,
        sfreq: float,
        ch_names: list[str],
        name: str,
        *,
        chunk: int = 16,
        markers: dict[str, float] | None = None,
        drop: list[tuple[float, float]] = (),
        clock_offset_s: float = 0.0,
        source_id: str | None = None,
        stop_at_s: float | None = None,
    ):
        import threading

        from mne_lsl.lsl import StreamInfo, StreamOutlet

        self.data, self.sfreq, self.chunk = np.asarray(data_v, dtype=np.float32), float(sfreq), int(chunk)
        self.markers, self.drop, self.offset = dict(markers or {}), list(drop), float(clock_offset_s)
        self.stop_at = self.data.shape[1] if stop_at_s is None else min(self.data.shape[1], int(stop_at_s * sfreq))
        info = StreamInfo(name, "eeg", len(ch_names), self.sfreq, "float32", source_id or name)
        info.set_channel_names(list(ch_names))
        info.set_channel_types("eeg")
        info.set_channel_units("volts")
        self.outlet = StreamOutlet(info, chunk_size=self.chunk)
        self.marker_outlet = None
        if self.markers:
            minfo = StreamInfo(
                f"{name}-annotations",
                "annotations",
                len(self.markers),
                0.0,
                "float32",
                (source_id or name) + "-annotations",
            )
            minfo.set_channel_names(list(self.markers))
            self.marker_outlet = StreamOutlet(minfo)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"ArrayOutlet {name}")
        self.sent_samples = 0
        self.t0: float | None = None

    def start(self, wait_for_consumer_s: float = 0.0) -> "ArrayOutlet":
        if wait_for_consumer_s:
            self.outlet.wait_for_consumers(wait_for_consumer_s)
        self.thread.start()
        return self

    def _run(self) -> None:
        from mne_lsl.lsl import local_clock

        self.t0 = t0 = local_clock() + 0.05
        pending = sorted(self.markers.items(), key=lambda kv: kv[1])
        names = list(self.markers)
        i = 0
        while i < self.stop_at and not self._stop.is_set():
            j = min(i + self.chunk, self.stop_at)
            due = t0 + (j - 1) / self.sfreq
            delay = due - local_clock()
            if delay > 0:
                self._stop.wait(delay)
            while pending and pending[0][1] <= (j - 1) / self.sfreq and self.marker_outlet is not None:
                desc, at = pending.pop(0)
                onehot = np.zeros(len(names), dtype=np.float32)
                onehot[names.index(desc)] = 1.0
                self.marker_outlet.push_sample(onehot, timestamp=t0 + at + self.offset)
            keep = np.ones(j - i, dtype=bool)
            t = np.arange(i, j) / self.sfreq
            for lo, hi in self.drop:
                keep &= ~((t >= lo) & (t < hi))
            if keep.any():
                stamps = t0 + t[keep] + self.offset
                self.outlet.push_chunk(np.ascontiguousarray(self.data[:, i:j][:, keep].T), timestamp=stamps)
                self.sent_samples += int(keep.sum())
            i = j

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        # Dropping the outlets is what tells the consumers the stream is gone.
        self.outlet = self.marker_outlet = None

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def synthetic_eeg(
    n_channels: int = 64,
    sfreq: float = 500.0,
    seconds: float = 60.0,
    seed: int = 0,
    suppress_from_s: float | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Background EEG for streams that need no study: pink-ish noise plus occipital 10 Hz alpha (volts), on
    the standard 10-20 names (O1, Oz, O2 among them).  From ``suppress_from_s`` the alpha falls to a tenth."""
    import mne

    names = mne.channels.make_standard_montage("biosemi64").ch_names  # 10-10 names, O1/Oz/O2 among them
    preferred = ["O1", "Oz", "O2", "Cz", "Pz", "Fz"]
    ch_names = (preferred + [c for c in names if c not in preferred])[:n_channels]
    if len(ch_names) < n_channels:
        raise ValueError(f"at most {len(names)} named channels, not {n_channels}")
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    white = rng.standard_normal((n_channels, n))
    noise = white + lfilter([1.0], [1.0, -0.98], white, axis=1) * 0.3  # white plus a slow (brown-ish) part
    t = np.arange(n) / sfreq
    alpha = np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi, (n_channels, 1)))
    gain = np.full((n_channels, 1), 0.3)
    gain[:3] = 3.0  # occipital
    envelope = np.ones(n) if suppress_from_s is None else np.where(t < suppress_from_s, 1.0, 0.1)
    return (noise * 5e-6 + alpha * gain * 5e-6 * envelope), ch_names


class LiveMonitor:
    """Follow the LSL stream ``name`` (and its marker stream ``<name>-annotations``) causally.

    :meth:`poll` takes the chunks that arrived (exactly as pulled, through a StreamLSL callback: none is lost
    or read twice), checks their timestamps for discontinuities, feeds :class:`OnlineFeatures` and the
    :class:`TitrationCriterion`, records the session, and says in ``events`` what happened: the stream
    connected, a clock offset, a gap (dropout or restarted source), timestamps going back, non-finite samples,
    channels going flat or noisy and coming back, the stream stalling and resuming, a reconnection to a
    restarted stream, infusion start, the alert.  :meth:`start` runs it in a thread (the dashboard's live mode).
    """

    def __init__(
        self,
        name: str,
        cfg: LiveConfig,
        *,
        infusion_event: str = "infusion_start",
        infusion_start_s: float | None = None,
        record_to: Path | None = None,
        meta: dict | None = None,
        acquisition_delay_s: float = 0.02,
        connect_timeout_s: float = 10.0,
        echo=None,
    ):
        import collections
        import threading

        self.name, self.cfg = name, cfg
        self.infusion_event, self.given_infusion_start_s = infusion_event, infusion_start_s
        self.record_to, self.meta = (Path(record_to) if record_to else None), dict(meta or {})
        self.acquisition_delay_s, self.connect_timeout_s = acquisition_delay_s, connect_timeout_s
        self.echo = echo  # called with each event dict (the command line prints them)
        self._chunks: collections.deque = collections.deque()
        self._markers: collections.deque = collections.deque()
        self._arrived = threading.Event()
        self._lock = threading.RLock()
        self._thread = None
        self._halt = threading.Event()
        self.stream = self.markers = None
        self.uid: str | None = None
        self.online: OnlineFeatures | None = None
        self.criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
        self.recorder: SessionRecorder | None = None
        self.recordings: list[Path] = []
        self.events: list[dict] = []
        self.results: list[WindowResult] = []
        self.latency_s: list[float] = []  # per window: LSL timestamp of its last sample → state updated
        self.processing_s: list[float] = []  # per window: arrival of the chunk that completed it → state updated
        self.chunk_latency_s = collections.deque(maxlen=100_000)  # per chunk: timestamp of its last sample → processed
        self.status = "connecting"
        self.clock_offset_s = 0.0  # arrival clock − sample timestamps, when they differ by > 1 s
        self.sfreq: float | None = None
        self.ch_names: list[str] = []
        self._last_ts: float | None = None
        self._ts_origin: float | None = None  # LSL time of stream-time 0 (shifts when timestamps jump)
        self._last_arrival: float | None = None
        self._last_activity: float | None = None  # last arrival or (re)connection
        self._stalled = False
        self._last_resolve = 0.0
        self._pending_markers: list[tuple[float, str]] = []
        self._last_bad: tuple[str, str] = ("", "")
        self._last_window_status: str | None = None
        self.n_discontinuities = 0

    # --- connection ---------------------------------------------------------------------------------

    def connect(self) -> "LiveMonitor":
        from mne_lsl.lsl import resolve_streams

        infos = [
            i
            for i in resolve_streams(timeout=self.connect_timeout_s, name=self.name)
            if i.stype.lower() != "annotations"
        ]
        if not infos:
            raise ConnectionError(
                f"no LSL stream named {self.name!r} on this machine within "
                f"{self.connect_timeout_s:g} s: is the player running (make stream RECORDING=...)?"
            )
        self._open(infos[0])
        return self

    def _open(self, info) -> None:
        from mne_lsl.stream import StreamLSL

        stream = StreamLSL(bufsize=2.0, name=info.name, stype=info.stype, source_id=info.source_id)
        stream.connect(
            acquisition_delay=self.acquisition_delay_s, processing_flags=["clocksync"], timeout=self.connect_timeout_s
        )
        stream.add_callback(self._on_chunk)
        self.stream, self.uid = stream, info.uid
        sfreq, ch_names = float(stream.info["sfreq"]), list(stream.ch_names)
        changed = self.online is not None and (sfreq != self.sfreq or ch_names != self.ch_names)
        if self.online is None or changed:
            if changed:
                self._event(
                    "warning",
                    "stream-changed",
                    f"the stream now has {len(ch_names)} channels at {sfreq:g} Hz (was {len(self.ch_names)} at "
                    f"{self.sfreq:g} Hz): monitoring restarts, without a baseline until a new one is measured",
                )
                self._close_recorder()
            self.sfreq, self.ch_names = sfreq, ch_names
            self.online = OnlineFeatures(sfreq, ch_names, self.cfg, self.given_infusion_start_s)
            self.online.warm_up()
            self.criterion = TitrationCriterion(self.cfg.threshold_db, self.cfg.hold_s, self.cfg.smooth_windows)
            self._last_ts = self._ts_origin = None
            if self.record_to is not None:
                self.recorder = SessionRecorder(
                    self.record_to,
                    self.name,
                    ch_names,
                    sfreq,
                    {
                        **self.meta,
                        "stream": self.name,
                        "source_id": info.source_id,
                        "convention": LIVE_CONVENTION,
                        "config": asdict(self.cfg),
                    },
                )
        self._event(
            "info",
            "connected",
            f"stream {info.name!r} ({len(ch_names)} channels at {sfreq:g} Hz, source "
            f"{info.source_id!r}, host {info.hostname!r})",
        )
        self._open_markers()
        from mne_lsl.lsl import local_clock

        self._last_activity = local_clock()  # silence is counted from the (re)connection until samples arrive

    def _open_markers(self) -> None:
        from mne_lsl.stream import StreamLSL

        if self.markers is not None:
            try:
                self.markers.disconnect()
            except Exception:
                pass
        self.markers = None
        markers = StreamLSL(bufsize=64, name=f"{self.name}-annotations", stype="annotations")
        try:
            markers.connect(acquisition_delay=0.05, processing_flags=["clocksync"], timeout=1.0)
            markers.add_callback(self._on_marker)
            self.markers = markers
        except Exception:
            if self.online is not None and self.online.infusion_start_s is None:
                self._event(
                    "info",
                    "no-markers",
                    f"no marker stream {self.name + '-annotations'!r}: infusion start "
                    "unknown until given (no baseline, no alert)",
                )

    def _on_chunk(self, data, timestamps, info):
        # In the acquisition thread: hand the chunk over exactly as pulled.
        from mne_lsl.lsl import local_clock

        self._chunks.append((np.array(data, dtype=np.float64).T, np.array(timestamps, dtype=np.float64), local_clock()))
        self._arrived.set()
        return data, timestamps

    def _on_marker(self, data, timestamps, info):
        names = list(info["ch_names"])
        for row, ts in zip(np.asarray(data), np.asarray(timestamps)):
            for k in np.flatnonzero(row > 0):
                self._markers.append((float(ts), names[k]))
        self._arrived.set()
        return data, timestamps

    # --- processing ---------------------------------------------------------------------------------

    def _event(self, level: str, event: str, message: str, **extra) -> dict:
        from datetime import datetime

        from mne_lsl.lsl import local_clock

        record = {
            "lsl_time": round(local_clock(), 6),
            "utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "stream_time_s": round(self.online.time_s, 3) if self.online is not None else None,
            "level": level,
            "event": event,
            "message": message,
            **extra,
        }
        with self._lock:
            self.events.append(record)
        if self.recorder is not None:
            self.recorder.add_event(record)
        if self.echo is not None:
            self.echo(record)
        return record

    def poll(self, timeout_s: float = 0.05) -> list[WindowResult]:
        """Process what arrived (waiting up to ``timeout_s`` for something); the new windows."""
        from mne_lsl.lsl import local_clock

        if not self._chunks and not self._markers:
            self._arrived.wait(timeout_s)
        self._arrived.clear()
        new: list[WindowResult] = []
        while self._markers:
            self._marker(*self._markers.popleft())
        while self._chunks:
            data, ts, arrival = self._chunks.popleft()
            new.extend(self._chunk(data, ts, arrival))
            self.chunk_latency_s.append(local_clock() - self.clock_offset_s - ts[-1])
        self._check_stall()
        return new

    def _chunk(self, data: np.ndarray, ts: np.ndarray, arrival: float) -> list[WindowResult]:
        if self.recorder is not None:
            self.recorder.add_samples(data, ts)
        if self._stalled:
            self._stalled = False
            self._event("info", "resumed", f"samples again after {arrival - (self._last_arrival or arrival):.1f} s")
        period = 1.0 / self.sfreq
        out = []
        if self._last_ts is None:
            self._ts_origin = ts[0]
            offset = arrival - ts[-1]
            if abs(offset) > 1.0:
                self.clock_offset_s = offset
                self._event(
                    "warning",
                    "clock-offset",
                    f"sample timestamps are {-offset:+.3f} s from this machine's LSL clock: windows are timed "
                    "by sample count; latencies are corrected by this offset",
                )
            self._flush_pending_markers()
        # Split the chunk where consecutive timestamps jump (a dropout inside it, or a clock change).
        prev = np.concatenate([[self._last_ts if self._last_ts is not None else ts[0] - period], ts[:-1]])
        jumps = np.flatnonzero(np.abs(ts - prev - period) > self.cfg.max_jitter_s + period)
        bounds = [0, *jumps.tolist(), len(ts)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a == b:
                continue
            if a in jumps:
                out.extend(self._discontinuity(float(ts[a] - prev[a]), arrival))
                self._ts_origin = ts[a] - self.online.n_seen / self.sfreq
            results = self.online.push(data[:, a:b], ts[a:b])
            self._last_ts = float(ts[b - 1])
            out.extend(results)
        self._last_arrival = self._last_activity = arrival
        for result in out:
            self._judge(result, arrival)
        if self.status in ("connecting", "stalled"):
            self.status = "receiving"
        return out

    def _discontinuity(self, jump_s: float, arrival: float) -> list[WindowResult]:
        self.n_discontinuities += 1
        paused = arrival - (self._last_arrival or arrival)
        if jump_s > 0 and jump_s <= paused + 5.0:
            missing = int(round(jump_s * self.sfreq)) - 1
            self._event(
                "warning",
                "gap",
                f"{jump_s:.2f} s of samples missing (a dropout, or the source restarted): "
                f"windows overlapping it and the next {self.cfg.settle_s:g} s do not count",
            )
            return self.online.mark_break(missing, "gap")
        what = "jumped ahead" if jump_s > 0 else "went back"
        self._event(
            "warning",
            "clock-jump",
            f"sample timestamps {what} by {abs(jump_s):.2f} s while samples kept "
            "arriving (the source's clock changed): treated as a break, no time inserted",
        )
        return self.online.mark_break(0, "gap")

    def _judge(self, result: WindowResult, arrival: float) -> None:
        fired = self.criterion.update(result)
        with self._lock:
            self.results.append(result)
        if self.recorder is not None:
            self.recorder.add_window(result)
        self._window_events(result)
        if fired is not None:
            self.status = "alert"
            self._event(
                "alert",
                "alert",
                f"occipital alpha at or below {self.cfg.threshold_db:g} dB re baseline "
                f"for {self.cfg.hold_s:g} s (window at {fired:.1f} s from infusion start)",
                time_s=fired,
            )
        if np.isfinite(result.end_timestamp):
            from mne_lsl.lsl import local_clock

            done = local_clock()  # the state (results, criterion, recording, events) is updated
            self.latency_s.append(done - self.clock_offset_s - result.end_timestamp)
            self.processing_s.append(done - arrival)

    def _window_events(self, result: WindowResult) -> None:
        bad = (result.flat_channels, result.noisy_channels)
        if result.status not in INVALID_STATUSES and bad != self._last_bad:
            old_flat, old_noisy = (set(filter(None, s.split(","))) for s in self._last_bad)
            flat, noisy = (set(filter(None, s.split(","))) for s in bad)
            parts = []
            if flat - old_flat:
                parts.append(f"flat: {', '.join(sorted(flat - old_flat))}")
            if noisy - old_noisy:
                parts.append(f"noisy: {', '.join(sorted(noisy - old_noisy))}")
            if (old_flat | old_noisy) - (flat | noisy):
                parts.append(f"back: {', '.join(sorted((old_flat | old_noisy) - (flat | noisy)))}")
            self._event(
                "warning" if flat | noisy else "info",
                "channels",
                f"channels {'; '.join(parts)} (window at {result.time_s:.1f} s)"
                + ("; bad channels leave the reference and regions while they are bad" if flat | noisy else ""),
            )
            self._last_bad = bad
        if result.status != self._last_window_status:
            if result.status == "no-occipital-channel":
                self._event(
                    "warning",
                    "no-occipital-channel",
                    f"no good occipital channel (window at {result.time_s:.1f} s): "
                    "windows do not count until one is back",
                )
            elif result.status == "ok" and self._last_window_status in ("no-occipital-channel", *INVALID_STATUSES):
                self._event("info", "counting", f"windows count toward the alert again (from {result.time_s:.1f} s)")
            self._last_window_status = result.status

    def _marker(self, ts: float, description: str) -> None:
        if self._ts_origin is None:
            self._pending_markers.append((ts, description))
            return
        at = ts - self._ts_origin
        if description == self.infusion_event:
            if self.online.infusion_start_s is None:
                self.online.set_infusion_start(at)
                self._event(
                    "info",
                    "infusion-start",
                    f"{description} at {at:.2f} s of the stream: baseline from the "
                    f"{len(self.online.baseline_db)} windows before it",
                    timestamp=ts,
                )
            else:
                self._event(
                    "info",
                    "marker",
                    f"{description} again at {at:.2f} s: ignored (infusion start is "
                    f"{self.online.infusion_start_s:.2f} s)",
                    timestamp=ts,
                )
        else:
            self._event("info", "marker", f"{description} at {at:.2f} s of the stream", timestamp=ts)

    def _flush_pending_markers(self) -> None:
        pending, self._pending_markers = self._pending_markers, []
        for ts, description in pending:
            self._marker(ts, description)

    def _check_stall(self) -> None:
        if self._last_arrival is None and self.stream is not None and self.stream.connected:
            return
        from mne_lsl.lsl import local_clock, resolve_streams

        now = local_clock()
        lost = self.stream is None or not self.stream.connected
        silent = self._last_arrival is not None and self.silent_s > self.cfg.stall_s
        if (silent or lost) and not self._stalled:
            self._stalled = True
            self.status = "stalled"
            self._event(
                "warning",
                "stalled",
                f"no samples for {now - (self._last_arrival or now):.1f} s: the stream "
                "stalled or stopped; waiting for it (or a restarted one)",
            )
        if self._stalled and time.monotonic() - self._last_resolve > self.cfg.reconnect_every_s:
            self._last_resolve = time.monotonic()
            infos = [i for i in resolve_streams(timeout=0.5, name=self.name) if i.stype.lower() != "annotations"]
            fresh = [i for i in infos if i.uid != self.uid]
            if fresh:
                self._event(
                    "warning",
                    "restarted",
                    f"a new stream named {self.name!r} appeared (source {fresh[0].source_id!r}): reconnecting",
                )
                self._disconnect()
                try:
                    self._open(fresh[0])
                except Exception as exc:
                    self._event("warning", "reconnect-failed", f"could not connect: {exc}")

    @property
    def silent_s(self) -> float:
        """Seconds since samples last arrived or the stream was last (re)connected (0 before either)."""
        from mne_lsl.lsl import local_clock

        return 0.0 if self._last_activity is None else local_clock() - self._last_activity

    # --- running --------------------------------------------------------------------------------------

    def run(self, duration_s: float, stop_after_s: float | None = 10.0) -> "LiveMonitor":
        """Poll for ``duration_s``, or until no samples came for ``stop_after_s`` (the stream ended)."""
        t_end = time.monotonic() + duration_s
        while time.monotonic() < t_end and not self._halt.is_set():
            self.poll(0.05)
            if stop_after_s is not None and self.silent_s > stop_after_s:
                self._event("info", "stopped", f"no samples for {stop_after_s:g} s: the stream ended")
                break
        return self

    def start(self) -> "LiveMonitor":
        """Connect and follow the stream in a thread until :meth:`stop`."""
        import threading

        def loop():
            try:
                if self.stream is None:
                    self.connect()
                while not self._halt.is_set():
                    self.poll(0.1)
            except Exception as exc:
                self.status = "error"
                self._event("error", "error", f"{type(exc).__name__}: {exc}")

        self._thread = threading.Thread(target=loop, daemon=True, name=f"LiveMonitor {self.name}")
        self._thread.start()
        return self

    def stop(self) -> list[Path]:
        """Stop the thread (if any), disconnect, and finish the recording; the recordings written."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._disconnect()
        self._close_recorder()
        return self.recordings

    close = stop

    def _disconnect(self) -> None:
        for stream in (self.stream, self.markers):
            if stream is not None:
                try:
                    stream.disconnect()
                except Exception:
                    pass
        self.stream = self.markers = None

    def _close_recorder(self) -> None:
        if self.recorder is None:
            return
        recorder, self.recorder = self.recorder, None
        path = recorder.close(self.summary())
        self.recordings.append(path)
        self._event("info", "recording-saved", f"session recorded to {path}", path=str(path))

    def summary(self) -> dict:
        lat = [x for x in self.latency_s if np.isfinite(x)]
        return {
            "alert_time_s": self.criterion.alert_time_s,
            "infusion_start_s": self.online.infusion_start_s if self.online else None,
            "n_windows": len(self.results),
            "n_discontinuities": self.n_discontinuities,
            "clock_offset_s": self.clock_offset_s,
            "latency_p95_s": float(np.percentile(lat, 95)) if lat else None,
        }

    def snapshot(self) -> dict:
        """What a view shows, copied under the lock (safe from another thread)."""
        with self._lock:
            return {
                "results": list(self.results),
                "events": list(self.events),
                "status": self.status,
                "alert_time_s": self.criterion.alert_time_s,
                "sfreq": self.sfreq,
                "n_channels": len(self.ch_names),
                "infusion_start_s": self.online.infusion_start_s if self.online else None,
                "stream_time_s": self.online.time_s if self.online else 0.0,
            }


def monitor(
    name: str,
    cfg: LiveConfig,
    duration_s: float,
    infusion_event: str = "infusion_start",
    infusion_start_s: float | None = None,
    connect_timeout_s: float = 10.0,
    stop_after_s: float | None = 3.0,
    record_to: Path | None = None,
    echo=None,
) -> dict:
    """Follow stream ``name`` for ``duration_s`` (or until it stops): windows, the alert and latencies.

    Infusion start comes from the marker stream (``<name>-annotations``, one-hot channels named by event) unless
    given.  Latency of a window = LSL clock when its result exists − timestamp of its last sample."""
    mon = LiveMonitor(
        name,
        cfg,
        infusion_event=infusion_event,
        infusion_start_s=infusion_start_s,
        record_to=record_to,
        connect_timeout_s=connect_timeout_s,
        echo=echo,
    )
    mon.connect()
    try:
        mon.run(duration_s, stop_after_s)
    finally:
        mon.stop()
    return {
        "results": mon.results,
        "alert_time_s": mon.criterion.alert_time_s,
        "events": mon.events,
        "latency_s": mon.latency_s,
        "processing_s": mon.processing_s,
        "chunk_latency_s": list(mon.chunk_latency_s),
        "infusion_start_s": mon.online.infusion_start_s if mon.online else None,
        "recordings": mon.recordings,
        "convention": LIVE_CONVENTION,
    }


def _lsl_loopback_config() -> Path:
    """liblsl configuration that keeps discovery on this machine (no multicast beyond it)."""
    path = Path(tempfile.gettempdir()) / "kw-lsl-loopback.cfg"
    path.write_text("[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n[lab]\nKnownPeers = {127.0.0.1}\n")
    os.environ.setdefault("LSLAPICFG", str(path))
    return path


def find_recording(study, key: str):
    """A recording of the study by its key, or by a unique prefix of it (``sub-01_ses-ket100``)."""
    matches = [r for r in study.recordings if r.key == key] or [r for r in study.recordings if r.key.startswith(key)]
    if len(matches) != 1:
        keys = [r.key for r in study.recordings]
        hint = "" if matches else f"; e.g. {', '.join(keys[:3])}"
        raise SystemExit(
            f"{key!r}: {'matches ' + str(len(matches)) + ' recordings' if matches else 'no such recording'} "
            f"in study {study.name!r}{hint}"
        )
    return matches[0]


def print_event(event: dict) -> None:
    t = event.get("stream_time_s")
    print(
        f"[{'' if t is None else f'{t:7.1f} s'}] {event['level']:>7} {event['event']}: {event['message']}", flush=True
    )


def print_window(result: WindowResult, measure: str) -> None:
    alpha = "     –  " if not np.isfinite(result.occipital_alpha_db) else f"{result.occipital_alpha_db:+6.1f} dB"
    entropy = "  –  " if not np.isfinite(result.entropy) else f"{result.entropy:.3f}"
    print(
        f"  t = {result.time_s:7.1f} s  alpha {alpha}  {measure} {entropy}  {result.n_good_channels:3d} good ch  "
        f"{result.status}",
        flush=True,
    )


def _parser() -> argparse.ArgumentParser:
    """The command line: ``play``, ``synth`` and ``monitor``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.eeg.live", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("play", help="stream a recording of a study over LSL on this machine (PlayerLSL)")
    p.add_argument("manifest")
    p.add_argument("recording", help="recording key or a unique prefix of it, e.g. sub-01_ses-ket100")
    p = sub.add_parser("synth", help="stream synthetic EEG (no study needed), alpha suppressed after --suppress-at-s")
    p.add_argument("--name", default="kw-synthetic")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--sfreq", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--infusion-at-s", type=float, default=60.0)
    p.add_argument("--suppress-at-s", type=float, default=None)
    p = sub.add_parser("monitor", help="follow a stream, print each window and status line, record the session")
    p.add_argument("manifest")
    p.add_argument("--stream", required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--stop-after-s", type=float, default=15.0, help="end when no samples came for this long")
    p.add_argument(
        "--no-record", action="store_true", help="do not record the session to build/<study>/derivatives/live"
    )
    p.add_argument("--quiet", action="store_true", help="status lines only, not every window")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.study.dataset import Study

    args = _parser().parse_args(argv)
    _lsl_loopback_config()
    if args.command == "synth":
        return _stream_synthetic(args)
    study = Study.load(args.manifest)
    if args.command == "play":
        return _play(args, study)
    return _monitor(args, study)


def _stream_synthetic(args: argparse.Namespace) -> int:
    """``synth``: stream synthetic EEG until it ends or Ctrl-C."""
    data, names = synthetic_eeg(args.channels, args.sfreq, args.seconds, suppress_from_s=args.suppress_at_s)
    outlet = ArrayOutlet(data, args.sfreq, names, args.name, markers={"infusion_start": args.infusion_at_s}).start()
    print(
        f"Streaming synthetic EEG as LSL stream {args.name!r} ({args.channels} channels at {args.sfreq:g} Hz, "
        f"{args.seconds:g} s; markers {args.name + '-annotations'!r}); Ctrl-C stops",
        flush=True,
    )
    try:
        outlet.thread.join()
    except KeyboardInterrupt:
        pass
    outlet.stop()
    return 0


def _play(args: argparse.Namespace, study) -> int:
    """``play``: stream a recording of the study over LSL until it ends or Ctrl-C."""
    from pipelines.eeg.io import read_raw

    recording = find_recording(study, args.recording)
    if not study.root.is_dir():
        print(
            f"error: the study's data are not at {study.root}: run `make study STUDY={args.manifest}` first",
            file=sys.stderr,
        )
        return 2
    raw = read_raw(recording, study.root, study.manifest.eeg.reader)
    name = stream_name(recording.key)
    player = start_player(raw, name)
    print(
        f"Streaming {recording.key} as LSL stream {name!r} (markers {name + '-annotations'!r}); Ctrl-C stops\n"
        f"Follow it with: make monitor STREAM={name}  (or python -m pipelines.eeg.live monitor "
        f"{args.manifest} --stream {name})",
        flush=True,
    )
    try:
        time.sleep(raw.times[-1] + 1.0)
    except KeyboardInterrupt:
        pass
    try:
        player.stop()
    except RuntimeError:  # it stopped by itself at the end of the recording
        pass
    return 0


def _monitor(args: argparse.Namespace, study) -> int:
    """``monitor``: follow a stream, print windows and status lines, print the session's summary at the end."""
    cfg = LiveConfig.from_manifest(study.manifest)
    mon = LiveMonitor(
        args.stream,
        cfg,
        record_to=None if args.no_record else live_derivatives_dir(study.name),
        meta={"study": study.name, "manifest": str(args.manifest)},
        echo=print_event,
    )
    try:
        mon.connect()
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t_end = time.monotonic() + args.minutes * 60
    try:
        while time.monotonic() < t_end:
            for result in mon.poll(0.1):
                if not args.quiet:
                    print_window(result, cfg.entropy_measure)
            if mon.silent_s > args.stop_after_s:
                mon._event("info", "stopped", f"no samples for {args.stop_after_s:g} s: the stream ended")
                break
    except KeyboardInterrupt:
        pass
    finally:
        mon.stop()
    print(json.dumps(mon.summary(), indent=1, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
