"""EEG pipeline: spectral markers against references, dynamics on known curves, bad input, formats, Dask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import InputError
from pipelines.eeg import dynamics
from pipelines.eeg.features import (
    alpha_peak_frequency,
    aperiodic_exponents,
    band_powers,
    recording_features,
    resolve_roi,
    window_grid,
)
from pipelines.study.dataset import Study

# --- pure functions ------------------------------------------------------------------------------


def test_resolve_roi_reports_missing_and_fallbacks():
    used, note = resolve_roi("occipital", ["O1", "Oz", "O2"], ["PO3"], ["Fp1", "oz", "O2"])
    assert used == ["oz", "O2"] and "missing: O1" in note
    used, note = resolve_roi("occipital", ["O1", "Oz"], ["PO3", "POz"], ["Fp1", "PO3"])
    assert used == ["PO3"] and "none of O1, Oz present; used PO3 instead" in note
    used, note = resolve_roi("occipital", ["O1"], [], ["Fp1"])
    assert used == [] and "none of O1" in note


@pytest.mark.parametrize("sfreq", [250.0, 173.61, 1000.0])
def test_window_grid_puts_an_edge_on_infusion_start(sfreq):
    starts, times, win = window_grid(int(300 * sfreq), sfreq, 2.0, 2.0, infusion_start_s=61.3)
    assert np.allclose(np.diff(times), 2.0)
    assert 1.0 in times and -1.0 in times  # windows either side of the infusion start, none straddling it
    edge = starts[list(times).index(1.0)] / sfreq
    assert edge == pytest.approx(61.3, abs=1.0 / sfreq)
    assert starts[-1] + win <= int(300 * sfreq)


def test_band_power_equals_mne_welch():
    from mne.time_frequency import psd_array_welch
    from scipy.signal import welch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 500)) * 10
    freqs, psd = welch(x, fs=250.0, nperseg=250)
    ref_psd, ref_freqs = psd_array_welch(
        x, 250.0, n_fft=250, n_per_seg=250, n_overlap=125, average="mean", window="hann", verbose="error"
    )
    np.testing.assert_allclose(freqs, ref_freqs)
    np.testing.assert_allclose(psd, ref_psd, rtol=1e-9)
    absolute, relative = band_powers(psd, freqs, {"alpha": (8.0, 13.0)}, (1.0, 45.0))
    mask = (ref_freqs >= 8) & (ref_freqs <= 13)
    np.testing.assert_allclose(absolute["alpha"], ref_psd[:, mask].sum(-1) * (ref_freqs[1] - ref_freqs[0]), rtol=1e-9)
    assert np.all((relative["alpha"] > 0) & (relative["alpha"] < 1))


def test_alpha_peak_frequency_finds_a_planted_peak_between_bins():
    from scipy.signal import welch

    t = np.arange(0, 20, 1 / 250)
    rng = np.random.default_rng(1)
    x = 10 * np.sin(2 * np.pi * 10.3 * t) + rng.standard_normal(t.size)
    freqs, psd = welch(x, 250, nperseg=1000)  # 0.25 Hz bins
    assert alpha_peak_frequency(psd, freqs, (7, 14)) == pytest.approx(10.3, abs=0.08)
    flat = np.ones_like(psd)
    flat[(freqs >= 7) & (freqs <= 14)] = np.linspace(2, 1, ((freqs >= 7) & (freqs <= 14)).sum())
    assert np.isnan(alpha_peak_frequency(flat, freqs, (7, 14)))  # maximum on the edge: no peak


def test_aperiodic_exponent_equals_specparam_and_recovers_a_planted_slope():
    from specparam import SpectralModel

    freqs = np.arange(1, 60, 0.5)
    spectrum = 50 / freqs**1.7 + 3 * np.exp(-0.5 * ((freqs - 10) / 1.2) ** 2) / freqs
    ours = aperiodic_exponents(spectrum[None, :], freqs, (2, 40))[0]
    model = SpectralModel(aperiodic_mode="fixed", verbose=False)
    model.fit(freqs, spectrum, [2, 40])
    assert ours == pytest.approx(model.get_params("aperiodic")[-1], rel=1e-9)
    assert ours == pytest.approx(1.7, abs=0.05)
    assert np.isnan(aperiodic_exponents(np.full((1, freqs.size), np.nan), freqs, (2, 40))[0])


def _sigmoid_curve(onset, step=2.0, depth=-8.0, noise=0.0, seed=0):
    time_s = np.arange(-119, 360, step)
    curve = np.where(time_s < 0, 0.0, depth * (1 - np.exp(-time_s / 60.0)))
    crossing = -60.0 * np.log(1 - (-3.0) / depth)
    time_s = time_s - crossing + onset  # shift so the noiseless crossing is at `onset`
    rng = np.random.default_rng(seed)
    return time_s, curve + noise * rng.standard_normal(time_s.size)


def test_onset_is_the_interpolated_threshold_crossing():
    time_s, curve = _sigmoid_curve(onset=37.0)
    assert dynamics.suppression_onset(time_s, curve, -3.0, 20.0, smooth_windows=1) == pytest.approx(37.0, abs=0.3)
    # Smoothing (centred mean) keeps the crossing of a smooth curve within a window step.
    assert dynamics.suppression_onset(time_s, curve, -3.0, 20.0, smooth_windows=9) == pytest.approx(37.0, abs=2.0)


def test_onset_needs_the_hold_and_is_nan_without_suppression():
    time_s = np.arange(-59, 300, 2.0)
    brief = np.where((time_s > 50) & (time_s < 60), -5.0, 0.0)
    assert np.isnan(dynamics.suppression_onset(time_s, brief, -3.0, hold_s=20.0, smooth_windows=1))
    assert np.isnan(dynamics.suppression_onset(time_s, np.zeros_like(time_s), -3.0, 20.0, 9))
    # A dip before infusion start does not count.
    pre = np.where(time_s < -20, -6.0, 0.0)
    assert np.isnan(dynamics.suppression_onset(time_s, pre, -3.0, 10.0, 1))


def test_recovery_after_infusion_end():
    time_s = np.arange(-59, 400, 2.0)
    curve = np.where((time_s > 30) & (time_s < 300), -6.0, 0.0)
    assert dynamics.recovery_time(time_s, curve, -3.0, 20.0, 1, after_s=240.0) == pytest.approx(300.0, abs=2.0)


# --- the default study: planted effects recovered ---------------------------------------------------


@pytest.fixture(scope="module")
def default_features(default_study):
    from pipelines.eeg.features import open_features, read_qc

    try:
        return open_features(default_study), read_qc(default_study)
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (make test computes them first)")


@pytest.fixture(scope="module")
def plateau(default_study, default_features, default_truth):
    features, _ = default_features
    cfg = default_study.manifest.eeg.dynamics
    end = default_truth["infusion_end_s"] - default_truth["infusion_start_s"]
    measures = ["occipital_alpha_db", "lzc_median", "spectral_entropy_welch", "gamma_power_uv2"]
    return dynamics.plateau_changes(features, measures, cfg, 2.0, end, regions=default_study.manifest.eeg.rois)


def test_dose_slopes_have_the_planted_signs(plateau):
    alpha = dynamics.dose_response(plateau, "occipital_alpha_db", "summary")["model"].set_index("term")
    assert alpha.loc["dose", "estimate"] < 0 and alpha.loc["dose", "p"] < 1e-3
    gamma = dynamics.dose_response(plateau, "gamma_power_uv2", "global")
    means = gamma["per_dose"].set_index("dose_mg_per_kg")["mean"]
    assert means.is_monotonic_increasing and gamma["model"].set_index("term").loc["dose", "p"] < 1e-3


@pytest.mark.parametrize("measure", ["lzc_median", "spectral_entropy_welch"])
def test_entropy_peaks_at_the_planted_dose_with_an_inverted_u(plateau, default_truth, measure):
    result = dynamics.dose_response(plateau, measure, "global")
    quad = result["model"].set_index("term").loc["dose_sq"]
    assert quad["estimate"] < 0 and quad["p"] < 1e-3 and quad["ci_high"] < 0
    assert result["dose_of_max"] == default_truth["eeg"]["expected_entropy_peak_dose_mg_per_kg"]
    placebo = result["per_dose"].set_index("dose_mg_per_kg").loc[0.0]
    assert placebo["ci_low"] < 0 < placebo["ci_high"]  # no change under placebo


def _markers_with_truth(default_study, features, default_truth, threshold_db=None):
    cfg = default_study.manifest.eeg.dynamics
    if threshold_db is not None:
        cfg = cfg.model_copy(update={"alpha_threshold_db": threshold_db})
    end = default_truth["infusion_end_s"] - default_truth["infusion_start_s"]
    markers = dynamics.recording_markers(features, cfg, 2.0, end)
    key = markers["participant_id"] + "_ses-" + markers["session"]
    truth = default_truth["eeg"]["recordings"]
    thr = f"{cfg.alpha_threshold_db:g}"
    markers["planted"] = [truth[k]["occipital_alpha_onset_s_by_threshold_db"][thr] for k in key]
    return markers.astype({"planted": float}), cfg


@pytest.mark.parametrize("threshold_db", [None, -3.0])  # None: the manifest's titration threshold (-10 dB)
def test_titration_onsets_match_every_planted_onset_at_every_dose(
    default_study, default_features, default_truth, threshold_db
):
    """Every planted onset at the detector's own threshold, shallow crossings included: no miss, no alert where
    nothing was planted (placebo, and doses whose planted curve stays above the threshold), median |error| within
    one window step at every dose, and no dose-dependent bias beyond one step."""
    features, _ = default_features
    markers, cfg = _markers_with_truth(default_study, features, default_truth, threshold_db)
    step = float(json.loads(features.attrs["parameters"])["features"]["step_s"])
    detected, planted = markers["alpha_suppression_onset_s"], markers["planted"]
    assert markers.loc[markers["dose_mg_per_kg"] == 0, "planted"].isna().all()
    false_alerts = markers[planted.isna() & detected.notna()]
    misses = markers[planted.notna() & detected.isna()]
    assert false_alerts.empty, false_alerts
    assert misses.empty, misses
    error = detected - planted
    per_dose = error.groupby(markers["dose_mg_per_kg"]).agg(["count", "median", lambda e: e.abs().median()])
    per_dose.columns = ["n", "median_error_s", "median_abs_error_s"]
    per_dose = per_dose[per_dose["n"] > 0]
    assert per_dose["n"].sum() >= 12, per_dose  # the threshold is reached at some dose by most subjects
    assert (per_dose["median_abs_error_s"] <= step).all(), per_dose
    assert per_dose["median_error_s"].max() - per_dose["median_error_s"].min() <= step, per_dose


def test_titration_threshold_takes_percent_or_db_and_shows_both():
    from pipelines.study.manifest import DynamicsConfig
    from pipelines.synth.eeg import DEFAULT_TITRATION_THRESHOLD_DB

    assert DynamicsConfig().alpha_threshold_db == -10.0  # default: 10 % of baseline power ("nearly disappears")
    assert DEFAULT_TITRATION_THRESHOLD_DB == DynamicsConfig().alpha_threshold_db  # truth.json's occipital_alpha_onset_s
    assert DynamicsConfig(alpha_threshold_db="10%").alpha_threshold_db == pytest.approx(-10.0)
    assert DynamicsConfig(alpha_threshold_db="25 %").alpha_threshold_db == pytest.approx(-6.0206, abs=1e-4)
    assert DynamicsConfig(alpha_threshold_db="-6 dB").alpha_threshold_percent == pytest.approx(25.1, abs=0.05)
    assert DynamicsConfig().alpha_threshold_label == "10 % of baseline alpha power (-10 dB)"
    for bad in ("150%", "0%", "ten"):
        with pytest.raises(ValueError):
            DynamicsConfig(alpha_threshold_db=bad)


def _rise_then_flat(flat_from_s=120.0, noise=0.0, seed=0):
    time_s = np.arange(-119, 360, 2.0)
    curve = np.clip(time_s, 0, flat_from_s) / flat_from_s * 0.1
    rng = np.random.default_rng(seed)
    return time_s, curve + noise * rng.standard_normal(time_s.size)


def test_entropy_plateau_is_causal_and_follows_the_flattening():
    time_s, curve = _rise_then_flat(120.0, noise=0.003)
    t, height = dynamics.entropy_plateau(time_s, curve, smooth_windows=5, plateau_s=30.0, rel_tol=0.05)
    assert 120.0 <= t <= 120.0 + 30.0 + 5 * 2.0, t  # after the rise stops, within the plateau span and smoothing
    assert height == pytest.approx(0.1, abs=0.02)
    # Causal: the data after t change nothing, whatever they are (cut off, or replaced by a further rise).
    cut = time_s <= t
    assert dynamics.entropy_plateau(time_s[cut], curve[cut], 5, 30.0, 0.05)[0] == t
    later = curve.copy()
    later[~cut] += np.linspace(0, 1, (~cut).sum())
    assert dynamics.entropy_plateau(time_s, later, 5, 30.0, 0.05)[0] == t
    # No rise beyond the baseline noise: no plateau.
    flat = np.random.default_rng(1).standard_normal(time_s.size) * 0.003
    assert np.isnan(dynamics.entropy_plateau(time_s, flat, 5, 30.0, 0.05)[0])


def test_entropy_plateau_on_the_default_study_uses_only_data_up_to_it(default_study, default_features, default_truth):
    features, _ = default_features
    markers, cfg = _markers_with_truth(default_study, features, default_truth)
    active = markers[markers["dose_mg_per_kg"] > 0]
    assert active["entropy_plateau_time_s"].notna().mean() >= 0.75
    assert markers.loc[markers["dose_mg_per_kg"] == 0, "entropy_plateau_time_s"].notna().sum() <= 1
    # Recomputed on each recording cut at its plateau time: the same time.
    time_s = features["time_s"].to_numpy()
    entropy = features["summary_measures"].sel(summary_measure=f"{cfg.entropy_measure}_mean").load()
    base = time_s < 0
    for row in active.dropna(subset=["entropy_plateau_time_s"]).head(8).itertuples():
        e = entropy.sel(subject=row.participant_id[4:], session=row.session).to_numpy()
        change = e - np.nanmean(e[base])
        cut = time_s <= row.entropy_plateau_time_s
        again = dynamics.entropy_plateau(
            time_s[cut],
            change[cut],
            cfg.smooth_windows,
            cfg.entropy_plateau_s,
            cfg.entropy_plateau_rel_tol,
            cfg.entropy_min_rise_sd,
        )[0]
        assert again == row.entropy_plateau_time_s


def test_every_band_moves_in_the_published_direction(default_study, default_features, default_truth):
    """Planted band effects follow published subanaesthetic ketamine EEG (truth.json cites them per band), and the
    analysis recovers each direction at every active dose (theta: down, and up at the top dose where the frontal
    theta rise of near-anaesthetic concentrations is planted)."""
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis

    features, _ = default_features
    effects = default_truth["eeg"]["band_effects"]
    assert set(effects) == set(eeg_analysis.BANDS) and all(e["citations"] for e in effects.values())
    end = default_truth["infusion_end_s"] - default_truth["infusion_start_s"]
    bands = eeg_analysis.band_changes(features, default_study.manifest.eeg.dynamics, 2.0, end)
    table = eeg_analysis.band_dose_table(bands, effects)
    absolute = table[(table["kind"] == "absolute (dB)") & (table["region"] == "global")].set_index(
        ["band", "dose_mg_per_kg"]
    )
    top = absolute.index.get_level_values("dose_mg_per_kg").max()
    for band, effect in effects.items():
        for dose in (0.25, 0.5, 1.0):
            row = absolute.loc[(band, dose)]
            if effect["direction"] == "increase":
                assert row["ci_low"] > 0, (band, dose, row)
            elif band == "theta" and dose == top:
                assert row["ci_low"] > 0, (band, dose, row)
            else:
                assert row["ci_high"] < 0, (band, dose, row)
        placebo = absolute.loc[(band, 0.0)]
        assert placebo["ci_low"] < 0 < placebo["ci_high"], (band, placebo)
    relative = table[(table["kind"] == "relative (pp)") & (table["region"] == "global")]
    assert set(relative["band"]) == set(eeg_analysis.BANDS)


def test_qc_finds_the_planted_bad_channels_and_rejects_blinks(default_features, default_truth):
    _, qc = default_features
    found = {row.recording.removesuffix("_task-rest"): set(json.loads(row.bad_channels)) for row in qc.itertuples()}
    planted = {k: set(v["bad_channels"]) for k, v in default_truth["eeg"]["recordings"].items()}
    assert found == planted
    # Window rejection against the planted blinks: (nearly) every blink window goes, (nearly) nothing else does.
    features, _ = default_features
    rejected, t = features["window_rejected"].load(), features["time_s"].to_numpy() + default_truth["infusion_start_s"]
    half = json.loads(features.attrs["parameters"])["features"]["window_s"] / 2
    found_blinks, big_found, big_total, false_rejections, clean_windows = 0, 0, 0, 0, 0
    n_blinks = 0
    for key, truth in default_truth["eeg"]["recordings"].items():
        r = rejected.sel(subject=key.split("_")[0][4:], session=key.split("_ses-")[1]).to_numpy()
        near_blink = np.zeros(len(t), bool)
        for when, amplitude in zip(truth["blink_times_s"], truth["blink_amplitudes_uv"]):
            window = (when >= t - half - 0.2) & (when < t + half + 0.2)  # a blink lasts ~±0.2 s
            near_blink |= window
            n_blinks += 1
            found_blinks += bool(r[window].any())
            if amplitude >= 320:
                big_total += 1
                big_found += bool(r[window].any())
        false_rejections += int((r & ~near_blink).sum())
        clean_windows += int((~near_blink).sum())
    assert big_total > 0 and big_found == big_total
    assert found_blinks >= 0.9 * n_blinks
    assert false_rejections <= 0.01 * clean_windows


def test_features_store_their_parameters_and_definitions(default_features):
    features, _ = default_features
    params = json.loads(features.attrs["parameters"])
    assert params["features"]["window_s"] == 2.0 and params["preprocessing"]["reference"] == "average"
    assert "Bandt & Pompe" in json.loads(features.attrs["measure_definitions"])["perm_entropy"]
    assert set(features.dims) >= {"subject", "session", "measure", "channel", "time_s"}
    assert features["dose_mg_per_kg"].sel(subject="01", session="ket050").item() == 0.5


# --- bad input -------------------------------------------------------------------------------------


def _first_recording(manifest_path):
    study = Study.load(manifest_path)
    return study, study.recordings[0]


def test_truncated_brainvision_file_is_an_error(tiny_copy):
    study, rec = _first_recording(tiny_copy)
    data = rec.path.with_suffix(".eeg")
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size // 2)
    with pytest.raises(InputError, match="truncated") as err:
        recording_features(study.manifest, rec)
    assert str(rec.path) in str(err.value)


def test_truncated_at_a_sample_boundary_before_infusion_end_is_an_error(tiny_copy):
    """Cut at a whole sample, with no RecordingDuration to compare: only the events file shows the loss."""
    import json

    study, rec = _first_recording(tiny_copy)
    sidecar = rec.path.with_name(rec.path.name.rsplit("_", 1)[0] + "_eeg.json")
    meta = json.loads(sidecar.read_text())
    meta.pop("RecordingDuration", None)
    sidecar.write_text(json.dumps(meta))
    data = rec.path.with_suffix(".eeg")
    bytes_per_sample = 20 * 4  # 20 channels, float32
    keep_s = 80.0  # the tiny study's infusion ends at 90 s
    with open(data, "r+b") as fh:
        fh.truncate(int(keep_s * 128) * bytes_per_sample)
    with pytest.raises(InputError, match="truncated recording: .*_events.tsv has 'infusion_end'") as err:
        recording_features(study.manifest, rec)
    assert str(rec.path) in str(err.value)


def test_corrupted_header_is_an_error_naming_the_file(tiny_copy):
    study, rec = _first_recording(tiny_copy)
    rec.path.write_text("this is not a BrainVision header\n")
    with pytest.raises(InputError, match="cannot read the EEG recording") as err:
        recording_features(study.manifest, rec)
    assert str(rec.path) in str(err.value)


def _rewrite(study, rec, fmt: str, root: Path, scale: float = 1.0, drop: list[str] | None = None):
    """Write one recording of the tiny study through mne-bids in another format (and optionally scale it)."""
    import mne
    from mne_bids import BIDSPath, read_raw_bids, write_raw_bids

    raw = read_raw_bids(rec.bids_path(study.root), verbose="error").load_data()
    if drop:
        raw.drop_channels(drop)
    if scale != 1.0:
        raw.apply_function(lambda x: x * scale)
    for name in ("participants.tsv", "participants.json"):
        if not (root / name).exists():
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(study.root / name, root / name)
    bids_path = BIDSPath(subject=rec.subject, session=rec.session, task=rec.task, datatype="eeg", root=root)
    write_raw_bids(
        raw,
        bids_path,
        format="BrainVision" if fmt == "FIF" else fmt,
        allow_preload=True,
        overwrite=True,
        verbose="error",
    )
    if fmt == "FIF":
        # mne-bids converts EEG only to BrainVision/EDF/BDF/EEGLAB, but reads FIF EEG (common in MNE-based labs):
        # keep its sidecars and put the same data in a .fif file in place of the BrainVision triplet.
        written = bids_path.copy().update(suffix="eeg", extension=".vhdr").fpath
        raw_bv = mne.io.read_raw_brainvision(written, preload=True, verbose="error")
        raw_bv.save(written.with_suffix(".fif"), overwrite=True, verbose="error")
        for ext in (".vhdr", ".vmrk", ".eeg"):
            written.with_suffix(ext).unlink()
        scans = next(root.glob(f"sub-{rec.subject}/ses-{rec.session}/*_scans.tsv"))
        scans.write_text(scans.read_text().replace("_eeg.vhdr", "_eeg.fif"))
    sessions = study.root / f"sub-{rec.subject}" / f"sub-{rec.subject}_sessions.tsv"
    shutil.copy2(sessions, root / f"sub-{rec.subject}" / sessions.name)


def _manifest_for(root: Path, folder: Path, extra: str = "") -> Path:
    path = folder / f"{root.name}.yml"
    path.write_text(f"study: {root.name}\nbids_root: {root}\n" + extra)
    return path


def test_wrong_units_are_refused(tiny_manifest, tmp_path):
    study, rec = _first_recording(tiny_manifest)
    _rewrite(study, rec, "BrainVision", tmp_path / "volts", scale=1e6)  # µV numbers stored as volts
    scaled = Study.load(_manifest_for(tmp_path / "volts", tmp_path))
    with pytest.raises(InputError, match="physically implausible EEG.*wrong units"):
        recording_features(scaled.manifest, scaled.recordings[0])


def test_missing_roi_channels_are_named(tiny_manifest, tmp_path):
    study, rec = _first_recording(tiny_manifest)
    _rewrite(study, rec, "BrainVision", tmp_path / "noocc", drop=["O1", "Oz", "O2", "P3", "Pz", "P4"])
    other = Study.load(_manifest_for(tmp_path / "noocc", tmp_path))
    with pytest.raises(InputError, match=r"no occipital channel.*none of O1, Oz, O2"):
        recording_features(other.manifest, other.recordings[0])
    # With a mapping that names an existing channel, it works and says what it used.
    mapped = Study.load(
        _manifest_for(
            tmp_path / "noocc",
            tmp_path,
            "eeg:\n  rois:\n    occipital: [P7, P8]\n    frontal_left: [F3]\n    frontal_right: [F4]\n",
        )
    )
    ds = recording_features(mapped.manifest, mapped.recordings[0])
    assert "occipital: P7, P8" in json.loads(ds.attrs["qc"])["rois"]


def test_recording_shorter_than_one_window(tiny_copy):
    tiny_copy.write_text(tiny_copy.read_text() + "eeg:\n  features:\n    window_s: 1000\n    step_s: 1000\n")
    study, rec = _first_recording(tiny_copy)
    with pytest.raises(InputError, match="shorter than one analysis window"):
        recording_features(study.manifest, rec)


# --- formats and schedulers ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, rtol", [("FIF", 1e-6), ("EDF", 2e-2)])
def test_same_features_from_brainvision_edf_and_fif(tiny_manifest, tmp_path, fmt, rtol):
    study = Study.load(tiny_manifest)
    rec = [r for r in study.recordings if r.dose_mg_per_kg > 0][0]
    reference = recording_features(study.manifest, rec)
    _rewrite(study, rec, fmt, tmp_path / fmt.lower())
    other = Study.load(_manifest_for(tmp_path / fmt.lower(), tmp_path))
    assert other.recordings[0].path.suffix == {"FIF": ".fif", "EDF": ".edf"}[fmt]
    ds = recording_features(other.manifest, other.recordings[0])
    for name in (
        "occipital_alpha_power_uv2",
        "spectral_entropy_welch_mean",
        "sample_entropy_mean",
        "perm_entropy_mean",
    ):
        a = reference["summary_measures"].sel(summary_measure=name).to_numpy()
        b = ds["summary_measures"].sel(summary_measure=name).to_numpy()
        np.testing.assert_allclose(b, a, rtol=rtol, err_msg=f"{fmt} {name}")
    if fmt == "FIF":
        np.testing.assert_allclose(
            ds["channel_measures"].to_numpy(), reference["channel_measures"].to_numpy(), rtol=1e-6
        )


def test_dask_cluster_gives_the_serial_results(tiny_manifest, tmp_path, monkeypatch):
    import xarray as xr
    from distributed import LocalCluster

    from pipelines.eeg.features import compute_study_features

    study = Study.load(tiny_manifest)
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "serial"))
    serial = xr.open_zarr(compute_study_features(study, scheduler="synchronous", progress=False)).load()
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "cluster"))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        distributed = xr.open_zarr(
            compute_study_features(study, scheduler=cluster.scheduler_address, progress=False)
        ).load()
    xr.testing.assert_identical(serial.drop_attrs(), distributed.drop_attrs())
    qc = pd.read_csv(
        tmp_path / "cluster" / "build" / "tiny" / "derivatives" / "ketamine-workbench" / "qc.tsv", sep="\t"
    )
    assert len(qc) == len(study.recordings)
    assert (
        tmp_path / "cluster" / "build" / "tiny" / "derivatives" / "ketamine-workbench" / "dataset_description.json"
    ).is_file()


def test_missing_infusion_event_is_named_and_a_fixed_time_can_replace_it(tiny_copy):
    study, rec = _first_recording(tiny_copy)
    events = rec.path.with_name(rec.path.name.replace("_eeg.vhdr", "_events.tsv"))
    lines = [line for line in events.read_text().splitlines() if "infusion_start" not in line]
    events.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError, match=r"no 'infusion_start' event.*Events present: \['baseline_start', 'infusion_end'\]"
    ) as err:
        recording_features(study.manifest, rec)
    assert str(rec.path) in str(err.value)
    tiny_copy.write_text(tiny_copy.read_text() + "eeg:\n  infusion_start_s: 30.0\n")
    study, rec = _first_recording(tiny_copy)
    ds = recording_features(study.manifest, rec)
    assert json.loads(ds.attrs["qc"])["infusion_start_s"] == 30.0


def test_single_channel_edf_at_173_hz_with_conditions_named_by_task(tmp_path):
    """A third-party-like layout: one channel, 173.61 Hz, EDF, no sessions, conditions as task labels."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    sfreq = 173.61
    rng = np.random.default_rng(3)
    root = tmp_path / "onechannel"
    for task, alpha_uv in (("placebo", 20.0), ("ketamine", 6.0)):
        t = np.arange(173 * 241) / sfreq  # whole EDF data records (173 samples each at 173.61 Hz)
        alpha = np.where(t < 60, 20.0, alpha_uv) * np.sin(2 * np.pi * 10 * t)
        data = (alpha + 8 * rng.standard_normal(t.size))[None, :] * 1e-6
        info = mne.create_info(["Cz"], sfreq, "eeg")
        raw = mne.io.RawArray(data, info, verbose="error")
        raw.set_annotations(mne.Annotations([60.0], [0.0], ["infusion_start"]))
        write_raw_bids(
            raw,
            BIDSPath(subject="01", task=task, datatype="eeg", root=root),
            format="EDF",
            allow_preload=True,
            overwrite=True,
            verbose="error",
        )
    manifest = _manifest_for(
        root,
        tmp_path,
        "eeg:\n  conditions:\n    source: labels\n    entity: task\n"
        "    labels: {placebo: 0.0, ketamine: 0.5}\n  rois:\n    occipital: [Cz]\n",
    )
    study = Study.load(manifest)
    assert sorted((r.task, r.dose_mg_per_kg) for r in study.recordings) == [("ketamine", 0.5), ("placebo", 0.0)]
    results = {r.task: recording_features(study.manifest, r) for r in study.recordings}
    qc = json.loads(results["ketamine"].attrs["qc"])
    assert qc["n_channels"] == 1 and qc["sfreq_hz"] == pytest.approx(sfreq, rel=1e-4)
    assert any("frontal alpha asymmetry not computed" in n for n in qc["notes"])
    after = results["ketamine"]["time_s"] > 10
    drop = float(results["ketamine"]["summary_measures"].sel(summary_measure="occipital_alpha_db").where(after).mean())
    same = float(results["placebo"]["summary_measures"].sel(summary_measure="occipital_alpha_db").where(after).mean())
    assert drop < -6 and abs(same) < 1  # 20 -> 6 µV alpha: about -10 dB


