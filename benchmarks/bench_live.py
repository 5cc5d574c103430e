"""Live titration over LSL on 127.0.0.1: end-to-end latency and CPU of the monitor, 64 channels at 500 Hz.

``run(quick=False)`` starts a synthetic 64-channel, 500-Hz EEG source in its own process
(``python -m pipelines.eeg.live synth``: each chunk of 16 samples is sent when its last sample is due and
stamped with that time, as an amplifier would), then follows it in this process with
:class:`pipelines.eeg.live.LiveMonitor` exactly as ``python -m pipelines.eeg.live monitor`` does: StreamLSL
acquisition thread, causal filters, per-window channel checks, Welch alpha and the entropy kernel, the titration
criterion, and the session recording (to a temporary folder).  The default study's settings (2-s windows every
2 s, ``lzc_median``).

Rows:

* ``live_latency_64ch_500hz`` — per window, LSL clock when the monitor's state (results, criterion, recording,
  status lines) is updated minus the LSL timestamp of the window's last sample: p50/p95 over the windows of a
  120-s run (20 s with ``quick``), after a 6-s warm-up.  Also per chunk (every sample, not only a window's last)
  and the processing part alone (arrival of the completing chunk → state updated).
* ``live_cpu_64ch_500hz`` — CPU time of this (monitor) process over wall time during the same run: the share of
  one core the monitor needs per stream.  The source's own CPU is reported beside it, not included.

Each row has the machine's load average and CPU pressure before and after its measurement: on the shared 2-core
machine other work delays the monitor's threads (latency), while CPU time is little affected.
``python benchmarks/bench_live.py [--quick]`` prints the rows as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
N_CHANNELS, SFREQ = 64, 500.0


def _load(when: str) -> dict:
    from benchmarks._machine import cpu_pressure

    return {
        f"measured_load_avg_{when}": [round(x, 2) for x in os.getloadavg()],
        f"measured_cpu_pressure_{when}": cpu_pressure(),
    }


def _config():
    from pipelines.eeg.live import LiveConfig
    from pipelines.study.manifest import load_manifest

    return LiveConfig.from_manifest(load_manifest(REPO / "data_manifests" / "default.yml"))


def run(quick: bool = False) -> list[dict]:
    import psutil

    from pipelines.eeg.live import LiveMonitor, _lsl_loopback_config

    _lsl_loopback_config()
    measure_s, warm_s = (20.0, 6.0) if quick else (120.0, 6.0)
    name = f"kw-bench-live-{os.getpid()}"
    cfg = _config()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    source = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.eeg.live",
            "synth",
            "--name",
            name,
            "--channels",
            str(N_CHANNELS),
            "--sfreq",
            str(SFREQ),
            "--seconds",
            str(measure_s + warm_s + 30),
            "--infusion-at-s",
            "10",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        source.stdout.readline()  # "Streaming synthetic EEG ..." once the outlet exists
        with tempfile.TemporaryDirectory(prefix="kw-bench-live-") as tmp:
            mon = LiveMonitor(name, cfg, record_to=Path(tmp), connect_timeout_s=30)
            mon.connect()
            mon.run(warm_s, stop_after_s=None)
            n_warm, n_chunks_warm = len(mon.latency_s), len(mon.chunk_latency_s)
            src = psutil.Process(source.pid)
            load_before = _load("before")
            cpu0, wall0, src_cpu0 = time.process_time(), time.perf_counter(), sum(src.cpu_times()[:2])
            mon.run(measure_s, stop_after_s=5.0)
            cpu1, wall1, src_cpu1 = time.process_time(), time.perf_counter(), sum(src.cpu_times()[:2])
            load_after = _load("after")
            lat = np.asarray(mon.latency_s[n_warm:])
            proc = np.asarray(mon.processing_s[n_warm:])
            chunk = np.asarray(list(mon.chunk_latency_s)[n_chunks_warm:])
            events = [e["event"] for e in mon.events]
            recordings = mon.stop()
            recorded = json.loads((recordings[0] / "session.json").read_text())["n_samples"] if recordings else None
    finally:
        source.terminate()
        try:
            source.wait(timeout=15)
        except subprocess.TimeoutExpired:
            source.kill()
    if len(lat) < 3:
        raise RuntimeError(f"only {len(lat)} windows measured; events: {events}")
    wall = wall1 - wall0
    cpu_fraction = (cpu1 - cpu0) / wall
    common = {
        "baseline": "none",
        "baseline_s": None,
        "speedup": None,
        "n_channels": N_CHANNELS,
        "sfreq_hz": SFREQ,
        "measured_s": round(wall, 1),
        "n_windows": int(len(lat)),
        "n_chunks": int(len(chunk)),
        "discontinuities": mon.n_discontinuities,
        "samples_recorded": recorded,
        "window_s": cfg.window_s,
        "step_s": cfg.step_s,
        "entropy_measure": cfg.entropy_measure,
        **load_before,
        **load_after,
    }
    p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
    rows = [
        {
            "benchmark": "live_latency_64ch_500hz",
            "ours_s": round(p95, 4),
            "p50_s": round(p50, 4),
            "p95_s": round(p95, 4),
            "max_s": round(float(lat.max()), 4),
            "chunk_p50_s": round(float(np.percentile(chunk, 50)), 4),
            "chunk_p95_s": round(float(np.percentile(chunk, 95)), 4),
            "processing_p95_s": round(float(np.percentile(proc, 95)), 4),
            **common,
            "notes": (
                f"synthetic {N_CHANNELS}-ch {SFREQ:g}-Hz source in its own process on 127.0.0.1 (chunks of 16 samples "
                "sent when due, stamped at their last sample); LiveMonitor in the bench process with the session "
                f"recording on. Per window: LSL clock when the state is updated − LSL timestamp of the window's last "
                f"sample, over {len(lat)} windows of a {wall:.0f}-s run after a {warm_s:g}-s warm-up; chunk_*: the same for "
                "every chunk; processing_p95_s: from the completing chunk's arrival. StreamLSL acquisition every 20 ms."
            ),
        },
        {
            "benchmark": "live_cpu_64ch_500hz",
            "ours_s": None,
            "cpu_fraction": round(cpu_fraction, 4),
            "cpu_s": round(cpu1 - cpu0, 2),
            "source_cpu_fraction": round((src_cpu1 - src_cpu0) / wall, 4),
            **common,
            "notes": (
                "CPU time (user + system, all threads) of the monitor process / wall time over the same run: the "
                "share of one core the monitor needs per stream, recording included; source_cpu_fraction is the "
                "synthetic source's process, not included."
            ),
        },
    ]
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
