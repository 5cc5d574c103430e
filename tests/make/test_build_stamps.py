"""Report stamps hash only what each report reads: an edit reruns the reports that depend on it, no others."""

from __future__ import annotations

from conftest import DEFAULT_MANIFEST

from pipelines.make.build import target_stamp
from pipelines.study.manifest import load_manifest

REPORTS = [
    "00_study_overview",
    "01_eeg_entropy_dose",
    "02_peak_experience_mood",
    "03_cytokines",
    "05_mood_outcomes",
    "04_integrative_summary",
]


def _changed(before, after) -> set[str]:
    return {r for r in REPORTS if target_stamp(before, r) != target_stamp(after, r)}


def test_each_manifest_section_reruns_only_the_reports_that_read_it():
    m = load_manifest(DEFAULT_MANIFEST)
    eeg = m.eeg.model_copy(update={"preprocessing": m.eeg.preprocessing.model_copy(update={"l_freq": 0.5})})
    assert _changed(m, m.model_copy(update={"eeg": eeg})) == {
        "00_study_overview",
        "01_eeg_entropy_dose",
        "04_integrative_summary",
    }
    table = m.phenotype["meq30"].model_copy(update={"response_scale": (1.0, 6.0)})
    assert _changed(m, m.model_copy(update={"phenotype": {**m.phenotype, "meq30": table}})) == set(REPORTS) - {
        "01_eeg_entropy_dose"
    }
    # The sessions' doses come from eeg.conditions: every report that groups by dose reads it.
    conditions = m.eeg.conditions.model_copy(update={"dose_column": "dose"})
    assert _changed(m, m.model_copy(update={"eeg": m.eeg.model_copy(update={"conditions": conditions})})) == set(
        REPORTS
    )


def test_data_changes_rerun_the_reports_that_read_those_files():
    m = load_manifest(DEFAULT_MANIFEST)
    eeg_file = next(k for k in m.checksums if k.endswith("_eeg.eeg"))
    table = "phenotype/madrs.tsv"
    edited_eeg = m.model_copy(update={"checksums": {**m.checksums, eeg_file: "0" * 64}})
    edited_table = m.model_copy(update={"checksums": {**m.checksums, table: "0" * 64}})
    assert _changed(m, edited_eeg) == {"00_study_overview", "01_eeg_entropy_dose", "04_integrative_summary"}
    assert _changed(m, edited_table) == set(REPORTS) - {"01_eeg_entropy_dose"}
    # A notebook's own parameters rerun that notebook only.
    params = {**m.notebooks, "03_cytokines": {**m.notebooks["03_cytokines"], "n_boot": 500}}
    assert _changed(m, m.model_copy(update={"notebooks": params})) == {"03_cytokines"}
