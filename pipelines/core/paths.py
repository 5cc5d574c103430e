"""The one place that owns paths: where a study's generated data, derived outputs and reports live.

Layout (relative to the repository root, all git-ignored except templates):
    data/<study>/bids/            generated default studies (a real study lives wherever its manifest says)
    build/<study>/stamps/         hashes that tell Make what changed
    build/<study>/derivatives/    derived features (Zarr, tables), a BIDS derivatives folder
    reports/<study>/              executed notebooks as HTML, their logs and run metadata
    reports/index.html            the list of every report
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
MANIFESTS_DIR = REPO_ROOT / "data_manifests"


def _root() -> Path:
    # KW_WORKDIR lets tests build into a temporary folder without touching the user's outputs.
    return Path(os.environ.get("KW_WORKDIR", REPO_ROOT))


def build_dir(study: str) -> Path:
    return _root() / "build" / study


def stamps_dir(study: str) -> Path:
    return build_dir(study) / "stamps"


def derivatives_dir(study: str) -> Path:
    return build_dir(study) / "derivatives" / "ketamine-workbench"


def reports_root() -> Path:
    return _root() / "reports"


def reports_dir(study: str) -> Path:
    return reports_root() / study