def test_robust_rejection_keeps_strong_alpha_and_rejects_artefacts():
    """Eyes closed: every window's peak-to-peak ~300 µV (strong alpha). A fixed 250 µV cap loses the whole
    recording; the per-channel robust rule keeps it and still rejects a 5x blink."""
    from pipelines.eeg.features import rejected_windows

    rng = np.random.default_rng(3)
    ptp = 300.0 * np.exp(0.1 * rng.standard_normal((20, 120)))
    ptp[0, 17] *= 5.0  # a blink on one frontal channel
    assert rejected_windows(ptp, 250.0, None).all()
    robust = rejected_windows(ptp, None, 5.0)
    assert robust[17] and robust.sum() == 1
    quiet = 30.0 * np.exp(0.1 * rng.standard_normal((20, 120)))
    assert not rejected_windows(quiet, None, 5.0).any()  # clean data: nothing rejected
    flat = np.full((2, 50), 4.0)
    flat[1, 3] = 4.2  # a near-constant channel: a 5 % bump is no artefact
    assert not rejected_windows(flat, None, 5.0).any()


def test_conditions_losing_different_shares_of_windows_are_reported():
    import pandas as pd

    from pipelines.eeg.features import kept_by_condition

    qc = pd.DataFrame(
        {
            "recording": ["a", "b", "c", "d"],
            "session": ["open", "open", "closed", "closed"],
            "n_windows": [100, 100, 100, 100],
            "n_rejected_windows": [2, 4, 30, 40],
        }
    )
    table = kept_by_condition(qc).set_index("session")
    assert table.loc["open", "fraction_kept"] == pytest.approx(0.97)
    assert table.loc["closed", "fraction_kept"] == pytest.approx(0.65)
    assert table.loc["closed", "n_recordings"] == 2


