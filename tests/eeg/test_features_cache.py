"""The per-recording features cache: every input is in the key, and exactly the affected recordings recompute.

Each step edits the study's manifest (or a data file, then re-freezes) the way a user would, reruns the
features step of ``make`` and reads ``features_run.json`` (which recordings were computed, which reused).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

PLACEBO = {"sub-01_ses-placebo_task-rest", "sub-02_ses-placebo_task-rest"}
ACTIVE = {"sub-01_ses-ket100_task-rest", "sub-02_ses-ket100_task-rest"}
ALL = PLACEBO | ACTIVE


def _edit(manifest: Path, change) -> None:
    data = yaml.safe_load(manifest.read_text())
    change(data)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))


def _refreeze(manifest: Path) -> None:
    from pipelines.study.manifest import freeze, load_manifest

    freeze(load_manifest(manifest))


def _run(manifest: Path) -> set[str]:
    """The features step as make runs it; returns the recordings that were computed (not reused)."""
    from pipelines.core.paths import derivatives_dir
    from pipelines.eeg import features
    from pipelines.study.dataset import Study

    study = Study.load(manifest)
    run_file = derivatives_dir(study.name) / "features_run.json"
    run_file.unlink(missing_ok=True)
    assert features.main([str(manifest), "--scheduler", "synchronous", "--no-progress"]) == 0
    if not run_file.exists():  # the step found everything up to date and did nothing
        return set()
    return set(json.loads(run_file.read_text())["computed"])


@pytest.fixture
def study_copy(tiny_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "work"))
    assert _run(tiny_copy) == ALL
    return tiny_copy


def test_each_input_recomputes_exactly_the_affected_recordings(study_copy):
    from pipelines.core.paths import derivatives_dir

    m = study_copy
    done = derivatives_dir("tiny") / "features.done"
    assert _run(m) == set()  # nothing changed: nothing recomputed
    stamp = done.stat().st_mtime_ns

    # Fields that do not define features recompute nothing and leave features.done alone.
    _edit(m, lambda d: d.setdefault("notebooks", {}).update({"01_eeg_entropy_dose": {"hold_s": 5.0}}))
    _edit(m, lambda d: d.setdefault("eeg", {}).update({"dynamics": {"alpha_threshold_db": -6.0}}))
    assert _run(m) == set()
    # The events exist in every recording, so a fixed infusion time is not used and changes nothing.
    _edit(m, lambda d: d["eeg"].update({"infusion_start_s": 12.0}))
    assert _run(m) == set()
    assert done.stat().st_mtime_ns == stamp

    # Study-wide settings recompute every recording.
    for change in (
        lambda d: d["eeg"].update({"preprocessing": {"l_freq": 2.0}}),
        lambda d: d["eeg"].update({"features": {"window_s": 4.0, "step_s": 4.0}}),
        lambda d: d["eeg"].update(
            {"rois": {"occipital": ["O1", "O2"], "frontal_left": ["F3"], "frontal_right": ["F4"]}}
        ),
        lambda d: d["eeg"].update({"roi_fallbacks": {"occipital": ["Pz"]}}),
        lambda d: d["eeg"].update({"infusion_end_event": "no_such_event", "infusion_end_s": 80.0}),
    ):
        _edit(m, change)
        assert _run(m) == ALL
    assert done.read_text().strip() and done.stat().st_mtime_ns != stamp

    # The end event is now absent for every recording, so the fixed end time counts for all of them.
    _edit(m, lambda d: d["eeg"].update({"infusion_end_s": 90.0}))
    assert _run(m) == ALL

    # Conditions: the same doses through another mapping reuse everything; one label's dose recomputes its recordings.
    _edit(
        m,
        lambda d: d["eeg"].update(
            {"conditions": {"source": "labels", "entity": "session", "labels": {"placebo": 0.0, "ket100": 1.0}}}
        ),
    )
    assert _run(m) == set()
    _edit(m, lambda d: d["eeg"]["conditions"]["labels"].update({"ket100": 0.9}))
    assert _run(m) == ACTIVE

    # A data file of one recording (its sidecar, then its folder's electrode positions): that recording only.
    root = m.parent / "bids"
    sidecar = root / "sub-01" / "ses-placebo" / "eeg" / "sub-01_ses-placebo_task-rest_eeg.json"
    sidecar.write_text(sidecar.read_text().replace("{", '{"InstitutionName": "edited",', 1))
    _refreeze(m)
    assert _run(m) == {"sub-01_ses-placebo_task-rest"}
    electrodes = next((root / "sub-02" / "ses-ket100" / "eeg").glob("*_electrodes.tsv"))
    electrodes.write_text(electrodes.read_text().replace("\t0.", "\t0.0001", 1))
    _refreeze(m)
    assert _run(m) == {"sub-02_ses-ket100_task-rest"}

    # A phenotype table is no input of the EEG features.
    table = root / "phenotype" / "madrs.tsv"
    table.write_text(table.read_text() + "\n")
    _refreeze(m)
    assert _run(m) == set()


def test_a_deleted_store_or_combined_file_is_rebuilt(study_copy):
    import shutil

    from pipelines.core.paths import derivatives_dir
    from pipelines.eeg.features import features_up_to_date
    from pipelines.study.dataset import Study

    out = derivatives_dir("tiny")
    done_text = (out / "features.done").read_text()
    shutil.rmtree(out / "recordings" / "sub-02_ses-placebo_task-rest.zarr")
    assert not features_up_to_date(Study.load(study_copy))
    assert _run(study_copy) == {"sub-02_ses-placebo_task-rest"}
    assert (out / "features.done").read_text() == done_text  # same inputs: what it stands for is unchanged
    shutil.rmtree(out / "features.zarr")
    assert not features_up_to_date(Study.load(study_copy))
    assert _run(study_copy) == set()  # nothing recomputed, but the combined store is written again
    assert (out / "features.zarr").is_dir() and features_up_to_date(Study.load(study_copy))


def test_fixed_infusion_time_recomputes_only_the_recordings_without_the_event(study_copy):
    m = study_copy
    events = m.parent / "bids" / "sub-02" / "ses-ket100" / "eeg" / "sub-02_ses-ket100_task-rest_events.tsv"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text(
        "".join(line for line in lines if "\tinfusion_start\t" not in line and "infusion_start" not in line)
    )
    _refreeze(m)
    _edit(m, lambda d: d.setdefault("eeg", {}).update({"infusion_start_s": 30.0}))
    assert _run(m) == {"sub-02_ses-ket100_task-rest"}  # its file changed
    _edit(m, lambda d: d["eeg"].update({"infusion_start_s": 31.0}))
    assert _run(m) == {"sub-02_ses-ket100_task-rest"}  # the only recording that uses the fixed start


def test_every_eeg_field_is_in_the_cache_key_or_excluded_with_a_reason():
    from pipelines.eeg.features import NOT_IN_FEATURE_PARAMETERS, feature_parameters
    from pipelines.study.manifest import EEGConfig, Manifest

    manifest = Manifest(study="x", bids_root=".")
    hashed = set(feature_parameters(manifest)) - {"features_version", "baseline", "infusion_events"}
    hashed |= {"infusion_start_event", "infusion_end_event"}
    fields = set(EEGConfig.model_fields)
    assert fields <= hashed | set(NOT_IN_FEATURE_PARAMETERS), fields - hashed - set(NOT_IN_FEATURE_PARAMETERS)
    assert not (hashed & set(NOT_IN_FEATURE_PARAMETERS))


def test_a_bad_recording_is_isolated_recorded_and_not_retried(study_copy):
    from pipelines.eeg.features import left_out_recordings, open_features, read_qc
    from pipelines.study.dataset import Study

    m = study_copy
    # Cut the data file of one recording to a third of a window: it cannot be computed.
    data = m.parent / "bids" / "sub-02" / "ses-ket100" / "eeg" / "sub-02_ses-ket100_task-rest_eeg.eeg"
    data.write_bytes(data.read_bytes()[: 20 * 4 * 100])
    _refreeze(m)
    assert _run(m) == {"sub-02_ses-ket100_task-rest"}
    study = Study.load(m)
    left = left_out_recordings(study)
    assert list(left["recording"]) == ["sub-02_ses-ket100_task-rest"] and list(left["status"]) == ["failed"]
    assert "sub-02_ses-ket100_task-rest_eeg" in left["file"][0] and left["reason"][0]
    assert len(read_qc(study)) == 3 and set(open_features(study)["subject"].values) == {"01", "02"}
    assert _run(m) == set()  # the failure is remembered while its inputs are unchanged


def test_excluded_recordings_are_left_out_with_their_reason(study_copy):
    from pipelines.eeg.features import left_out_recordings, read_qc
    from pipelines.study.dataset import Study
    from pipelines.study.manifest import ManifestError

    m = study_copy
    _edit(m, lambda d: d.update({"exclude": [{"recording": "sub-01_ses-ket100", "reason": "electrode bridging"}]}))
    assert _run(m) == set()  # nothing new to compute; the combined features drop the recording
    study = Study.load(m)
    assert [r.key for r, _ in study.excluded_recordings] == ["sub-01_ses-ket100_task-rest"]
    left = left_out_recordings(study)
    assert list(left["status"]) == ["excluded"] and list(left["reason"]) == ["electrode bridging"]
    assert "sub-01_ses-ket100_task-rest" not in set(read_qc(study)["recording"])
    _edit(m, lambda d: d.update({"exclude": [{"recording": "sub-01_ses-ket10", "reason": "typo"}]}))
    with pytest.raises(ManifestError, match="matches no recording — did you mean"):
        _ = Study.load(m).recordings


def test_every_kernel_file_is_in_the_feature_code_hash(monkeypatch):
    """The kernels are a package: each of its files is hashed into every recording's cache key, so editing any
    one of them recomputes the features (simulated by changing the bytes that file is read as)."""
    from pipelines.core.paths import REPO_ROOT
    from pipelines.eeg import features

    kernel_files = sorted((REPO_ROOT / "pipelines" / "eeg" / "kernels").glob("*.py"))
    assert len(kernel_files) >= 8 and (REPO_ROOT / "pipelines" / "eeg" / "kernels" / "__init__.py") in kernel_files
    hashed = set(features.feature_code_files())
    assert set(kernel_files) <= hashed
    assert {REPO_ROOT / "pipelines" / "eeg" / n for n in ("features.py", "preprocessing.py", "io.py")} <= hashed

    features._code_hash.cache_clear()
    original = features._code_hash()
    real_read_bytes = Path.read_bytes
    for edited in kernel_files:
        with monkeypatch.context() as m:
            m.setattr(Path, "read_bytes", lambda p, e=edited: real_read_bytes(p) + (b"\n# edited" if p == e else b""))
            features._code_hash.cache_clear()
            assert features._code_hash() != original, edited.name
    features._code_hash.cache_clear()
    assert features._code_hash() == original
