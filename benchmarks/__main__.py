"""Run every benchmark and write ``reports/bench/bench.json`` and ``reports/bench/bench.md``.

    python -m benchmarks            # what `make bench` runs (about 10 minutes on a 2-core machine)
    python -m benchmarks --quick    # smoke run on small inputs: writes bench-quick.json / bench-quick.md
    python -m benchmarks --only kernels study

Each benchmark module runs in its own fresh interpreter (no shared imports, caches or memory between
them) and returns rows; a module that fails becomes an ``error`` row and the command exits 1 after
writing the files. ``bench.json`` is a list of rows, each with at least ``benchmark``, ``ours_s``,
``baseline``, ``baseline_s`` and ``speedup``, plus ``target`` / ``meets_target`` where the issues set
one, the load average before and after its module ran, and ``machine`` (cores, memory, library
versions, git commit). Files are written atomically (temporary file, then rename). Output goes to
``reports/bench/`` (``$KW_WORKDIR/reports/bench/`` when KW_WORKDIR is set, or ``--out``).

Modules: the three below, plus any other ``benchmarks/bench_*.py`` that defines ``run(quick=False)``
returning a list of rows (so a new benchmark only needs its file).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._machine import cpu_pressure

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# name -> (module, how to call it). Known modules first, in this order.
KNOWN = {
    "kernels": "benchmarks.bench_kernels",
    "scoring": "benchmarks.bench_scoring",
    "study": "benchmarks.bench_study",
}
MODULE_TIMEOUT_S = 1200
# The real 100-recording study (issue 15) runs for tens of minutes on 2 cores, longer on a loaded machine.
MODULE_TIMEOUTS_S = {"study_real": 4 * 3600}
BUDGET_S = 15 * 60

# Targets from the issues (3: EEG speed, 4: scoring). Checked only on full (not --quick) runs.
TARGETS = {
    "windowed_measure_set_64ch_10min_500hz": (
        ">= 5x faster than the antropy loop, same values (max_rel_diff <= 1e-9)",
        lambda r: r["speedup"] >= 5 and r.get("max_rel_diff", math.inf) <= 1e-9,
    ),
    "lzc_whole_channel_300k": (
        ">= 100x faster than antropy, same count",
        lambda r: r["speedup"] >= 100 and r.get("max_rel_diff", 1) == 0,
    ),
    "full_measure_set_1core": ("<= 10 s on one core", lambda r: r["ours_s"] <= 10),
    "import_pipelines_kernels_s": ("<= 2 s", lambda r: r["ours_s"] <= 2),
    "surrogate_entropy_cost_ratio": (
        "<= 3x the raw measure set with 10 surrogates (issue 12; phase randomisation, default measures)",
        lambda r: r["ratio"] <= 3,
    ),
    "dask_worker_start_s": ("<= 2 s (numba cache warm)", lambda r: r["ours_s"] <= 2),
    "scoring_10000x5": ("< 1 s", lambda r: r["ours_s"] < 1),
    "study_100x4_projection": (
        "< 1 h for 400 recordings on 2 workers, peak memory < 4 GB, parallel efficiency >= 0.8",
        lambda r: r["ours_s"] < 3600 and r["peak_rss_gb"] < 4 and r["parallel_efficiency"] >= 0.8,
    ),
    "study_100x4_projection_threads": (
        "< 1 h for 400 recordings on 2 threads (make all's default), peak memory < 4 GB, parallel efficiency >= 0.8",
        lambda r: r["ours_s"] < 3600 and r["peak_rss_gb"] < 4 and r["parallel_efficiency"] >= 0.8,
    ),
    # Issue 15: the whole per-recording path on one core, a real study run, and 400 recordings projected from it.
    "recording_path_64ch_1core": (
        "<= 6 s on 1 core, idle machine (read -> preprocess -> every feature -> its Zarr store)",
        lambda r: r["ours_s"] <= 6,
    ),
    "study_100_recordings_real": (
        "peak memory <= 4 GB (process tree), parallel efficiency >= 0.85",
        lambda r: r["peak_gb"] <= 4 and r["efficiency"] >= 0.85,
    ),
    "study_400_projection_from_real": (
        "<= 0.5 h for 400 recordings on this 2-core machine",
        lambda r: r["projected_h"] <= 0.5,
    ),
    # Issue 16: the dashboards at lab scale.
    "dashboard_20_sessions": (
        "p95 <= 1 s with 20 concurrent visitors of the explorer's first view (/explorer) on one server",
        lambda r: r["p95_s"] <= 1.0 and r["sessions_failed"] == 0,
    ),
    "dashboard_soak_500": (
        "server RSS grows < 50 MB over 500 open/close sessions",
        lambda r: r["rss_growth_mb"] < 50 and r["sessions_failed"] == 0,
    ),
    # Issue 13: live titration over LSL.
    "live_latency_64ch_500hz": (
        "p95 <= 0.25 s from a sample's LSL timestamp to the updated monitor state",
        lambda r: r["p95_s"] <= 0.25,
    ),
    "live_cpu_64ch_500hz": ("<= 0.25 of one core for the monitor process", lambda r: r["cpu_fraction"] <= 0.25),
}

# Extra keys worth a glance in the Markdown table (shown when a row has them).
KEY_FIELDS = [
    ("n_threads", "threads"),
    ("two_thread_s", "2 threads s"),
    ("parallel_efficiency", "efficiency"),
    ("max_rel_diff", "max rel diff"),
    ("first_call_s", "first call s"),
    ("cluster_up_s", "cluster up s"),
    ("first_kernel_call_s", "first kernel call s"),
    ("ready_for_work_s", "ready for work s"),
    ("projected_wall_h", "projected h"),
    ("n_recordings_measured", "recordings measured"),
    ("per_recording_s_1worker", "s/recording (1 worker)"),
    ("t1_s", "t1 s"),
    ("t2_s", "t2 s"),
    ("peak_rss_gb", "peak GB"),
    ("peak_rss_gb_largest_process", "largest process GB"),
    ("t2_threads_s", "t2 threads s"),
    ("parallel_efficiency_threads", "efficiency threads"),
    ("projected_wall_h_threads", "projected h threads"),
    ("cores_used_2workers", "cores obtained (2 workers)"),
    ("cpu_s_per_recording_2workers", "CPU s/recording"),
    ("projected_wall_h_cpu_bound", "projected h if CPU-bound"),
    ("projected_wall_h_naive_antropy", "projected h with antropy loop"),
    ("per_recording_s", "s/recording"),
    ("features_zarr_mb", "Zarr MB"),
    ("kernels_fraction", "kernels share"),
    ("rows_scored", "rows"),
    ("p50_s", "p50 s"),
    ("p95_s", "p95 s"),
    ("mb_per_session", "MB/session"),
    ("rss_growth_mb", "RSS growth MB"),
    ("sessions_ok", "sessions ok"),
    ("sessions_failed", "sessions failed"),
    ("measured_load_avg_before", "load avg at start"),
    ("measured_load_avg_after", "load avg at end"),
    ("measured_cpu_pressure_before", "CPU pressure % at start"),
    ("measured_cpu_pressure_after", "CPU pressure % at end"),
    ("ratio", "ratio"),
    ("ratio_iaaft", "ratio IAAFT"),
    ("cpu_fraction", "CPU (cores)"),
    ("chunk_p95_s", "chunk p95 s"),
    ("n_windows", "windows"),
    ("wall_s", "wall s"),
    ("cpu_s", "CPU s"),
    ("peak_gb", "peak GB"),
    ("efficiency", "efficiency"),
    ("projected_h", "projected h"),
    ("load_avg_1min_before", "load avg before"),
    ("load_avg_1min_after", "load avg after"),
]


# --- child: one module in a fresh interpreter ---------------------------------------------------------


def _jsonable(value):
    """numpy scalars and arrays, tuples, NaN/inf → plain JSON (NaN/inf become None)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if np is not None and isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if np is not None and isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _call(name: str, quick: bool) -> list[dict]:
    module = importlib.import_module(KNOWN.get(name, f"benchmarks.bench_{name}"))
    if name == "scoring":
        rows = module.bench_scoring(n_participants=1000) if quick else module.bench_scoring()
    else:
        rows = module.run(quick=quick)
    return [rows] if isinstance(rows, dict) else list(rows)