def test_two_condition_study_levels_and_paired_contrast_recover_the_planted_alpha(tmp_path, monkeypatch):
    """The two-condition EDF design (no infusion): eyes closed has the planted higher alpha, found per subject."""
    import shutil

    from pipelines.analyses import eeg_entropy_dose as eeg_analysis
    from pipelines.eeg.features import compute_study_features, open_features, read_qc
    from pipelines.study.manifest import freeze, load_manifest
    from tests.conftest import REPO

    manifest = tmp_path / "two.yml"
    text = (REPO / "data_manifests" / "two_condition_edf.yml").read_text().split("\n# sha256")[0]
    manifest.write_text(
        text.replace("bids_root: ../data/two-condition-edf/bids", "bids_root: bids").replace(
            "n_subjects: 10", "n_subjects: 4"
        )
    )
    from pipelines.synth.__main__ import main as synth_main

    assert synth_main(["--manifest", str(manifest), "--no-progress"]) == 0
    freeze(load_manifest(manifest))
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path / "work"))
    study = Study.load(manifest)
    compute_study_features(study, scheduler="synchronous", progress=False)
    features, qc = open_features(study), read_qc(study)
    applies, reason = eeg_analysis.has_infusion_window(qc)
    assert not applies and "absolute levels" in reason
    levels = eeg_analysis.condition_levels(features, ["occipital_alpha_power_uv2", "lzc_median"])
    conditions = [c for c, _ in study.design.conditions]
    assert conditions == ["eyesopen", "eyesclosed"]  # no doses: in the order the manifest's labels list them
    table = eeg_analysis.condition_contrasts(levels, ["eyesopen", "eyesclosed"]).set_index("measure")
    alpha = table.loc["occipital_alpha_power_uv2"]
    assert alpha["n_subjects"] == 4 and alpha["mean_difference"] > 0 and alpha["mean_b"] > 3 * alpha["mean_a"]
    shutil.rmtree(tmp_path / "work")


