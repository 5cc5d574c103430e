"""A study's features on a Dask cluster started with Dask's own tools — ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, the shape of a real cluster — and what happens when a worker is killed mid-study, a run is
interrupted, or one recording is corrupt.

The workers preload ``tests/dask_worker_trace.py``: it records every start of a recording's computation (to count
recomputations) and can hold one recording in flight until the test has killed its worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
WORKDIR_RECORDINGS = Path("build") / "tiny" / "derivatives" / "ketamine-workbench" / "recordings"

pytestmark = pytest.mark.slow


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class CliCluster:
    """``dask scheduler`` + ``dask worker`` processes, each started (and stopped) by this object."""

    def __init__(self, folder: Path, n_workers: int = 2):
        self.folder = folder
        self.trace = folder / "trace"
        self.trace.mkdir()
        scheduler_file = folder / "scheduler.json"
        env = {
            **os.environ,
            "KW_TEST_TRACE_DIR": str(self.trace),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
            # One task per worker thread at a time, so a killed worker held exactly one recording.
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
        self.processes = [
            self._start(
                "scheduler",
                [str(DASK), "scheduler", "--port", "0", *loopback, "--scheduler-file", str(scheduler_file)],
                env,
            )
        ]
        _wait_for(scheduler_file.is_file, 120, "the scheduler file")
        for i in range(n_workers):
            self.processes.append(
                self._start(
                    f"worker{i}",
                    [
                        str(DASK),
                        "worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--name",
                        f"w{i}",
                        "--nthreads",
                        "1",
                        *loopback,
                        "--local-directory",
                        str(folder / f"w{i}"),
                        "--preload",
                        str(REPO / "tests" / "dask_worker_trace.py"),
                    ],
                    env,
                )
            )
        from distributed import Client

        self.client = Client(scheduler_file=str(scheduler_file), timeout=120)
        self.client.wait_for_workers(n_workers, timeout=180)
        self.address = self.client.scheduler.address

    def _start(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        return subprocess.Popen(command, env=env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT)

    def worker_pids(self) -> list[int]:
        return list(self.client.run(os.getpid).values())

    def reset_trace(self):
        for f in self.trace.iterdir():
            f.unlink()

    def starts(self) -> dict[str, list[int]]:
        """Recording key -> pids of the worker processes that started computing it, in order."""
        found: dict[str, list[tuple[int, int]]] = {}
        for f in self.trace.glob("*.start"):
            key, pid, ns, _ = f.name.rsplit(".", 3)
            found.setdefault(key, []).append((int(ns), int(pid)))
        return {k: [pid for _, pid in sorted(v)] for k, v in found.items()}

    def close(self):
        self.client.close()
        for p in reversed(self.processes):
            p.send_signal(signal.SIGINT)
        for p in self.processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    cluster = CliCluster(tmp_path_factory.mktemp("dask-cli"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "work"))
    return tmp_path / "work"


def _store_values(store: Path) -> xr.Dataset:
    ds = xr.open_zarr(store, consolidated=True).load()
    ds.attrs.pop("compute_s")  # timing, the one attribute that differs between runs
    return ds


def test_scheduler_and_worker_cli_give_the_local_results(cli_cluster, tiny_manifest, tmp_path, monkeypatch):
    import psutil

    from pipelines.eeg.features import compute_study_features
    from pipelines.study.dataset import Study

    study = Study.load(tiny_manifest)
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "local"))
    local = xr.open_zarr(compute_study_features(study, scheduler="synchronous", progress=False)).load()
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "cluster"))
    cli_cluster.reset_trace()
    assert cli_cluster.address.startswith("tcp://127.0.0.1:")
    remote = xr.open_zarr(compute_study_features(study, scheduler=cli_cluster.address, progress=False)).load()

    xr.testing.assert_identical(local.drop_attrs(), remote.drop_attrs())
    keys = sorted(r.key for r in study.recordings)
    for key in keys:  # every per-recording store, values and attributes (input hash, QC) alike
        xr.testing.assert_identical(
            _store_values(tmp_path / "local" / WORKDIR_RECORDINGS / f"{key}.zarr"),
            _store_values(tmp_path / "cluster" / WORKDIR_RECORDINGS / f"{key}.zarr"),
        )
    starts = cli_cluster.starts()
    assert sorted(starts) == keys and all(len(pids) == 1 for pids in starts.values()), starts
    assert set(sum(starts.values(), [])) <= set(cli_cluster.worker_pids())  # computed by the workers, not here
    # Every server of the cluster (scheduler, nannies, workers, their HTTP endpoints) listens on loopback only.
    listening = []
    for p in cli_cluster.processes:
        for proc in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]:
            listening += [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


def test_a_killed_worker_loses_only_its_in_flight_recording(cli_cluster, tiny_copy, workdir):
    from pipelines.eeg.features import compute_study_features, recording_features
    from pipelines.study.dataset import Study

    study = Study.load(tiny_copy)
    keys = sorted(r.key for r in study.recordings)
    victim = keys[2]
    cli_cluster.reset_trace()
    (cli_cluster.trace / "hold").write_text(victim)
    outcome = {}
    run = threading.Thread(
        target=lambda: outcome.update(path=compute_study_features(study, scheduler=cli_cluster.address, progress=False))
    )
    run.start()
    killed = _wait_for(lambda: cli_cluster.starts().get(victim), 180, f"{victim} to start")[0]
    assert killed in cli_cluster.worker_pids()
    os.kill(killed, signal.SIGKILL)  # the worker process itself (its nanny starts a fresh one)
    (cli_cluster.trace / "release").touch()
    run.join(timeout=300)
    assert not run.is_alive() and "path" in outcome

    starts = cli_cluster.starts()
    assert sorted(starts) == keys
    # The victim ran twice — first in the killed process, then elsewhere; every other recording once.
    assert starts[victim][0] == killed and len(starts[victim]) == 2 and starts[victim][1] != killed, starts
    assert all(len(starts[k]) == 1 for k in keys if k != victim), starts
    rec_dir = workdir / WORKDIR_RECORDINGS
    run_record = json.loads((rec_dir.parent / "features_run.json").read_text())
    assert run_record["computed"] == keys and run_record["failed"] == []
    assert not list(rec_dir.glob(".*tmp*"))  # nothing half-written is left behind
    # The retried recording's values are those of a computation in this process.
    expected = recording_features(study.manifest, study.recording(victim))
    got = _store_values(rec_dir / f"{victim}.zarr")
    for name in expected.data_vars:
        np.testing.assert_array_equal(got[name].to_numpy(), expected[name].to_numpy(), err_msg=name)


def test_a_corrupt_recording_fails_by_name_and_the_others_finish(cli_cluster, tiny_copy, workdir, capfd):
    from pipelines.eeg.features import compute_study_features, left_out_recordings
    from pipelines.study.dataset import Study
    from pipelines.study.manifest import freeze, load_manifest

    bad = "sub-01_ses-ket100_task-rest"
    data = tiny_copy.parent / "bids" / "sub-01" / "ses-ket100" / "eeg" / f"{bad}_eeg.eeg"
    data.write_bytes(data.read_bytes()[: 20 * 4 * 100])  # a third of a window
    freeze(load_manifest(tiny_copy))
    study = Study.load(tiny_copy)
    cli_cluster.reset_trace()
    compute_study_features(study, scheduler=cli_cluster.address, progress=False)

    run_record = json.loads((workdir / WORKDIR_RECORDINGS.parent / "features_run.json").read_text())
    assert run_record["failed"] == [bad]
    assert sorted(run_record["computed"]) == sorted(r.key for r in study.recordings)
    assert len(list((workdir / WORKDIR_RECORDINGS).glob("*.zarr"))) == len(study.recordings) - 1
    left = left_out_recordings(study)
    assert list(left["recording"]) == [bad] and f"{bad}_eeg" in left["file"][0]
    assert f"{bad}_eeg" in capfd.readouterr().err  # the build's warning names the file


def test_an_interrupted_run_resumes_with_only_the_missing_or_incomplete_stores(tiny_copy, workdir):
    """A real interruption: the features command is killed after its first stores are written."""
    from pipelines.eeg import features
    from pipelines.study.dataset import Study

    study = Study.load(tiny_copy)
    keys = sorted(r.key for r in study.recordings)
    rec_dir = workdir / WORKDIR_RECORDINGS
    command = [
        sys.executable,
        "-m",
        "pipelines.eeg.features",
        str(tiny_copy),
        "--scheduler",
        "synchronous",
        "--no-progress",
    ]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: list(rec_dir.glob("*.zarr")), 300, "the first store")
    finally:
        proc.kill()
        proc.wait()
    survived = sorted(p.name.removesuffix(".zarr") for p in rec_dir.glob("*.zarr"))
    assert 0 < len(survived) < len(keys), f"the run was not interrupted mid-study: {survived}"
    # What a crash can leave: a half-written store under a temporary name (never read), and, from a copy that
    # stopped early, a store without its consolidated metadata (written last): both are recomputed.
    half_written = rec_dir / f".{keys[-1]}.zarr.tmp-999999-1"
    half_written.mkdir()
    (half_written / ".zgroup").write_text("{}")
    incomplete = survived[0]
    (rec_dir / f"{incomplete}.zarr" / ".zmetadata").unlink()

    assert features.main([str(tiny_copy), "--scheduler", "synchronous", "--no-progress"]) == 0
    run_record = json.loads((rec_dir.parent / "features_run.json").read_text())
    assert run_record["computed"] == sorted(set(keys) - set(survived) | {incomplete})
    assert run_record["reused"] == sorted(set(survived) - {incomplete})
    assert not half_written.exists()
    assert features.features_up_to_date(study)
