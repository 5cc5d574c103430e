"""Where a study's EEG features run, from the manifest's ``cluster:`` section (``ClusterConfig``).

* ``local`` (default): this machine, Dask threads.
* ``scheduler``: a Dask scheduler already running at ``address`` — e.g. started with Dask's own tools,
  ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786`` on each of the others.
* ``slurm`` / ``pbs``: dask-jobqueue submits worker jobs and scales them with the work (``min_jobs`` ..
  ``max_jobs``). Each worker retires ``lifetime_margin_min`` minutes before its job's wall time
  (``--lifetime``/``--lifetime-stagger``), so the batch system never kills one mid-recording and adaptive
  scaling replaces it; the numba cache sits on a shared filesystem (``NUMBA_CACHE_DIR``), so the kernels
  compile once for all jobs; workers serve no dashboard, and the scheduler's is off unless asked for, then
  on 127.0.0.1 only.

The code that computes a recording is the same everywhere: one Dask task per recording, each writing its
own store (``pipelines.eeg.features``). Only the standard library is imported at module level.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

DASHBOARD_ADDRESS = "127.0.0.1:8787"
# One thread per numerical library: a worker's parallelism is its Dask threads (one recording each).
SINGLE_THREADED_LIBRARIES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made each recording 25-45 % slower here
# (benchmarks/bench_study.py, WORKER_PRE_SPAWN_ENVIRON); None in the nanny's config leaves it unset.
NO_MALLOC_TRIM = "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""


def walltime_s(walltime: str) -> int:
    """Seconds in a ``[D-]HH:MM:SS`` wall time."""
    days, _, clock = walltime.rpartition("-")
    h, m, s = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def worker_lifetime_s(config) -> tuple[int, int]:
    """(lifetime, stagger) in seconds for ``dask worker --lifetime/--lifetime-stagger``.

    Dask retires a worker at lifetime ± a random share of the stagger, so the latest retirement is
    lifetime + stagger = wall time - margin."""
    stagger = int(round(config.lifetime_stagger_min * 60))
    return walltime_s(config.walltime) - int(round(config.lifetime_margin_min * 60)) - stagger, stagger


def numba_cache_dir(config) -> str:
    from pipelines.core.paths import REPO_ROOT

    return config.numba_cache_dir or os.environ.get("NUMBA_CACHE_DIR") or str(REPO_ROOT / "build" / "numba-cache")


def jobqueue_cluster(config, python: str | None = None):
    """A dask-jobqueue SLURMCluster or PBSCluster for ``config`` (no job submitted until it is scaled).

    Creating it starts the scheduler in this process; ``cluster.job_script()`` shows what each job runs."""
    if config.kind not in ("slurm", "pbs"):
        raise ValueError(f"cluster.kind is {config.kind!r}: dask-jobqueue is for 'slurm' or 'pbs'")
    from dask_jobqueue import PBSCluster, SLURMCluster

    lifetime, stagger = worker_lifetime_s(config)
    cache = numba_cache_dir(config)
    Path(cache).mkdir(parents=True, exist_ok=True)
    prologue = [
        *config.job_script_prologue,
        f"export NUMBA_CACHE_DIR={cache}",
        *(f"export {name}=1" for name in SINGLE_THREADED_LIBRARIES),
        NO_MALLOC_TRIM,
    ]
    options = {
        "cores": config.cores,
        "processes": 1,
        "memory": config.memory,
        "walltime": config.walltime,
        "queue": config.queue,
        "account": config.account,
        "job_extra_directives": list(config.job_extra_directives),
        "job_script_prologue": prologue,
        "worker_extra_args": [
            "--lifetime",
            f"{lifetime}s",
            "--lifetime-stagger",
            f"{stagger}s",
            "--no-dashboard",
            "--dashboard-address",
            "127.0.0.1:0",
        ],  # health/metrics endpoint: loopback
        "local_directory": config.local_directory,
        "log_directory": config.log_directory,
        "interface": config.interface,
        "python": python or sys.executable,
        # The scheduler always serves HTTP (health, metrics; the dashboard when asked): on loopback only, and on
        # a free port when there is no dashboard (dask-jobqueue's default, ':8787', listens on every interface).
        "scheduler_options": {
            "dashboard": config.dashboard,
            "dashboard_address": DASHBOARD_ADDRESS if config.dashboard else "127.0.0.1:0",
        },
    }
    cls = SLURMCluster if config.kind == "slurm" else PBSCluster
    return cls(**{k: v for k, v in options.items() if v is not None})


@contextmanager
def scheduler_for(config, override: str | None = None, workers: int | None = None):
    """What ``compute_study_features(scheduler=...)`` gets: ``override`` (the command line's --scheduler) when
    given, else from ``config``: 'threads', a scheduler address, or the address of a jobqueue cluster that
    lives as long as this context (its jobs are cancelled on exit)."""
    if override:
        yield override
    elif config.kind == "local":
        yield "threads"
    elif config.kind == "scheduler":
        yield config.address
    else:
        with jobqueue_cluster(config) as cluster:
            maximum = min(config.max_jobs, workers) if workers else config.max_jobs
            cluster.adapt(minimum_jobs=min(config.min_jobs, maximum), maximum_jobs=maximum)
            print(
                f"Dask scheduler {cluster.scheduler_address}: {config.kind} jobs of {config.cores} core(s), "
                f"{config.memory}, {config.walltime} (at most {maximum})"
                + (f"; dashboard {cluster.dashboard_link}" if config.dashboard else ""),
                file=sys.stderr,
            )
            yield cluster.scheduler_address
