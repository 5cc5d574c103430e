"""What a result was made from: library versions, git commit, data checksum, parameters."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata

from pipelines.paths import REPO_ROOT

CORE_PACKAGES = (
    "numpy", "scipy", "pandas", "xarray", "zarr", "dask", "distributed", "numba", "mne", "mne-bids", "antropy",
    "specparam", "statsmodels", "pingouin", "holoviews", "bokeh", "panel", "papermill", "pydantic",
)


def library_versions(packages: tuple[str, ...] = CORE_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """HEAD's commit, with '+dirty' when tracked files differ; 'unknown' outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
