"""Lempel-Ziv measures on rows: binarisation (median, Schartner's Hilbert envelope), single-channel and
spatio-temporal (windowed and whole-recording) counts normalised by shuffles, and the public counters."""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from pipelines.core.measures import SPATIOTEMPORAL_MEASURES
from pipelines.eeg.kernels.common import _ROW_NONFINITE, _SCHARTNER
from pipelines.eeg.kernels.lz_counts import (
    _lz76_count_alloc,
    _lzc_median_counts,
    _lzc_st_windows,
    _lzs_rows,
    _lzw_count_alloc,
    _shuffle_keyed,
    _st_sequence,
)


def _lzc_median_rows(rows, states, normalize):
    # counts of rows > np.median(rows) (exact median selection and the LZ76 count fused per row)
    counts = _lzc_median_counts(np.ascontiguousarray(rows, dtype=np.float64), states).astype(np.float64)
    if normalize:
        n = rows.shape[-1]
        counts = counts / (n / math.log(n, 2))
    counts[states == _ROW_NONFINITE] = np.nan
    return counts


def schartner_bits(rows: np.ndarray, detrend: bool = False) -> np.ndarray:
    """Schartner et al. (2017) binarisation: ``|hilbert(x)| > mean(|hilbert(x)|)`` along the last axis.

    Returns uint8 0/1 of the same shape. The Hilbert transform is taken on each row (each
    window on its own), as ``scipy.signal.hilbert``. ``detrend=True`` first removes each row's
    least-squares line (= ``scipy.signal.detrend(type='linear')``, which also removes the
    mean), as the published code does (``detrend(x - mean(x))``); without it a DC offset of
    the window changes the envelope and so the bits. Non-finite rows stay non-finite.
    """
    from scipy.signal import hilbert

    rows = np.asarray(rows, dtype=np.float64)
    if detrend:
        rows = linear_detrend(rows)
    amp = np.abs(hilbert(rows, axis=-1))
    return np.ascontiguousarray(amp > amp.mean(axis=-1, keepdims=True), dtype=np.uint8)


def _schartner_bits_multi(rows: np.ndarray, flags) -> dict:
    """:func:`schartner_bits` for each detrend flag in ``flags`` with one Hilbert transform: the
    transform is linear, so the analytic signal of the detrended rows is ``H(x) - mean - slope *
    H(t - (n-1)/2)`` (``H`` of a constant is the constant), with ``H(t)`` computed once per length.
    Equal to transforming the detrended rows up to rounding (~1e-15 relative)."""
    from scipy.signal import hilbert

    flags = sorted({bool(f) for f in flags})
    if not flags:
        return {}
    rows = np.asarray(rows, dtype=np.float64)
    analytic = hilbert(rows, axis=-1)
    out = {}
    for d in flags:
        if d:
            n = rows.shape[-1]
            t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
            denom = float(t @ t)
            mean = rows.mean(axis=-1, keepdims=True)
            slope = ((rows - mean) @ t)[..., None] / denom if denom > 0 else np.zeros_like(mean)
            amp = np.abs(
                _detrended_analytic(
                    analytic.reshape(-1, n), mean.reshape(-1), slope.reshape(-1), _hilbert_of_ramp(n)
                ).reshape(rows.shape)
            )
        else:
            amp = np.abs(analytic)
        out[d] = np.ascontiguousarray(amp > amp.mean(axis=-1, keepdims=True), dtype=np.uint8)
    return out


@njit(cache=True, nogil=True)
def _detrended_analytic(analytic, mean, slope, ramp_h):
    """``analytic - mean - slope * ramp_h`` per row in one pass, the same IEEE operations as the NumPy
    expression (complex minus real, then minus real times complex), without two temporary arrays. The
    modulus is left to ``np.abs`` (NumPy's complex abs is not ``hypot``: it differs in the last bit)."""
    nr, n = analytic.shape
    out = np.empty((nr, n), np.complex128)
    for r in range(nr):
        m = mean[r]
        b = slope[r]
        for i in range(n):
            re = (analytic[r, i].real - m) - (b * ramp_h[i].real - 0.0 * ramp_h[i].imag)
            im = (analytic[r, i].imag - 0.0) - (b * ramp_h[i].imag + 0.0 * ramp_h[i].real)
            out[r, i] = complex(re, im)
    return out


@functools.lru_cache(maxsize=8)
def _hilbert_of_ramp(n: int) -> np.ndarray:
    from scipy.signal import hilbert

    out = hilbert(np.arange(n, dtype=np.float64) - (n - 1) / 2.0)
    out.setflags(write=False)
    return out


