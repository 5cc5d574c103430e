"""The manifest's ``cluster:`` section: validated like every other field, and the SLURM / PBS job scripts that
dask-jobqueue generates from it (no batch system needed: the script is only generated, never submitted)."""

from __future__ import annotations

import re
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.study.manifest import ManifestError, load_manifest


def _manifest(tmp_path: Path, cluster: str) -> Path:
    path = tmp_path / "m.yml"
    path.write_text("study: x\nbids_root: .\ncluster:\n" + textwrap.indent(textwrap.dedent(cluster), "  "))
    return path


HPC = """\
    kind: {kind}
    queue: short
    account: ketamine-lab
    cores: 2
    memory: 8GB
    walltime: "02:00:00"
    lifetime_margin_min: 10
    lifetime_stagger_min: 3
    numba_cache_dir: {cache}
    interface: lo
    job_script_prologue: ["module load python/3.11"]
    """


def _http_sockets(cluster) -> list[tuple]:
    return [s.getsockname() for s in cluster.scheduler.http_server._sockets.values()]


@pytest.mark.parametrize(
    "kind, walltime_line", [("slurm", "#SBATCH -t 02:00:00"), ("pbs", "#PBS -l walltime=02:00:00")]
)
def test_job_script_retires_workers_before_the_walltime_with_a_shared_numba_cache(tmp_path, kind, walltime_line):
    from pipelines.core.cluster import jobqueue_cluster

    cache = tmp_path / "shared" / "numba-cache"
    manifest = load_manifest(_manifest(tmp_path, HPC.format(kind=kind, cache=cache)))
    with jobqueue_cluster(manifest.cluster) as cluster:
        script = cluster.job_script()
        sockets = _http_sockets(cluster)
        with pytest.raises(urllib.error.HTTPError, match="404"):  # no dashboard unless asked for
            urllib.request.urlopen(f"http://127.0.0.1:{sockets[0][1]}/status", timeout=30)
    assert walltime_line in script
    assert (
        ("#SBATCH -p short" in script and "#SBATCH -A ketamine-lab" in script)
        if kind == "slurm"
        else ("#PBS -q short" in script and "#PBS -A ketamine-lab" in script)
    )
    # Latest retirement = lifetime + stagger = 2 h - 10 min: the batch system never kills a worker mid-recording.
    lifetime = int(re.search(r"--lifetime (\d+)s", script).group(1))
    stagger = int(re.search(r"--lifetime-stagger (\d+)s", script).group(1))
    assert (lifetime, stagger) == (2 * 3600 - 600 - 180, 180) and lifetime + stagger < 2 * 3600
    assert f"export NUMBA_CACHE_DIR={cache}" in script and cache.is_dir()
    assert script.index("module load python/3.11") < script.index("distributed.cli.dask_worker")
    assert "PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\"" in script  # no glibc trimming (slower)
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script  # this environment's Python
    assert "--nthreads 2" in script and "--no-dashboard" in script and "--dashboard-address 127.0.0.1:0" in script
    assert sockets and all(host == "127.0.0.1" for host, *_ in sockets), sockets


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # another server has it: Dask takes a free port
def test_a_requested_dashboard_listens_on_loopback_only(tmp_path):
    from pipelines.core.cluster import jobqueue_cluster

    manifest = load_manifest(_manifest(tmp_path, HPC.format(kind="slurm", cache=tmp_path / "c") + "dashboard: true\n"))
    with jobqueue_cluster(manifest.cluster) as cluster:
        sockets = _http_sockets(cluster)
        assert urllib.request.urlopen(f"http://127.0.0.1:{sockets[0][1]}/status", timeout=30).status == 200
    assert sockets and all(host == "127.0.0.1" for host, *_ in sockets), sockets


@pytest.mark.parametrize(
    "cluster, expected",
    [
        ("kind: slurm\nwalltme: '01:00:00'\n", "walltime"),  # misspelt: did you mean
        ("kind: sge\n", "kind"),
        ("kind: slurm\nwalltime: '00:12:00'\n", "workers would retire before they start"),
        ("kind: slurm\nwalltime: 2h\n", "walltime"),
        ("kind: scheduler\n", "needs an address"),
        ("kind: slurm\nmin_jobs: 5\nmax_jobs: 2\n", "min_jobs"),
        ("kind: slurm\nmemory: 4\n", "memory"),
    ],
)
def test_bad_cluster_sections_are_rejected_with_the_field_named(tmp_path, cluster, expected):
    with pytest.raises(ManifestError, match=expected):
        load_manifest(_manifest(tmp_path, cluster))


def test_the_command_line_scheduler_overrides_the_manifest(tmp_path):
    from pipelines.core.cluster import scheduler_for, walltime_s

    local = load_manifest(_manifest(tmp_path, "kind: local\n")).cluster
    with scheduler_for(local) as scheduler:
        assert scheduler == "threads"
    remote = load_manifest(_manifest(tmp_path, "kind: scheduler\naddress: tcp://10.0.0.5:8786\n")).cluster
    with scheduler_for(remote) as scheduler:
        assert scheduler == "tcp://10.0.0.5:8786"
    with scheduler_for(remote, override="synchronous") as scheduler:
        assert scheduler == "synchronous"
    assert walltime_s("1-02:03:04") == 86400 + 2 * 3600 + 3 * 60 + 4
