"""Reader options from the manifest (issue 10): channel types and a montage for files that lack them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines.eeg.io import ReaderOptionWarning, _has_positions, read_raw
from pipelines.study.dataset import Study
from pipelines.study.importer import import_study
from pipelines.study.manifest import ReaderConfig

SFREQ = 128.0


@pytest.fixture
def edf_study(tmp_path):
    """Two recordings of one subject, EDF (every channel stored as EEG, no positions): Fz, Pz, Oz and EOG1."""
    import mne

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    rows = []
    rng = np.random.default_rng(3)
    for condition in ("rest", "task"):
        data = rng.standard_normal((4, int(30 * SFREQ))) * 10e-6
        data[3] *= 20  # the EOG channel: large, slow eye movements would dominate an EEG average reference
        raw = mne.io.RawArray(data, mne.create_info(["Fz", "Pz", "Oz", "EOG1"], SFREQ, "eeg"), verbose="error")
        name = f"s1_{condition}.edf"
        mne.export.export_raw(raw_dir / name, raw, fmt="edf", overwrite=True, verbose="error")
        rows.append({"file": name, "subject": "1", "condition": condition})
    sheet = tmp_path / "recordings.csv"
    pd.DataFrame(rows).to_csv(sheet, index=False)
    manifest = tmp_path / "manifests" / "edf.yml"
    import_study(raw_dir, sheet, tmp_path / "bids", "edf", manifest)
    return Study.load(manifest)


def test_channel_types_from_the_manifest_keep_eog_out_of_the_eeg(edf_study):
    rec = edf_study.recordings[0]
    plain = read_raw(rec, edf_study.root)
    assert plain.get_channel_types() == ["eeg"] * 4  # EDF has no channel types: everything reads as EEG
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        typed = read_raw(rec, edf_study.root, ReaderConfig(channel_types={"EOG1": "eog", "EKG": "ecg"}))
    assert typed.get_channel_types() == ["eeg", "eeg", "eeg", "eog"]
    messages = [str(w.message) for w in caught if issubclass(w.category, ReaderOptionWarning)]
    assert len(messages) == 1 and "'EKG'" in messages[0] and str(rec.path) in messages[0]


def test_a_montage_gives_positions_to_recordings_without_them(edf_study):
    rec = edf_study.recordings[0]
    assert not _has_positions(read_raw(rec, edf_study.root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_raw(rec, edf_study.root, ReaderConfig(montage="standard_1020"))
    assert _has_positions(raw.copy().pick(["Fz", "Pz", "Oz"]))
    # EOG1 is read as EEG here and is not in the montage: said, not silently dropped.
    assert any("EOG1" in str(w.message) for w in caught if issubclass(w.category, ReaderOptionWarning))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReaderOptionWarning)
        raw = read_raw(rec, edf_study.root, ReaderConfig(montage="standard_1020", channel_types={"EOG1": "eog"}))
    positions = raw.copy().pick("eeg").get_montage().get_positions()["ch_pos"]
    assert set(positions) == {"Fz", "Pz", "Oz"}
    assert positions["Fz"][1] > positions["Oz"][1]  # frontal is anterior of occipital (head frame, +y forward)


def test_reader_options_are_validated_with_a_hint():
    with pytest.raises(ValueError, match="did you mean 'standard_1020'"):
        ReaderConfig(montage="standard_1021")
    with pytest.raises(ValueError):
        ReaderConfig(channel_types={"EOG1": "eyes"})
    with pytest.raises(ValueError, match="exactly one group"):
        ReaderConfig(channel_name_pattern="EEG (.+)-(REF|LE)")
    with pytest.raises(ValueError, match="not a regular expression"):
        ReaderConfig(channel_name_pattern="EEG (.+")


@pytest.fixture
def clinical_study(tmp_path):
    """One EDF with hospital-system labels: 'EEG Fp1-REF', 'EEG T3-REF', 'EEG O1-REF', 'EEG O2-REF', 'EKG1-REF'."""
    import mne

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    names = ["EEG Fp1-REF", "EEG T3-REF", "EEG O1-REF", "EEG O2-REF", "EKG1-REF"]
    data = np.random.default_rng(4).standard_normal((len(names), int(30 * SFREQ))) * 10e-6
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "eeg"), verbose="error")
    mne.export.export_raw(raw_dir / "s1.edf", raw, fmt="edf", overwrite=True, verbose="error")
    sheet = tmp_path / "recordings.csv"
    pd.DataFrame([{"file": "s1.edf", "subject": "1", "condition": "rest"}]).to_csv(sheet, index=False)
    manifest = tmp_path / "manifests" / "clinical.yml"
    import_study(raw_dir, sheet, tmp_path / "bids", "clinical", manifest)
    return Study.load(manifest)


def test_clinical_channel_labels_become_electrode_names(clinical_study):
    """The pattern extracts the electrode, renames map old 10-20 names, unmatched labels stay, and the result
    gets montage positions (which the raw labels never would)."""
    rec = clinical_study.recordings[0]
    reader = ReaderConfig(
        channel_name_pattern=r"EEG (.+)-(?:REF|LE)",
        rename_channels={"T3": "T7"},
        channel_types={"EKG1-REF": "ecg"},
        montage="standard_1020",
    )
    raw = read_raw(rec, clinical_study.root, reader)
    assert raw.ch_names == ["Fp1", "T7", "O1", "O2", "EKG1-REF"]
    assert raw.get_channel_types() == ["eeg", "eeg", "eeg", "eeg", "ecg"]
    assert _has_positions(raw)


def test_channel_renames_that_collide_or_name_missing_channels_are_reported(clinical_study):
    from pipelines.core.errors import InputError
    from pipelines.eeg.io import channel_renames

    names = ["EEG O1-REF", "EEG O1-LE", "EEG O2-REF"]
    with pytest.raises(InputError, match="'EEG O1-REF' and 'EEG O1-LE' would both be named 'O1'") as caught:
        channel_renames(names, ReaderConfig(channel_name_pattern=r"EEG (.+)-(?:REF|LE)"), "rec.edf")
    assert "rec.edf" in str(caught.value)
    with pytest.warns(ReaderOptionWarning, match="'T4'.*does not have"):
        renames = channel_renames(names[::2], ReaderConfig(rename_channels={"T4": "T8", "EEG O2-REF": "O2"}), "r.edf")
    assert renames == {"EEG O2-REF": "O2"}
