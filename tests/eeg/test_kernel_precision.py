"""Kernels whose fast path is not bit-identical to the plain formulation agree with it within the tolerance
they state (and store with their outputs), measured on realistic EEG-like signals.

References, written the plain way: ``|scipy.signal.hilbert(x)|`` (after ``scipy.signal.detrend`` when the
measure detrends) for the Schartner envelope."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import detrend as scipy_detrend
from scipy.signal import hilbert

from pipelines.eeg import kernels as K
from pipelines.eeg.kernels import lempel_ziv as LZ
from pipelines.eeg.live import synthetic_eeg


def _eeg_uv(n_channels: int, seconds: float, seed: int) -> np.ndarray:
    """Pink-ish noise plus 10 Hz alpha in microvolts with a DC offset and a drift (as unfiltered windows have)."""
    x, _ = synthetic_eeg(n_channels=n_channels, sfreq=500.0, seconds=seconds, seed=seed)
    t = np.arange(x.shape[1]) / 500.0
    return x * 1e6 + 7.0 + 0.2 * t


def _scipy_envelope(rows: np.ndarray, detrend: bool) -> np.ndarray:
    if detrend:
        rows = scipy_detrend(rows - rows.mean(axis=-1, keepdims=True), axis=-1)
    return np.abs(hilbert(rows, axis=-1))


@pytest.mark.parametrize("detrend", [False, True])
@pytest.mark.parametrize("n", [1000, 999, 30000])
def test_schartner_envelope_and_bits_within_the_stated_tolerance_of_scipy_hilbert(n, detrend):
    x = _eeg_uv(6, 60.0, seed=n)
    rows = K.sliding_windows(x, n, n).reshape(-1, n)
    env = LZ.schartner_envelope(rows, detrend)
    ref = _scipy_envelope(rows, detrend)
    mean = ref.mean(axis=-1, keepdims=True)
    err = np.abs(env - ref) / mean
    assert err.max() <= LZ.HILBERT_ENVELOPE_RTOL, err.max()
    assert err.max() > 0  # a different formulation (else this test checks nothing)
    bits = K.schartner_bits(rows, detrend)
    ref_bits = ref > mean
    # a bit may differ only where scipy's envelope is within the tolerance of its mean
    near = np.abs(ref - mean) / mean <= 2 * LZ.HILBERT_ENVELOPE_RTOL
    assert not np.any((bits != ref_bits) & ~near)
    assert (bits != ref_bits).sum() <= near.sum()
    # the shared transform of both detrend settings gives the same bits as each on its own
    both = LZ._schartner_bits_multi(rows, [True, False])
    np.testing.assert_array_equal(both[detrend], bits)


def test_schartner_bits_of_non_finite_rows_are_zero_and_other_rows_unchanged():
    rows = _eeg_uv(1, 20.0, seed=5).reshape(10, 1000)
    bad = rows.copy()
    bad[3, 17] = np.nan
    bad[6, 0] = np.inf
    got = K.schartner_bits(bad, True)
    assert not got[3].any() and not got[6].any()
    keep = [r for r in range(10) if r not in (3, 6)]
    np.testing.assert_array_equal(got[keep], K.schartner_bits(rows, True)[keep])


def test_the_stated_envelope_tolerance_is_stored_with_every_schartner_measure():
    stated = f"within {LZ.HILBERT_ENVELOPE_RTOL:.0e}"
    for m in ("lzs_schartner", "lzc_schartner_st", "lzs_schartner_lzw", "lzc_schartner_lzw"):
        assert stated in K.MEASURE_INFO[m], m
        assert "scipy.signal.hilbert" in K.MEASURE_INFO[m]
