"""Run a parameterised notebook with papermill and publish it as a self-contained, offline HTML report.

A failed notebook never looks finished: papermill writes to a temporary name; on success the HTML is
written atomically beside its run metadata; on failure the partial notebook is kept as
``<name>.failed.ipynb``, a failure record ``<name>.failed.json`` is written, the failing cell is printed, the
previous good report stays untouched and reports/index.html is rewritten to say so.

What a collaborator reads is made fit to share before export: Python warnings leave the cells for one collapsed
"Warnings (n)" block at the top (each distinct warning once, with its count), machine paths are redacted from
outputs and from the injected parameters, the page has a real title, and the offline template hides code
(one click shows it) and lets wide tables scroll.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.core import provenance, sections
from pipelines.core.offline import external_resources, inline_panel_assets
from pipelines.core.paths import NOTEBOOKS_DIR, REPO_ROOT, build_dir, reports_dir, reports_root, stamps_dir

TEMPLATE_DIR = Path(__file__).parent / "templates"


class NotebookFailed(RuntimeError):
    pass


def report_title(nb, study: str | None = None) -> str:
    """The page title: the notebook's first heading and the study, e.g. '01 · EEG entropy dynamics across doses — default study'."""
    title = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+?)\s*#*\s*$", cell.source, re.MULTILINE)
            if match:
                title = match.group(1).strip()
                break
    title = title or "Report"
    return f"{title} — {study} study" if study else title


def export_html(notebook_path: Path, title: str | None = None) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook_path, as_version=4)
    nb.metadata["title"] = title or nb.metadata.get("title") or report_title(nb)
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATE_DIR)], template_name="offline")
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    return inline_panel_assets(body)


# --- what a reader sees of the executed notebook: no machine paths, warnings summarised ------------------

# Python's warnings.formatwarning: "<file>:<line>: <Category>: <message>\n" and, when the source is known,
# the source line indented by two spaces.
_WARNING = re.compile(
    r"^(?P<path>[^\n]*?):(?P<lineno>\d+): (?P<category>[A-Za-z_][\w.]*(?:Warning|Error)\w*): "
    r"(?P<message>[^\n]*)\n(?:[ \t]+[^\n]*\n)?",
    re.MULTILINE,
)
_SECTION_MARK = re.compile("^" + re.escape(sections.MARKER) + r"(?P<title>[^\n]*)\n", re.MULTILINE)
_TEXT_MIMETYPES = ("text/plain", "text/markdown", "text/latex")


def _redact_output(output) -> None:
    if output.get("output_type") == "stream":
        output["text"] = provenance.redact(output.get("text", ""))
    elif output.get("output_type") == "error":
        output["evalue"] = provenance.redact(output.get("evalue", ""))
        output["traceback"] = [provenance.redact(line) for line in output.get("traceback", [])]
    else:
        data = output.get("data", {})
        for mimetype in _TEXT_MIMETYPES:
            if isinstance(data.get(mimetype), str):
                data[mimetype] = provenance.redact(data[mimetype])
        if isinstance(data.get("text/html"), str):
            text = data["text/html"]
            # Tables and text are redacted fully; embedded figures (scripts) only lose the repository's root.
            data["text/html"] = provenance.redact(text) if "<script" not in text else _strip_roots(text)


def _strip_roots(text: str) -> str:
    for root in provenance.machine_roots():
        text = text.replace(root + "/", "")
    return text