def _child(name: str, quick: bool, out: str) -> int:
    rows = _call(name, quick)
    _atomic_write(Path(out), json.dumps(_jsonable(rows), indent=1, allow_nan=False))
    return 0


# --- parent -------------------------------------------------------------------------------------------


def discover() -> list[str]:
    """Known modules, then any other bench_*.py with a run(); the study module last (it adapts its
    optional repeats to the time left, KW_BENCH_DEADLINE)."""
    names = [n for n in KNOWN if n != "study"]
    for path in sorted((REPO / "benchmarks").glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if name not in KNOWN and "def run(" in path.read_text():
            names.append(name)
    return names + ["study"]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:  # pragma: no cover
        mem_gb = None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", "benchmarks", "pipelines")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            d: _version(d)
            for d in (
                "numpy",
                "numba",
                "scipy",
                "antropy",
                "mne",
                "dask",
                "distributed",
                "xarray",
                "zarr",
                "pandas",
                "specparam",
            )
        },
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def _run_module(name: str, quick: bool, deadline: float) -> tuple[list[dict], dict]:
    load_before = list(os.getloadavg())
    pressure_before = cpu_pressure()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kw-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "benchmarks", "--child", name, "--child-out", str(out)] + (
            ["--quick"] if quick else []
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "KW_BENCH_DEADLINE": f"{deadline:.0f}",
        }
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=MODULE_TIMEOUTS_S.get(name, MODULE_TIMEOUT_S))
            error = None if proc.returncode == 0 else f"exit code {proc.returncode} (its traceback is in the log above)"
        except subprocess.TimeoutExpired:
            error = f"timed out after {MODULE_TIMEOUTS_S.get(name, MODULE_TIMEOUT_S)} s"
        rows = json.loads(out.read_text()) if error is None and out.exists() else []
    info = {
        "bench_module": KNOWN.get(name, f"benchmarks.bench_{name}"),
        "module_wall_s": time.perf_counter() - t0,
        "load_avg_before": load_before,
        "load_avg_after": list(os.getloadavg()),
        "cpu_pressure_avg60_pct_before": pressure_before,
        "cpu_pressure_avg60_pct_after": cpu_pressure(),
    }
    if error:
        rows = [
            {
                "benchmark": f"{name} (failed)",
                "ours_s": None,
                "baseline": None,
                "baseline_s": None,
                "speedup": None,
                "error": error,
            }
        ]
    return rows, info


