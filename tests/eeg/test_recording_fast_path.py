"""The faster per-recording path (issue 15) gives the values of the straightforward one it replaced.

The references are kept here, written the plain way: ``scipy.signal.welch`` for every Welch PSD, a copy of
the recording before preprocessing, ``get_data() * 1e6``, and a finiteness check on a copy of the data.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from pipelines.core.errors import InputError
from pipelines.eeg import features, io, kernels, preprocessing
from pipelines.study.dataset import Study

WELCH_RTOL = 1e-12  # the documented tolerance of kernels.welch_psd against scipy.signal.welch


def _scipy_welch(x, sfreq, nperseg):
    return welch(x, fs=sfreq, nperseg=nperseg, axis=-1)


@pytest.mark.parametrize(
    ("shape", "nperseg"),
    [((3, 4, 1000), 500), ((2, 999), 101), ((5, 1001), 256), ((2, 3, 64), 64), ((4, 50), 7), ((1, 9), 2)],
)
def test_welch_psd_equals_scipy_welch(shape, nperseg):
    x = np.random.default_rng(sum(shape) + nperseg).standard_normal(shape) * 40 + 3.0  # an offset: demeaning counts
    freqs, psd = kernels.welch_psd(x, 500.0, nperseg)
    ref_freqs, ref = _scipy_welch(x, 500.0, nperseg)
    np.testing.assert_array_equal(freqs, ref_freqs)
    assert psd.shape == ref.shape
    np.testing.assert_allclose(psd, ref, rtol=WELCH_RTOL, atol=0)


def test_welch_psd_longer_segment_than_signal_is_clipped_like_scipy():
    x = np.random.default_rng(1).standard_normal((2, 40))
    with pytest.warns(UserWarning):
        ref_freqs, ref = _scipy_welch(x, 250.0, 64)
    freqs, psd = kernels.welch_psd(x, 250.0, 64)
    np.testing.assert_array_equal(freqs, ref_freqs)
    np.testing.assert_allclose(psd, ref, rtol=WELCH_RTOL)


def test_welch_psd_nan_row_is_nan_and_rows_do_not_depend_on_their_batch():
    x = np.random.default_rng(2).standard_normal((700, 1000))
    x[3, 10] = np.nan
    _, psd = kernels.welch_psd(x, 500.0, 500)
    assert np.isnan(psd[3]).all() and np.isfinite(np.delete(psd, 3, axis=0)).all()
    # Rows are computed in blocks: a row alone (as a thread working on one channel sees it) is the same, bit for bit.
    for r in (0, 4, 699):
        np.testing.assert_array_equal(kernels.welch_psd(x[r], 500.0, 500)[1], psd[r])


def _old_count_nonfinite(raw):
    data = raw.get_data(picks="eeg") if "eeg" in raw else raw.get_data()
    return None if data.size == 0 else int((~np.isfinite(data)).sum())


def test_nonfinite_count_reads_the_data_in_place_and_counts_exactly():
    import mne

    rng = np.random.default_rng(3)
    raw = mne.io.RawArray(rng.standard_normal((4, 1000)) * 1e-5, mne.create_info(4, 250.0, "eeg"), verbose="error")
    assert io._count_nonfinite(raw) == _old_count_nonfinite(raw) == 0
    raw._data[1, [5, 9]] = np.nan
    raw._data[3, 0] = np.inf
    raw._data[2, 7] = -np.inf
    assert io._count_nonfinite(raw) == _old_count_nonfinite(raw) == 4


def test_preprocess_in_place_equals_preprocess_on_a_copy(tiny_manifest):
    study = Study.load(tiny_manifest)
    rec = study.recordings[0]
    cfg = study.manifest.eeg.preprocessing
    raw = io.read_raw(rec, study.manifest.bids_path, study.manifest.eeg.reader)
    before = raw.get_data()
    ref, ref_qc = preprocessing.preprocess(raw, cfg)
    np.testing.assert_array_equal(raw.get_data(), before)  # copy=True (the default) leaves the input alone
    fast, fast_qc = preprocessing.preprocess(raw, cfg, copy=False)
    assert fast is raw and fast.ch_names == ref.ch_names and fast_qc == ref_qc
    np.testing.assert_array_equal(fast.get_data(), ref.get_data())


def test_preprocess_keeps_only_eeg_channels_and_skips_the_copying_pick_when_all_are_eeg(tiny_manifest):
    import mne

    study = Study.load(tiny_manifest)
    cfg = study.manifest.eeg.preprocessing
    raw = io.read_raw(study.recordings[0], study.manifest.bids_path, study.manifest.eeg.reader)
    ref = raw.copy().pick("eeg", exclude=[])  # the reference: always pick
    ref_clean, ref_qc = preprocessing.preprocess(ref, cfg)
    data_before = raw._data
    clean, qc = preprocessing.preprocess(raw, cfg, copy=False)
    assert clean._data is data_before or qc.dropped  # every channel EEG: filtered in the array read, no copy
    assert clean.ch_names == ref_clean.ch_names and qc == ref_qc
    np.testing.assert_array_equal(clean.get_data(), ref_clean.get_data())
    # a non-EEG channel is still dropped
    mixed = io.read_raw(study.recordings[0], study.manifest.bids_path, study.manifest.eeg.reader)
    extra = mne.io.RawArray(np.zeros((1, mixed.n_times)), mne.create_info(["EOG1"], mixed.info["sfreq"], "eog"))
    mixed.add_channels([extra], force_update_info=True)
    out, out_qc = preprocessing.preprocess(mixed, cfg)
    assert "EOG1" not in out.ch_names and out.ch_names == ref_clean.ch_names and out_qc == ref_qc
    np.testing.assert_array_equal(out.get_data(), ref_clean.get_data())


def test_read_recording_data_are_get_data_in_microvolts(tiny_manifest):
    """The µV array the features are computed from is ``get_data() * 1e6`` of the preprocessed recording."""
    study = Study.load(tiny_manifest)
    rec = study.recordings[0]
    got = features._read_recording(study.manifest, rec)["data"]
    raw = io.read_raw(rec, study.manifest.bids_path, study.manifest.eeg.reader)
    clean, _ = preprocessing.preprocess(raw.copy().pick("eeg", exclude=[]), study.manifest.eeg.preprocessing)
    want = clean.get_data() * 1e6
    assert got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def test_recording_features_equal_the_straightforward_path(tiny_manifest, monkeypatch):
    """The whole recording through the fast path, then through the plain one (scipy Welch everywhere, the
    recording copied before preprocessing, a copying finiteness check): the same Dataset, spectra within the
    Welch tolerance and everything else bit for bit."""
    study = Study.load(tiny_manifest)
    rec = study.recordings[0]
    fast = features.recording_features(study.manifest, rec)

    real_preprocess = preprocessing.preprocess

    def copying_preprocess(raw, cfg, file=None, copy=True):
        return real_preprocess(raw, cfg, file=file, copy=True)

    welch_calls = []

    def counted_scipy_welch(x, sfreq, nperseg):
        welch_calls.append(np.shape(x))
        return _scipy_welch(x, sfreq, nperseg)

    with monkeypatch.context() as m:
        # Patched where it is defined: features' band powers and the kernels' spectral entropy both call it there.
        m.setattr(kernels.spectral, "welch_psd", counted_scipy_welch)
        m.setattr(preprocessing, "preprocess", copying_preprocess)
        m.setattr(io, "_count_nonfinite", _old_count_nonfinite)
        slow = features.recording_features(study.manifest, rec)
    n_channels, n_windows = fast["channel_measures"].shape[1:]
    # One Welch pass over every window of every channel serves the band powers and spectral entropy alike.
    assert welch_calls == [(n_channels, n_windows, welch_calls[0][2])]

    assert fast.attrs == slow.attrs
    assert list(fast.data_vars) == list(slow.data_vars)
    for name in fast.coords:
        np.testing.assert_array_equal(fast[name].values, slow[name].values)
    spectral = [
        m for m in fast["measure"].values if m.endswith(("_power_uv2", "_power_rel")) or m == "spectral_entropy_welch"
    ]
    other = [m for m in fast["measure"].values if m not in spectral]
    cm_fast, cm_slow = fast["channel_measures"], slow["channel_measures"]
    np.testing.assert_array_equal(cm_fast.sel(measure=other).values, cm_slow.sel(measure=other).values)
    np.testing.assert_allclose(cm_fast.sel(measure=spectral).values, cm_slow.sel(measure=spectral).values, rtol=1e-10)
    # Summary measures built from spectra (alpha dB, peak frequency) inherit the Welch tolerance; specparam's
    # least-squares fit of the aperiodic exponent stops at its own tolerance, so the ~1e-14 spectral differences
    # move its stopping point (1.5e-9 relative here, <= 7.8e-8 on the default study): documented tolerance 1e-6.
    names = list(fast["summary_measure"].values)
    ap = names.index("aperiodic_exponent")
    sm_fast, sm_slow = fast["summary_measures"].values, slow["summary_measures"].values
    np.testing.assert_allclose(np.delete(sm_fast, ap, 0), np.delete(sm_slow, ap, 0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sm_fast[ap], sm_slow[ap], rtol=1e-6)
    np.testing.assert_array_equal(fast["window_rejected"].values, slow["window_rejected"].values)
    np.testing.assert_array_equal(fast["whole_recording_lz"].values, slow["whole_recording_lz"].values)
    assert float(fast["whole_recording_lzc_st"]) == float(slow["whole_recording_lzc_st"])


def test_a_recording_with_nan_samples_is_still_refused_by_name(tiny_copy):
    import mne

    study = Study.load(tiny_copy)
    rec = study.recordings[0]
    header = rec.path.read_text()
    assert "IEEE_FLOAT_32" in header  # the generated BrainVision data are float32: write a NaN into one sample
    data_file = rec.path.with_suffix(".eeg")
    raw = mne.io.read_raw_brainvision(rec.path, verbose="error")
    n_ch = len(raw.ch_names)
    values = np.fromfile(data_file, dtype="<f4")
    values[n_ch * 100 + 1] = np.nan
    values.tofile(data_file)
    with pytest.raises(InputError, match="1 non-finite samples") as err:
        io.read_raw(rec, study.manifest.bids_path, study.manifest.eeg.reader)
    assert str(rec.path) in str(err.value)


def test_spectral_entropy_from_the_band_power_spectra_equals_the_kernel_bit_for_bit(tiny_manifest, monkeypatch):
    """Spectral entropy reuses the band powers' Welch of the same windows; with the reuse switched off the
    kernel computes its own Welch per channel: identical values, rejected and constant windows NaN in both."""
    study = Study.load(tiny_manifest)
    rec = study.recordings[0]
    reused = features.recording_features(study.manifest, rec)
    with monkeypatch.context() as m:
        m.setattr(features, "_spectral_entropy_params", lambda *args: None)
        own = features.recording_features(study.manifest, rec)
    a = reused["channel_measures"].sel(measure="spectral_entropy_welch").values
    b = own["channel_measures"].sel(measure="spectral_entropy_welch").values
    assert np.isfinite(a).mean() > 0.5
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reused["channel_measures"].values, own["channel_measures"].values)


def test_spectral_entropy_reuse_keeps_rejected_constant_and_nan_windows_nan():
    from pipelines.study.manifest import FeatureConfig

    fc = FeatureConfig(measures=["spectral_entropy_welch", "perm_entropy"])
    sfreq, win = 128.0, 256
    windows = np.random.default_rng(5).standard_normal((3, 6, win))
    windows[0, 1] = 2.5  # constant window
    windows[1, 2, 10] = np.nan  # a gap
    rejected = np.zeros(6, bool)
    rejected[4] = True
    params = features._measure_params(fc, (1.0, 45.0))

    def run(reuse: bool):
        x = windows.copy()
        spectra = features._window_spectra(kernels, x, sfreq, win, fc, rejected, (1.0, 45.0))
        return features._windowed_kernels(kernels, x, rejected, sfreq, fc, params, list(fc.measures),
                                          spectra if reuse else None)  # fmt: skip

    reused, own = run(True), run(False)
    assert list(reused) == list(own) == ["spectral_entropy_welch", "perm_entropy"]
    np.testing.assert_array_equal(reused["spectral_entropy_welch"], own["spectral_entropy_welch"])
    nan = np.isnan(reused["spectral_entropy_welch"])
    assert nan[0, 1] and nan[1, 2] and nan[:, 4].all() and nan.sum() == 5
