"""The importer: EEG files plus a spreadsheet round-trip into a valid BIDS dataset and a manifest that works."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import InputError
from pipelines.study.importer import bids_label, import_study, main

SFREQ = 173.61  # a real single-channel, low-rate public EEG set's rate (23.6-s segments)


def _write_edf(path, seed: int, alpha_uv: float, seconds: float = 23.6):
    import mne

    rng = np.random.default_rng(seed)
    n = 173 * round(seconds)  # whole EDF records at a non-integer rate: 173 samples each
    t = np.arange(n) / SFREQ
    data = (rng.standard_normal(n) * 10 + alpha_uv * np.sin(2 * np.pi * 10 * t))[None, :] * 1e-6
    raw = mne.io.RawArray(data, mne.create_info(["Pz"], SFREQ, "eeg"), verbose="error")
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return data[0]


@pytest.fixture
def two_condition_folder(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    rows, sources = [], {}
    for i, subject in enumerate(["7", "12", "3"]):
        for condition, alpha in (("eyes open", 2.0), ("eyes closed", 20.0)):
            name = f"S{subject}_{condition.replace(' ', '')}.edf"
            sources[(subject, condition)] = _write_edf(raw_dir / name, 10 * i + int(alpha), alpha)
            rows.append({"File": name, "Subject": subject, "Condition": condition})
    return raw_dir, pd.DataFrame(rows), sources


def test_a_two_condition_edf_study_round_trips(two_condition_folder, tmp_path):
    from pipelines.eeg.io import read_raw
    from pipelines.study.dataset import Study
    from tests.synth.test_bids_validation import errors, validate

    raw_dir, table, sources = two_condition_folder
    sheet = tmp_path / "recordings.csv"
    table.to_csv(sheet, index=False)
    manifest = tmp_path / "manifests" / "eyes.yml"
    out = import_study(raw_dir, sheet, tmp_path / "bids", "eyes", manifest)

    found = errors(validate(out))
    assert not found, found[:3]
    study = Study.load(manifest)
    assert sorted({r.subject for r in study.recordings}) == ["03", "07", "12"]  # numbers zero-padded
    assert sorted({r.condition for r in study.recordings}) == ["eyesclosed", "eyesopen"]
    assert all(np.isnan(r.dose_mg_per_kg) for r in study.recordings)  # no dose was given: none is invented
    rec = next(r for r in study.recordings if r.subject == "07" and r.condition == "eyesclosed")
    raw = read_raw(rec, study.root)
    assert raw.info["sfreq"] == pytest.approx(SFREQ, rel=1e-4) and raw.ch_names == ["Pz"]
    back = raw.get_data()[0]
    source = sources[("7", "eyes closed")]
    assert len(back) == len(source)
    # EDF stores 16-bit integers over the signal's range: agreement within one quantisation step.
    step = (source.max() - source.min()) / 65535
    assert np.max(np.abs(back - source)) <= 1.01 * step


def test_the_draft_manifest_runs_the_features_step(two_condition_folder, tmp_path, monkeypatch):
    import xarray as xr

    from pipelines.eeg.features import compute_study_features
    from pipelines.study.dataset import Study

    raw_dir, table, _ = two_condition_folder
    sheet = tmp_path / "recordings.csv"
    table.to_csv(sheet, index=False)
    manifest = tmp_path / "eyes.yml"
    import_study(raw_dir, sheet, tmp_path / "bids", "eyes", manifest)
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "work"))
    features = xr.open_zarr(compute_study_features(Study.load(manifest), scheduler="synchronous", progress=False))
    assert list(features["session"].values) == ["eyesclosed", "eyesopen"]  # no doses: ordered by label
    alpha = features["summary_measures"].sel(summary_measure="occipital_alpha_power_uv2").mean("time_s")
    assert (alpha.sel(session="eyesclosed") > 5 * alpha.sel(session="eyesopen")).all()  # planted: 20 vs 2 µV alpha


def test_xlsx_with_doses_and_infusion_times(tmp_path):
    from pipelines.eeg.io import infusion_times, read_raw
    from pipelines.study.dataset import Study

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    rows = []
    for subject in ("01", "02"):
        for visit, dose in (("1", 0.0), ("2", 0.5)):
            name = f"{subject}_{visit}.edf"
            _write_edf(raw_dir / name, int(subject) + int(visit), 5.0, seconds=60.0)
            rows.append(
                {
                    "file": name,
                    "subject": subject,
                    "session": f"v{visit}",
                    "dose_mg_per_kg": dose,
                    "infusion_start_s": 10,
                    "infusion_end_s": 50,
                    "arm": "ketamine",
                }
            )
    sheet = tmp_path / "recordings.xlsx"
    pd.DataFrame(rows).to_excel(sheet, index=False)
    manifest = tmp_path / "m.yml"
    import_study(raw_dir, sheet, tmp_path / "bids", "doses", manifest)
    study = Study.load(manifest)
    assert sorted((r.subject, r.session, r.dose_mg_per_kg) for r in study.recordings) == [
        ("01", "v1", 0.0),
        ("01", "v2", 0.5),
        ("02", "v1", 0.0),
        ("02", "v2", 0.5),
    ]
    rec = study.recordings[0]
    raw = read_raw(rec, study.root)
    assert infusion_times(raw, "infusion_start", "infusion_end") == pytest.approx((10.0, 50.0), abs=1 / SFREQ)
    assert set(pd.read_csv(study.root / "participants.tsv", sep="\t")["arm"]) == {"ketamine"}


def test_bad_spreadsheets_name_the_row_and_nothing_is_written(two_condition_folder, tmp_path):
    raw_dir, table, _ = two_condition_folder
    sheet = tmp_path / "recordings.csv"
    broken = table.copy()
    broken.loc[3, "File"] = "missing.edf"
    broken.to_csv(sheet, index=False)
    with pytest.raises(InputError, match=r"row 5.*missing\.edf not found|missing\.edf not found.*row 5"):
        import_study(raw_dir, sheet, tmp_path / "bids", "x")
    assert not (tmp_path / "bids").exists() and not list(tmp_path.glob("bids.tmp-*"))

    table.assign(Subjekt=1).to_csv(sheet, index=False)
    with pytest.raises(InputError, match="unknown column"):
        import_study(raw_dir, sheet, tmp_path / "bids", "x")
    pd.concat([table, table.iloc[:1]]).to_csv(sheet, index=False)
    with pytest.raises(InputError, match="two recordings for sub-07"):
        import_study(raw_dir, sheet, tmp_path / "bids", "x")

    table.to_csv(sheet, index=False)
    (tmp_path / "bids").mkdir()
    assert main(["--raw", str(raw_dir), "--table", str(sheet), "--out", str(tmp_path / "bids"), "--study", "x"]) == 2


def test_bids_labels():
    assert bids_label("Pat 01-a") == "Pat01a" and bids_label("7", 3) == "007"
    with pytest.raises(ValueError):
        bids_label("--")