def _derive(rows: list[dict]) -> None:
    """Cross-row figures: the study projected with the naive antropy loop in place of the kernels."""
    by = {r["benchmark"]: r for r in rows}
    study, prof, full = (
        by.get(k) for k in ("study_100x4_projection", "recording_features_profile_64ch", "full_measure_set_1core")
    )
    if not (study and prof and full) or not full.get("baseline_s") or not study.get("per_recording_s_1worker"):
        return
    kern = prof["stage_s"]["kernels (windowed)"] + prof["stage_s"]["kernels (whole-recording LZ)"]
    naive_per_rec = study["per_recording_s_1worker"] - kern + full["baseline_s"]
    study["projected_wall_h_naive_antropy"] = naive_per_rec * 400 / 2 / study["parallel_efficiency"] / 3600
    study["notes"] += (
        f" projected_wall_h_naive_antropy: the same, with this run's kernel time per recording "
        f"({kern:.1f} s, profile row) replaced by the naive antropy loop's full-set time "
        f"({full['baseline_s']:.0f} s, full_measure_set_1core baseline)."
    )


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 1:
            return f"{v:.2f}"
        if a >= 1e-3:
            return f"{v:.3f}"
        return f"{v:.1e}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def markdown(rows: list[dict], run: dict) -> str:
    m = run["machine"]
    v = m["versions"]
    lines = [
        f"# Benchmarks{' (QUICK smoke run: small inputs, targets not checked)' if run['quick'] else ''}",
        "",
        f"Run {run['started_utc']} → {run['finished_utc']} ({run['total_runtime_s'] / 60:.1f} min), git "
        f"{m['git_commit']}{' + uncommitted changes' if m['git_dirty'] else ''}.  ",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB; Python {m['python']}, numpy "
        f"{v['numpy']}, numba {v['numba']}, scipy {v['scipy']}, antropy {v['antropy']}, dask {v['dask']}.  ",
        f"Load average (1/5/15 min) before: {_fmt(run['load_avg_before'])}; after: {_fmt(run['load_avg_after'])}; "
        f"CPU pressure (PSI some avg60) before/after: {_fmt(run['cpu_pressure_before'])} / "
        f"{_fmt(run['cpu_pressure_after'])} %. A load above the core count means other processes shared the CPUs "
        "and wall times are inflated.",
        "",
        "| benchmark | ours (s) | baseline (s) | speedup | key figures | target | met |",
        "|---|---:|---:|---:|---|---|:-:|",
    ]
    for r in rows:
        keys = "; ".join(f"{label} {_fmt(r[k])}" for k, label in KEY_FIELDS if r.get(k) is not None)
        if "stage_s" in r:
            keys += ("; " if keys else "") + ", ".join(f"{k} {_fmt(s)}" for k, s in r["stage_s"].items())
        met = r.get("meets_target")
        lines.append(
            f"| {r['benchmark']} | {_fmt(r.get('ours_s'))} | {_fmt(r.get('baseline_s'))} | "
            f"{_fmt(r.get('speedup'))}{'×' if r.get('speedup') else ''} | {keys or '–'} | "
            f"{r.get('target') or '–'} | {'–' if met is None else ('✓' if met else '✗ MISSED')} |"
        )
    lines += ["", "## Baselines and notes", ""]
    for r in rows:
        parts = [
            f"baseline: {r['baseline']}" if r.get("baseline") else None,
            r.get("notes"),
            f"ERROR: {r['error']}" if r.get("error") else None,
            f"its module: load average {_fmt(r.get('load_avg_before', [None])[0])} → "
            f"{_fmt(r.get('load_avg_after', [None])[0])}, CPU pressure "
            f"{_fmt(r.get('cpu_pressure_avg60_pct_before'))} → {_fmt(r.get('cpu_pressure_avg60_pct_after'))} %",
        ]
        lines.append(f"- **{r['benchmark']}** — " + "; ".join(p for p in parts if p))
    lines += ["", "Every figure is in `bench.json` (one row per benchmark, more keys than shown here).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (smoke run); writes bench-quick.*")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these modules (of {discover()})")
    parser.add_argument("--out", type=Path, help="output folder (default reports/bench)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, args.child_out)

    from pipelines.core.paths import reports_root

    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark module(s) {unknown}; known: {names}")
        names = [n for n in names if n in args.only]
    out_dir = args.out or reports_root() / "bench"
    stem = "bench-quick" if args.quick else "bench"
    machine = machine_info()
    run = {
        "quick": args.quick,
        "machine": machine,
        "load_avg_before": list(os.getloadavg()),
        "cpu_pressure_before": cpu_pressure(),
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    t0 = time.perf_counter()
    deadline = time.time() + BUDGET_S - 60  # optional repeats stop here; a minute left for the last steps
    rows: list[dict] = []
    failed = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        module_rows, info = _run_module(name, args.quick, deadline)
        if any("error" in r for r in module_rows):
            failed.append(name)
        print(
            f"[bench] {name}: {len(module_rows)} row(s) in {info['module_wall_s']:.0f} s"
            f"{' — FAILED' if name in failed else ''}",
            file=sys.stderr,
            flush=True,
        )
        for r in module_rows:
            rows.append(r | info)
    _derive(rows)
    for r in rows:
        target = TARGETS.get(r["benchmark"])
        if target:
            r.setdefault("target", target[0])
        if target and not args.quick and "error" not in r:
            try:
                r["meets_target"] = bool(target[1](r))
            except (KeyError, TypeError):
                r["meets_target"] = None
        else:
            r["meets_target"] = None
        r["quick"] = args.quick
        r["machine"] = machine
    run.update(
        load_avg_after=list(os.getloadavg()),
        cpu_pressure_after=cpu_pressure(),
        total_runtime_s=time.perf_counter() - t0,
        finished_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    for r in rows:
        r["run_total_s"] = run["total_runtime_s"]
        r["run_load_avg_before"] = run["load_avg_before"]
        r["run_load_avg_after"] = run["load_avg_after"]
    _atomic_write(out_dir / f"{stem}.json", json.dumps(_jsonable(rows), indent=2, allow_nan=False))
    _atomic_write(out_dir / f"{stem}.md", markdown(rows, run))
    missed = [r["benchmark"] for r in rows if r.get("meets_target") is False]
    print(
        f"[bench] wrote {out_dir / (stem + '.json')} and {stem}.md in {run['total_runtime_s'] / 60:.1f} min"
        + (f"; missed targets: {', '.join(missed)}" if missed else "")
        + (f"; over the {BUDGET_S // 60}-min budget" if run["total_runtime_s"] > BUDGET_S else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
