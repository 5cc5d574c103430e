"""Report 00 (pipelines.analyses.study_overview): run(study, params) on the tiny generated study."""

from __future__ import annotations

import pytest

from pipelines.analyses import study_overview as overview
from pipelines.study.dataset import Study


def test_run_describes_the_tiny_study(tiny_manifest):
    study = Study.load(tiny_manifest)
    result = overview.run(study, {"qc_seconds": 20})
    assert len(result.recordings) == len(study.recordings) == 4  # 2 subjects x 2 doses
    assert list(result.qc["recording"]) == list(result.recordings["recording"])
    by_condition = result.recordings_by_condition
    assert by_condition["dose_mg_per_kg"].tolist() == [0.0, 1.0] and by_condition["recordings"].tolist() == [2, 2]
    assert set(result.phenotype_tables["table"]) == {"meq30", "madrs", "cytokines"}
    assert "4 EEG recordings" in result.summary and "in the first 20 s" in result.summary
    assert "All 3 phenotype tables are present." in result.summary


def test_qc_seconds_must_be_positive():
    with pytest.raises(ValueError, match="qc_seconds must be positive"):
        overview.OverviewParameters(qc_seconds=0)
