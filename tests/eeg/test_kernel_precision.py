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


def _float32_phase_surrogates(rows, n, seed, channel):
    """The float32 surrogates the fused lzc_median path makes (its kernels, one block of all rows)."""
    from pipelines.eeg.kernels import surrogates as S

    n_t = rows.shape[1]
    spec = np.fft.rfft(rows, axis=-1).astype(np.complex64)
    phased = np.empty((rows.shape[0], n, spec.shape[1]), np.complex64)
    S._randomise_phases_into(spec, phased, n_t % 2 == 0, seed, S._KIND_PHASES, channel, 0)
    return np.fft.irfft(phased, n_t, axis=-1)


@pytest.mark.parametrize("n_t", [1000, 999])
def test_float32_phase_surrogates_and_their_lzc_median_within_the_stated_tolerance_of_float64(n_t):
    from pipelines.eeg.kernels import surrogates as S
    from pipelines.eeg.kernels.common import _row_states
    from pipelines.eeg.kernels.lempel_ziv import _lzc_median_rows

    x = _eeg_uv(8, 240.0, seed=n_t)
    n_surr, seed = 10, 4
    counts_differ = counts_total = 0
    for ch in range(x.shape[0]):
        rows = np.ascontiguousarray(K.sliding_windows(x[ch], n_t, n_t))
        ref = S.make_surrogates(rows, n_surr, "phase", seed, ch)  # float64, the definition
        got = _float32_phase_surrogates(rows, n_surr, seed, ch)
        assert got.dtype == np.float32
        err = np.abs(got - ref) / ref.std(axis=-1, keepdims=True)
        assert 0 < err.max() <= S.PHASE_SURROGATE_SAMPLE_RTOL, err.max()
        # the fused path's values: float32 by default, float64 on request (= the measure on make_surrogates)
        v32 = S._phase_surrogate_lzc_median(rows, n_surr, seed, ch, True)
        v64 = S._phase_surrogate_lzc_median(rows, n_surr, seed, ch, True, np.float64)
        flat = ref.reshape(-1, n_t)
        np.testing.assert_array_equal(v64, _lzc_median_rows(flat, _row_states(flat), True).reshape(v64.shape))
        norm = n_t / np.log2(n_t)
        dc = np.rint(v32 * norm) - np.rint(v64 * norm)
        assert np.abs(dc).max() <= S.PHASE_SURROGATE_LZC_COUNT_ATOL
        counts_differ += int(np.count_nonzero(dc))
        counts_total += dc.size
        raw = _lzc_median_rows(rows, _row_states(rows), True)
        r32, r64 = {}, {}
        S._ratio_and_z(r32, "m", raw, v32)
        S._ratio_and_z(r64, "m", raw, v64)
        np.testing.assert_allclose(r32["m_surr_ratio"], r64["m_surr_ratio"], rtol=S.PHASE_SURROGATE_LZC_RATIO_RTOL)
        np.testing.assert_allclose(r32["m_surr_z"], r64["m_surr_z"], rtol=0, atol=S.PHASE_SURROGATE_LZC_Z_ATOL)
    assert counts_differ <= S.PHASE_SURROGATE_LZC_COUNT_FRACTION * counts_total, (counts_differ, counts_total)


def test_the_stated_surrogate_precision_is_stored_with_the_surrogate_measures():
    from pipelines.eeg.kernels import surrogates as S

    info = K.MEASURE_INFO["*_surr_ratio"]
    assert "float32" in info and f"within {S.PHASE_SURROGATE_SAMPLE_RTOL:.0e}".replace("e-0", "e-") in info
    assert f"at most 1 in {round(1 / S.PHASE_SURROGATE_LZC_COUNT_FRACTION)}" in info
    assert (
        f"<= {S.PHASE_SURROGATE_LZC_COUNT_ATOL}" in info
        and f"within {S.PHASE_SURROGATE_LZC_RATIO_RTOL * 100:g} %" in info
    )
    assert f"within {S.PHASE_SURROGATE_LZC_Z_ATOL}" in info
    assert S.PHASE_SURROGATE_LZC_DTYPE == np.float32


def test_float32_phase_surrogates_fall_back_to_float64_where_float32_could_overflow():
    from pipelines.eeg.kernels import surrogates as S

    rows = np.array(K.sliding_windows(_eeg_uv(1, 30.0, seed=2)[0], 1000, 1000))
    rows[3] *= 1e30  # finite in float64, beyond float32
    rows[5, 7] = np.nan
    got = S._phase_surrogate_lzc_median(rows, 4, 1, 0, True)
    want = S._phase_surrogate_lzc_median(rows, 4, 1, 0, True, np.float64)
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got[3]).all() and np.isnan(got[5]).all()
    # every window representable: float32, and each surrogate's state read from its window
    ok = np.delete(rows, 3, axis=0)
    dtype, states = S._surrogate_precision_and_states(ok, np.float32)
    assert dtype == np.float32 and list(np.flatnonzero(states)) == [4]