def collect_warnings(nb) -> list[dict[str, Any]]:
    """Move Python warnings out of the cells' stderr into a list of distinct warnings with counts.

    A cell that raised warnings keeps one short note pointing at the summary; other stderr text stays.  Paths are
    redacted (pipelines.core.provenance.redact).  Returns [{category, message, location, count, sections}], where
    sections are the report headings under which the warning was raised."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    section = "(top)"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", cell.source, re.MULTILINE)
            section = headings[-1] if headings else section
            continue
        if cell.cell_type != "code":
            continue
        kept, n_cell, note_at = [], 0, None
        step_section = None  # set by report_section markers of a run() that computes several sections in one cell
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream" or output.get("name") != "stderr":
                kept.append(output)
                continue
            n, pieces = 0, []
            segments, step_section = _marked_segments(output.get("text", ""), step_section)
            for step, text in segments:
                for match in _WARNING.finditer(text):
                    n += 1
                    _count_warning(found, match, step or section)
                pieces.append(_WARNING.sub("", text))
            rest = "".join(pieces).strip("\n") if n else "".join(pieces)
            n_cell += n
            if n and note_at is None:
                note_at = len(kept)
            if rest:
                output["text"] = rest if rest.endswith("\n") else rest + "\n"
                kept.append(output)
        if n_cell:
            kept.insert(
                note_at,
                _stderr_note(
                    f"[{n_cell} warning{'s' if n_cell > 1 else ''} here: summarised under 'Warnings' at the top of the report]\n"
                ),
            )
        cell["outputs"] = kept
    return sorted(found.values(), key=lambda w: (-w["count"], w["category"], w["message"]))


def _marked_segments(text: str, current: str | None) -> tuple[list[tuple[str | None, str]], str | None]:
    """Split stderr text at report-section markers (:mod:`pipelines.core.sections`), markers removed:
    ([(section or None, text under it)], the section in force at the end of the text)."""
    segments, section, start = [], current, 0
    for marker in _SECTION_MARK.finditer(text):
        segments.append((section, text[start : marker.start()]))
        section, start = marker["title"] or None, marker.end()
    segments.append((section, text[start:]))
    return [(sec, part) for sec, part in segments if part], section


def _count_warning(found: dict, match: re.Match, section: str) -> None:
    message = provenance.redact(match["message"].strip())
    entry = found.setdefault(
        (match["category"], message),
        {
            "category": match["category"],
            "message": message,
            "count": 0,
            "sections": [],
            "location": provenance.redact(f"{match['path']}:{match['lineno']}"),
        },
    )
    entry["count"] += 1
    if section not in entry["sections"]:
        entry["sections"].append(section)


def _stderr_note(text: str):
    import nbformat

    return nbformat.v4.new_output("stream", name="stderr", text=text)


def warnings_markdown(warnings: list[dict[str, Any]]) -> str:
    """A collapsed 'Warnings (n)' block: each distinct warning once, with its count, where it was raised and under
    which report sections."""
    total = sum(w["count"] for w in warnings)
    rows = "".join(
        f"<tr><td>{w['count']}</td><td><code>{html.escape(w['category'])}</code></td><td>{html.escape(w['message'])}</td>"
        f"<td><code>{html.escape(w['location'])}</code></td><td>{html.escape('; '.join(w['sections']))}</td></tr>"
        for w in warnings
    )
    # One HTML block without blank lines: Markdown ends a raw HTML block at the first blank line.
    return (
        f'<details class="kw-warnings"><summary>Warnings ({total})</summary>'
        f"<p>{total} warning{'s' if total != 1 else ''} ({len(warnings)} distinct) were raised while this report ran. "
        "Each is listed once with how often it occurred; they do not stop the analysis, but read them before "
        "relying on the numbers they concern"
        + (
            " (a <code>ConvergenceWarning</code> means a mixed model's fit may be unreliable)"
            if any(w["category"] == "ConvergenceWarning" for w in warnings)
            else ""
        )
        + ".</p>"
        '<div class="kw-table-scroll"><table><thead><tr><th>count</th><th>category</th><th>message</th><th>raised at</th>'
        f"<th>report section</th></tr></thead><tbody>{rows}</tbody></table></div></details>\n"
    )


def prepare_for_readers(nb, params_shown: dict[str, Any]) -> list[dict[str, Any]]:
    """Make an executed notebook fit to share: warnings summarised at the top, machine paths removed from outputs
    and from the injected parameters.  Returns the warnings found."""
    import nbformat

    warnings = collect_warnings(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # HoloViews leaves empty display_data outputs: nothing to show, and nbconvert warns about each.
        cell["outputs"] = [
            o
            for o in cell.get("outputs", [])
            if o.get("output_type") not in ("display_data", "execute_result") or o.get("data")
        ]
        for output in cell["outputs"]:
            _redact_output(output)
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            lines = ["# Parameters (paths relative to the repository root)"]
            lines += [f"{k} = {json.dumps(v) if isinstance(v, str) else repr(v)}" for k, v in params_shown.items()]
            cell.source = "\n".join(lines) + "\n"
    if warnings:
        block = nbformat.v4.new_markdown_cell(warnings_markdown(warnings))
        block.metadata["tags"] = ["kw-warnings"]
        first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
        nb.cells.insert(first + 1, block)
    return warnings


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
        hints = [
            f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, declared, 1)) else "")
            for k in unknown
        ]
        raise NotebookFailed(
            f"{notebook.name}: unknown parameter(s) {', '.join(hints)}; it declares {sorted(declared)}"
        )


def check_parameters(manifest, name: str, params: dict[str, Any], notebook: Path | None = None) -> None:
    """A notebook's parameters from the manifest, checked before anything runs: names against the notebook's
    parameters cell (with a hint), values against the notebook's parameter model
    (:func:`pipelines.analyses.parameters_model`).  NotebookFailed naming the manifest, notebook and field."""
    from pydantic import ValidationError

    from pipelines.analyses import parameters_model

    notebook = notebook or NOTEBOOKS_DIR / f"{name}.ipynb"
    values = {k: v for k, v in params.items() if k != "manifest_path"}
    validate_parameters(notebook, values)
    model = parameters_model(name)
    if model is None:
        return
    try:
        model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg'].removeprefix('Value error, ')}"
            f" (given {e['input']!r})"
            for e in exc.errors()
        )
        source = provenance.relative_path(manifest.manifest_path)
        raise NotebookFailed(f"{source}: notebooks: {name}: {problems}") from None


def check_all_parameters(manifest, notebooks_dir: Path = NOTEBOOKS_DIR) -> None:
    """Every notebook's parameters in the manifest (``notebooks: <name>: {...}``), checked before anything runs."""
    for notebook in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        params = manifest.notebook_params(notebook.stem)
        if params:  # the defaults are each model's own, checked by the tests
            check_parameters(manifest, notebook.stem, params, notebook)


