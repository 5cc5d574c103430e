"""The manifest schema rejects bad manifests with clear messages; verify finds every changed file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DEFAULT_MANIFEST

from pipelines.study.dataset import Study
from pipelines.study.manifest import ManifestError, freeze, load_manifest, verify


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yml"
    path.write_text(text)
    return path


def test_default_manifest_is_valid_and_complete():
    manifest = load_manifest(DEFAULT_MANIFEST)
    assert manifest.study == "default"
    assert manifest.generator is not None and manifest.generator.n_subjects == 12
    assert len(manifest.checksums) > 100
    assert {"meq30", "asc5d", "madrs", "cytokines"} <= set(manifest.phenotype)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("study: x\nbids_root: d\nbids_rot: d\n", r"bids_rot: unknown field 'bids_rot' — did you mean 'bids_root'\?"),
        ("study: x\nbids_root: d\neeg:\n  preprocesing: {}\n", r"eeg\.preprocesing: .*did you mean 'preprocessing'"),
        (
            "study: x\nbids_root: d\neeg:\n  preprocessing:\n    l_freg: 1\n",
            r"eeg\.preprocessing\.l_freg: .*did you mean 'l_freq'",
        ),
        ("study: x\nbids_root: d\ngenerator:\n  n_subjects: many\n", r"generator\.n_subjects: .*integer"),
        ("study: x\n", r"bids_root: required field is missing"),
        ("study: 'has space'\nbids_root: d\n", r"study: .*short name"),
        ("study: x\nbids_root: d\nchecksums:\n  a.tsv: abc123\n", r"checksums: .*not a sha256"),
        ("study: x\nbids_root: d\neeg:\n  conditions:\n    source: labels\n", r"needs a non-empty 'labels'"),
        ("- just\n- a list\n", r"a YAML mapping"),
        ("study: [unclosed\n", r"not valid YAML"),
    ],
)
def test_bad_manifests_are_rejected_with_the_field_named(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    message = str(err.value)
    assert str(path) in message
    assert re.search(expected, message), message


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.yml")


def test_verify_reports_mismatched_missing_and_extra_files(tiny_copy):
    manifest = load_manifest(tiny_copy)
    assert verify(manifest).ok
    root = manifest.bids_path
    (root / "participants.tsv").write_text("participant_id\nsub-99\n")
    (root / "phenotype" / "meq30.json").unlink()
    (root / "notes.txt").write_text("an extra file")
    report = verify(manifest)
    assert not report.ok
    assert report.mismatched == ["participants.tsv"]
    assert report.missing == ["phenotype/meq30.json"]
    assert report.extra == ["notes.txt"]
    text = report.describe(manifest)
    for needle in (
        "checksum differs: participants.tsv",
        "missing: phenotype/meq30.json",
        "not in the manifest: notes.txt",
    ):
        assert needle in text


def test_freeze_keeps_comments_and_round_trips(tiny_copy):
    before = tiny_copy.read_text()
    freeze(load_manifest(tiny_copy))
    after = tiny_copy.read_text()
    assert after == before  # same data, same checksums, comments kept
    assert after.startswith("# A tiny synthetic study for tests.")


def test_unknown_condition_label_gets_a_hint(tiny_copy):
    text = tiny_copy.read_text() + "eeg:\n  conditions:\n    source: labels\n    labels: {placebo: 0.0, ket010: 1.0}\n"
    tiny_copy.write_text(text)
    study = Study.load(tiny_copy)
    with pytest.raises(ManifestError, match=r"label 'ket100'.*did you mean 'ket010'"):
        _ = study.recordings


def test_labels_mapping_assigns_doses(tiny_copy):
    tiny_copy.write_text(
        tiny_copy.read_text() + "eeg:\n  conditions:\n    source: labels\n    labels: {placebo: 0.0, ket100: 0.8}\n"
    )
    doses = {r.session: r.dose_mg_per_kg for r in Study.load(tiny_copy).recordings}
    assert doses == {"placebo": 0.0, "ket100": 0.8}


def test_sessions_tsv_without_the_dose_column_is_named(tiny_copy):
    tiny_copy.write_text(tiny_copy.read_text() + "eeg:\n  conditions:\n    dose_column: dose_mg_kg\n")
    with pytest.raises(
        ManifestError, match=r"sub-01_sessions.tsv: no column 'dose_mg_kg' — did you mean 'dose_mg_per_kg'"
    ):
        _ = Study.load(tiny_copy).recordings


def test_the_template_for_real_studies_is_a_valid_manifest(tmp_path):
    from conftest import REPO

    text = (REPO / "data_manifests" / "TEMPLATE.yml").read_text()
    manifest = load_manifest(_write(tmp_path, text))
    assert manifest.generator is None and manifest.checksums == {}
    assert manifest.eeg.conditions.source == "sessions_tsv"


def test_freeze_keeps_fields_after_the_checksums_block(tiny_copy):
    text = tiny_copy.read_text()
    tiny_copy.write_text(text + "eeg:\n  task: rest\n")
    freeze(load_manifest(tiny_copy))
    manifest = load_manifest(tiny_copy)
    assert manifest.eeg.task == "rest" and verify(manifest).ok


def test_freeze_refuses_a_missing_or_empty_bids_root(tiny_copy, tmp_path):
    text = tiny_copy.read_text()
    tiny_copy.write_text(text.replace("bids_root: bids", "bids_root: bdis"))
    with pytest.raises(ManifestError, match="does not exist; nothing was frozen"):
        freeze(load_manifest(tiny_copy))
    assert tiny_copy.read_text() == text.replace("bids_root: bids", "bids_root: bdis")  # checksums kept
    report = verify(load_manifest(tiny_copy))
    assert "does not exist" in report.describe(load_manifest(tiny_copy))
    assert len(report.describe(load_manifest(tiny_copy)).splitlines()) == 1  # one line, not one per file
    (tiny_copy.parent / "empty").mkdir()
    tiny_copy.write_text(text.replace("bids_root: bids", "bids_root: empty"))
    with pytest.raises(ManifestError, match="no data files"):
        freeze(load_manifest(tiny_copy))


def test_mismatch_remedy_depends_on_whether_the_study_is_generated(tiny_copy):
    manifest = load_manifest(tiny_copy)
    (manifest.bids_path / "participants.tsv").write_text("participant_id\nsub-99\n")
    generated = verify(manifest).describe(manifest)
    assert "you did nothing wrong" in generated and "Do not run `make freeze`" in generated
    real = manifest.model_copy(update={"generator": None})
    text = verify(real).describe(real)
    assert "raw data" in text and "make freeze STUDY=" in text and "did nothing wrong" not in text


def test_build_regenerates_a_damaged_generated_study_once(tiny_copy, tmp_path, monkeypatch, capsys):
    from pipelines.make import build

    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "work"))
    assert build.main(["data", str(tiny_copy)]) == 0
    manifest = load_manifest(tiny_copy)
    (manifest.bids_path / "participants.tsv").write_text("participant_id\nsub-99\n")
    assert build.main(["data", str(tiny_copy)]) == 0
    assert "regenerating the synthetic study once" in capsys.readouterr().out
    assert verify(manifest).ok


@pytest.mark.parametrize(
    "section, bad, hint",
    [
        ("phenotype:\n  meq3O: {path: phenotype/meq30.tsv}\n", "meq3O", "meq30"),
        (
            "notebooks:\n  02_peak_experience_mod:\n    n_boot: 10\n",
            "02_peak_experience_mod",
            "02_peak_experience_mood",
        ),
    ],
)
def test_misspelt_table_or_notebook_names_are_errors_with_a_hint(tmp_path, section, bad, hint):
    path = tmp_path / "m.yml"
    path.write_text("study: x\nbids_root: .\n" + section)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert repr(bad) in str(err.value) and f"did you mean {hint!r}" in str(err.value)
