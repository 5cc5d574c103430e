"""The whole per-recording EEG path on one core (issue 15): row ``recording_path_64ch_1core``.

One synthetic 64-ch x 10-min x 500-Hz recording goes through what a study worker runs for it,
:func:`pipelines.eeg.features._compute_recording`: read (mne-bids) -> preprocess (filter, notch, bad
channels, reference, QC) -> every feature (windowed kernels, whole-recording LZ, Welch band powers,
specparam, ROI measures) -> its Zarr store, written atomically. It runs in a fresh interpreter pinned to one
CPU (``sched_setaffinity``) with OMP/MKL/OpenBLAS at 1 thread, in a worker that has run one recording: a
2-min recording of the same montage and rate first goes through the same path, untimed (imports, numba
specialisations loaded from the cache, xarray and Zarr initialised, the code hash: once per worker); the
timed recording's memory is still fresh (the heap grows to its size during the run). Stages are timed by wrapping the functions (exclusive wall and CPU
seconds; nested calls belong to the outer stage). ``ours_s`` = the whole path's wall time, best of
``KW_BENCH_PATH_REPEATS`` (default 3) fresh processes; ``cpu_s`` its CPU time (``system_cpu_s`` the kernel's
part: first touches of fresh memory). ``warm_worker_*``: the same recording again in the same process, as every
recording after the first runs in a study worker. The machine load (1-min
load average, PSI CPU pressure) is recorded before and after each run: on the shared 2-core machine wall
times are inflated when the load exceeds 1 while ``cpu_s`` stays close to the idle figure.

``--quick``: a 20-ch x 2-min x 250-Hz recording (row ``recording_path_20ch_1core_quick``).
``python benchmarks/bench_recording_path.py [--quick]`` prints the rows as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._machine import cpu_pressure  # noqa: E402
from benchmarks.bench_study import StageTimer, _env_with_repo, _environ, make_study  # noqa: E402

FULL = {"subjects": 1, "doses": [0.5], "minutes": 10.0, "channels": 64, "sfreq": 500.0}
QUICK = {"subjects": 1, "doses": [0.5], "minutes": 2.0, "channels": 20, "sfreq": 250.0}
TARGET_S = 6.0
WARMUP_MINUTES = 2.0  # the untimed recording each measuring process computes first (same montage and rate)
STAGES = (
    "read",
    "filter/notch/reference/QC",
    "kernels (windowed)",
    "kernels (whole-recording LZ)",
    "Welch (band powers)",
    "specparam",
    "Zarr write",
    "other",
)
# Outermost wrapped function -> stage; anything not wrapped is "other" (windowing, rejection, ROI, assembly).
_STAGE_OF = {
    "read": "read",
    "preprocess": "filter/notch/reference/QC",
    "compute_windowed": "kernels (windowed)",
    "compute_whole": "kernels (whole-recording LZ)",
    "welch_psd": "Welch (band powers)",
    "aperiodic_exponents": "specparam",
    "to_zarr": "Zarr write",
}


def _warm() -> None:
    """Imports and the numba cache, as in a worker that has already run a recording (not timed)."""
    import dask.array  # noqa: F401  (xarray imports it at its first Dataset; a Dask worker has it already)
    import mne  # noqa: F401
    import mne_bids  # noqa: F401
    import numpy as np
    import scipy.signal  # noqa: F401
    import specparam  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    from pipelines.eeg import kernels

    x = np.random.default_rng(0).standard_normal((2, 2000))
    kernels.compute_windowed(x, 500.0, 1000, 1000)
    kernels.compute_whole(x, 500.0)


def time_recording_path(manifest_path: str, out_dir: str, warmup_manifest_path: str) -> dict:
    """Run one recording's whole path in this process with its stages wrapped (call in a fresh process), then
    the same recording again (a warm worker's figure). First, untimed, the 2-min recording of
    ``warmup_manifest_path`` goes through the same path: what a worker has done once before any figure here
    (imports, numba specialisations loaded, xarray and Zarr initialised, the code hash)."""
    import xarray as xr

    from pipelines.eeg import features, io, kernels, preprocessing
    from pipelines.study.dataset import Study

    _warm()
    warmup = Study.load(warmup_manifest_path)
    warmup_out = Path(out_dir) / "warmup"
    warmup_out.mkdir(exist_ok=True)
    features._compute_recording(warmup.manifest, warmup.recordings[0], warmup_out)
    study = Study.load(manifest_path)
    recording = study.recordings[0]
    st = StageTimer()
    st.patch(io, "read_raw", "read")
    st.patch(preprocessing, "preprocess")
    for name in ("compute_windowed", "compute_whole"):
        st.patch(kernels, name)
    if hasattr(kernels, "spectral"):  # the kernels package: patched where defined, every caller goes through it
        st.patch(kernels.spectral, "welch_psd")
    elif hasattr(kernels, "welch_psd"):  # the single kernels module before it was split by family
        st.patch(kernels, "welch_psd")
    else:  # code before the one-pass Welch (timing the old path for comparison)
        import scipy.signal

        st.patch(scipy.signal, "welch", "welch_psd")
    st.patch(features, "aperiodic_exponents")
    st.patch(xr.Dataset, "to_zarr")
    first = _timed_run(st, study.manifest, recording, Path(out_dir))
    # The same recording again in the same process: what each recording after the first costs a study worker
    # (freed pages reused, pipelines.core.memory), reported beside the fresh-process figure, not instead of it.
    shutil.rmtree(Path(out_dir) / f"{recording.key}.zarr", ignore_errors=True)
    st.totals.clear()
    st.cpu_totals.clear()
    again = _timed_run(st, study.manifest, recording, Path(out_dir))
    return first | {
        "warm_worker_wall_s": again["wall_s"],
        "warm_worker_cpu_s": again["cpu_s"],
        "warm_worker_system_cpu_s": again["system_cpu_s"],
        "warm_worker_stage_cpu_s": again["stage_cpu_s"],
    }


def _timed_run(st, manifest, recording, out_dir: Path) -> dict:
    """One recording through ``_compute_recording`` with ``st``'s stages; wall, CPU (user + system) and load."""
    import resource

    from pipelines.eeg import features

    load = os.getloadavg()[0]
    pressure = cpu_pressure()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0, c0 = time.perf_counter(), time.process_time()
    qc = features._compute_recording(manifest, recording, out_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    stage_s = dict.fromkeys(STAGES, 0.0)
    stage_cpu_s = dict.fromkeys(STAGES, 0.0)
    for path, seconds in st.totals.items():
        stage = _STAGE_OF[path.split(">")[0]]
        stage_s[stage] += seconds
        stage_cpu_s[stage] += st.cpu_totals[path]
    stage_s["other"] += wall - sum(st.totals.values())
    stage_cpu_s["other"] += cpu - sum(st.cpu_totals.values())
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "system_cpu_s": round(usage1.ru_stime - usage0.ru_stime, 3),  # page faults: fresh memory's first touch
        "stage_s": {k: round(v, 3) for k, v in stage_s.items()},
        "stage_cpu_s": {k: round(v, 3) for k, v in stage_cpu_s.items()},
        "detail_s": {k: round(v, 3) for k, v in sorted(st.totals.items(), key=lambda kv: -kv[1])},
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_avg_1min_before": load,
        "load_avg_1min_after": os.getloadavg()[0],
        "cpu_pressure_avg60_pct_before": pressure,
        "cpu_pressure_avg60_pct_after": cpu_pressure(),
        "n_channels": qc["n_channels"],
        "n_windows": qc["n_windows"],
        "sfreq_hz": qc["sfreq_hz"],
        "duration_s": qc["duration_s"],
    }


def _one_run(manifest: Path, out_dir: Path, cpu: int, warmup_manifest: Path) -> dict:
    code = (
        "import json, os, sys; os.sched_setaffinity(0, {int(sys.argv[3])}); "
        "from benchmarks.bench_recording_path import time_recording_path; "
        "print('@@' + json.dumps(time_recording_path(sys.argv[1], sys.argv[2], sys.argv[4])))"
    )
    env = _env_with_repo() | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(manifest), str(out_dir), str(cpu), str(warmup_manifest)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.split("@@", 1)[1])