def _record_failure(out_dir: Path, name: str, study: str, params: dict[str, Any], detail: str) -> None:
    """``<name>.failed.json``: when and why the last run failed (read by write_index; removed by a success)."""
    record = {
        "notebook": name,
        "study": study,
        "failed_utc": provenance.utc_now(),
        "git_commit": provenance.git_commit(),
        "parameters": params,
        "error": provenance.redact(detail)[-4000:],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / f"{name}.failed.json", json.dumps(record, indent=2, default=str) + "\n")


def run_notebook(
    name: str,
    manifest,
    extra_params: dict[str, Any] | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    update_index: bool = True,
) -> Path:
    """Execute ``notebooks/<name>.ipynb`` for a study and publish ``reports/<study>/<name>.html``.

    On failure the runner records it (``<name>.failed.json``, plus the partial notebook) and, with
    ``update_index``, rewrites reports/index.html at once: make stops at the first failure, before its index step,
    and the index must never say "ok" for a notebook that has just failed."""
    out_dir = reports_dir(manifest.study)
    shown = {**manifest.notebook_params(name), **(extra_params or {})}
    try:
        return _run_notebook(name, manifest, extra_params, notebooks_dir)
    except NotebookFailed as exc:
        _record_failure(out_dir, name, manifest.study, shown, str(exc))
        if update_index:
            try:
                write_index(notebooks_dir)
            except Exception as index_error:  # the failure itself must reach the caller
                logging.getLogger(__name__).warning("could not rewrite the index after a failure: %s", index_error)
        raise


@contextlib.contextmanager
def _sections_marked():
    """The kernel inherits the environment: analyses mark which report section their warnings belong to."""
    previous = os.environ.get(sections.ENV_VAR)
    os.environ[sections.ENV_VAR] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(sections.ENV_VAR, None)
        else:
            os.environ[sections.ENV_VAR] = previous


