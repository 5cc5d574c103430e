"""What a result was made from: library versions, git commit, data checksum, parameters — and paths a reader may see.

Every report shows its provenance through one call, :func:`show` (a table made by :func:`provenance_table`):
study, manifest (repository-relative), data checksum, git commit with ``+dirty`` when the checkout is modified,
run date in UTC, the validated parameters and the library versions.  :func:`redact` removes machine-specific
absolute paths from text a collaborator will read (warnings, tracebacks, printed paths).
"""

from __future__ import annotations

import dataclasses
import html
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.core.paths import REPO_ROOT

CORE_PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "zarr",
    "dask",
    "distributed",
    "numba",
    "mne",
    "mne-bids",
    "antropy",
    "specparam",
    "statsmodels",
    "pingouin",
    "holoviews",
    "bokeh",
    "panel",
    "papermill",
    "pydantic",
)
REDACTED = "<redacted>"


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
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- paths a reader may see -----------------------------------------------------------------------------


def machine_roots() -> list[str]:
    """Absolute folders that paths are made relative to, longest first: the output folder (KW_WORKDIR) and the
    repository (each as given and resolved)."""
    roots = set()
    for root in (os.environ.get("KW_WORKDIR"), str(REPO_ROOT)):
        if root:
            roots |= {str(Path(root)).rstrip("/"), str(Path(root).resolve()).rstrip("/")}
    return sorted(roots, key=lambda r: -len(r))


def relative_path(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root (or to KW_WORKDIR); ``<redacted>/<name>`` when outside both."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for root in machine_roots():
        for candidate in (path, path.resolve()):
            try:
                return candidate.relative_to(root).as_posix() or "."
            except ValueError:
                continue
    return f"{REDACTED}/{path.name}"


_PACKAGES_DIR = re.compile(r"(?<![\w.~-])/[^\s\"'<>:]*?/(?:site|dist)-packages/")
_STDLIB_DIR = re.compile(r"(?<![\w.~-])/[^\s\"'<>:]*?/lib/python3\.\d+/")
# Absolute paths left after the known roots: replaced by <redacted>/<last component>.
_MACHINE_PATH = re.compile(
    r"(?<![\w.~/-])/(?:tmp|root|home|Users|var|private|mnt|media|opt|srv|scratch|work|usr|nfs|gpfs)"
    r"(?:/[^\s\"'<>:,;()\[\]{}]*)?"
)


def redact(text: str) -> str:
    """Text with machine-specific absolute paths removed.

    Paths inside the repository (or KW_WORKDIR) become repository-relative; installed packages and the standard
    library become ``package/module.py``; the home folder becomes ``~``; any other absolute path under a usual
    machine folder (/tmp, /root, /home, ...) becomes ``<redacted>/<name>``."""
    if not text:
        return text
    text = _PACKAGES_DIR.sub("", text)
    text = _STDLIB_DIR.sub("", text)
    for root in machine_roots():
        text = re.sub(
            re.escape(root) + r"(?:/|(?=[\s\"'<>:,;)\]]|$))", lambda m: "" if m.group(0).endswith("/") else ".", text
        )
    home = str(Path.home())
    if len(home) > 1:
        text = re.sub(r"(?<![\w.~/-])" + re.escape(home) + r"(?=/|\b)", "~", text)
    return _MACHINE_PATH.sub(lambda m: f"{REDACTED}/{m.group(0).rstrip('/').rsplit('/', 1)[-1]}", text)


# --- the provenance block of every report ---------------------------------------------------------------


def _parameters_dict(parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    if hasattr(parameters, "as_dict"):
        return dict(parameters.as_dict())
    if hasattr(parameters, "model_dump"):
        return dict(parameters.model_dump(mode="json"))
    if dataclasses.is_dataclass(parameters) and not isinstance(parameters, type):
        return dataclasses.asdict(parameters)
    if isinstance(parameters, Mapping):
        return dict(parameters)
    raise TypeError(f"parameters must be a mapping, a dataclass or have as_dict(); got {type(parameters).__name__}")


def _display_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_display_value(v) for v in value) if value else "(none)"
    if isinstance(value, os.PathLike):
        return relative_path(value)
    return redact(str(value))


def provenance_record(
    study=None, parameters: Any = None, extra: Mapping[str, Any] | None = None, manifest=None
) -> dict[str, Any]:
    """Everything a report's result was made from, as plain data (what :func:`provenance_table` shows)."""
    manifest = manifest if manifest is not None else getattr(study, "manifest", None)
    commit = git_commit()
    record: dict[str, Any] = {}
    if manifest is not None:
        record["study"] = manifest.study
        record["manifest"] = relative_path(manifest.manifest_path)
        record["data checksum"] = manifest.data_checksum()
        record["data files"] = len(manifest.checksums)
        # Recordings the manifest leaves out are stated in every report, each with its reason.
        record["excluded"] = {rule.recording: rule.reason for rule in getattr(manifest, "exclude", [])}
    record["git commit"] = commit
    record["modified checkout"] = (
        "unknown"
        if commit == "unknown"
        else "yes (+dirty: uncommitted changes to tracked files)"
        if commit.endswith("+dirty")
        else "no"
    )
    record["run date (UTC)"] = utc_now()
    record["parameters"] = _parameters_dict(parameters)
    record["extra"] = dict(extra or {})
    record["versions"] = library_versions()
    return record


def provenance_table(
    study=None,
    parameters: Any = None,
    extra: Mapping[str, Any] | None = None,
    manifest=None,
    record: dict[str, Any] | None = None,
):
    """One long table (section, item, value): identity of the data and code, run date, parameters, extra facts
    (e.g. when the features read were computed) and library versions."""
    import pandas as pd

    record = record or provenance_record(study, parameters, extra, manifest)
    rows = []
    for key in (
        "study",
        "manifest",
        "data checksum",
        "data files",
        "git commit",
        "modified checkout",
        "run date (UTC)",
    ):
        if key in record:
            rows.append(("run", key, str(record[key])))
    rows += [("run", f"excluded: {name}", reason) for name, reason in record.get("excluded", {}).items()]
    rows += [("parameter", name, _display_value(value)) for name, value in record["parameters"].items()]
    rows += [("input", name, _display_value(value)) for name, value in record["extra"].items()]
    rows += [("library", name, version) for name, version in record["versions"].items()]
    return pd.DataFrame(rows, columns=["section", "item", "value"])


class ProvenanceBlock:
    """The rendered provenance of a report (HTML in notebooks and reports, plain text elsewhere)."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        self.table = provenance_table(record=record)

    def _repr_html_(self) -> str:
        sections = {
            "run": "Data, code and run",
            "parameter": "Parameters",
            "input": "Inputs",
            "library": "Library versions",
        }
        parts = ["<div class='kw-provenance'>"]
        for section, title in sections.items():
            rows = self.table[self.table["section"] == section]
            if rows.empty:
                continue
            body = "".join(
                f"<tr><th>{html.escape(item)}</th><td><code>{html.escape(value)}</code></td></tr>"
                for item, value in zip(rows["item"], rows["value"])
            )
            parts.append(
                f"<details{' open' if section != 'library' else ''}><summary>{title} ({len(rows)})</summary>"
                f"<table class='kw-provenance-{section}'>{body}</table></details>"
            )
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        return self.table.to_string(index=False)


def show(study=None, parameters: Any = None, extra: Mapping[str, Any] | None = None, manifest=None) -> ProvenanceBlock:
    """The provenance block of a report: the last expression of a notebook's provenance cell."""
    return ProvenanceBlock(provenance_record(study, parameters, extra, manifest))