def bench_recording_path(manifest: Path, out_dir: Path, repeats: int, quick: bool, warmup_manifest: Path) -> dict:
    cpu = max(os.sched_getaffinity(0))
    runs = [_one_run(manifest, out_dir, cpu, warmup_manifest) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    name = f"recording_path_{best['n_channels']}ch_1core" + ("_quick" if quick else "")
    return {
        "benchmark": name,
        "ours_s": best["wall_s"],
        "baseline": None,
        "baseline_s": None,
        "speedup": None,
        "cpu_s": best["cpu_s"],
        "stage_s": best["stage_s"],
        "stage_cpu_s": best["stage_cpu_s"],
        "detail_s": best["detail_s"],
        "all_runs_wall_s": [r["wall_s"] for r in runs],
        "all_runs_cpu_s": [r["cpu_s"] for r in runs],
        "system_cpu_s": best["system_cpu_s"],
        "warm_worker_wall_s": min(r["warm_worker_wall_s"] for r in runs),
        "warm_worker_cpu_s": min(r["warm_worker_cpu_s"] for r in runs),
        "warm_worker_system_cpu_s": min(r["warm_worker_system_cpu_s"] for r in runs),
        "warm_worker_stage_cpu_s": min(runs, key=lambda r: r["warm_worker_wall_s"])["warm_worker_stage_cpu_s"],
        "load_avg_1min_before": best["load_avg_1min_before"],
        "load_avg_1min_after": best["load_avg_1min_after"],
        "cpu_pressure_avg60_pct_before": best["cpu_pressure_avg60_pct_before"],
        "cpu_pressure_avg60_pct_after": best["cpu_pressure_avg60_pct_after"],
        "cpu_affinity": best["cpu_affinity"],
        "recording": f"{best['n_channels']} ch x {best['duration_s']:.0f} s x {best['sfreq_hz']:.0f} Hz, "
        f"{best['n_windows']} windows",
        "target": None if quick else f"<= {TARGET_S:g} s on 1 core, idle machine",
        "notes": (
            "pipelines.eeg.features._compute_recording (read -> preprocess -> every feature -> atomic Zarr "
            f"store) in a fresh process pinned to CPU {cpu}, 1 BLAS/OpenMP thread, after an untimed "
            f"{WARMUP_MINUTES:g}-min recording through the same path (imports, numba cache, xarray/Zarr warm); best of {repeats} run(s) by wall time (all in all_runs_*). stage_s / stage_cpu_s: exclusive "
            "wall / CPU seconds per stage (kernels' own FFTs inside 'kernels'); 'other' = windowing, rejection, "
            "ROI measures, Dataset assembly, input hash. A 1-min load average above 1 on this shared machine "
            "means another process shared the core: wall exceeds cpu_s by about that share. system_cpu_s: the "
            "kernel's share of cpu_s (mostly first touches of fresh memory, ~5 ms per MB on this VM). "
            "warm_worker_*: the same recording computed again in the same process right after (what every "
            "recording after its first costs a study worker, whose freed pages are reused); ours_s stays the "
            "fresh-process figure" + (" QUICK RUN: small recording, no target." if quick else "")
        ),
    }


def run(quick: bool = False) -> list[dict]:
    size = QUICK if quick else FULL
    repeats = int(os.environ.get("KW_BENCH_PATH_REPEATS", 1 if quick else 3))
    with tempfile.TemporaryDirectory(prefix="kw-bench-path-") as tmp:
        folder = Path(tmp)
        with _environ(KW_WORKDIR=folder / "work", PYTHONPATH=_env_with_repo()["PYTHONPATH"]):
            manifest, _ = make_study(folder, size)
            (folder / "warmup").mkdir()
            warmup_manifest, _ = make_study(folder / "warmup", size | {"minutes": WARMUP_MINUTES}, seed=20260102)
            out_dir = folder / "recordings"
            out_dir.mkdir()
            return [bench_recording_path(manifest, out_dir, repeats, quick, warmup_manifest)]


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=float))
