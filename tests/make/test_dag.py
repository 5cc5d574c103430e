"""The Makefile DAG, run for real on a tiny study in a private copy of the project.

Checks: `make all` publishes an offline report and the index; a second run does nothing; a parameter
change, or an edit to a module the notebook imports, reruns that notebook (and an edit elsewhere does
not); a failing notebook keeps the previous report, leaves `<name>.failed.ipynb`, prints the failing
cell and makes `make` fail; a damaged generated study is regenerated, while real data that no longer
match the manifest stop the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

NOTEBOOK = "00_study_overview"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_manifest) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    for folder in ("env", "pipelines"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "notebooks").mkdir()
    shutil.copy2(REPO / "notebooks" / f"{NOTEBOOK}.ipynb", root / "notebooks")
    (root / ".venv").symlink_to(REPO / ".venv")
    manifests = root / "data_manifests"
    manifests.mkdir()
    # The tiny study's data, already generated and frozen by the session fixture.
    shutil.copytree(tiny_manifest.parent / "bids", manifests / "bids")
    shutil.copy2(tiny_manifest, manifests / "tiny.yml")
    return root


def make(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "STUDY": "data_manifests/tiny.yml"}
    # Under `make test` the outer make's variables reach us through MAKEFLAGS: this project is another build.
    for name in ("KW_WORKDIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(name, None)
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )


def set_param(project: Path, value: str) -> None:
    manifest = project / "data_manifests" / "tiny.yml"
    text = manifest.read_text()
    head, _, tail = text.partition("# sha256 of every data file")
    head = head.split("notebooks:")[0].rstrip() + f"\nnotebooks:\n  {NOTEBOOK}:\n    qc_seconds: {value}\n\n"
    manifest.write_text(head + "# sha256 of every data file" + tail)


def test_the_dag(project):
    report = project / "reports" / "tiny" / f"{NOTEBOOK}.html"
    failed = project / "reports" / "tiny" / f"{NOTEBOOK}.failed.ipynb"

    # 1. First build: data verified (the generator stamp is new, so the study is regenerated and must match).
    first = make(project, "all")
    assert first.returncode == 0, first.stdout + first.stderr
    assert report.is_file() and (project / "reports" / "index.html").is_file()
    from pipelines.make.reporting import external_resources

    html = report.read_text()
    assert external_resources(html) == []
    assert "<script" in html and "Bokeh" in html  # figures are embedded, not linked
    assert (project / "reports" / "tiny" / f"{NOTEBOOK}.log").is_file()
    index = (project / "reports" / "index.html").read_text()
    assert f"tiny/{NOTEBOOK}.html" in index

    # 2. Nothing changed: nothing reruns.
    mtime = report.stat().st_mtime_ns
    second = make(project, "all")
    assert second.returncode == 0, second.stderr
    assert "pipelines.make.build notebook" not in second.stdout
    assert report.stat().st_mtime_ns == mtime

    # 2b. A deleted report is rebuilt (stamps are kept, reports are ordinary targets), and nothing else runs.
    report.unlink()
    rebuilt = make(project, "all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.count("pipelines.make.build notebook") == 1 and report.is_file()
    mtime = report.stat().st_mtime_ns

    # 2c. Two builds of one study at once: the second waits for the lock, then finds everything built.
    import subprocess as _subprocess

    lock = project / "build" / "tiny" / ".make.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = _subprocess.Popen(["flock", str(lock), "sleep", "3"], cwd=project)
    time.sleep(0.5)
    waiting = make(project, "all")
    holder.wait()
    assert waiting.returncode == 0, waiting.stderr
    assert "Another build of study 'tiny' is running; waiting" in waiting.stdout
    assert report.stat().st_mtime_ns == mtime

    # 3. A parameter of this notebook changes: it reruns, with the new parameter recorded.
    set_param(project, "20")
    third = make(project, "all")
    assert third.returncode == 0, third.stderr
    assert "pipelines.make.build notebook" in third.stdout
    assert '"qc_seconds": 20' in (project / "reports" / "tiny" / f"{NOTEBOOK}.json").read_text()
    assert "qc_seconds" in (project / "reports" / "index.html").read_text()  # the index lists each report's parameters

    # 4. An edit to a module the notebook does not import: nothing reruns.  One it imports: it reruns.
    with open(project / "pipelines" / "analyses" / "cytokines.py", "a") as fh:
        fh.write("\n# an edit that notebook 00 does not depend on\n")
    fourth = make(project, "all")
    assert "pipelines.make.build notebook" not in fourth.stdout, fourth.stdout
    with open(project / "pipelines" / "analyses" / "study_overview.py", "a") as fh:
        fh.write("\n# an edit that notebook 00 depends on\n")
    fifth = make(project, "all")
    assert fifth.returncode == 0 and "pipelines.make.build notebook" in fifth.stdout

    # 5. A bad parameter in the manifest: the first build step refuses it against the notebook's parameter model,
    # naming the manifest, notebook and field, before any notebook runs; the old report stays.
    good_html = report.read_bytes()
    set_param(project, "-1")
    sixth = make(project, "all")
    assert sixth.returncode != 0
    # The data step's messages go to stdout and to build/<study>/data.log (the Makefile tees them).
    assert "tiny.yml: notebooks: 00_study_overview: qc_seconds: qc_seconds must be positive" in sixth.stdout
    assert "pipelines.make.build notebook" not in sixth.stdout and not failed.exists()
    assert report.read_bytes() == good_html

    # 5b. A failing notebook: make fails, prints the failing cell, keeps the old report and the partial notebook.
    set_param(project, "20")
    notebook = project / "notebooks" / f"{NOTEBOOK}.ipynb"
    working = notebook.read_text()
    nb = nbformat.reads(working, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('a cell that fails')"))
    nbformat.write(nb, notebook)
    failing = make(project, "all")
    assert failing.returncode != 0
    assert "a cell that fails" in failing.stderr and "cell" in failing.stderr
    assert failed.is_file()
    assert report.read_bytes() == good_html
    notebook.write_text(working)

    # 6. A generated study damaged by hand is regenerated once (it is disposable) and the build goes on.
    set_param(project, "20")
    participants = project / "data_manifests" / "bids" / "participants.tsv"
    original = participants.read_text()
    participants.write_text(original.replace("sub-02", "sub-03"))
    seventh = make(project, "all")
    assert seventh.returncode == 0, seventh.stdout + seventh.stderr
    assert "regenerating the synthetic study once" in seventh.stdout
    assert participants.read_text() == original

    # 7. A real study's raw data changed behind the manifest's back: verification stops the build before
    # any notebook, and says what to check (not "you did nothing wrong").
    manifest = project / "data_manifests" / "tiny.yml"
    text = manifest.read_text()
    head, _, tail = text.partition("generator:")
    manifest.write_text(head + tail.split("\n", 7)[7])  # drop the generator block (6 indented lines)
    participants.write_text(original.replace("sub-02", "sub-03"))
    eighth = make(project, "all")
    assert eighth.returncode != 0
    output = eighth.stdout + eighth.stderr
    assert "checksum differs: participants.tsv" in output and "raw data" in output
    assert "pipelines.make.build notebook" not in eighth.stdout
