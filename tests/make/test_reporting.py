"""Report plumbing: offline check, code dependencies, write-if-changed stamps."""

from __future__ import annotations

from pipelines.core import codedeps
from pipelines.core.paths import REPO_ROOT
from pipelines.make.build import write_if_changed
from pipelines.make.reporting import external_resources


def test_external_resources_finds_scripts_styles_and_images():
    page = """
    <script src="https://cdn.example.org/bokeh.min.js"></script>
    <link rel="stylesheet" href="//fonts.example.org/x.css">
    <img src='http://example.org/a.png'>
    <style>@import url("https://example.org/y.css");</style>
    """
    assert external_resources(page) == sorted(
        [
            "https://cdn.example.org/bokeh.min.js",
            "//fonts.example.org/x.css",
            "http://example.org/a.png",
            "https://example.org/y.css",
        ]
    )


def test_links_and_strings_inside_scripts_are_not_resources():
    page = """
    <a href="https://mne.tools">MNE</a>
    <script>var url = "https://docs.bokeh.org"; // a string, not a load</script>
    <script src="data:application/javascript;base64,AAAA"></script>
    <img src="data:image/png;base64,iVBOR">
    """
    assert external_resources(page) == []


def test_code_dependencies_follow_imports_transitively():
    files = {p.relative_to(REPO_ROOT).as_posix() for p in codedeps.module_closure({"pipelines.phenotype.cytokines"})}
    assert {
        "pipelines/phenotype/cytokines.py",
        "pipelines/stats/correlation.py",
        "pipelines/core/errors.py",
        "pipelines/__init__.py",
    } <= files
    assert "pipelines/synth/eeg.py" not in files


def test_notebook_dependencies_include_what_its_cells_import():
    deps = {p.name for p in codedeps.notebook_dependencies(REPO_ROOT / "notebooks" / "00_study_overview.ipynb")}
    assert {"study_overview.py", "common.py", "dataset.py", "manifest.py"} <= deps


def test_imports_in_source_resolve_relative_and_from_imports():
    source = (
        "from pipelines import stats\nfrom ..core import errors\nimport numpy\nfrom pipelines.eeg.io import read_raw\n"
    )
    found = codedeps.imported_modules(source, current="pipelines.phenotype.cytokines")
    assert {"pipelines", "pipelines.stats", "pipelines.core.errors", "pipelines.eeg", "pipelines.eeg.io"} <= found
    assert "numpy" not in found


def test_write_if_changed_keeps_the_date_when_content_is_equal(tmp_path):
    path = tmp_path / "s.hash"
    assert write_if_changed(path, "a\n") is True
    before = path.stat().st_mtime_ns
    assert write_if_changed(path, "a\n") is False
    assert path.stat().st_mtime_ns == before
    assert write_if_changed(path, "b\n") is True and path.read_text() == "b\n"


def test_cdn_urls_inside_scripts_are_found_and_panel_assets_are_inlined():
    from pipelines.core.offline import inline_panel_assets

    page = '<script type="application/json">{"stylesheets": ["https://cdn.holoviz.org/panel/1.9.4/dist/css/loading.css?v=1.9.4"]}</script>'
    assert external_resources(page) == ["https://cdn.holoviz.org/panel/1.9.4/dist/css/loading.css?v=1.9.4"]
    fixed = inline_panel_assets(page)
    assert "data:text/css;base64," in fixed
    assert external_resources(fixed) == []