def _run_notebook(name: str, manifest, extra_params: dict[str, Any] | None, notebooks_dir: Path) -> Path:
    import nbformat
    import papermill

    notebook = notebooks_dir / f"{name}.ipynb"
    if not notebook.is_file():
        raise NotebookFailed(f"{notebook}: no such notebook")
    out_dir = reports_dir(manifest.study)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**manifest.notebook_params(name), **(extra_params or {}), "manifest_path": str(manifest.manifest_path)}
    check_parameters(manifest, name, params, notebook)
    params_shown = {**params, "manifest_path": provenance.relative_path(manifest.manifest_path)}

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
        with _sections_marked():
            papermill.execute_notebook(
                str(notebook),
                str(tmp_nb),
                parameters=params,
                kernel_name="python3",  # the venv's own ipykernel: resolves to this interpreter, no registration
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

    nb = nbformat.read(tmp_nb, as_version=4)
    warnings = prepare_for_readers(nb, params_shown)
    title = report_title(nb, manifest.study)
    nb.metadata["title"] = title
    nbformat.write(nb, tmp_nb)
    html_text = export_html(tmp_nb, title=title)
    external = external_resources(html_text)
    if external:
        os.replace(tmp_nb, failed_nb)
        raise NotebookFailed(f"{notebook.name}: the report would load resources from the network: {external[:5]}")
    meta = {
        "notebook": name,
        "title": title,
        "study": manifest.study,
        "manifest": provenance.relative_path(manifest.manifest_path),
        "parameters": {k: v for k, v in params.items() if k != "manifest_path"},
        "data_checksum": manifest.data_checksum(),
        "git_commit": provenance.git_commit(),
        "started_utc": started,
        "finished_utc": provenance.utc_now(),
        "run_time_s": round(duration, 1),
        "warnings": sum(w["count"] for w in warnings),
        "versions": provenance.library_versions(),
    }
    _atomic_write(out_dir / f"{name}.html", html_text)
    os.replace(tmp_nb, out_dir / f"{name}.ipynb")
    _atomic_write(out_dir / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    failed_nb.unlink(missing_ok=True)
    (out_dir / f"{name}.failed.json").unlink(missing_ok=True)
    return out_dir / f"{name}.html"


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def report_status(study: str, name: str) -> dict[str, Any]:
    """The truthful state of one notebook's report for one study.

    ``failed``: a failure record (``<name>.failed.json``, written by the runner) or a partial notebook
    (``<name>.failed.ipynb``) newer than the report; ``never built``: no report and no failure; ``stale``: the
    report is older than its stamp (``build/<study>/stamps/<name>.hash``, rewritten whenever the notebook's
    inputs change); ``ok`` otherwise.  ``last_success`` is when the current report was made."""
    folder = reports_root() / study
    report = _mtime(folder / f"{name}.html")
    failures = [
        t for t in (_mtime(folder / f"{name}.failed.json"), _mtime(folder / f"{name}.failed.ipynb")) if t is not None
    ]
    stamp = _mtime(stamps_dir(study) / f"{name}.hash")
    meta: dict[str, Any] = {}
    if report is not None and (folder / f"{name}.json").is_file():
        try:
            meta = json.loads((folder / f"{name}.json").read_text())
        except json.JSONDecodeError:
            meta = {}
    failure: dict[str, Any] = {}
    if (folder / f"{name}.failed.json").is_file():
        try:
            failure = json.loads((folder / f"{name}.failed.json").read_text())
        except json.JSONDecodeError:
            failure = {}
    if failures and (report is None or max(failures) >= report):
        status = "failed"
    elif report is None:
        status = "never built"
    elif (stamp is not None and stamp > report) or _inputs_changed(study, name, meta):
        status = "stale"
    elif meta.get("status") == "not_applicable":
        status = "not applicable"
    else:
        status = "ok"
    return {
        "study": study,
        "notebook": name,
        "status": status,
        "meta": meta,
        "failure": failure,
        "last_success": meta.get("finished_utc") or meta.get("started_utc") or (_utc(report) if report else None),
        "failed_at": failure.get("failed_utc") or (_utc(max(failures)) if failures else None),
    }


def _inputs_changed(study: str, name: str, meta: dict[str, Any]) -> bool:
    """Whether the notebook's inputs (parameters, notebook, code, data checksum) differ from its stamp, i.e. from
    what the report was made from — even if `make` has not run since (a code edit, a changed manifest).  Only for
    manifests inside the repository (their path is recorded repository-relative); False when it cannot tell."""
    stamp = stamps_dir(study) / f"{name}.hash"
    manifest_path = REPO_ROOT / str(meta.get("manifest", ""))
    if not stamp.is_file() or not meta.get("manifest") or not manifest_path.is_file():
        return False
    try:
        import importlib

        from pipelines.study.manifest import load_manifest

        # Imported by name on purpose: pipelines.core.codedeps follows every import statement (function-level ones
        # too) into each notebook's stamp, and pipelines.make.build reaches every module of the project — an import
        # statement here would make any edit anywhere rerun every notebook.  The report's content does not
        # depend on build.py; only this status check does.
        target_stamp = importlib.import_module("pipelines.make.build").target_stamp
        manifest = load_manifest(manifest_path)
        if manifest.study != study:
            return False
        return target_stamp(manifest, name) != stamp.read_text()
    except Exception:  # an index must always be written: an unreadable manifest is reported by make, not here
        return False


def _known_studies() -> list[str]:
    """Studies with a report folder holding report files, or with notebook stamps in build/."""
    studies = set()
    for folder in reports_root().glob("*/"):
        if any(folder.glob("*.html")) or any(folder.glob("*.failed.*")) or any(folder.glob("*.ipynb")):
            studies.add(folder.name)
    for stamps in build_dir("-").parent.glob("*/stamps"):
        if any(p.name[:2].isdigit() for p in stamps.glob("*.hash")):
            studies.add(stamps.parent.name)
    return sorted(studies)


def _notebook_names(study: str, notebooks_dir: Path) -> list[str]:
    names = {p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb")}
    folder = reports_root() / study
    names |= {p.stem for p in folder.glob("[0-9][0-9]_*.html")}
    names |= {p.name.split(".")[0] for p in folder.glob("[0-9][0-9]_*.failed.*")}
    return sorted(names)


def write_index(notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """``reports/index.html``: every notebook of every study with its truthful status (ok, failed, stale or never
    built), the date of its last success and the provenance of the report shown."""
    root = reports_root()
    root.mkdir(parents=True, exist_ok=True)
    body = []
    for study in _known_studies():
        for name in _notebook_names(study, notebooks_dir):
            state = report_status(study, name)
            meta, failure, status = state["meta"], state["failure"], state["status"]
            link = html.escape(f"{study}/{name}.html")
            label = html.escape((meta.get("title") or name).removesuffix(f" — {study} study"))
            if status == "failed":
                error = html.escape(
                    (failure.get("error") or "").strip().splitlines()[0] if failure.get("error") else ""
                )
                status_html = (
                    f"<span class='failed'>failed</span> at {html.escape(state['failed_at'] or '-')}"
                    + (f" — <small>{error}</small>" if error else "")
                    + f"<br><small>see {html.escape(name)}.log and {html.escape(name)}.failed.ipynb"
                    + ("; the report shown is the previous good one" if meta else "; no report yet")
                    + "</small>"
                )
            elif status == "stale":
                status_html = (
                    "<span class='stale'>stale</span><br><small>its inputs changed after this report was made: "
                    "run <code>make all</code></small>"
                )
            elif status == "never built":
                status_html = "<span class='never'>never built</span>"
            elif status == "not applicable":
                status_html = (
                    f"<span class='never'>not applicable</span><br><small>{html.escape(meta.get('reason', ''))}</small>"
                )
            else:
                status_html = "<span class='ok'>ok</span>"
            if meta.get("warnings"):
                status_html += f"<br><small>{meta['warnings']} warning{'s' if meta['warnings'] != 1 else ''} (summarised in the report)</small>"
            report_cell = f"<a href='{link}'>{label}</a>" if meta else html.escape(name)
            params = meta.get("parameters", failure.get("parameters"))
            commit = meta.get("git_commit", "")
            body.append(
                f"<tr class='status-{status.replace(' ', '-')}'><td>{html.escape(study)}</td><td>{report_cell}</td>"
                f"<td>{status_html}</td><td>{html.escape(state['last_success'] or '-')}</td>"
                f"<td><code>{html.escape(json.dumps(params, sort_keys=True)) if params is not None else '-'}</code></td>"
                f"<td><code title='sha256 over the manifest checksums'>{html.escape(meta.get('data_checksum', '-')[:12])}</code></td>"
                f"<td><code>{html.escape(commit[:12]) if commit else '-'}{'+dirty' if commit.endswith('+dirty') else ''}</code></td>"
                f"<td>{html.escape(str(meta.get('run_time_s', '-')))} s</td></tr>"
            )
    figures = []
    for path in sorted(root.glob("*/figures/*.html")):
        study = path.parent.parent.name
        figures.append(
            f"<li>{html.escape(study)}: <a href='{html.escape(study)}/figures/{html.escape(path.name)}'>"
            f"{html.escape(path.stem.replace('_', ' '))}</a></li>"
        )
    template = (TEMPLATE_DIR / "index.html").read_text()
    template = template.replace("{{ figures }}", "\n".join(figures) or "<li>none yet</li>")
    page = template.replace(
        "{{ rows }}", "\n".join(body) or "<tr><td colspan='8'>No reports yet: run <code>make all</code>.</td></tr>"
    )
    page = page.replace("{{ generated }}", html.escape(provenance.utc_now()))
    out = root / "index.html"
    _atomic_write(out, page)
    return out
