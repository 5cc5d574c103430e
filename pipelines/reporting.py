"""Run a parameterised notebook with papermill and publish it as a self-contained, offline HTML report.

A failed notebook never looks finished: papermill writes to a temporary name; on success the HTML is
written atomically beside its run metadata; on failure the partial notebook is kept as
``<name>.failed.ipynb``, the failing cell is printed, and the previous good report stays untouched.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from pipelines import provenance
from pipelines.offline import external_resources, inline_panel_assets  # noqa: F401  (re-exported)
from pipelines.paths import NOTEBOOKS_DIR, reports_dir, reports_root

TEMPLATE_DIR = Path(__file__).parent / "templates"

class NotebookFailed(RuntimeError):
    pass


def export_html(notebook_path: Path) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook_path, as_version=4)
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATE_DIR)], template_name="offline")
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    return inline_panel_assets(body)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _failing_cell(nb_path: Path) -> str:
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                trace = "\n".join(output.get("traceback", []))
                trace = re.sub(r"\x1b\[[0-9;]*m", "", trace)
                return f"cell {index} failed:\n--- source ---\n{cell.source}\n--- error ---\n{output.get('ename')}: {output.get('evalue')}\n{trace[-3000:]}"
    return "no cell recorded an error (the kernel may have died)"


def validate_parameters(notebook: Path, params: dict[str, Any]) -> None:
    """Papermill only logs unknown parameter names; we refuse them, with a hint."""
    import difflib

    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    unknown = [k for k in params if k not in declared]
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, declared, 1)) else "") for k in unknown]
        raise NotebookFailed(f"{notebook.name}: unknown parameter(s) {', '.join(hints)}; it declares {sorted(declared)}")


def run_notebook(name: str, manifest, extra_params: dict[str, Any] | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """Execute ``notebooks/<name>.ipynb`` for a study and publish ``reports/<study>/<name>.html``."""
    import papermill

    notebook = notebooks_dir / f"{name}.ipynb"
    if not notebook.is_file():
        raise NotebookFailed(f"{notebook}: no such notebook")
    out_dir = reports_dir(manifest.study)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**manifest.notebook_params(name), **(extra_params or {}), "manifest_path": str(manifest.manifest_path)}
    validate_parameters(notebook, params)

    tmp_nb = out_dir / f".{name}.running.ipynb"
    failed_nb = out_dir / f"{name}.failed.ipynb"
    log_path = out_dir / f"{name}.log"
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    pm_logger = logging.getLogger("papermill")
    pm_logger.addHandler(handler)
    pm_logger.setLevel(logging.INFO)
    started, t0 = provenance.utc_now(), time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(tmp_nb),
            parameters=params,
            kernel_name="python3",  # the venv's own ipykernel: resolves to this interpreter, no kernel registration
            cwd=str(notebooks_dir),
            progress_bar=sys.stderr.isatty(),
            log_output=True,
            report_mode=False,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError, kernels may die otherwise
        if tmp_nb.exists():
            os.replace(tmp_nb, failed_nb)
        detail = _failing_cell(failed_nb) if failed_nb.exists() else str(exc)
        with open(log_path, "a") as log:
            log.write(f"\nFAILED\n{detail}\n")
        raise NotebookFailed(
            f"{notebook.name} failed for study {manifest.study!r}; partial notebook kept at {failed_nb}; log {log_path}\n{detail}"
        ) from None
    finally:
        pm_logger.removeHandler(handler)
        handler.close()
    duration = time.perf_counter() - t0

    html_text = export_html(tmp_nb)
    external = external_resources(html_text)
    if external:
        os.replace(tmp_nb, failed_nb)
        raise NotebookFailed(f"{notebook.name}: the report would load resources from the network: {external[:5]}")
    meta = {
        "notebook": name,
        "study": manifest.study,
        "manifest": str(manifest.manifest_path),
        "parameters": {k: v for k, v in params.items() if k != "manifest_path"},
        "data_checksum": manifest.data_checksum(),
        "git_commit": provenance.git_commit(),
        "started_utc": started,
        "run_time_s": round(duration, 1),
        "versions": provenance.library_versions(),
    }
    _atomic_write(out_dir / f"{name}.html", html_text)
    os.replace(tmp_nb, out_dir / f"{name}.ipynb")
    _atomic_write(out_dir / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    failed_nb.unlink(missing_ok=True)
    return out_dir / f"{name}.html"


def write_index() -> Path:
    """``reports/index.html``: every published report of every study, with its provenance."""
    root = reports_root()
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for meta_path in sorted(root.glob("*/*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            continue
        if "notebook" not in meta:
            continue
        failed = (meta_path.parent / f"{meta['notebook']}.failed.ipynb").exists()
        rows.append((meta_path.parent.name, meta, failed))
    # A notebook that failed before it ever succeeded has no metadata: list it too, so a failure is never invisible.
    listed = {(study, meta["notebook"]) for study, meta, _ in rows}
    for failed_nb in sorted(root.glob("*/*.failed.ipynb")):
        name = failed_nb.name.removesuffix(".failed.ipynb")
        if (failed_nb.parent.name, name) not in listed:
            rows.append((failed_nb.parent.name, {"notebook": name, "parameters": {}, "data_checksum": "-" * 12,
                                                  "git_commit": "-", "run_time_s": "-", "started_utc": "-", "never_ok": True}, True))
    body = []
    for study, meta, failed in rows:
        params = html.escape(json.dumps(meta["parameters"], sort_keys=True))
        if meta.get("never_ok"):
            status = f"<span class='failed'>failed — no report yet; see {html.escape(meta['notebook'])}.failed.ipynb and .log</span>"
        elif failed:
            status = "<span class='failed'>last run failed — showing the previous good report</span>"
        else:
            status = "ok"
        body.append(
            f"<tr><td>{html.escape(study)}</td>"
            f"<td><a href='{html.escape(study)}/{html.escape(meta['notebook'])}.html'>{html.escape(meta['notebook'])}</a></td>"
            f"<td><code>{params}</code></td><td><code title='sha256 over the manifest checksums'>{meta['data_checksum'][:12]}</code></td>"
            f"<td><code>{html.escape(meta['git_commit'][:12])}{'+dirty' if meta['git_commit'].endswith('+dirty') else ''}</code></td>"
            f"<td>{meta['run_time_s']} s</td><td>{html.escape(meta['started_utc'])}</td><td>{status}</td></tr>"
        )
    figures = []
    for path in sorted(root.glob("*/figures/*.html")):
        study = path.parent.parent.name
        figures.append(f"<li>{html.escape(study)}: <a href='{html.escape(study)}/figures/{html.escape(path.name)}'>"
                       f"{html.escape(path.stem.replace('_', ' '))}</a></li>")
    template = (TEMPLATE_DIR / "index.html").read_text()
    template = template.replace("{{ figures }}", "\n".join(figures) or "<li>none yet</li>")
    page = template.replace("{{ rows }}", "\n".join(body) or "<tr><td colspan='8'>No reports yet: run <code>make all</code>.</td></tr>")
    page = page.replace("{{ generated }}", html.escape(provenance.utc_now()))
    out = root / "index.html"
    _atomic_write(out, page)
    return out
