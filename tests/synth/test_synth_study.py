"""The generated study: deterministic, real BIDS read back by mne-bids, planted effects visible in the raw signal."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_GENERATOR

from pipelines.study.dataset import Study
from pipelines.study.manifest import compute_checksums, load_manifest, verify
from pipelines.synth.__main__ import main as synth_main


def test_same_seed_gives_identical_bytes(tiny_manifest, tmp_path):
    first = load_manifest(tiny_manifest)
    args = [
        "--out",
        str(tmp_path / "again" / "bids"),
        "--no-progress",
        "--seed",
        str(TINY_GENERATOR["seed"]),
        "--subjects",
        "2",
        "--minutes",
        "2",
        "--channels",
        "20",
        "--sfreq",
        "128",
        "--doses",
        "0",
        "1",
    ]
    assert synth_main(args) == 0
    again = first.model_copy(update={"bids_root": str(tmp_path / "again" / "bids")})
    assert compute_checksums(again) == first.checksums


def test_other_seed_gives_other_data(tiny_manifest, tmp_path):
    args = [
        "--out",
        str(tmp_path / "b"),
        "--no-progress",
        "--seed",
        "8",
        "--subjects",
        "2",
        "--minutes",
        "2",
        "--channels",
        "20",
        "--sfreq",
        "128",
        "--doses",
        "0",
        "1",
    ]
    assert synth_main(args) == 0
    first = load_manifest(tiny_manifest)
    other = compute_checksums(first.model_copy(update={"bids_root": str(tmp_path / "b")}))
    eeg = [k for k in other if k.endswith("_eeg.eeg")]
    assert eeg and all(other[k] != first.checksums[k] for k in eeg)


def test_default_study_reproduces_the_committed_checksums(default_study):
    """`make study` regenerated the default study from its seed; every byte matches the committed manifest."""
    report = verify(default_study.manifest)
    assert report.ok, report.describe(default_study.manifest)


def test_bids_round_trip_through_mne_bids(tiny_manifest):
    from mne_bids import read_raw_bids

    study = Study.load(tiny_manifest)
    assert [(r.subject, r.session, r.dose_mg_per_kg) for r in study.recordings] == [
        ("01", "ket100", 1.0),
        ("01", "placebo", 0.0),
        ("02", "ket100", 1.0),
        ("02", "placebo", 0.0),
    ]
    rec = study.recordings[0]
    raw = read_raw_bids(rec.bids_path(study.root), verbose="error")
    assert rec.path.suffix == ".vhdr"
    assert raw.info["sfreq"] == 128
    assert raw.info["line_freq"] == 50
    assert len(raw.ch_names) == 20 and {"O1", "Oz", "O2", "F3", "F4"} <= set(raw.ch_names)
    assert raw.n_times == 2 * 60 * 128
    positions = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    assert np.isfinite(positions).all() and (np.abs(positions).sum(axis=1) > 0).all()
    events = dict(zip(raw.annotations.description, raw.annotations.onset))
    assert events["infusion_start"] == pytest.approx(30.0) and events["infusion_end"] == pytest.approx(90.0)
    # Dates are anonymised (shifted into the past by mne-bids), never the real recording date.
    assert raw.info["meas_date"].year < 1950
    scans = pd.read_csv(study.root / "sub-01" / "ses-ket100" / "sub-01_ses-ket100_scans.tsv", sep="\t")
    assert scans["acq_time"].str.startswith("19").all()
    participants = pd.read_csv(study.root / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex"]


def test_truth_file_records_the_planted_effects(default_truth):
    eeg = default_truth["eeg"]
    assert eeg["expected_entropy_peak_dose_mg_per_kg"] == 0.5
    recs = eeg["recordings"]
    assert len(recs) == 48
    for key, rec in recs.items():
        if rec["dose_mg_per_kg"] == 0:
            assert rec["occipital_alpha_onset_s"] is None, key
        assert rec["occipital_alpha_min_db"] <= 0.5
    high = [r for r in recs.values() if r["dose_mg_per_kg"] == 1.0]
    assert all(r["occipital_alpha_onset_s"] is not None for r in high)
    json.dumps(default_truth, allow_nan=False)


def _occipital_alpha_db(raw, start, end, baseline_end):
    from scipy.signal import welch

    raw = raw.copy().set_eeg_reference("average", verbose="error")
    picks = [raw.ch_names.index(c) for c in ("O1", "Oz", "O2")]
    sf = raw.info["sfreq"]

    def power(a, b):
        x = raw.get_data(picks=picks, start=int(a * sf), stop=int(b * sf))
        f, p = welch(x, sf, nperseg=int(2 * sf))
        return p[:, (f >= 8) & (f <= 13)].sum(axis=1).mean()

    return 10 * np.log10(power(start, end) / power(0, baseline_end))


def test_planted_alpha_suppression_is_in_the_raw_signal(default_study, default_truth):
    """At 1.0 mg/kg, occipital alpha power at the end of the infusion is > 3 dB below baseline; not under placebo."""
    from pipelines.eeg.io import read_raw

    t_end = default_truth["infusion_end_s"]
    t_start = default_truth["infusion_start_s"]
    for rec in default_study.recordings:
        if rec.subject not in {"01", "02", "03"} or rec.dose_mg_per_kg not in (0.0, 1.0):
            continue
        truth = default_truth["eeg"]["recordings"][f"sub-{rec.subject}_ses-{rec.session}"]
        if truth["bad_channels"]:
            continue
        raw = read_raw(rec, default_study.root)
        change = _occipital_alpha_db(raw, t_end - 60, t_end, t_start)
        if rec.dose_mg_per_kg == 1.0:
            assert change < -3.0, (rec.key, change)
            assert change == pytest.approx(truth["occipital_alpha_min_db"], abs=1.5)
        else:
            assert abs(change) < 1.0, (rec.key, change)


def test_planted_bad_channels_are_found_by_qc(default_study, default_truth):
    from pipelines.analyses.study_overview import quick_qc

    flagged = quick_qc(default_study, seconds=30)
    found = {
        row.recording.removesuffix("_task-rest"): set(k.split(":")[0] for k in row.bad_channels.split("; "))
        if row.bad_channels
        else set()
        for row in flagged.itertuples()
    }
    planted = {k: set(v["bad_channels"]) for k, v in default_truth["eeg"]["recordings"].items()}
    assert found == planted
