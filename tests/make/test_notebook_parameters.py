"""Each notebook's parameters cell is what papermill sees, and equals its typed parameter model where it has one."""

from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from pipelines.analyses import mood_outcomes, plasticity_window
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MODELS = {
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