def linear_detrend(rows: np.ndarray) -> np.ndarray:
    """Each row minus its least-squares line (closed form; a NaN row stays NaN instead of raising)."""
    rows = np.asarray(rows, dtype=np.float64)
    n = rows.shape[-1]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    centred = rows - rows.mean(axis=-1, keepdims=True)
    denom = float(t @ t)
    slope = (centred @ t) / denom if denom > 0 else np.zeros(rows.shape[:-1])
    return centred - slope[..., None] * t


def _schartner_rows(measure, bits, states, p, channel):
    kind, lzw = _SCHARTNER[measure]
    return _lzs_rows(bits, states, int(p["seed"]), int(channel), kind, int(p["n_shuffles"]), lzw)


def lz76_count(bits) -> int:
    """LZ76 phrase count of a 0/1 sequence, O(n) (suffix automaton; see ``_lz76_count_sam``).

    Same count as ``antropy.lziv_complexity(bits)`` (Kaspar & Schuster's O(n^2) scan) for
    every binary input; 300,000 symbols take a few milliseconds. Faster exact methods are tried
    first, each with bounded work (``_lz76_auto``): the runs of a sequence of long runs (binarised
    EEG), else a prefix index (shuffled or high-entropy input).
    """
    return int(_lz76_count_alloc(_as_bits(bits)))


def lzw_dict_size(bits) -> int:
    """Size of the LZW-style dictionary Schartner et al. (2017) count (their ``cpr``), O(n).

    Scan the sequence growing the current word while it is in the dictionary; when the word
    plus the next symbol is not, add it and restart the word at that symbol. The dictionary
    starts empty; the result is the number of words added. Equals the published pure-Python
    ``cpr`` on the string of the bits (tested against an independent implementation).
    Empty input: 0.
    """
    return int(_lzw_count_alloc(_as_bits(bits)))


def _as_bits(bits) -> np.ndarray:
    b = np.asarray(bits)
    if b.ndim != 1:
        raise ValueError("bits must be 1-D")
    if b.size and (b.min() < 0 or b.max() > 1):
        raise ValueError("bits must contain only 0 and 1")
    return np.ascontiguousarray(b, dtype=np.uint8)


def shuffle_bits(
    bits,
    seed: int = 0,
    channel: int = 0,
    window: int = 0,
    spatiotemporal: bool = False,
    shuffle: int = 0,
    measure: str | None = None,
):
    """Shuffle number ``shuffle`` of ``bits`` used to normalise a Schartner measure for this seed,
    channel and window: ``measure`` (any of the four Schartner measures) or, without it,
    :func:`lzs_schartner` / with ``spatiotemporal=True`` :func:`lzc_schartner_st`."""
    out = np.array(bits, dtype=np.uint8).ravel()
    if measure is None:
        measure = "lzc_schartner_st" if spatiotemporal else "lzs_schartner"
    kind = _SCHARTNER[measure][0]
    if measure in SPATIOTEMPORAL_MEASURES:
        channel = 0
    _shuffle_keyed(out, int(seed), kind, int(channel), int(window), int(shuffle))
    return out


def _lzc_st_parallel(bits, ok, measure, p, n_threads):
    kind, lzw = _SCHARTNER[measure]
    seed, n_shuffles = int(p["seed"]), int(p["n_shuffles"])
    n_win = bits.shape[1]
    if n_threads > 1 and n_win == 1 and ok[0]:
        # one long sequence (whole recording): count it and its shuffled copies concurrently
        seq = np.empty(bits.shape[0] * bits.shape[2], np.uint8)
        _st_sequence(bits, 0, seq)
        copies = []
        for k in range(n_shuffles):
            c = seq.copy()
            _shuffle_keyed(c, seed, kind, 0, 0, k)
            copies.append(c)
        count = _lzw_count_alloc if lzw else _lz76_count_alloc
        with ThreadPoolExecutor(min(n_threads, n_shuffles + 1)) as pool:
            counts = list(pool.map(count, [seq] + copies))
        return np.array([counts[0] / (sum(float(c) for c in counts[1:]) / n_shuffles)])
    if n_threads <= 1 or n_win < 2:
        return _lzc_st_windows(bits, ok, seed, 0, n_win, kind, n_shuffles, lzw)
    edges = np.linspace(0, n_win, min(n_threads, n_win) + 1).astype(int)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = pool.map(
            lambda ab: _lzc_st_windows(bits, ok, seed, ab[0], ab[1], kind, n_shuffles, lzw),
            zip(edges[:-1], edges[1:]),
        )
        return np.concatenate(list(parts))
