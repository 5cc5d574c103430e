"""Speed of pipelines.eeg.kernels against the naive antropy loop, on one synthetic session.

``run(quick=False)`` returns rows ``{benchmark, ours_s, baseline, baseline_s, speedup, ...}``;
``python benchmarks/bench_kernels.py [--quick]`` prints them as JSON. The session is 64
channels x 10 min x 500 Hz of band-limited synthetic EEG (``--quick``: 8 channels x 2 min).
Baselines too slow to run whole are timed on a subset and scaled linearly; each row's
``notes`` says how. Values are compared on that subset (``max_rel_diff``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SFREQ = 500.0
WINDOW_S = 2.0


def synthetic_session(n_channels: int, duration_s: float, seed: int = 0) -> np.ndarray:
    """Band-passed (1-45 Hz) noise + random walk + 10 Hz alpha with a slow envelope, in µV."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    n = int(duration_s * SFREQ)
    t = np.arange(n) / SFREQ
    x = rng.standard_normal((n_channels, n)) + 0.05 * np.cumsum(rng.standard_normal((n_channels, n)), -1)
    envelope = 1.5 + np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 6, (n_channels, 1)))
    x += 2 * envelope * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_channels, 1)))
    sos = butter(4, [1, 45], "bandpass", fs=SFREQ, output="sos")
    return 10 * np.ascontiguousarray(sosfiltfilt(sos, x, axis=-1))


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _timed_cpu(fn, *args, **kwargs):
    """Wall and process CPU seconds; on a shared machine CPU time shows the work itself."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _naive_antropy_channel(ant, rows, channel):
    """The naive way: antropy per window in a Python loop (Welch inside spectral_entropy)."""
    from antropy.entropy import _lz_complexity
    from scipy.signal import hilbert

    from pipelines.eeg.kernels import shuffle_bits

    out = {
        m: []
        for m in (
            "perm_entropy",
            "spectral_entropy_welch",
            "sample_entropy",
            "svd_entropy",
            "higuchi_fd",
            "katz_fd",
            "dfa",
            "lzc_median",
            "lzs_schartner",
        )
    }
    for w, v in enumerate(rows):
        v = np.ascontiguousarray(v)
        out["perm_entropy"].append(ant.perm_entropy(v, order=3, delay=1, normalize=True))
        out["spectral_entropy_welch"].append(ant.spectral_entropy(v, SFREQ, method="welch", normalize=True))
        out["sample_entropy"].append(ant.sample_entropy(v))
        out["svd_entropy"].append(ant.svd_entropy(v, order=3, delay=1, normalize=True))
        out["higuchi_fd"].append(ant.higuchi_fd(v))
        out["katz_fd"].append(ant.katz_fd(v))
        out["dfa"].append(ant.detrended_fluctuation(v))
        out["lzc_median"].append(ant.lziv_complexity((v > np.median(v)).astype(int), normalize=True))
        amp = np.abs(hilbert(v))
        bits = (amp > amp.mean()).astype(np.uint32)
        shuffled = shuffle_bits(bits, seed=0, channel=channel, window=w).astype(np.uint32)
        out["lzs_schartner"].append(_lz_complexity(bits) / _lz_complexity(shuffled))
    return {m: np.array(v) for m, v in out.items()}


def _naive_lzc_st_window(ant, x3, w):
    from antropy.entropy import _lz_complexity
    from scipy.signal import hilbert

    from pipelines.eeg.kernels import shuffle_bits

    amp = np.abs(hilbert(x3[:, w, :], axis=-1))
    seq = (amp > amp.mean(axis=-1, keepdims=True)).astype(np.uint8).T.ravel()
    shuffled = shuffle_bits(seq, seed=0, window=w, spatiotemporal=True)
    return _lz_complexity(seq.astype(np.uint32)) / _lz_complexity(shuffled.astype(np.uint32))


def _max_rel_diff(ours: dict, ref: dict) -> float:
    worst = 0.0
    for m, r in ref.items():
        o = np.asarray(ours[m])
        both = np.isfinite(r) & np.isfinite(o)
        if not np.array_equal(np.isfinite(r), np.isfinite(o)):
            return float("inf")
        if both.any():
            worst = max(worst, float(np.max(np.abs(o[both] - r[both]) / np.abs(r[both]))))
    return worst


def import_time_s() -> dict:
    """Fresh interpreter: import time, and the first call (loads the cached machine code)."""
    code = (
        "import time; t0 = time.perf_counter(); import pipelines.eeg.kernels as K; t1 = time.perf_counter(); "
        "import numpy as np; K.compute_windowed(np.random.default_rng(0).standard_normal((2, 2000)), 500.0, 1000, 1000); "
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)  # warm
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    imp, first = map(float, out.stdout.split())
    return {"import_s": imp, "first_call_s": first}


def antropy_import_time_s() -> float:
    """Fresh interpreter importing antropy (the baseline of the import row); its files are already in the
    OS cache (``run`` imported antropy in this process), so no warm-up run is needed."""
    code = "import time; t0 = time.perf_counter(); import antropy; print(time.perf_counter() - t0)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def surrogate_cost_row(K, x, win: int, quick: bool) -> dict:
    """Cost of the default surrogate normalisation (eeg.features.surrogates: 10 phase-randomised surrogates of
    lzc_median) relative to the raw default measure set, on a slice of the session."""
    from benchmarks._machine import cpu_pressure
    from pipelines.study.manifest import FeatureConfig

    cfg = FeatureConfig().surrogates.model_dump()
    n_ch = 4 if quick else 16
    xs = np.ascontiguousarray(x[:n_ch])
    small = {**cfg, "n": 2}
    K.compute_windowed(xs[:2, : 4 * win], SFREQ, win, win, surrogates=small)  # load cached kernels
    K.compute_windowed(xs[:2, : 4 * win], SFREQ, win, win, surrogates={**small, "method": "iaaft"})
    load_before, pressure_before = os.getloadavg()[0], cpu_pressure()

    def timed(surrogates, data):
        c0, t0 = time.process_time(), time.perf_counter()
        K.compute_windowed(data, SFREQ, win, win, measures=K.MEASURES, surrogates=surrogates)
        return time.perf_counter() - t0, time.process_time() - c0

    # best of `repeats`, raw and surrogate runs interleaved (the machine is shared)
    repeats = 1 if quick else 2
    raw_runs, surr_runs = [], []
    for _ in range(repeats):
        raw_runs.append(timed(None, xs))
        surr_runs.append(timed(cfg, xs))
    raw_s, raw_cpu = min(raw_runs, key=lambda r: r[1])
    surr_s, surr_cpu = min(surr_runs, key=lambda r: r[1])
    # IAAFT (same measures, 10 surrogates, 20 iterations) and per-measure phase costs on fewer channels
    n_sub = 2
    sub = np.ascontiguousarray(xs[:n_sub])
    _, raw_sub = timed(None, sub)
    _, iaaft_sub = timed({**cfg, "method": "iaaft"}, sub)
    per_measure = {}
    for m in K.PER_CHANNEL_MEASURES:
        _, t = timed({**cfg, "measures": [m]}, sub)
        per_measure[m] = round(t / raw_sub, 2)
    n_win = x.shape[1] // win
    return {
        "benchmark": "surrogate_entropy_cost_ratio",
        "ours_s": surr_s,
        "baseline": "the same default measure set without surrogates",
        "baseline_s": raw_s,
        "speedup": None,
        "ratio": surr_cpu / raw_cpu,
        "ratio_wall": surr_s / raw_s,
        "ours_cpu_s": surr_cpu,
        "baseline_cpu_s": raw_cpu,
        "all_runs_raw_cpu_s": [r[1] for r in raw_runs],
        "all_runs_surrogates_cpu_s": [r[1] for r in surr_runs],
        "ratio_iaaft": iaaft_sub / raw_sub,
        "ratio_phase_one_measure": per_measure,
        "surrogates": cfg,
        "n_channels": n_ch,
        "n_windows": n_win,
        "session": f"{n_ch} ch x {x.shape[1] / SFREQ:.0f} s x {SFREQ:.0f} Hz, {WINDOW_S:.0f}-s windows",
        "load_avg_1min": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
        "cpu_pressure_before": pressure_before,
        "cpu_pressure_after": cpu_pressure(),
        "notes": (
            f"ratio = process CPU time of compute_windowed(all measures, surrogates=eeg.features.surrogates "
            f"default: {cfg['n']} {cfg['method']} surrogates of {', '.join(cfg['measures'])}) / the same "
            f"without surrogates, one thread, best of {repeats} interleaved runs on {n_ch} channels (CPU time: "
            f"the cost itself; wall times on this shared machine swing with other load; ratio_wall is the "
            f"wall-time ratio of the same runs, ours_s/baseline_s their wall times); ratio_iaaft: IAAFT ({cfg['iaaft_iterations']} iterations) instead, and "
            f"ratio_phase_one_measure: phase surrogates of that measure alone, each on {n_sub} channels, one "
            "run, process CPU time (less sensitive to other load than wall time). Every surrogate costs one evaluation of the measure, so the ratio grows by about "
            "(10 x the measure's share of the raw cost) per normalised measure; the default list holds the "
            "cheap ones"
        ),
    }


def run(quick: bool = False) -> list[dict]:
    import antropy as ant

    from pipelines.eeg import kernels as K

    n_ch, dur = (8, 120.0) if quick else (64, 600.0)
    n_ref_ch = 1 if quick else 2
    n_ref_st_windows = 2 if quick else 3
    x = synthetic_session(n_ch, dur)
    win = int(WINDOW_S * SFREQ)
    x3 = K.sliding_windows(x, win, win)
    n_win = x3.shape[1]
    K.compute_windowed(x[:2, : 4 * win], SFREQ, win, win)  # load cached kernels outside timing
    K.compute_whole(x[:2, : 4 * win], SFREQ)
    session = f"{n_ch} ch x {dur:.0f} s x {SFREQ:.0f} Hz, {WINDOW_S:.0f}-s windows (step {WINDOW_S:.0f} s)"
    rows = []

    # --- windowed measure set --------------------------------------------------------
    load_before = os.getloadavg()[0]
    ours, t_ours, cpu_ours = _timed_cpu(K.compute_windowed, x, SFREQ, win, win, measures=K.MEASURES, n_threads=1)
    t_ref_ch = 0.0
    diffs = []
    for ch in range(n_ref_ch):
        ref, t = _timed(_naive_antropy_channel, ant, x3[ch], ch)
        t_ref_ch += t
        diffs.append(_max_rel_diff({m: ours[m][ch] for m in ref}, ref))
    t_ref_st = 0.0
    st_ref = []
    for w in range(n_ref_st_windows):
        v, t = _timed(_naive_lzc_st_window, ant, x3, w)
        t_ref_st += t
        st_ref.append(v)
    diffs.append(_max_rel_diff({"st": ours["lzc_schartner_st"][:n_ref_st_windows]}, {"st": np.array(st_ref)}))
    baseline_s = t_ref_ch * n_ch / n_ref_ch + t_ref_st * n_win / n_ref_st_windows
    rows.append(
        {
            "benchmark": "windowed_measure_set_64ch_10min_500hz",
            "ours_s": t_ours,
            "baseline": "antropy 0.2.3 per window in a Python loop (+ scipy hilbert for Schartner LZ)",
            "baseline_s": baseline_s,
            "speedup": baseline_s / t_ours,
            "n_channels": n_ch,
            "n_windows": n_win,
            "measures": list(K.MEASURES),
            "session": session,
            "machine_cores": os.cpu_count(),
            "n_threads": 1,
            "ours_cpu_s": cpu_ours,
            "max_rel_diff": max(diffs),
            "load_avg_1min": load_before,
            "notes": (
                f"baseline timed on {n_ref_ch} channel(s) x all windows (per-channel measures, "
                f"{t_ref_ch:.1f} s) scaled x{n_ch / n_ref_ch:g}, plus spatio-temporal LZc on "
                f"{n_ref_st_windows} windows ({t_ref_st:.1f} s) scaled x{n_win / n_ref_st_windows:g}; "
                "max_rel_diff over those values"
            ),
        }
    )

    # --- whole-channel LZ on 300,000 samples -----------------------------------------
    ch0 = x[0]
    bits = (ch0 > np.median(ch0)).astype(np.uint8)
    K.lz76_count(bits[:1000])
    c_ours, t_ours_lz = _timed(K.lz76_count, bits)
    c_ref, t_ref_lz = _timed(ant.lziv_complexity, bits.astype(int))
    rng = np.random.default_rng(1)
    rand_bits = (rng.random(bits.size) < 0.5).astype(np.uint8)
    _, t_ours_rand = _timed(K.lz76_count, rand_bits)
    rows.append(
        {
            "benchmark": "lzc_whole_channel_300k",
            "ours_s": t_ours_lz,
            "baseline": "antropy.lziv_complexity (Kaspar-Schuster scan)",
            "baseline_s": t_ref_lz,
            "speedup": t_ref_lz / t_ours_lz,
            "n_samples": int(bits.size),
            "count_ours": c_ours,
            "count_antropy": int(c_ref),
            "max_rel_diff": abs(c_ours - c_ref) / c_ref,
            "ours_random_bits_s": t_ours_rand,
            "notes": "median-binarised channel 0; ours_random_bits_s is i.i.d. fair bits (hardest case for ours)",
        }
    )

    # --- the whole set, 1 and 2 threads ----------------------------------------------
    def full_set(n_threads):
        c0, t0 = time.process_time(), time.perf_counter()
        K.compute_windowed(x, SFREQ, win, win, measures=K.MEASURES, n_threads=n_threads)
        t1 = time.perf_counter()
        K.compute_whole(x, SFREQ, n_threads=n_threads)
        t2 = time.perf_counter()
        return t2 - t0, t1 - t0, t2 - t1, time.process_time() - c0

    # Best of `repeats` for each thread count, interleaved (the machine is shared); every run is listed.
    repeats = 1 if quick else 2
    runs1, runs2 = [], []
    for _ in range(repeats):
        runs1.append(full_set(1))
        runs2.append(full_set(2))
    one, one_win, one_whole, one_cpu = min(runs1)
    two, two_win, two_whole, _ = min(runs2)
    rows.append(
        {
            "benchmark": "full_measure_set_1core",
            "ours_s": one,
            "baseline": "naive antropy loop (windowed baseline above + antropy whole-channel LZ, scaled)",
            "baseline_s": baseline_s + t_ref_lz * n_ch * 3,
            "speedup": (baseline_s + t_ref_lz * n_ch * 3) / one,
            "ours_cpu_s": one_cpu,
            "windowed_s": one_win,
            "whole_recording_s": one_whole,
            "load_avg_1min": os.getloadavg()[0],
            "two_thread_s": two,
            "two_thread_windowed_s": two_win,
            "two_thread_whole_s": two_whole,
            "parallel_efficiency": one / (2 * two),
            "n_channels": n_ch,
            "session": session,
            "all_runs_1thread_s": [r[0] for r in runs1],
            "all_runs_2threads_s": [r[0] for r in runs2],
            "notes": (
                f"best of {repeats} interleaved runs per thread count (all_runs_*); all windowed measures + whole-recording lzc_median, lzs_schartner per channel and "
                "spatio-temporal lzc_schartner_st; baseline whole part = 3 antropy LZ counts per "
                "channel (median, Schartner and its shuffle) at the 300k time, without the "
                "whole-recording spatio-temporal LZc (antropy: hours)"
            ),
        }
    )

    rows.append(surrogate_cost_row(K, x, win, quick))

    imp = import_time_s()
    ant_s = None if quick else antropy_import_time_s()
    rows.append(
        {
            "benchmark": "import_pipelines_kernels_s",
            "ours_s": imp["import_s"],
            "baseline": "import antropy in a fresh interpreter" if ant_s else None,
            "baseline_s": ant_s,
            "speedup": ant_s / imp["import_s"] if ant_s else None,
            "first_call_s": imp["first_call_s"],
            "notes": (
                "fresh subprocess, warm numba cache (second of two runs, so the OS file cache is warm too; "
                "antropy: one run, its files already cached); "
                "first_call_s = first compute_windowed (loads the cached machine code and imports scipy.signal)"
            ),
        }
    )
    return rows


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=float))
