"""What a collaborator sees in a report and in the index (issue 16).

Fast checks on the pieces (path redaction, warnings summary, provenance block and its dirty flag, placebo-first
ordering, per-panel dose-response axes) and, on a tiny study, an executed report and the index: a real title, no
machine path, code hidden but present, the provenance block, placebo first; then a failing run that the index
marks as failed (written by the runner itself, as make stops before its index step), a notebook never built and
a stale report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import nbformat
import pandas as pd
import pytest
from conftest import DEFAULT_MANIFEST

from pipelines.core import provenance
from pipelines.core.paths import REPO_ROOT
from pipelines.figures import common as viz
from pipelines.make import reporting

ABSOLUTE = str(REPO_ROOT)
MACHINE_MARKERS = (ABSOLUTE, "/root", "/tmp")


def _no_machine_paths(text: str) -> list[str]:
    return [marker for marker in MACHINE_MARKERS if marker in text]


# --- paths -----------------------------------------------------------------------------------------------


def test_redact_makes_repository_paths_relative_and_hides_the_rest():
    text = (
        f"{ABSOLUTE}/pipelines/stats/basic.py:318: ConvergenceWarning: boundary\n"
        f"{ABSOLUTE}/.venv/lib/python3.11/site-packages/statsmodels/base/model.py:607: ConvergenceWarning: x\n"
        "/usr/lib/python3.11/warnings.py:10 /tmp/pytest-of-root/pytest-3/tiny0/tiny.yml /root/data/secret.tsv "
        "/home/alice/study/bids mg/kg ln(post/baseline)"
    )
    out = provenance.redact(text)
    assert "pipelines/stats/basic.py:318" in out and "statsmodels/base/model.py:607" in out and "warnings.py:10" in out
    assert "<redacted>/tiny.yml" in out and "<redacted>/bids" in out
    assert _no_machine_paths(out) == [] and "/home" not in out
    assert "mg/kg ln(post/baseline)" in out  # units and ratios are not paths


def test_relative_path_of_a_manifest():
    assert provenance.relative_path(DEFAULT_MANIFEST) == "data_manifests/default.yml"
    assert provenance.relative_path("/tmp/somewhere/tiny.yml") == "<redacted>/tiny.yml"


def test_the_report_runner_does_not_make_every_notebook_depend_on_the_whole_project():
    """Every notebook's stamp includes the runner's import closure: it must stay small (an edit to the cytokine
    module must not rerun the study overview)."""
    from pipelines.core import codedeps
    from pipelines.make.build import REPORT_MODULES

    files = {p.relative_to(REPO_ROOT).as_posix() for p in codedeps.module_closure(REPORT_MODULES)}
    assert {"pipelines/make/reporting.py", "pipelines/core/provenance.py"} <= files
    assert not files & {
        "pipelines/make/build.py",
        "pipelines/phenotype/cytokines.py",
        "pipelines/dashboards/export.py",
    }, sorted(files)


# --- warnings --------------------------------------------------------------------------------------------


def _warning_notebook() -> nbformat.NotebookNode:
    site = f"{ABSOLUTE}/.venv/lib/python3.11/site-packages/statsmodels/regression/mixed_linear_model.py"
    convergence = f"{ABSOLUTE}/pipelines/stats/basic.py:318: ConvergenceWarning: The MLE may be on the boundary of the parameter space.\n  fit = model.fit(reml=reml)\n"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 09 · A test report\n\nText."),
        nbformat.v4.new_markdown_cell("## Models"),
        nbformat.v4.new_code_cell(
            "fit()",
            outputs=[
                nbformat.v4.new_output("stream", name="stderr", text=convergence * 12),
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=convergence * 10 + f"{site}:2262: UserWarning: singular covariance\n  warnings.warn(msg)\n",
                ),
                nbformat.v4.new_output("stream", name="stderr", text="progress written to /tmp/run-1/progress.txt\n"),
            ],
        ),
    ]
    return nb


def test_warnings_are_summarised_once_with_counts_and_no_paths():
    nb = _warning_notebook()
    warnings = reporting.prepare_for_readers(nb, {"manifest_path": "data_manifests/default.yml"})
    assert [(w["category"], w["count"]) for w in warnings] == [("ConvergenceWarning", 22), ("UserWarning", 1)]
    assert warnings[0]["location"] == "pipelines/stats/basic.py:318" and warnings[0]["sections"] == ["Models"]
    block = nb.cells[1]
    assert block.metadata["tags"] == ["kw-warnings"] and "Warnings (23)" in block.source
    assert block.source.count("<td><code>ConvergenceWarning</code></td>") == 1  # listed once, with its count
    stderr = "".join(o["text"] for o in nb.cells[3].outputs)
    assert "ConvergenceWarning" not in stderr and "22 warnings here" not in stderr and "23 warnings here" in stderr
    assert "progress written to <redacted>/progress.txt" in stderr  # other stderr stays, without its path
    text = json.dumps(nb)
    assert _no_machine_paths(text) == []


def test_warnings_of_a_run_that_marks_its_steps_name_the_step_section(monkeypatch, capsys):
    """One cell running a whole analysis (``run()``) attributes each warning to the section its step computes;
    the markers are removed from what the reader sees, and outside a report run nothing is written."""

    from pipelines.core import sections

    with sections.report_section("Dose-response"):
        pass
    assert capsys.readouterr().err == ""  # not inside a report run
    monkeypatch.setenv(sections.ENV_VAR, "1")
    with sections.report_section("Dose-response"):
        pass
    marked = capsys.readouterr().err
    assert marked.startswith(sections.MARKER + "Dose-response\n") and marked.endswith(sections.MARKER + "\n")

    warn = "pipelines/x.py:1: UserWarning: {}\n  warnings.warn(m)\n"
    stderr = (
        warn.format("before")
        + f"{sections.MARKER}Dose-response\n"
        + warn.format("inside")
        + "progress 50 %\n"
        + f"{sections.MARKER}\n"
        + warn.format("after")
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Setup"),
        nbformat.v4.new_code_cell(
            "result = run(study)", outputs=[nbformat.v4.new_output("stream", name="stderr", text=stderr)]
        ),
    ]
    found = {w["message"]: w["sections"] for w in reporting.collect_warnings(nb)}
    assert found == {"before": ["Setup"], "inside": ["Dose-response"], "after": ["Setup"]}
    shown = "".join(o["text"] for o in nb.cells[1].outputs)
    assert sections.MARKER not in shown and "progress 50 %" in shown


def test_every_section_an_analysis_marks_is_a_heading_of_its_notebook():
    """A renamed heading would silently send warnings to a section that does not exist."""
    import ast

    for module in sorted((REPO_ROOT / "pipelines" / "analyses").glob("[a-z]*.py")):
        titles = {
            node.args[0].value
            for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "report_section"
        }
        if not titles:
            continue
        (notebook,) = (REPO_ROOT / "notebooks").glob(f"[0-9][0-9]_{module.stem}.ipynb")
        headings = {
            h
            for cell in nbformat.read(notebook, as_version=4).cells
            if cell.cell_type == "markdown"
            for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", cell.source, re.MULTILINE)
        }
        assert titles <= headings, (
            f"{module.name}: sections {sorted(titles - headings)} are not headings of {notebook.name}"
        )


def test_a_warnings_block_is_one_collapsed_html_element_in_the_exported_page(tmp_path):
    nb = _warning_notebook()
    reporting.prepare_for_readers(nb, {})
    path = tmp_path / "r.ipynb"
    nbformat.write(nb, path)
    page = reporting.export_html(path, title="09 · A test report — tiny study")
    details = re.search(r"<details class=\"kw-warnings\">.*?</details>", page, re.S)
    assert details and "<table>" in details.group(0) and "The MLE may be on the boundary" in details.group(0)
    assert "<title>09 · A test report — tiny study</title>" in page


# --- provenance ------------------------------------------------------------------------------------------


def test_git_commit_marks_a_modified_checkout_dirty(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(git + ["-C", str(repo), "add", "a.py"], check=True)
    subprocess.run(git + ["-C", str(repo), "commit", "-q", "-m", "a"], check=True)
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    clean = provenance.git_commit()
    assert re.fullmatch(r"[0-9a-f]{40}", clean)
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_commit() == clean + "+dirty"


def test_provenance_block_has_commit_dirty_flag_date_versions_parameters_and_checksum(monkeypatch):
    from pipelines.study.manifest import load_manifest

    manifest = load_manifest(DEFAULT_MANIFEST)
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789abcdef0123456789abcdef01234567+dirty")
    block = provenance.show(manifest=manifest, parameters={"qc_seconds": 60.0}, extra={"features computed (UTC)": "x"})
    page = block._repr_html_()
    assert "0123456789abcdef0123456789abcdef01234567+dirty" in page and "yes (+dirty" in page
    assert re.search(r"run date \(UTC\)</th><td><code>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", page)
    assert manifest.data_checksum() in page and "data_manifests/default.yml" in page
    assert "qc_seconds" in page and "features computed (UTC)" in page
    for package in ("python", "numpy", "statsmodels", "holoviews"):
        assert f"<th>{package}</th>" in page
    table = provenance.provenance_table(manifest=manifest, parameters={"qc_seconds": 60.0})
    assert set(table["section"]) == {"run", "parameter", "library"}


def test_every_notebook_makes_its_provenance_with_the_one_shared_call():
    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert sum("provenance.show(" in s for s in sources) == 1, path.name
        assert not any("git_commit(" in s or "library_versions(" in s for s in sources), path.name


# --- ordering and axes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bokeh():
    import holoviews as hv

    hv.extension("bokeh")


def test_dose_order_puts_placebo_first_within_each_subject(bokeh):
    qc = pd.DataFrame(
        {
            "recording": [
                "sub-01_ses-ket050_task-rest",
                "sub-01_ses-placebo_task-rest",
                "sub-02_ses-ket100_task-rest",
                "sub-02_ses-placebo_task-rest",
            ],
            "dose_mg_per_kg": [0.5, 0.0, 1.0, 0.0],
        }
    )
    assert viz.dose_order(qc)["recording"].str.extract(r"ses-(\w+)_")[0].tolist() == [
        "placebo",
        "ket050",
        "placebo",
        "ket100",
    ]
    heatmap = viz.qc_heatmap(qc.assign(n_bad_channels=0, bad_channels=""))
    assert list(heatmap.kdims[0].values) == ["ses-placebo", "ses-ket050", "ses-ket100"]
    # Report 00's dose axes: a Layout shares one factor range, first filled from recordings listed by session label.
    recordings = qc.assign(duration_s=480.0)
    for figure in _figures((viz.recordings_per_dose(recordings) + viz.duration_strip(recordings)).cols(2)):
        assert list(figure.x_range.factors) == ["0.00 mg/kg", "0.50 mg/kg", "1.00 mg/kg"]


def _frames(scale: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    changes = pd.DataFrame(
        {
            "dose_mg_per_kg": np.repeat([0.0, 0.25, 0.5, 1.0], 6),
            "change": rng.normal(0, scale, 24),
            "participant_id": [f"sub-{i:02d}" for i in range(6)] * 4,
        }
    )
    per_dose = changes.groupby("dose_mg_per_kg")["change"].mean().rename("mean").reset_index()
    per_dose["ci_low"], per_dose["ci_high"] = per_dose["mean"] - scale, per_dose["mean"] + scale
    return per_dose, changes


def _figures(layout):
    import holoviews as hv

    grid = hv.render(layout)
    return [child[0] for child in grid.children]


def test_dose_response_panels_have_their_own_y_axis_range_and_unit(bokeh):
    import holoviews as hv

    plots = [
        viz.dose_response_plot(*_frames(4.0, 0), title="occipital_alpha_db (summary)", measure="occipital_alpha_db"),
        viz.dose_response_plot(*_frames(0.01, 1), title="lzc_median (global)", measure="lzc_median"),
    ]
    alpha, entropy = _figures(hv.Layout(plots).cols(2))
    assert alpha.y_range is not entropy.y_range
    assert alpha.yaxis[0].axis_label == "occipital_alpha_db change (dB re baseline)"
    assert entropy.yaxis[0].axis_label == "lzc_median change (a.u.)"
    # The entropy panel spans its own data, not the dB panel's range (a shared axis flattened it).
    assert (entropy.y_range.end - entropy.y_range.start) < 0.2 < (alpha.y_range.end - alpha.y_range.start)


def test_offline_dose_response_figure_has_one_axis_per_measure(bokeh, default_study):
    from pipelines.dashboards import data, export

    key = data.manifest_key(default_study)
    measure = data.eeg_settings(key)["params"].entropy_measure
    alpha, entropy = _figures(export._dose_response(key))
    assert alpha.y_range is not entropy.y_range
    assert "dB" in alpha.yaxis[0].axis_label and alpha.yaxis[0].axis_label != entropy.yaxis[0].axis_label
    assert entropy.yaxis[0].axis_label.startswith(measure)


# --- an executed report and the index, on the tiny study ----------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports-workdir")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KW_WORKDIR", str(root))
        yield root


@pytest.fixture(scope="module")
def built(workdir, tiny_manifest):
    """Notebook 00 run on the tiny study by the runner; (manifest, html path)."""
    from pipelines.study.manifest import load_manifest

    manifest = load_manifest(tiny_manifest)
    out = reporting.run_notebook("00_study_overview", manifest, {"qc_seconds": 20})
    return manifest, out


def test_an_executed_report_is_fit_to_share(built):
    manifest, out = built
    page = out.read_text()
    assert reporting.external_resources(page) == []  # still opens offline
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert title == "00 · Study overview — tiny study"
    assert _no_machine_paths(page) == []
    assert re.search(r"manifest_path</span>.{0,120}&lt;redacted&gt;/tiny\.yml", page, re.S)  # the injected parameter
    # Code hidden by default, one button shows it; the code is still in the page.
    assert '<script>document.body.classList.add("kw-code-hidden");</script>' in page
    assert "body.kw-code-hidden .jp-CodeCell .jp-Cell-inputWrapper { display: none; }" in page
    assert 'id="kw-toggle-code"' in page and ">Show code</button>" in page
    assert re.search(
        r'class="n">overview</span><span class="o">\.</span><span class="n">run</span>', page
    )  # the code is there
    # Wide tables scroll.
    assert 'class="kw-table-scroll"' in page and ".kw-table-scroll { overflow-x: auto" in page
    # Provenance: commit (with +dirty when modified), run date, versions, data checksum.
    block = re.search(r"<div class=[\"']kw-provenance[\"']>.*?</div>", page, re.S).group(0)
    commit = provenance.git_commit()
    assert f"<th>git commit</th><td><code>{commit}</code>" in block
    assert ("yes (+dirty" in block) == commit.endswith("+dirty")
    assert re.search(r"run date \(UTC\)</th><td><code>\d{4}-\d\d-\d\dT", block)
    assert manifest.data_checksum() in block and "<th>mne</th>" in block and "<th>qc_seconds</th>" in block
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["manifest"] == "<redacted>/tiny.yml" and meta["title"] == title


def test_report_00_lists_placebo_first(built):
    _, out = built
    page = out.read_text()
    # The QC heatmap's conditions (session labels sort ket100 < placebo alphabetically) are ordered by dose.
    assert '"factors":["ses-placebo","ses-ket100"]' in page
    assert '"factors":["0.00 mg/kg","1.00 mg/kg"]' in page  # recordings per dose and their durations
    nb = nbformat.read(out.with_suffix(".ipynb"), as_version=4)
    texts = [
        o["data"]["text/plain"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/plain" in o.get("data", {})
    ]
    recordings = next(t for t in texts if "median_duration_s" in t)
    # One row per condition, placebo (0 mg/kg) first: "<row> <condition> <dose> ..."
    assert re.findall(r"^\d+\s+(\S+)\s+(\d\.\d+)\s", recordings, re.M)[:2] == [("placebo", "0.0"), ("ket100", "1.0")]
    qc_cell = next(c for c in nb.cells if c.cell_type == "code" and "bad_channels'] > 0" in c.source)
    assert "viz.dose_order(" in qc_cell.source


def test_the_index_marks_a_failed_run_as_failed_even_when_make_stops(built, workdir):
    manifest, out = built
    good = out.read_bytes()
    time.sleep(1.1)  # the failure must be visibly newer than the report on coarse file systems
    with pytest.raises(reporting.NotebookFailed, match="qc_seconds must be positive"):
        reporting.run_notebook("00_study_overview", manifest, {"qc_seconds": -1})
    assert out.read_bytes() == good  # the previous good report stays
    record = json.loads((out.parent / "00_study_overview.failed.json").read_text())
    assert "qc_seconds must be positive" in record["error"] and _no_machine_paths(json.dumps(record)) == []
    # The runner rewrote the index itself: no `make index` step ran.
    index = (workdir / "reports" / "index.html").read_text()
    row = re.search(r"<tr class='status-failed'>.*?</tr>", index, re.S).group(0)
    assert "00_study_overview" in row and "the report shown is the previous good one" in row
    assert (
        reporting.report_status("tiny", "00_study_overview")["last_success"]
        == json.loads(out.with_suffix(".json").read_text())["finished_utc"]
    )
    assert "<span class='ok'>" not in row
    # Every other notebook of the project was never built for this study.
    never = re.findall(r"<tr class='status-never-built'><td>tiny</td><td>(\w+)</td>", index)
    assert set(never) == {p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")} - {"00_study_overview"}
    assert _no_machine_paths(index) == []


def test_index_statuses_from_files(tmp_path, monkeypatch):
    """ok, stale (stamp newer than the report), failed (failure newer than the report), never built."""
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("00_a", "01_b", "02_c", "03_d"):
        nbformat.write(nbformat.v4.new_notebook(), notebooks / f"{name}.ipynb")
    reports, stamps = tmp_path / "reports" / "s", tmp_path / "build" / "s" / "stamps"
    reports.mkdir(parents=True)
    stamps.mkdir(parents=True)
    now = time.time()
    for name in ("00_a", "01_b", "02_c"):
        (stamps / f"{name}.hash").write_text("{}\n")
        os.utime(stamps / f"{name}.hash", (now - 100, now - 100))
        (reports / f"{name}.html").write_text("<html></html>")
        (reports / f"{name}.json").write_text(
            json.dumps(
                {
                    "notebook": name,
                    "parameters": {},
                    "data_checksum": "c" * 64,
                    "git_commit": "f" * 40,
                    "finished_utc": "2026-01-02T03:04:05+00:00",
                }
            )
        )
        os.utime(reports / f"{name}.html", (now - 50, now - 50))
    os.utime(stamps / "01_b.hash", (now, now))  # inputs changed after the report: stale
    (reports / "02_c.failed.ipynb").write_text("{}")  # a newer failed run
    statuses = {n: reporting.report_status("s", n)["status"] for n in ("00_a", "01_b", "02_c", "03_d")}
    assert statuses == {"00_a": "ok", "01_b": "stale", "02_c": "failed", "03_d": "never built"}
    os.utime(reports / "02_c.failed.ipynb", (now - 80, now - 80))  # a failure older than the report is history
    assert reporting.report_status("s", "02_c")["status"] == "ok"
    index = reporting.write_index(notebooks).read_text()
    for name, status in (("00_a", "ok"), ("01_b", "stale"), ("02_c", "ok"), ("03_d", "never-built")):
        assert re.search(rf"<tr class='status-{status}'><td>s</td><td>(<a href='s/{name}\.html'>)?{name}", index), name
    assert "2026-01-02T03:04:05+00:00" in index  # date of the last success


def test_in_a_browser_code_is_hidden_until_asked_and_wide_tables_scroll(built, browser):
    """The executed report, opened from disk with every network request refused: code hidden, one click shows it;
    a table wider than the page scrolls inside its cell instead of being cut off."""
    _, out = built
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 520, "height": 900})
    try:
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith("file:")
                else (requests.append(route.request.url), route.abort())
            ),
        )
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        visible = "() => [...document.querySelectorAll('.jp-CodeCell .jp-Cell-inputWrapper')].filter(e => e.offsetParent !== null).length"
        total = page.evaluate("() => document.querySelectorAll('.jp-CodeCell .jp-Cell-inputWrapper').length")
        assert total > 5 and page.evaluate(visible) == 0
        page.click("#kw-toggle-code")
        assert page.evaluate(visible) == total
        assert page.inner_text("#kw-toggle-code") == "Hide code"
        scroll = page.evaluate("""() => [...document.querySelectorAll('.kw-table-scroll')].map(d =>
            [d.scrollWidth, d.clientWidth, getComputedStyle(d).overflowX])""")
        wide = [s for s in scroll if s[0] > s[1]]
        assert wide and all(s[2] == "auto" for s in wide)  # scrollable, not clipped
    finally:
        page.close()
    assert requests == []


def test_every_report_states_the_manifest_exclusions(tiny_copy):
    from pipelines.core import provenance
    from pipelines.study.manifest import load_manifest

    text = tiny_copy.read_text().replace(
        "phenotype:",
        'exclude:\n  - {recording: sub-01_ses-ket100, reason: "infusion stopped early (nausea)"}\nphenotype:',
        1,
    )
    tiny_copy.write_text(text)
    table = provenance.provenance_table(manifest=load_manifest(tiny_copy))
    row = table[table["item"] == "excluded: sub-01_ses-ket100"]
    assert list(row["value"]) == ["infusion stopped early (nausea)"] and list(row["section"]) == ["run"]