def test_dose_shape_is_tested_at_the_subject_level_on_the_default_study(default_study, default_truth):
    """The planted entropy inverted U is called one by the two-lines test; monotone alpha suppression is not."""
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis
    from pipelines.eeg import dynamics
    from pipelines.eeg.features import open_features, read_qc

    features, qc = open_features(default_study), read_qc(default_study)
    params = eeg_analysis.validate_parameters(default_study)
    cfg = params.dynamics_config(default_study.manifest.eeg.dynamics)
    changes = dynamics.plateau_changes(
        features,
        ["occipital_alpha_db", "lzc_median"],
        cfg,
        params.window_s,
        eeg_analysis.infusion_end_rel_s(qc),
        regions={},
    )
    tests = eeg_analysis.dose_effect_tests(
        changes, [("lzc_median", "global"), ("occipital_alpha_db", "summary")], n_boot=199
    )
    verdict = tests.groupby("measure")["verdict"].first()
    assert verdict["lzc_median"] == "inverted U" and verdict["occipital_alpha_db"] != "inverted U"
    dose = tests[tests["test"] == "dose_effect"].set_index("measure")
    assert dose.loc["occipital_alpha_db", "ci_high"] < 0 and (dose["n_subjects"] == 12).all()
    assert default_truth["eeg"]["alpha_suppression_increases_with_dose"]
