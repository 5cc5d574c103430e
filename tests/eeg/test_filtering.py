"""The one-pass band-pass + notch equals MNE's two passes (raw.filter then raw.notch_filter)."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from pipelines.eeg import filtering

mne.set_log_level("error")


def _raw(n_ch: int, n_times: int, sfreq: float, seed: int) -> mne.io.RawArray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    # drift + alpha + line noise + white noise, and a DC offset per channel (the edges see it)
    data = (
        rng.standard_normal((n_ch, n_times))
        + 3 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_ch, 1)))
        + 2 * np.sin(2 * np.pi * 50 * t)
        + np.cumsum(rng.standard_normal((n_ch, n_times)), axis=1) * 0.05
        + rng.uniform(-20, 20, (n_ch, 1))
    ) * 1e-6
    return mne.io.RawArray(data, mne.create_info(n_ch, sfreq, "eeg"))


@pytest.mark.parametrize(
    ("sfreq", "n_times", "band", "notch"),
    [
        (500.0, 60_001, (1.0, 45.0), [50.0]),  # the default design, odd length
        (250.0, 30_000, (0.5, 40.0), [50.0]),
        (1000.0, 40_000, (1.0, 100.0), [60.0, 120.0]),  # two harmonics
        (500.0, 20_000, (1.0, 45.0), []),  # band-pass only
        (128.0, 6_000, (1.0, 30.0), []),  # low-rate single-channel-like recordings
    ],
)
def test_one_pass_equals_mne_band_pass_then_notch_everywhere_including_the_edges(sfreq, n_times, band, notch):
    reference = _raw(3, n_times, sfreq, seed=int(sfreq))
    ours = reference.copy()
    reference.filter(*band)
    if notch:
        reference.notch_filter(notch)
    assert filtering.band_pass_and_notch(ours, band[0], band[1], notch) is None  # the one-pass path was taken
    sd = reference.get_data().std(axis=1, keepdims=True)
    err = np.abs(ours.get_data() - reference.get_data()) / sd
    assert err.max() <= filtering.SEQUENTIAL_RTOL
    assert ours.info["highpass"] == reference.info["highpass"]
    assert ours.info["lowpass"] == reference.info["lowpass"]


def test_the_kernel_is_mne_band_pass_times_mne_notch_in_frequency():
    kernel = filtering.band_pass_and_notch_kernel(500.0, 1.0, 45.0, [50.0])
    band = mne.filter.create_filter(None, 500.0, 1.0, 45.0)
    notch = mne.filter.create_filter(None, 500.0, [50.625], [49.375], l_trans_bandwidth=0.5, h_trans_bandwidth=0.5)
    assert kernel.size == band.size + notch.size - 1 and np.array_equal(kernel, kernel[::-1])
    n_fft = 1 << 16
    freqs = np.fft.rfftfreq(n_fft, 1 / 500.0)
    response = np.abs(np.fft.rfft(kernel, n_fft))
    np.testing.assert_allclose(
        response, np.abs(np.fft.rfft(band, n_fft)) * np.abs(np.fft.rfft(notch, n_fft)), atol=1e-12
    )
    at = lambda f: int(np.argmin(np.abs(freqs - f)))
    assert response[at(50.0)] < 1e-2 * response[at(40.0)]  # the line is removed (< -40 dB) ...
    assert response[at(10.0)] == pytest.approx(1.0, abs=1e-2)  # ... alpha is kept ...
    assert response[at(0.0)] < 1e-3  # ... and so is no DC


def test_a_recording_split_by_edge_annotations_is_left_to_mne_and_says_why():
    raw = _raw(2, 20_000, 500.0, seed=1)
    raw.set_annotations(mne.Annotations([10.0], [0.0], ["edge"]))
    reference = raw.copy().filter(1.0, 45.0).notch_filter([50.0])
    reason = filtering.band_pass_and_notch(raw, 1.0, 45.0, [50.0])
    assert "edge" in reason
    np.testing.assert_array_equal(raw.get_data(), reference.get_data())


def test_a_recording_shorter_than_the_kernel_is_left_to_mne():
    raw = _raw(1, 3_000, 500.0, seed=2)  # 6 s; the combined kernel is 4951 taps (9.9 s)
    reference = raw.copy().filter(1.0, 45.0).notch_filter([50.0])
    assert "shorter than the filter" in filtering.band_pass_and_notch(raw, 1.0, 45.0, [50.0])
    np.testing.assert_array_equal(raw.get_data(), reference.get_data())


def test_apply_refuses_an_asymmetric_kernel():
    with pytest.raises(ValueError, match="symmetric"):
        filtering.apply_zero_phase_fir(np.zeros((1, 100)), np.array([1.0, 2.0, 3.0]))


def test_channel_sd_one_channel_at_a_time_equals_the_whole_array_formula():
    from pipelines.eeg.preprocessing import channel_sd_uv

    rng = np.random.default_rng(3)
    data = rng.standard_normal((5, 10_250)) * rng.uniform(1e-6, 5e-5, (5, 1))
    n = 1000  # 2-s chunks at 500 Hz; the last 250 samples are not a whole chunk
    whole = np.median(data[:, : 10 * n].reshape(5, 10, n).std(axis=2), axis=1) * 1e6
    np.testing.assert_array_equal(channel_sd_uv(data, 500.0), whole)
    np.testing.assert_array_equal(channel_sd_uv(data[:, :700], 500.0), data[:, :700].std(axis=1) * 1e6)


@pytest.mark.parametrize("case", ["all_eeg", "with_bad", "with_misc"])
def test_average_reference_equals_mne_bit_for_bit(case):
    from pipelines.eeg.preprocessing import average_reference

    raw = _raw(7, 5_000, 250.0, seed=5)
    if case == "with_bad":
        raw.info["bads"] = ["1"]  # MNE leaves bad channels out of the mean: its own path is used
    if case == "with_misc":
        raw.set_channel_types({"6": "misc"})
    reference = raw.copy().set_eeg_reference("average", projection=False)
    average_reference(raw)
    np.testing.assert_array_equal(raw.get_data(), reference.get_data())
    assert raw.info["custom_ref_applied"] == reference.info["custom_ref_applied"]
