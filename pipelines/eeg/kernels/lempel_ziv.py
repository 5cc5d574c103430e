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
    # float32 rows (the phase surrogates) are split at their median as they are; anything else as float64
    rows = np.ascontiguousarray(rows, dtype=np.float32 if rows.dtype == np.float32 else np.float64)
    counts = _lzc_median_counts(rows, states).astype(np.float64)
    if normalize:
        n = rows.shape[-1]
        counts = counts / (n / math.log(n, 2))
    counts[states == _ROW_NONFINITE] = np.nan
    return counts


def schartner_bits(rows: np.ndarray, detrend: bool = False) -> np.ndarray:
    """Schartner et al. (2017) binarisation: ``|hilbert(x)| > mean(|hilbert(x)|)`` along the last axis.

    Returns uint8 0/1 of the same shape. The analytic signal is taken on each row (each window on its
    own), as ``scipy.signal.hilbert``. ``detrend=True`` first removes each row's least-squares line
    (= ``scipy.signal.detrend(type='linear')``, which also removes the mean), as the published code does
    (``detrend(x - mean(x))``); without it a DC offset of the window changes the envelope and so the bits.
    Non-finite rows stay non-finite (their bits are 0).

    Precision: the envelope is ``sqrt(x^2 + H(x)^2)`` with the Hilbert transform ``H`` from one real FFT pair
    (:func:`_analytic_envelope_bits`), not scipy's complex inverse FFT; it equals ``|scipy.signal.hilbert(x)|``
    to ``HILBERT_ENVELOPE_RTOL`` of the row's mean envelope, so a bit can differ from scipy's only where
    the envelope is that close to its mean (none of the 57.6M bits of the benchmark recording does).
    """
    return _schartner_bits_multi(rows, [detrend])[bool(detrend)]


#: Largest difference allowed between the envelope of :func:`schartner_bits` and ``|scipy.signal.hilbert|``,
#: relative to the row's mean envelope (rounding of two FFT formulations; measured <= 1e-14 on EEG).
HILBERT_ENVELOPE_RTOL = 1e-12


def _schartner_bits_multi(rows: np.ndarray, flags) -> dict:
    """:func:`schartner_bits` for each detrend flag in ``flags`` with one Hilbert transform: it is linear,
    so the Hilbert transform of the detrended rows is ``H(x) - slope * H(t - (n-1)/2)`` (``H`` of a
    constant is 0), with ``H(t)`` computed once per length."""
    flags = sorted({bool(f) for f in flags})
    if not flags:
        return {}
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    shape = rows.shape
    n = shape[-1]
    flat = rows.reshape(-1, n)
    hil = _hilbert_transform(flat)
    ramp_h = _hilbert_of_ramp(n) if True in flags else np.empty(0)
    out = {}
    for d in flags:
        bits = np.empty(flat.shape, np.uint8)
        _analytic_envelope_bits(flat, hil, d, ramp_h, bits)
        out[d] = bits.reshape(shape)
    return out


def _hilbert_transform(rows: np.ndarray) -> np.ndarray:
    """Hilbert transform of each row (the imaginary part of ``scipy.signal.hilbert``): ``irfft(-i sign(f) rfft(x))``
    with the DC (and, for even n, Nyquist) bin set to 0, as ``scipy.signal.hilbert``'s one-sided weights
    make it. One real forward and one real inverse FFT (pocketfft: the same operations on every CPU)."""
    n = rows.shape[-1]
    with np.errstate(invalid="ignore"):  # a non-finite row stays non-finite (its measures are NaN)
        spec = np.fft.rfft(rows, axis=-1)
        _times_minus_i(spec, n % 2 == 0)
        return np.fft.irfft(spec, n, axis=-1)


@njit(cache=True, nogil=True)
def _times_minus_i(spec, n_even):
    """``spec *= -1j`` in place (exact: a swap and a sign), DC and, for even n, the Nyquist bin set to 0."""
    nr, nf = spec.shape
    for r in range(nr):
        spec[r, 0] = 0.0
        for f in range(1, nf):
            z = spec[r, f]
            spec[r, f] = complex(z.imag, -z.real)
        if n_even and nf > 1:
            spec[r, nf - 1] = 0.0


@njit(cache=True, nogil=True)
def _envelope_row(x, h, detrend, ramp_h, amp):
    """Envelope ``sqrt(re^2 + im^2)`` of one row's analytic signal ``re + i im`` into ``amp``; returns its mean.
    ``re = x``, ``im = H(x)``, or with ``detrend`` ``re = x - mean - slope t``, ``im = H(x) - slope H(t)``
    (``t = i - (n-1)/2``, least-squares slope). Sums run in index order (no reassociation): the same values
    on every CPU."""
    n = x.size
    half = (n - 1) / 2.0
    total = 0.0
    if detrend:
        denom = 0.0
        m = 0.0
        for i in range(n):
            denom += (i - half) * (i - half)
            m += x[i]
        m /= n
        sxy = 0.0
        for i in range(n):
            sxy += (x[i] - m) * (i - half)
        b = sxy / denom if denom > 0 else 0.0
        for i in range(n):
            re = (x[i] - m) - b * (i - half)
            im = h[i] - b * ramp_h[i]
            amp[i] = np.sqrt(re * re + im * im)
            total += amp[i]
    else:
        for i in range(n):
            amp[i] = np.sqrt(x[i] * x[i] + h[i] * h[i])
            total += amp[i]
    return total / n


@njit(cache=True, nogil=True)
def _analytic_envelope_bits(rows, hil, detrend, ramp_h, out):
    """``out[r] = envelope > mean(envelope)`` per row (:func:`_envelope_row`)."""
    nr, n = rows.shape
    amp = np.empty(n)
    for r in range(nr):
        mean = _envelope_row(rows[r], hil[r], detrend, ramp_h, amp)
        for i in range(n):
            out[r, i] = amp[i] > mean


@njit(cache=True, nogil=True)
def _analytic_envelopes(rows, hil, detrend, ramp_h):
    out = np.empty(rows.shape)
    for r in range(rows.shape[0]):
        _envelope_row(rows[r], hil[r], detrend, ramp_h, out[r])
    return out


def schartner_envelope(rows: np.ndarray, detrend: bool = False) -> np.ndarray:
    """The envelope :func:`schartner_bits` thresholds at its row mean, (n_rows, n) float64 (for checks)."""
    rows = np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float64)
    n = rows.shape[-1]
    flat = rows.reshape(-1, n)
    ramp_h = _hilbert_of_ramp(n) if detrend else np.empty(0)
    return _analytic_envelopes(flat, _hilbert_transform(flat), bool(detrend), ramp_h).reshape(rows.shape)


@functools.lru_cache(maxsize=8)
def _hilbert_of_ramp(n: int) -> np.ndarray:
    out = _hilbert_transform((np.arange(n, dtype=np.float64) - (n - 1) / 2.0)[None, :])[0]
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
