"""One module per report notebook, named after it; each has ``run(study, params) -> Result``.

Each module's parameter model (a pydantic model with a description and a default for every field) is its
``PARAMETERS``; :func:`parameters_model` finds it from the notebook's name, so the make machinery validates a
manifest's ``notebooks: <name>: {...}`` before anything runs."""

from __future__ import annotations

import importlib
import re


def analysis_module(notebook_name: str):
    """The analysis module of a notebook: ``01_eeg_entropy_dose`` -> :mod:`pipelines.analyses.eeg_entropy_dose`."""
    module = re.sub(r"^\d\d_", "", notebook_name)
    # Imported by name (not a static import), so a notebook's code hash does not include every other analysis.
    return importlib.import_module(f"{__name__}.{module}")


def parameters_model(notebook_name: str):
    """The pydantic model of a notebook's parameters (``manifest_path`` aside), or None for a notebook that has
    none yet (its parameter names are still checked against the notebook's parameters cell)."""
    return getattr(analysis_module(notebook_name), "PARAMETERS", None)
