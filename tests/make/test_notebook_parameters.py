"""Each notebook's parameters cell is what papermill sees, and equals its typed parameter model where it has one;
every model field is documented; the manifest's parameters are checked against the model before anything runs."""

from __future__ import annotations

import ast
import types

import nbformat
import papermill
import pytest

from pipelines.analyses import (
    cytokines,
    eeg_entropy_dose,
    integrative_summary,
    mood_outcomes,
    parameters_model,
    peak_experience_mood,
    plasticity_window,
    study_overview,
)
from pipelines.make import reporting
from tests.conftest import REPO, write_tiny_manifest

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MODELS = {
    "00_study_overview": study_overview.OverviewParameters,
    "01_eeg_entropy_dose": eeg_entropy_dose.EEGParameters,
    "02_peak_experience_mood": peak_experience_mood.PeakMoodParameters,
    "03_cytokines": cytokines.CytokineParameters,
    "04_integrative_summary": integrative_summary.IntegrativeSummaryParameters,
    "05_mood_outcomes": mood_outcomes.MoodOutcomeParameters,
    "06_plasticity_window": plasticity_window.WindowParameters,
}


def _parameters_cell(path) -> dict:
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_the_cell(path):
    """A comment papermill cannot parse drops the parameter silently: the manifest's value would then be refused."""
    assert sorted(papermill.inspect_notebook(str(path))) == sorted(_parameters_cell(path))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_cell_equals_its_model(name):
    cell = _parameters_cell(REPO / "notebooks" / f"{name}.ipynb")
    cell.pop("manifest_path")
    model = MODELS[name]
    assert set(cell) == set(model.model_fields)
    defaults = model().model_dump()
    for field, value in cell.items():
        expected = defaults[field]
        assert model.model_validate({field: value}).model_dump()[field] == expected, field
        assert model.model_fields[field].description, f"{field} has no description"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_field_is_documented(name):
    """As mne-bids-pipeline's test_documented: an option without a description is an option nobody can use."""
    model = MODELS[name]
    undocumented = [f for f, info in model.model_fields.items() if not (info.description or "").strip()]
    assert undocumented == [], f"{model.__name__}: no description for {undocumented}"
    assert model.model_config.get("extra") == "forbid"  # a misspelt field is refused, not ignored


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameters_model_finds_each_notebooks_model(name):
    assert parameters_model(name) is MODELS[name]


def test_every_notebook_has_a_parameter_model():
    assert {p.stem for p in NOTEBOOKS if parameters_model(p.stem) is None} == set()
    assert set(MODELS) == {p.stem for p in NOTEBOOKS}


def _manifest(notebooks: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        manifest_path=REPO / "data_manifests" / "default.yml",
        notebook_params=lambda name: dict(notebooks.get(name, {})),
    )


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("03_cytokines", {"n_boot": -5}, r"data_manifests/default.yml: notebooks: 03_cytokines: n_boot: .*at least 0"),
        ("03_cytokines", {"censoring_strategy": "lloq_halve"}, "censoring_strategy: .*did you mean 'lloq_half'"),
        ("00_study_overview", {"qc_seconds": 0}, "00_study_overview: qc_seconds: qc_seconds must be positive"),
        ("01_eeg_entropy_dose", {"hold_s": "long"}, "01_eeg_entropy_dose: hold_s: .*valid number.*given 'long'"),
        ("01_eeg_entropy_dose", {"threshold_db": "10 percent"}, "threshold_db: threshold '10 percent'"),
        ("01_eeg_entropy_dose", {"hold": 5}, r"unknown parameter\(s\) 'hold' \(did you mean 'hold_s'\?\)"),
        ("05_mood_outcomes", {"max_missing_fraction": 1.5}, "05_mood_outcomes: max_missing_fraction: "),
    ],
)
def test_manifest_parameters_are_checked_against_the_model(name, params, message):
    manifest = _manifest({name: params})
    with pytest.raises(reporting.NotebookFailed, match=message):
        reporting.check_parameters(manifest, name, manifest.notebook_params(name))
    with pytest.raises(reporting.NotebookFailed, match=message):
        reporting.check_all_parameters(manifest)


def test_good_manifest_parameters_pass():
    manifest = _manifest(
        {"01_eeg_entropy_dose": {"threshold_db": "10%", "hold_s": 20}, "03_cytokines": {"analytes": "IL6"}}
    )
    reporting.check_all_parameters(manifest)  # no error


def test_the_first_build_step_refuses_a_bad_parameter_before_making_any_data(tmp_path, capsys):
    from pipelines.make.build import main

    path = write_tiny_manifest(tmp_path, notebooks='notebooks:\n  03_cytokines:\n    crp_threshold_mg_per_l: "3"\n')
    assert main(["data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tiny.yml: notebooks: 03_cytokines: crp_threshold_mg_per_l: " in err and "must be a number" in err
    assert not (tmp_path / "bids").exists()  # nothing generated
