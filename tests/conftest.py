"""Shared fixtures: a tiny synthetic study generated per test session, and the default study.

The default study is built by `make study` (a prerequisite of `make test`), so tests that use it
never skip: if it is missing, they fail with the command to run.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO / "data_manifests" / "default.yml"

TINY_GENERATOR = {
    "seed": 7,
    "n_subjects": 2,
    "minutes": 2,
    "n_channels": 20,
    "sfreq": 128,
    "doses_mg_per_kg": [0.0, 1.0],
}


def write_tiny_manifest(folder: Path, name: str = "tiny", notebooks: str = "") -> Path:
    g = TINY_GENERATOR
    text = (
        textwrap.dedent(f"""\
        # A tiny synthetic study for tests.
        study: {name}
        bids_root: bids
        truth: truth.json
        generator:
          seed: {g["seed"]}
          n_subjects: {g["n_subjects"]}
          minutes: {g["minutes"]}
          n_channels: {g["n_channels"]}
          sfreq: {g["sfreq"]}
          doses_mg_per_kg: {g["doses_mg_per_kg"]}
        phenotype:
          meq30: {{path: phenotype/meq30.tsv, response_scale: [0, 5]}}
          madrs: {{path: phenotype/madrs.tsv, response_scale: [0, 6]}}
          cytokines: {{path: phenotype/cytokines.tsv, format: long}}
        """)
        + notebooks
    )
    path = folder / f"{name}.yml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """A generated and frozen 2-subject × 2-dose × 2-minute study (read-only: copy it to modify)."""
    from pipelines.study.manifest import freeze, load_manifest
    from pipelines.synth.__main__ import main as synth_main

    folder = tmp_path_factory.mktemp("tiny")
    path = write_tiny_manifest(folder)
    assert synth_main(["--manifest", str(path), "--no-progress"]) == 0
    freeze(load_manifest(path))
    return path


@pytest.fixture
def tiny_copy(tiny_manifest, tmp_path) -> Path:
    """A private, writable copy of the tiny study and its manifest."""
    shutil.copytree(tiny_manifest.parent, tmp_path / "study")
    return tmp_path / "study" / tiny_manifest.name


@pytest.fixture(scope="session")
def default_study():
    from pipelines.study.dataset import Study

    study = Study.load(DEFAULT_MANIFEST)
    if not study.root.is_dir():
        pytest.fail(f"the default study is missing at {study.root}: run `make study` (make test does it for you)")
    return study


@pytest.fixture(scope="session")
def default_truth(default_study) -> dict:
    return default_study.truth()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# --- a real browser: Debian's Chromium through Playwright ------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; skips only on a developer machine without it (a failure in CI)."""
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (browser tests must run in CI)")
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium); browser tests need it (they never skip in CI)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# --- the fast lane: `make test-fast` runs `-m "not slow"` ------------------------------------------------------

# Tests are slow when they need a generated study, a browser, a server, an LSL stream, a Dask cluster or the make
# DAG; they are marked here, in one place, from the fixtures they use and the module they are in, so a new test
# of that kind is marked without anyone remembering to.  `make test` (and CI) runs everything.
SLOW_FIXTURES = {"default_study", "default_truth", "tiny_manifest", "tiny_copy", "browser", "parallel", "open_label"}
SLOW_MODULES = {
    "test_dag",
    "test_build_stamps",
    "test_determinism",
    "test_live",
    "test_bids_validation",
    "test_dashboards",
    "test_dashboards_security",
    "test_report_quality",
    "test_importer",
    "test_features_cache",
    "test_synth_study",
    "test_scale",
}
SLOW_NAME_PARTS = ("simulat", "calibrat", "planted")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if (
            module in SLOW_MODULES
            or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
            or any(part in item.name for part in SLOW_NAME_PARTS)
        ):
            item.add_marker(pytest.mark.slow)
