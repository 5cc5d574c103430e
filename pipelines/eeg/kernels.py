"""Entropy and complexity kernels for EEG, per channel, on windows or whole signals.

Every measure here has one definition, stated in its docstring, with the reference it
comes from and the library it is tested against (antropy 0.2.3, scipy). The kernels are
numba functions compiled with ``cache=True`` (compiled once, then loaded from
``__pycache__``) and ``nogil=True`` (so a thread pool over channels scales); the thin
numpy wrappers validate input, reshape and apply the rules below.

Shapes
------
Every measure function takes ``x`` of shape ``(n_times,)`` (one signal, returns a
float), ``(n_channels, n_times)`` (whole signals, returns ``(n_channels,)``) or
``(n_channels, n_windows, n_times_per_window)`` (windows, returns
``(n_channels, n_windows)``); the last axis is time. :func:`sliding_windows` turns a
continuous ``(n_channels, n_times)`` recording into windows, and :func:`compute_windowed`
computes a set of measures on them in one call. The spatio-temporal Lempel-Ziv
complexities (:func:`lzc_schartner_st`, :func:`lzc_schartner_lzw`) combine channels, so they
return a float for ``(n_channels, n_times)`` and ``(n_windows,)`` for windows.

Rules shared by every measure (tested in ``tests/eeg/test_kernels.py``)
-------------------------------------------------------------------
* A signal or window holding any NaN or infinite sample gives NaN for that window;
  other windows are unaffected and nothing raises.
* A signal shorter than the measure needs (e.g. fewer than ``(order - 1) * delay + 1``
  samples for permutation entropy) raises ``ValueError`` naming the measure and the
  minimum: the window length is a parameter, so this is a configuration error.
* A constant signal (peak-to-peak 0) gives the value the definition implies where it
  has one, else NaN; each docstring says which (summary: permutation entropy 0, SVD
  entropy 0, ``lzc_median`` the count of a constant sequence; spectral entropy, sample
  entropy, Higuchi, Katz, DFA and the Schartner measures NaN).
* Ties are ordered by position (stable ``argsort``), as antropy >= 0.2.2 does.

Nothing here imports antropy (its import costs 5-9 s per process).
"""

from __future__ import annotations

import difflib
import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.core.measures import MEASURES, PER_CHANNEL_MEASURES, SPATIOTEMPORAL_MEASURES  # the names' one owner

__all__ = [
    "MEASURES",
    "PER_CHANNEL_MEASURES",
    "SPATIOTEMPORAL_MEASURES",
    "DEFAULT_PARAMS",
    "MEASURE_INFO",
    "sliding_windows",
    "window_starts",
    "min_samples",
    "perm_entropy",
    "spectral_entropy_welch",
    "sample_entropy",
    "svd_entropy",
    "higuchi_fd",
    "katz_fd",
    "dfa",
    "dfa_scales_s",
    "lzc_median",
    "lzs_schartner",
    "lzc_schartner_st",
    "lzs_schartner_lzw",
    "lzc_schartner_lzw",
    "lz76_count",
    "lzw_dict_size",
    "shuffle_bits",
    "schartner_bits",
    "compute_windowed",
    "compute_whole",
    "make_surrogates",
    "welch_psd",
    "surrogate_measure_names",
    "is_surrogate_measure",
    "SURROGATE_DEFAULTS",
]


#: Parameters of each measure (``sfreq`` is passed separately). Store them with every value.
DEFAULT_PARAMS: dict[str, dict] = {
    "perm_entropy": {"order": 3, "delay": 1, "normalize": True},
    "spectral_entropy_welch": {"nperseg": None, "normalize": True, "nperseg_s": None, "fmin": None, "fmax": None},
    "sample_entropy": {"order": 2, "r_sd_factor": 0.2, "inclusive": False},
    "svd_entropy": {"order": 3, "delay": 1, "normalize": True},
    "higuchi_fd": {"kmax": 10},
    "katz_fd": {},
    "dfa": {},
    "lzc_median": {"normalize": True},
    "lzs_schartner": {"seed": 0, "n_shuffles": 1, "detrend": False},
    "lzc_schartner_st": {"seed": 0, "n_shuffles": 1, "detrend": False},
    "lzs_schartner_lzw": {"seed": 0, "n_shuffles": 5, "detrend": True},
    "lzc_schartner_lzw": {"seed": 0, "n_shuffles": 5, "detrend": True},
}

# Schartner measures: shuffle-stream kind (see _stream_key) and whether the count is the LZW dictionary.
_SCHARTNER = {
    "lzs_schartner": (1, False),
    "lzc_schartner_st": (2, False),
    "lzs_schartner_lzw": (3, True),
    "lzc_schartner_lzw": (4, True),
}

#: One line per measure: its convention and reference, for provenance attributes.
MEASURE_INFO: dict[str, str] = {
    "perm_entropy": "Bandt & Pompe (2002) permutation entropy, log2, normalised by log2(order!) "
    "if normalize; ties by position; = antropy.perm_entropy",
    "spectral_entropy_welch": "Inouye et al. (1991) Shannon entropy (log2) of the Welch PSD "
    "(scipy.signal.welch, Hann, 50% overlap, constant detrend) restricted to the bins fmin <= f <= fmax "
    "and renormalised there, divided by log2(number of those bins) if normalize; segment nperseg_s "
    "seconds. The workbench's features use the preprocessing pass band (or "
    "eeg.features.spectral_entropy_band_hz) and welch_segment_s, so the value does not depend on the "
    "sampling rate. With no band and nperseg in samples (kernel defaults) it is the 0-Nyquist "
    "antropy.spectral_entropy(method='welch'), which falls as the sampling rate rises (empty bins above "
    "the pass band count in the normaliser)",
    "sample_entropy": "Richman & Moorman (2000) sample entropy, Chebyshev distance, "
    "r = r_sd_factor * std(x, ddof=0), match |d| < r (|d| <= r if inclusive), natural log; "
    "= antropy.sample_entropy (numba path; KDTree path if inclusive)",
    "svd_entropy": "Roberts et al. (1999) SVD entropy of the delay embedding, log2, normalised "
    "by log2(order) if normalize; = antropy.svd_entropy",
    "higuchi_fd": "Higuchi (1988) fractal dimension, k = 1..kmax; = antropy.higuchi_fd",
    "katz_fd": "Katz (1988) index log10(L/a) / log10(d/a) = log10(n - 1) / log10(d/a), L the summed absolute "
    "step, a the mean absolute step, d the largest distance from the first sample; = antropy.katz_fd. Caveat: "
    "despite its name it is NOT a dimension in [1, 2]: it compares the window's largest excursion with its "
    "mean sample-to-sample step (a curve-length/excursion index): white noise gives ~5, a 10 Hz sine ~3.4, "
    "and it depends on the window length in samples, so on the sampling rate (same process: 2.29 / 2.03 / "
    "1.86 at 250 / 500 / 1000 Hz in 2-s windows)",
    "dfa": "SHORT-SCALE detrended fluctuation analysis exponent (Peng et al. 1994; nolds/antropy convention): "
    "profile cumsum(x - mean), linear detrend in non-overlapping boxes of 4, floor(4*1.2^i), ... <= 0.1*n "
    "samples of the window, slope of ln F on ln box size; = antropy.detrended_fluctuation. Caveat: the "
    "scales are those of one window: 2-s windows span 16-168 ms at 250 Hz (8-176 ms at 500 Hz; "
    "dfa_scales_s gives them), where the spectrum's shape (alpha, filters) sets the slope. It is NOT the "
    "long-range temporal correlation exponent of EEG amplitude envelopes (Linkenkaer-Hansen et al. 2001, "
    "seconds to minutes), and it changes with the sampling rate",
    "lzc_median": "Lempel & Ziv (1976) phrase count of x > median(x), normalised by "
    "n / log2(n) if normalize; = antropy.lziv_complexity on that binary sequence",
    "lzs_schartner": "Single-channel LZs after Schartner et al. (2017, Sci Rep 7:46421), LZ76 VARIANT: bits "
    "|hilbert(x)| > mean over the window, Lempel-Ziv (1976) phrase count (Kaspar & Schuster 1987), divided by "
    "the mean count of n_shuffles seeded shuffles of the bits (features: 1); no per-window detrend unless "
    "detrend. Caveat: NOT the published counter (their code counts the LZW dictionary, see "
    "lzs_schartner_lzw): ranks agree, values do not",
    "lzc_schartner_st": "Spatio-temporal LZc after Schartner et al. (2017), LZ76 VARIANT: per-channel "
    "|hilbert| > mean bits concatenated time-major (for t: for channel), LZ76 phrase count / mean count of "
    "n_shuffles seeded shuffles (features: 1); no detrend unless detrend. Caveat: NOT the published "
    "counter (LZW dictionary, see lzc_schartner_lzw); values are lower than published LZc",
    "lzs_schartner_lzw": "Single-channel LZs as published by Schartner et al. (2017, Sci Rep 7:46421; "
    "code github.com/mschart/SignalDiversity): each window demeaned and linearly detrended, bits "
    "|hilbert(x)| > mean, size of the LZW-style dictionary (cpr: grow the word while it is in the "
    "dictionary, else add it and restart at the current symbol; dictionary starts empty), divided by the "
    "mean dictionary size of n_shuffles (default 5) seeded shuffles (the paper: one). Caveat: the shuffle "
    "normaliser keeps the fraction of ones, so it measures order, not the amplitude distribution",
    "lzc_schartner_lzw": "Spatio-temporal LZc as published by Schartner et al. (2017): each channel "
    "window demeaned and linearly detrended, |hilbert| > mean bits, concatenated time-major (for t: for "
    "channel), LZW dictionary size (as lzs_schartner_lzw) / mean over n_shuffles seeded shuffles of "
    "the sequence (default 5; the paper: one, whose count varies by ~1 % per window). NaN if "
    "any channel of the window is non-finite or constant",
}

_EPS_REG = 1e-9  # antropy.utils.epsilon, added to the regression denominator
_ROW_OK, _ROW_NONFINITE, _ROW_CONSTANT = 0, 1, 2
_LZ_HASH_MIN_N = 1 << 14  # from this length the prefix index beats the suffix automaton


# ---------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------


def sliding_windows(x, window_samples: int, step_samples: int) -> np.ndarray:
    """Read-only view of ``x`` (..., n_times) as (..., n_windows, window_samples).

    Window ``w`` covers samples ``[w * step, w * step + window)``; a trailing partial window
    is dropped. Raises ``ValueError`` if the signal is shorter than one window.
    """
    x = np.asarray(x)
    window_samples, step_samples = int(window_samples), int(step_samples)
    if window_samples < 1 or step_samples < 1:
        raise ValueError(f"window ({window_samples}) and step ({step_samples}) must be >= 1 sample")
    if x.shape[-1] < window_samples:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one window of {window_samples} samples")
    return sliding_window_view(x, window_samples, axis=-1)[..., ::step_samples, :]


def window_starts(n_times: int, window_samples: int, step_samples: int) -> np.ndarray:
    """First sample index of each window made by :func:`sliding_windows`."""
    if n_times < window_samples:
        raise ValueError(f"signal of {n_times} samples is shorter than one window of {window_samples}")
    return np.arange(0, n_times - window_samples + 1, step_samples, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# shared numba helpers
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _row_states(rows):
    """Per row: 0 ok, 1 any non-finite sample, 2 constant (peak-to-peak 0)."""
    nr, n = rows.shape
    out = np.zeros(nr, np.uint8)
    for r in range(nr):
        lo = np.inf
        hi = -np.inf
        bad = False
        for i in range(n):
            v = rows[r, i]
            if not np.isfinite(v):
                bad = True
                break
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        if bad:
            out[r] = 1
        elif hi == lo:
            out[r] = 2
    return out


@njit(cache=True, nogil=True)
def _linreg_slope_antropy(x, y):
    """Least-squares slope exactly as antropy.utils._linear_regression (epsilon in denominator)."""
    n = x.size
    sx2 = 0.0
    sx = 0.0
    sy = 0.0
    sxy = 0.0
    for j in range(n):
        sx2 += x[j] ** 2
        sx += x[j]
        sxy += x[j] * y[j]
        sy += y[j]
    den = n * sx2 - (sx**2)
    num = n * sxy - sx * sy
    return num / (den + _EPS_REG)


# ---------------------------------------------------------------------------------------
# permutation entropy
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _perm_entropy_rows(rows, states, order, delay, normalize):
    nr, n = rows.shape
    n_embed = n - (order - 1) * delay
    n_perm = 1
    for k in range(2, order + 1):
        n_perm *= k
    counts = np.zeros(n_perm, np.int64)
    out = np.empty(nr)
    log2_nperm = math.log2(n_perm)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            out[r] = np.nan
            continue
        counts[:] = 0
        for i in range(n_embed):
            # Lehmer code of the stable ranking: digit a counts later samples strictly smaller,
            # so tied samples keep their positional order (= argsort(kind="stable")).
            code = 0
            for a in range(order):
                va = rows[r, i + a * delay]
                c = 0
                for b in range(a + 1, order):
                    if rows[r, i + b * delay] < va:
                        c += 1
                code = code * (order - a) + c
            counts[code] += 1
        h = 0.0
        for k in range(n_perm):
            if counts[k] > 0:
                p = counts[k] / n_embed
                h -= p * math.log2(p)
        if normalize:
            h /= log2_nperm
            h = min(max(h, 0.0), 1.0)
        out[r] = h
    return out


# ---------------------------------------------------------------------------------------
# sample entropy (sorted-template counting)
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _radix_argsort_f64(x, idx, idx_tmp, keys, keys_tmp):
    """Ascending argsort of finite float64 ``x`` into ``idx`` (LSD radix, 8 passes of 8 bits).

    ~3x faster than numba's quicksort argsort on 1000 samples. Float bits are mapped to
    unsigned integers in the same order (negatives: all bits flipped; others: sign bit set).
    """
    n = x.size
    bits = x.view(np.int64)
    for i in range(n):
        u = bits[i]
        keys[i] = ~np.uint64(u) if u < 0 else (np.uint64(u) | np.uint64(0x8000000000000000))
        idx[i] = i
    counts = np.empty(256, np.int64)
    for sh in range(0, 64, 8):
        shift = np.uint64(sh)
        counts[:] = 0
        for i in range(n):
            counts[(keys[i] >> shift) & np.uint64(255)] += 1
        if counts.max() == n:
            continue  # every key has the same byte here
        total = 0
        for b in range(256):
            c = counts[b]
            counts[b] = total
            total += c
        for i in range(n):
            b = (keys[i] >> shift) & np.uint64(255)
            pos = counts[b]
            counts[b] = pos + 1
            idx_tmp[pos] = idx[i]
            keys_tmp[pos] = keys[i]
        idx[:] = idx_tmp
        keys[:] = keys_tmp


@njit(cache=True, nogil=True)
def _sample_entropy_rows(rows, states, r_tol, order, inclusive):
    nr, n = rows.shape
    n_templ = n - order  # templates start at 0 .. n - order - 1 for both lengths m and m + 1
    cols = np.empty((order + 1, n_templ))
    idx = np.empty(n_templ, np.int64)
    idx_tmp = np.empty(n_templ, np.int64)
    keys = np.empty(n_templ, np.uint64)
    keys_tmp = np.empty(n_templ, np.uint64)
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: r is 0 or rounding noise, so the counts mean nothing
            continue
        x = rows[r]
        tol = r_tol[r]
        _radix_argsort_f64(x[:n_templ], idx, idx_tmp, keys, keys_tmp)
        for k in range(n_templ):
            s = idx[k]
            for c in range(order + 1):
                cols[c, k] = x[s + c]
        if order == 2:
            n_m, n_m1 = _sampen_pairs_order2(cols[0], cols[1], cols[2], tol, inclusive)
        else:
            n_m, n_m1 = _sampen_pairs(cols, tol, inclusive)
        if n_m == 0:
            out[r] = np.nan
        elif n_m1 == 0:
            out[r] = np.inf
        else:
            out[r] = -math.log(n_m1 / n_m)
    return out


@njit(cache=True, nogil=True)
def _sampen_pairs_order2(c0, c1, c2, tol, inclusive):
    """Pair counts (B: 2 coordinates match, A: 3 match) of templates sorted on c0.

    Sorted on the first coordinate, the partners of template k within tolerance on it are
    the contiguous run k+1 .. end-1, and ``end`` never decreases with k (two pointers), so
    the inner loop has no early exit and vectorises.
    """
    n_t = c0.size
    n_m = 0
    n_m1 = 0
    end = 0
    for k in range(n_t):
        a0 = c0[k]
        if end < k + 1:
            end = k + 1
        if inclusive:
            while end < n_t and c0[end] - a0 <= tol:
                end += 1
        else:
            while end < n_t and c0[end] - a0 < tol:
                end += 1
        a1 = c1[k]
        a2 = c2[k]
        b_k = 0
        a_k = 0
        if inclusive:
            for j in range(k + 1, end):
                m1 = np.int64(abs(c1[j] - a1) <= tol)
                b_k += m1
                a_k += m1 & np.int64(abs(c2[j] - a2) <= tol)
        else:
            for j in range(k + 1, end):
                m1 = np.int64(abs(c1[j] - a1) < tol)
                b_k += m1
                a_k += m1 & np.int64(abs(c2[j] - a2) < tol)
        n_m += b_k
        n_m1 += a_k
    return n_m, n_m1


@njit(cache=True, nogil=True)
def _sampen_pairs(cols, tol, inclusive):
    """As :func:`_sampen_pairs_order2` for any order (cols: order + 1 coordinate rows)."""
    order = cols.shape[0] - 1
    n_t = cols.shape[1]
    n_m = 0
    n_m1 = 0
    end = 0
    for k in range(n_t):
        a0 = cols[0, k]
        if end < k + 1:
            end = k + 1
        if inclusive:
            while end < n_t and cols[0, end] - a0 <= tol:
                end += 1
        else:
            while end < n_t and cols[0, end] - a0 < tol:
                end += 1
        for j in range(k + 1, end):
            ok = True
            for c in range(1, order):
                d = abs(cols[c, j] - cols[c, k])
                if (d > tol) if inclusive else (d >= tol):
                    ok = False
                    break
            if ok:
                n_m += 1
                d = abs(cols[order, j] - cols[order, k])
                if (d <= tol) if inclusive else (d < tol):
                    n_m1 += 1
    return n_m, n_m1


# ---------------------------------------------------------------------------------------
# SVD entropy (Householder QR of the embedding, then one-sided Jacobi on R)
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _singular_values_embedding(x, order, delay, cols, rmat):
    """Singular values of the (n_embed, order) delay embedding of ``x``.

    Householder QR reduces the tall embedding to ``order x order`` R (backward stable, like
    LAPACK), then one-sided Jacobi gives R's singular values to high relative accuracy.
    """
    n_embed = x.size - (order - 1) * delay
    for k in range(order):
        for i in range(n_embed):
            cols[k, i] = x[i + k * delay]
    for k in range(order):
        nrm2 = 0.0
        for i in range(k, n_embed):
            nrm2 += cols[k, i] * cols[k, i]
        nrm = math.sqrt(nrm2)
        if nrm == 0.0:
            continue
        alpha = -nrm if cols[k, k] >= 0 else nrm
        v0 = cols[k, k] - alpha
        vnorm2 = nrm2 - cols[k, k] * cols[k, k] + v0 * v0
        cols[k, k] = v0  # column k below the diagonal now holds the Householder vector
        if vnorm2 > 0.0:
            for j in range(k + 1, order):
                dot = 0.0
                for i in range(k, n_embed):
                    dot += cols[k, i] * cols[j, i]
                f = 2.0 * dot / vnorm2
                for i in range(k, n_embed):
                    cols[j, i] -= f * cols[k, i]
        rmat[k, k] = alpha
    for k in range(order):
        for j in range(k + 1, order):
            rmat[k, j] = cols[j, k]
        for j in range(k):
            rmat[k, j] = 0.0
    # one-sided Jacobi on the columns of R
    for _sweep in range(100):
        rotated = False
        for p in range(order - 1):
            for q in range(p + 1, order):
                a = 0.0
                b = 0.0
                g = 0.0
                for i in range(order):
                    a += rmat[i, p] * rmat[i, p]
                    b += rmat[i, q] * rmat[i, q]
                    g += rmat[i, p] * rmat[i, q]
                if g == 0.0 or abs(g) <= 1e-16 * math.sqrt(a * b):
                    continue
                rotated = True
                zeta = (b - a) / (2.0 * g)
                t = (1.0 if zeta >= 0 else -1.0) / (abs(zeta) + math.sqrt(1.0 + zeta * zeta))
                c = 1.0 / math.sqrt(1.0 + t * t)
                s = c * t
                for i in range(order):
                    up = rmat[i, p]
                    uq = rmat[i, q]
                    rmat[i, p] = c * up - s * uq
                    rmat[i, q] = s * up + c * uq
        if not rotated:
            break
    sv = np.empty(order)
    for j in range(order):
        s2 = 0.0
        for i in range(order):
            s2 += rmat[i, j] * rmat[i, j]
        sv[j] = math.sqrt(s2)
    return sv


@njit(cache=True, nogil=True)
def _svd_entropy_rows(rows, states, order, delay, normalize):
    nr, n = rows.shape
    n_embed = n - (order - 1) * delay
    cols = np.empty((order, n_embed))
    rmat = np.zeros((order, order))
    out = np.empty(nr)
    log2_order = math.log2(order)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            out[r] = np.nan
            continue
        if states[r] == _ROW_CONSTANT:
            out[r] = 0.0  # rank <= 1: one non-zero singular value (or none)
            continue
        sv = _singular_values_embedding(rows[r], order, delay, cols, rmat)
        total = sv.sum()
        h = 0.0
        for j in range(order):
            w = sv[j] / total
            if w > 0:
                h -= w * math.log(w) / math.log(2.0)
        if normalize:
            h /= log2_order
        out[r] = h
    return out


# ---------------------------------------------------------------------------------------
# Higuchi FD and DFA (ports of antropy's numba code, same arithmetic)
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _higuchi_fd_rows(rows, states, kmax):
    nr, n_times = rows.shape
    x_reg = np.empty(kmax)
    y_reg = np.empty(kmax)
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: every curve length is 0, log(0) -> NaN slope (= antropy)
            continue
        x = rows[r]
        for k in range(1, kmax + 1):
            m_lm = 0.0
            for m in range(k):
                ll = 0.0
                n_max = (n_times - m - 1) // k
                for j in range(1, n_max + 1):
                    ll += abs(x[m + j * k] - x[m + (j - 1) * k])
                ll /= k
                ll *= (n_times - 1) / (k * n_max)
                m_lm += ll
            m_lm /= k
            x_reg[k - 1] = math.log(1.0 / k)
            y_reg[k - 1] = math.log(m_lm) if m_lm > 0 else -np.inf
        out[r] = _linreg_slope_antropy(x_reg, y_reg)
    return out


def _dfa_box_sizes(n_times: int) -> np.ndarray:
    """Box sizes 4, 4*1.2, ... <= 0.1 * n_times, as antropy.utils._log_n(4, 0.1 * n, 1.2)."""
    min_n, max_n, factor = 4.0, 0.1 * n_times, 1.2
    max_i = int(math.floor(math.log(1.0 * max_n / min_n) / math.log(factor))) if max_n > 0 else -1
    ns = [min_n]
    for i in range(max_i + 1):
        v = int(math.floor(min_n * (factor**i)))
        if v > ns[-1]:
            ns.append(v)
    return np.array(ns, dtype=np.int64)


@njit(cache=True, nogil=True)
def _dfa_rows(rows, states, nvals):
    nr, n_times = rows.shape
    n_sizes = nvals.size
    walk = np.empty(n_times)
    fluct = np.empty(n_sizes)
    log_n = np.empty(n_sizes)
    log_f = np.empty(n_sizes)
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: every fluctuation is 0 -> no line to fit (= antropy)
            continue
        x = rows[r]
        mean = 0.0
        for i in range(n_times):
            mean += x[i]
        mean /= n_times
        acc = 0.0
        for i in range(n_times):
            acc += x[i] - mean
            walk[i] = acc
        for i_n in range(n_sizes):
            n = nvals[i_n]
            n_boxes = n_times // n
            # x of the per-box regression is 0..n-1, the same for every box
            sx = 0.0
            sx2 = 0.0
            for t in range(n):
                sx += t
                sx2 += float(t) ** 2
            den = n * sx2 - sx**2
            mean_t = sx / n
            total = 0.0
            for b in range(n_boxes):
                off = b * n
                sy = 0.0
                sxy = 0.0
                for t in range(n):
                    y = walk[off + t]
                    sxy += t * y
                    sy += y
                slope = (n * sxy - sx * sy) / (den + _EPS_REG)
                intercept = sy / n - slope * mean_t
                ss = 0.0
                for t in range(n):
                    d = walk[off + t] - (intercept + slope * t)
                    ss += d * d
                total += ss / n
            fluct[i_n] = math.sqrt(total / n_boxes)
        k = 0
        for i_n in range(n_sizes):
            if fluct[i_n] != 0.0:
                log_n[k] = math.log(nvals[i_n])
                log_f[k] = math.log(fluct[i_n])
                k += 1
        out[r] = np.nan if k == 0 else _linreg_slope_antropy(log_n[:k], log_f[:k])
    return out


# ---------------------------------------------------------------------------------------
# Lempel-Ziv 1976 phrase count in O(n) (suffix automaton)
# ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _lz76_count_sam(s, st):
    """LZ76 phrase count of a binary sequence ``s`` (uint8, values 0/1), O(n).

    The count is the one of Kaspar & Schuster (1987) / antropy's ``_lz_complexity``: the
    first phrase is ``s[0]``; each next phrase starting at ``i`` is the longest prefix of
    ``s[i:]`` that occurs starting before ``i`` (the copy may overlap ``i``) plus one new
    symbol; a final phrase that is a pure copy also counts. The longest previous factor is
    found with a suffix automaton of ``s[:i + l]``, grown one symbol per step of the match,
    so every symbol is added once and matched once. ``st`` is workspace of shape
    ``(2 * len(s) + 2, 4)`` int32 holding (next0, next1, suffix link, length) per state.
    """
    n = s.size
    if n == 0:
        return 0
    st[0, 0] = -1
    st[0, 1] = -1
    st[0, 2] = -1
    st[0, 3] = 0
    size = 1
    last = 0
    built = 0
    count = 0
    i = 0
    while i < n:
        state = 0
        length = 0
        while True:
            # the match s[i:i+length+1] must start before i, i.e. lie in s[:i + length]
            while built < i + length:
                c = s[built]
                cur = size
                size += 1
                st[cur, 0] = -1
                st[cur, 1] = -1
                st[cur, 3] = st[last, 3] + 1
                p = last
                while p != -1 and st[p, c] == -1:
                    st[p, c] = cur
                    p = st[p, 2]
                if p == -1:
                    st[cur, 2] = 0
                else:
                    q = st[p, c]
                    if st[p, 3] + 1 == st[q, 3]:
                        st[cur, 2] = q
                    else:
                        clone = size
                        size += 1
                        st[clone, 0] = st[q, 0]
                        st[clone, 1] = st[q, 1]
                        st[clone, 2] = st[q, 2]
                        st[clone, 3] = st[p, 3] + 1
                        while p != -1 and st[p, c] == q:
                            st[p, c] = clone
                            p = st[p, 2]
                        st[q, 2] = clone
                        st[cur, 2] = clone
                last = cur
                built += 1
                # a split may have moved the matched string into the clone (= suffix link)
                if state != 0 and st[st[state, 2], 3] >= length:
                    state = st[state, 2]
            if i + length >= n:
                break
            t = st[state, s[i + length]]
            if t == -1:
                break
            state = t
            length += 1
        count += 1
        i += length + 1
    return count


@njit(cache=True, nogil=True)
def _lz76_count_hash(s, kbits, budget):
    """The same LZ76 count via an index of K-bit prefixes; returns -1 past ``budget`` work.

    Fast on long, high-entropy sequences (a shuffled copy), where the suffix automaton is
    memory-bound: positions before the phrase start are indexed by their next ``kbits``
    symbols (hash chains) and all shorter prefixes are marked in a binary heap of flags,
    so a previous factor shorter than K is found by binary search over prefix lengths and
    a longer one by extending each chained candidate. On regular sequences the chains get
    long; past ``budget`` comparisons it gives up and the caller uses the automaton. The flags
    are bit-packed (64 per word: 2^K / 4 bytes instead of 2^(K+1), e.g. 2 MiB instead of 16 MiB
    for a 19.2M-symbol spatio-temporal sequence), so they stay in cache; the count is unchanged.
    """
    n = s.size
    K = kbits
    mask = (1 << K) - 1
    head = np.full(1 << K, -1, np.int32)
    chain = np.empty(n, np.int32)
    marks = np.zeros(max(1, (2 << K) >> 6), np.uint64)  # bit of node (1 << k) + prefix for prefix length k
    g = 0
    for j in range(K):
        g = (g << 1) | (np.int64(s[j]) if j < n else 0)
    inserted = 0
    work = 0
    count = 0
    i = 0
    while i < n:
        while inserted < i:  # index every start before i (the copy may overlap i)
            v = (1 << K) + g
            while v > 0 and (marks[v >> 6] >> np.uint64(v & 63)) & np.uint64(1) == 0:
                marks[v >> 6] |= np.uint64(1) << np.uint64(v & 63)
                v >>= 1
            chain[inserted] = head[g]
            head[g] = inserted
            nb = np.int64(s[inserted + K]) if inserted + K < n else 0
            g = ((g << 1) & mask) | nb
            inserted += 1
        rem = n - i
        gi = 0
        for j in range(K):
            gi = (gi << 1) | (np.int64(s[i + j]) if i + j < n else 0)
        lo = 0
        hi = K if K < rem else rem
        while lo < hi:  # longest marked prefix of gi (marks are closed under prefixes)
            mid = (lo + hi + 1) >> 1
            node = (1 << mid) + (gi >> (K - mid))
            if (marks[node >> 6] >> np.uint64(node & 63)) & np.uint64(1):
                lo = mid
            else:
                hi = mid - 1
        length = lo
        if length == K:
            p = head[gi]
            while p != -1:
                ln = K
                while i + ln < n and s[p + ln] == s[i + ln]:
                    ln += 1
                work += ln - K + 1
                if ln > length:
                    length = ln
                if length == rem or work > budget:
                    break
                p = chain[p]
            if work > budget:
                return -1
        count += 1
        i += length + 1
    return count


@njit(cache=True, nogil=True)
def _lz76_auto(s, st):
    """LZ76 count by the fastest exact method for the length: prefix index for long
    sequences (K = log2(n) - 1 bits, falls back past n comparisons), else automaton."""
    n = s.size
    if n >= _LZ_HASH_MIN_N:
        kbits = min(23, max(8, int(math.log2(n)) - 1))
        c = _lz76_count_hash(s, kbits, n + 10_000)
        if c >= 0:
            return c
    return _lz76_count_sam(s, st)


@njit(cache=True, nogil=True)
def _lz76_count_rows(bits):
    nr, n = bits.shape
    st = np.empty((2 * n + 2, 4), np.int32)
    out = np.empty(nr, np.int64)
    for r in range(nr):
        out[r] = _lz76_auto(bits[r], st)
    return out


@njit(cache=True, nogil=True)
def _splitmix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _stream_key(seed, kind, channel, window):
    h = _splitmix64(np.uint64(seed))
    h = _splitmix64(h ^ np.uint64(kind))
    h = _splitmix64(h ^ np.uint64(channel))
    return _splitmix64(h ^ np.uint64(window))


@njit(cache=True, nogil=True)
def _shuffle_inplace(a, key):
    """Fisher-Yates shuffle driven by a SplitMix64 stream started at ``key``."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_stream(a, seed, kind, channel, window):
    _shuffle_inplace(a, _stream_key(seed, kind, channel, window))


@njit(cache=True, nogil=True)
def _shuffle_key(seed, kind, channel, window, k):
    """Key of shuffle ``k`` of (seed, kind, channel, window): shuffle 0 is the stream key itself
    (the single shuffle the LZ76 measures always used), shuffle k > 0 a SplitMix64 hash of it and k."""
    key = _stream_key(seed, kind, channel, window)
    if k == 0:
        return key
    return _splitmix64(key ^ _splitmix64(np.uint64(k)))


@njit(cache=True, nogil=True)
def _shuffle_inplace_fast(a, key):
    """Fisher-Yates shuffle like :func:`_shuffle_inplace`, but the index is drawn by Lemire's
    multiply-shift (high 32 bits of a draw times i + 1) instead of a 64-bit modulo: ~3x faster,
    bias below 2^-32 x n. Used by the streams added with the LZW measures and surrogates
    (kinds >= 3); kinds 1 and 2 keep the modulo so the LZ76 measures keep their values."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_keyed(a, seed, kind, channel, window, k):
    if kind >= 3:
        _shuffle_inplace_fast(a, _shuffle_key(seed, kind, channel, window, k))
    else:
        _shuffle_inplace(a, _shuffle_key(seed, kind, channel, window, k))


@njit(cache=True, nogil=True)
def _lzw_dict_size(s, child):
    """Size of the LZW dictionary of Schartner et al.'s published ``cpr`` for a 0/1 sequence, O(n).

    The published code: ``d = {}; w = ''; for c in s: wc = w + c; if wc in d: w = wc; else:
    d[wc] = wc; w = c``; the result is ``len(d)``. The dictionary starts empty (the single
    symbols are not pre-loaded) and the word after an addition restarts at the symbol that
    ended it, so a word can be in the dictionary while its one-symbol prefix is not. Here the
    dictionary is a binary trie: nodes 1 and 2 are the words "0" and "1" (their membership
    flags kept apart), every other node is created only when its word is added. ``child`` is
    workspace of shape ``(len(s) + 3, 2)`` int32.
    """
    n = s.size
    child[0, 0] = 1
    child[0, 1] = 2
    child[1, 0] = -1
    child[1, 1] = -1
    child[2, 0] = -1
    child[2, 1] = -1
    in_d0 = False
    in_d1 = False
    size = 3
    count = 0
    node = 0
    for i in range(n):
        c = s[i]
        if node == 0:  # w is empty (first symbol only): wc = c
            if c == 0:
                if not in_d0:
                    in_d0 = True
                    count += 1
            else:
                if not in_d1:
                    in_d1 = True
                    count += 1
            node = 1 + c
            continue
        nxt = child[node, c]
        if nxt != -1:
            node = nxt  # wc is in the dictionary: grow the word
        else:
            child[node, c] = size  # add wc, restart the word at c
            child[size, 0] = -1
            child[size, 1] = -1
            size += 1
            count += 1
            node = 1 + c
    return count


# Sequences up to this length are counted four at a time (workspace 4 x (n + 3) x 2 int32 = 32 bytes per
# symbol); longer ones (whole recordings) one at a time. Shuffles always take two passes (4 bytes per symbol).
_LZW_GROUP_MAX_N = 1 << 20


@njit(cache=True, nogil=True)
def _lzw_reset(child):
    child[1, 0] = -1
    child[1, 1] = -1
    child[2, 0] = -1
    child[2, 1] = -1


@njit(cache=True, nogil=True)
def _lzw_dict_size4(s0, s1, s2, s3, c0, c1, c2, c3):
    """:func:`_lzw_dict_size` of four sequences of one length, stepped together (same counts).

    The trie walk is a chain of dependent loads; four independent walks in one loop let the CPU
    overlap them (about 2x faster than four walks one after another). The first symbol is always
    added (the dictionary starts empty) and after it the word never becomes empty again, so each
    walk starts at the node of its first symbol with a count of 1; the count is then 1 + the
    number of nodes created, i.e. (next free node) - 2."""
    n = s0.size
    if n == 0:
        return 0, 0, 0, 0
    _lzw_reset(c0)
    _lzw_reset(c1)
    _lzw_reset(c2)
    _lzw_reset(c3)
    z0 = 3
    z1 = 3
    z2 = 3
    z3 = 3
    n0 = 1 + np.int64(s0[0])
    n1 = 1 + np.int64(s1[0])
    n2 = 1 + np.int64(s2[0])
    n3 = 1 + np.int64(s3[0])
    for i in range(1, n):
        a = s0[i]
        b = s1[i]
        c = s2[i]
        d = s3[i]
        x0 = c0[n0, a]
        x1 = c1[n1, b]
        x2 = c2[n2, c]
        x3 = c3[n3, d]
        if x0 < 0:
            c0[n0, a] = z0
            c0[z0, 0] = -1
            c0[z0, 1] = -1
            z0 += 1
            n0 = 1 + np.int64(a)
        else:
            n0 = x0
        if x1 < 0:
            c1[n1, b] = z1
            c1[z1, 0] = -1
            c1[z1, 1] = -1
            z1 += 1
            n1 = 1 + np.int64(b)
        else:
            n1 = x1
        if x2 < 0:
            c2[n2, c] = z2
            c2[z2, 0] = -1
            c2[z2, 1] = -1
            z2 += 1
            n2 = 1 + np.int64(c)
        else:
            n2 = x2
        if x3 < 0:
            c3[n3, d] = z3
            c3[z3, 0] = -1
            c3[z3, 1] = -1
            z3 += 1
            n3 = 1 + np.int64(d)
        else:
            n3 = x3
    return z0 - 2, z1 - 2, z2 - 2, z3 - 2


@njit(cache=True, nogil=True)
def _lzw_dict_size2(s0, s1, c0, c1):
    """:func:`_lzw_dict_size4` for two sequences."""
    n = s0.size
    if n == 0:
        return 0, 0
    _lzw_reset(c0)
    _lzw_reset(c1)
    z0 = 3
    z1 = 3
    n0 = 1 + np.int64(s0[0])
    n1 = 1 + np.int64(s1[0])
    for i in range(1, n):
        a = s0[i]
        b = s1[i]
        x0 = c0[n0, a]
        x1 = c1[n1, b]
        if x0 < 0:
            c0[n0, a] = z0
            c0[z0, 0] = -1
            c0[z0, 1] = -1
            z0 += 1
            n0 = 1 + np.int64(a)
        else:
            n0 = x0
        if x1 < 0:
            c1[n1, b] = z1
            c1[z1, 0] = -1
            c1[z1, 1] = -1
            z1 += 1
            n1 = 1 + np.int64(b)
        else:
            n1 = x1
    return z0 - 2, z1 - 2


@njit(cache=True, nogil=True)
def _lzw_counts(seqs, child, out):
    """LZW dictionary sizes of the rows of ``seqs`` (m, n) into ``out`` (m,): four at a time
    (:func:`_lzw_dict_size4`), a remainder of one or two rows two at a time (a single row is walked
    twice). ``child`` is workspace (4, n + 3, 2) int32."""
    m = seqs.shape[0]
    g = 0
    while m - g >= 3:
        r3 = g + 3 if g + 3 < m else g
        a, b, c, d = _lzw_dict_size4(
            seqs[g], seqs[g + 1], seqs[g + 2], seqs[r3], child[0], child[1], child[2], child[3]
        )
        out[g] = a
        out[g + 1] = b
        out[g + 2] = c
        if g + 3 < m:
            out[g + 3] = d
        g += 4
    if m - g > 0:
        r1 = g + 1 if g + 1 < m else g
        a, b = _lzw_dict_size2(seqs[g], seqs[r1], child[0], child[1])
        out[g] = a
        if g + 1 < m:
            out[g + 1] = b


@njit(cache=True, nogil=True)
def _shuffle_fast_idx(a, key, idx):
    """:func:`_shuffle_inplace_fast` in two passes, the same permutation: all the draws first (they do
    not depend on the array, so the loop pipelines), then the swaps. ``idx`` is int32 workspace >= len(a)."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        idx[i] = np.int32(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
    for i in range(a.size - 1, 0, -1):
        j = idx[i]
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_mod_idx(a, key, idx):
    """:func:`_shuffle_inplace` (64-bit modulo draws) in two passes, the same permutation."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        idx[i] = np.int32(z % np.uint64(i + 1))
    for i in range(a.size - 1, 0, -1):
        j = idx[i]
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_keyed_idx(a, seed, kind, channel, window, k, idx):
    """:func:`_shuffle_keyed` in two passes (draws, then swaps) with int32 workspace ``idx``: same permutation."""
    if kind >= 3:
        _shuffle_fast_idx(a, _shuffle_key(seed, kind, channel, window, k), idx)
    else:
        _shuffle_mod_idx(a, _shuffle_key(seed, kind, channel, window, k), idx)


@njit(cache=True, nogil=True)
def _lz_count(s, st, child, lzw):
    return _lzw_dict_size(s, child) if lzw else _lz76_auto(s, st)


@njit(cache=True, nogil=True)
def _lz_workspace(n, lzw):
    st = np.empty((1 if lzw else 2 * n + 2, 4), np.int32)
    child = np.empty((n + 3 if lzw else 1, 2), np.int32)
    return st, child


@njit(cache=True, nogil=True)
def _lzs_rows(bits, states, seed, channel, kind, n_shuffles, lzw):
    """count(bits) / mean over k of count(shuffle k of bits) per row (window); row w, shuffle k
    uses the key ``_shuffle_key(seed, kind, channel, w, k)``; count is LZ76 or the LZW dictionary."""
    nr, n = bits.shape
    out = np.empty(nr)
    if lzw and n <= _LZW_GROUP_MAX_N:
        # The original and its shuffles are counted together (:func:`_lzw_counts`): same values.
        seqs = np.empty((n_shuffles + 1, n), np.uint8)
        child = np.empty((4, n + 3, 2), np.int32)
        idx = np.empty(n, np.int32)
        counts = np.empty(n_shuffles + 1, np.int64)
        for w in range(nr):
            if states[w] != _ROW_OK:
                out[w] = np.nan
                continue
            seqs[0, :] = bits[w]
            for k in range(n_shuffles):
                seqs[k + 1, :] = bits[w]
                _shuffle_keyed_idx(seqs[k + 1], seed, kind, channel, w, k, idx)
            _lzw_counts(seqs, child, counts)
            total = 0.0
            for k in range(n_shuffles):
                total += counts[k + 1]
            out[w] = counts[0] / (total / n_shuffles)
        return out
    st, child1 = _lz_workspace(n, lzw)
    buf = np.empty(n, np.uint8)
    idx = np.empty(n, np.int32)
    for w in range(nr):
        if states[w] != _ROW_OK:
            out[w] = np.nan
            continue
        c_orig = _lz_count(bits[w], st, child1, lzw)
        total = 0.0
        for k in range(n_shuffles):
            buf[:] = bits[w]
            _shuffle_keyed_idx(buf, seed, kind, channel, w, k, idx)
            total += _lz_count(buf, st, child1, lzw)
        out[w] = c_orig / (total / n_shuffles)
    return out


@njit(cache=True, nogil=True)
def _lzc_st_windows(bits, window_ok, seed, w_start, w_stop, kind, n_shuffles, lzw):
    """Spatio-temporal LZc for windows [w_start, w_stop) of bits (n_channels, n_windows, n)."""
    n_ch, _, n = bits.shape
    m = n_ch * n
    out = np.empty(w_stop - w_start)
    if lzw and m <= _LZW_GROUP_MAX_N:
        seqs = np.empty((n_shuffles + 1, m), np.uint8)
        child = np.empty((4, m + 3, 2), np.int32)
        idx = np.empty(m, np.int32)
        counts = np.empty(n_shuffles + 1, np.int64)
        for w in range(w_start, w_stop):
            if not window_ok[w]:
                out[w - w_start] = np.nan
                continue
            _st_sequence(bits, w, seqs[0])
            for k in range(n_shuffles):
                seqs[k + 1, :] = seqs[0]
                _shuffle_keyed_idx(seqs[k + 1], seed, kind, 0, w, k, idx)
            _lzw_counts(seqs, child, counts)
            total = 0.0
            for k in range(n_shuffles):
                total += counts[k + 1]
            out[w - w_start] = counts[0] / (total / n_shuffles)
        return out
    st, child1 = _lz_workspace(m, lzw)
    seq = np.empty(m, np.uint8)
    buf = np.empty(m, np.uint8)
    idx = np.empty(m, np.int32)
    for w in range(w_start, w_stop):
        if not window_ok[w]:
            out[w - w_start] = np.nan
            continue
        _st_sequence(bits, w, seq)
        c_orig = _lz_count(seq, st, child1, lzw)
        total = 0.0
        for k in range(n_shuffles):
            buf[:] = seq
            _shuffle_keyed_idx(buf, seed, kind, 0, w, k, idx)
            total += _lz_count(buf, st, child1, lzw)
        out[w - w_start] = c_orig / (total / n_shuffles)
    return out


@njit(cache=True, nogil=True)
def _st_sequence(bits, w, seq):
    """Window w of bits (n_channels, n_windows, n) time-major: all channels at t, then t + 1."""
    n_ch, _, n = bits.shape
    k = 0
    for t in range(n):
        for ch in range(n_ch):
            seq[k] = bits[ch, w, t]
            k += 1


@njit(cache=True, nogil=True)
def _lz76_count_alloc(seq):
    return _lz76_auto(seq, np.empty((2 * seq.size + 2, 4), np.int32))


@njit(cache=True, nogil=True)
def _lzw_count_alloc(seq):
    return _lzw_dict_size(seq, np.empty((seq.size + 3, 2), np.int32))


# ---------------------------------------------------------------------------------------
# surrogates (phase randomisation, IAAFT), seeded per (channel, window, surrogate)
# ---------------------------------------------------------------------------------------

_KIND_PHASES, _KIND_IAAFT_START = 5, 6


@njit(cache=True, nogil=True)
def _randomise_phases(spec, n_surr, n_even, seed, kind, channel):
    """``spec`` (n_rows, n_freqs) rFFT of the windows -> (n_rows, n_surr, n_freqs): every bin but
    DC (and Nyquist for even n) multiplied by a unit complex number of uniformly distributed
    phase, drawn from the SplitMix64 stream of (seed, kind, channel, row, surrogate): a point
    uniform in the square [-1, 1)^2 (two 32-bit halves of one draw), rejected outside the unit
    disc (or too near 0), divided by its length (no cos/sin). DC and Nyquist stay real, so each
    surrogate has the window's mean and exactly its periodogram."""
    n_rows, nf = spec.shape
    out = np.empty((n_rows, n_surr, nf), np.complex128)
    scale = 1.0 / 2147483648.0  # 2^-31: a 32-bit half -> [-1, 1)
    for r in range(n_rows):
        for k in range(n_surr):
            state = _shuffle_key(seed, kind, channel, r, k)
            for f in range(nf):
                if f == 0 or (n_even and f == nf - 1):
                    out[r, k, f] = spec[r, f]
                    continue
                while True:
                    state = state + np.uint64(0x9E3779B97F4A7C15)
                    z = state
                    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                    z = z ^ (z >> np.uint64(31))
                    a = float(z >> np.uint64(32)) * scale - 1.0
                    b = float(z & np.uint64(0xFFFFFFFF)) * scale - 1.0
                    r2 = a * a + b * b
                    if 1e-12 < r2 <= 1.0:
                        break
                inv = 1.0 / math.sqrt(r2)
                out[r, k, f] = spec[r, f] * complex(a * inv, b * inv)
    return out


@njit(cache=True, nogil=True)
def _shuffled_copies(rows, n_surr, seed, kind, channel):
    """(n_rows, n_surr, n): surrogate k of row r is a Fisher-Yates shuffle of the row keyed on
    (seed, kind, channel, r, k) (IAAFT's starting point)."""
    n_rows, n = rows.shape
    out = np.empty((n_rows, n_surr, n))
    for r in range(n_rows):
        for k in range(n_surr):
            out[r, k, :] = rows[r]
            _shuffle_inplace_fast(out[r, k], _shuffle_key(seed, kind, channel, r, k))
    return out


# ---------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------


def _as_3d(x) -> tuple[np.ndarray, int]:
    """(n_times,) -> (1, 1, n); (n_ch, n) -> (n_ch, 1, n); (n_ch, n_win, n) unchanged."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[None, None, :], 1
    if x.ndim == 2:
        return x[:, None, :], 2
    if x.ndim == 3:
        return x, 3
    raise ValueError(f"x must have 1, 2 or 3 dimensions (time last), got shape {x.shape}")


def _restore(out2d: np.ndarray, ndim: int):
    if ndim == 1:
        return float(out2d[0, 0])
    if ndim == 2:
        return out2d[:, 0]
    return out2d


def min_samples(measure: str, **params) -> int:
    """Fewest samples per signal or window that ``measure`` accepts with these parameters."""
    p = _params_for(measure, params)
    if measure == "perm_entropy":
        return (p["order"] - 1) * p["delay"] + 1
    if measure == "svd_entropy":
        return p["order"] * p["delay"]  # antropy's _embed requires order * delay <= n
    if measure == "sample_entropy":
        return p["order"] + 2  # at least one pair of templates
    if measure == "higuchi_fd":
        return 2 * p["kmax"]  # every k <= kmax needs a sub-series of >= 2 samples
    if measure == "dfa":
        n = 4
        while _dfa_box_sizes(n).size < 2:  # a slope needs two box sizes
            n += 1
        return n
    if measure == "katz_fd":
        return 3
    return 2  # spectral entropy, Lempel-Ziv


def _check_length(measure: str, n: int, params: dict) -> None:
    need = min_samples(measure, **params)
    if n < need:
        detail = ", ".join(f"{k}={v}" for k, v in params.items())
        raise ValueError(f"{measure} needs at least {need} samples per signal/window ({detail}); got {n}")


def _params_for(measure: str, params: dict | None) -> dict:
    if measure not in DEFAULT_PARAMS:
        hint = difflib.get_close_matches(measure, MEASURES, n=1)
        raise ValueError(
            f"unknown measure {measure!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(MEASURES)}")
        )
    defaults = DEFAULT_PARAMS[measure]
    params = dict(params or {})
    unknown = set(params) - set(defaults)
    if unknown:
        key = sorted(unknown)[0]
        hint = difflib.get_close_matches(key, list(defaults), n=1)
        raise ValueError(
            f"unknown parameter {key!r} for {measure}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {sorted(defaults)}")
        )
    merged = {**defaults, **params}
    for key in ("order", "delay", "kmax", "n_shuffles"):
        if key in merged:
            v = merged[key]
            if isinstance(v, bool) or int(v) != v:
                raise ValueError(f"{measure}: {key} must be an integer, got {v!r}")
            merged[key] = int(v)
    if "order" in merged and merged["order"] < 2:
        raise ValueError(f"{measure}: order must be >= 2, got {merged['order']}")
    if measure == "perm_entropy" and merged["order"] > 10:
        raise ValueError(f"perm_entropy: order must be <= 10 (10! patterns), got {merged['order']}")
    if "delay" in merged and merged["delay"] < 1:
        raise ValueError(f"{measure}: delay must be >= 1, got {merged['delay']}")
    if "n_shuffles" in merged and merged["n_shuffles"] < 1:
        raise ValueError(f"{measure}: n_shuffles must be >= 1, got {merged['n_shuffles']}")
    if "kmax" in merged and merged["kmax"] < 2:
        raise ValueError(f"higuchi_fd: kmax must be >= 2, got {merged['kmax']}")
    return merged


def _rows(x3: np.ndarray, ch: int) -> np.ndarray:
    return np.ascontiguousarray(x3[ch], dtype=np.float64)


# ---------------------------------------------------------------------------------------
# per-channel measure on rows (n_windows, n) -> (n_windows,)
# ---------------------------------------------------------------------------------------


def _xlogx_base2(p: np.ndarray) -> np.ndarray:
    """p * log2(p) for p > 0, 0 for p == 0 (antropy.utils._xlogx)."""
    out = np.zeros(p.shape)
    valid = p > 0
    out[valid] = p[valid] * np.log(p[valid]) / np.log(2)
    return out


def _spectral_nperseg(n: int, sfreq: float, nperseg, nperseg_s) -> int:
    """Welch segment length in samples: ``nperseg_s`` seconds if given, else ``nperseg`` samples
    (None: scipy's default 256), clipped to the signal length as scipy does."""
    if nperseg_s is not None:
        if nperseg is not None:
            raise ValueError("spectral_entropy_welch: give nperseg (samples) or nperseg_s (seconds), not both")
        nperseg = max(2, int(round(float(nperseg_s) * sfreq)))
    return min(256 if nperseg is None else int(nperseg), n)


def _spectral_band_mask(freqs: np.ndarray, fmin, fmax) -> np.ndarray:
    lo = -np.inf if fmin is None else float(fmin)
    hi = np.inf if fmax is None else float(fmax)
    mask = (freqs >= lo) & (freqs <= hi)
    if mask.sum() < 2:
        raise ValueError(
            f"spectral_entropy_welch: the band {fmin}-{fmax} Hz holds {int(mask.sum())} Welch bin(s) "
            f"(bins {freqs[0]:g}..{freqs[-1]:g} Hz, spacing {freqs[1] - freqs[0] if freqs.size > 1 else 0:g} Hz); "
            "widen it or lengthen nperseg_s"
        )
    return mask


@functools.lru_cache(maxsize=8)
def _hann_periodic(nperseg: int) -> np.ndarray:
    from scipy.signal import get_window

    win = get_window("hann", nperseg)
    win.setflags(write=False)
    return win


_WELCH_BLOCK_VALUES = 1 << 18  # samples per block of rows: temporaries stay in cache, not page faults


def welch_psd(x, sfreq: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD along the last axis, as ``scipy.signal.welch(x, sfreq, nperseg=nperseg, axis=-1)`` with
    its defaults: periodic Hann window, ``nperseg // 2`` overlap, each segment demeaned, one-sided density
    (µV²/Hz for µV input), the mean over segments; trailing samples that fill no segment are unused.

    All segments of all rows come from one strided view and one batched rFFT per block of rows, without
    scipy's per-call copies of the whole input: ~3x faster on a recording's windows. Equal to
    ``scipy.signal.welch`` within float rounding (scipy folds the scale into the window; max relative
    difference ~1e-14, tested at 1e-12). Returns ``(freqs, psd)``, psd of shape ``x.shape[:-1] +
    (nperseg // 2 + 1,)``. A row holding a NaN gives NaN in every bin."""
    from scipy import fft as sp_fft

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    nperseg = int(min(nperseg, n))
    if nperseg < 1:
        raise ValueError(f"welch_psd: nperseg must be >= 1, got {nperseg}")
    step = nperseg - nperseg // 2
    win = _hann_periodic(nperseg)
    scale = 1.0 / (float(sfreq) * (win * win).sum())
    freqs = sp_fft.rfftfreq(nperseg, 1.0 / float(sfreq))
    rows = x.reshape(-1, n)
    out = np.empty((rows.shape[0], freqs.size))
    block = max(1, _WELCH_BLOCK_VALUES // max(n, 1))
    for a in range(0, rows.shape[0], block):
        seg = sliding_window_view(rows[a : a + block], nperseg, axis=-1)[:, ::step, :]
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite row is NaN, without a warning
            spec = sp_fft.rfft((seg - seg.mean(axis=-1, keepdims=True)) * win, axis=-1)
            power = spec.real * spec.real + spec.imag * spec.imag
        power *= scale
        power[..., 1 : None if nperseg % 2 else -1] *= 2.0  # one-sided: the Nyquist bin is unpaired
        out[a : a + block] = power.mean(axis=-2)
    return freqs, out.reshape(x.shape[:-1] + (freqs.size,))


def _spectral_entropy_rows(rows, states, sfreq, nperseg, normalize, nperseg_s=None, fmin=None, fmax=None):
    n = rows.shape[-1]
    nperseg = _spectral_nperseg(n, sfreq, nperseg, nperseg_s)
    freqs, psd = welch_psd(rows, sfreq, nperseg)
    if fmin is not None or fmax is not None:
        psd = psd[..., _spectral_band_mask(freqs, fmin, fmax)]
    with np.errstate(divide="ignore", invalid="ignore"):
        psd_norm = psd / psd.sum(axis=-1, keepdims=True)
        se = -_xlogx_base2(psd_norm).sum(axis=-1)
    if normalize:
        se = se / np.log2(psd_norm.shape[-1])
    se[states != _ROW_OK] = np.nan  # constant: no power, entropy undefined
    return se


def _katz_fd_rows(rows, states):
    with np.errstate(divide="ignore", invalid="ignore"):
        dists = np.abs(np.diff(rows, axis=-1))
        total = np.sum(dists, axis=-1)
        avg = np.mean(dists, axis=-1)
        far = np.max(np.abs(rows - rows[:, :1]), axis=-1)
        kfd = np.log10(total / avg) / np.log10(far / avg)
    kfd[states != _ROW_OK] = np.nan
    return kfd


def _lzc_median_rows(rows, states, normalize):
    bits = np.ascontiguousarray(rows > np.median(rows, axis=-1, keepdims=True), dtype=np.uint8)
    counts = _lz76_count_rows(bits).astype(np.float64)
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


def _measure_rows(measure, rows, states, sfreq, p, channel):
    if measure == "perm_entropy":
        return _perm_entropy_rows(rows, states, p["order"], p["delay"], bool(p["normalize"]))
    if measure == "spectral_entropy_welch":
        return _spectral_entropy_rows(
            rows, states, sfreq, p["nperseg"], bool(p["normalize"]), p["nperseg_s"], p["fmin"], p["fmax"]
        )
    if measure == "sample_entropy":
        r_tol = float(p["r_sd_factor"]) * np.std(rows, axis=-1, ddof=0)
        return _sample_entropy_rows(rows, states, r_tol, p["order"], bool(p["inclusive"]))
    if measure == "svd_entropy":
        return _svd_entropy_rows(rows, states, p["order"], p["delay"], bool(p["normalize"]))
    if measure == "higuchi_fd":
        return _higuchi_fd_rows(rows, states, p["kmax"])
    if measure == "katz_fd":
        return _katz_fd_rows(rows, states)
    if measure == "dfa":
        return _dfa_rows(rows, states, _dfa_box_sizes(rows.shape[-1]))
    if measure == "lzc_median":
        return _lzc_median_rows(rows, states, bool(p["normalize"]))
    if measure in ("lzs_schartner", "lzs_schartner_lzw"):
        return _schartner_rows(measure, schartner_bits(rows, bool(p["detrend"])), states, p, channel)
    raise ValueError(f"{measure} is not a per-channel measure")


def _length_params(p: dict) -> dict:
    return {k: v for k, v in p.items() if k in ("order", "delay", "kmax")}


def _per_channel(measure: str, x, params: dict, sfreq: float | None = None):
    x3, ndim = _as_3d(x)
    p = _params_for(measure, params)
    _check_length(measure, x3.shape[-1], _length_params(p))
    out = np.empty(x3.shape[:2])
    for ch in range(x3.shape[0]):
        rows = _rows(x3, ch)
        out[ch] = _measure_rows(measure, rows, _row_states(rows), sfreq, p, ch)
    return _restore(out, ndim)


# ---------------------------------------------------------------------------------------
# public measures
# ---------------------------------------------------------------------------------------


def perm_entropy(x, order: int = 3, delay: int = 1, normalize: bool = True):
    """Permutation entropy (Bandt & Pompe 2002), in bits.

    ``H = -sum_pi p(pi) log2 p(pi)`` over the ordinal patterns ``pi`` of the delay vectors
    ``[x_i, x_{i+delay}, ..., x_{i+(order-1)delay}]``, ``i = 0 .. n-(order-1)delay-1``;
    ``p`` is the pattern count over the number of vectors. Tied samples rank by position
    (stable argsort). ``normalize=True`` divides by ``log2(order!)`` (range 0..1, clipped);
    ``False`` gives bits. Equals ``antropy.perm_entropy(x, order, delay, normalize)``
    (note antropy's default is ``normalize=False``). Constant signal: 0 (one pattern).
    Needs ``n >= (order - 1) * delay + 1``; order 2..10.
    """
    return _per_channel("perm_entropy", x, {"order": order, "delay": delay, "normalize": normalize})


def spectral_entropy_welch(
    x,
    sfreq: float,
    nperseg: int | None = None,
    normalize: bool = True,
    nperseg_s: float | None = None,
    fmin: float | None = None,
    fmax: float | None = None,
):
    """Spectral entropy of the Welch PSD (Inouye et al. 1991), in bits.

    ``H = -sum_f P(f) log2 P(f)`` over the Welch bins with ``fmin <= f <= fmax``, ``P = psd /
    sum(psd)`` over those bins, ``psd`` from ``scipy.signal.welch(x, sfreq, nperseg)`` (Hann
    window, 50 % overlap, constant detrend). ``nperseg_s`` gives the segment length in seconds
    (``round(nperseg_s * sfreq)`` samples; do not give ``nperseg`` too); ``nperseg`` None means
    scipy's default 256, clipped to the signal length. ``normalize=True`` divides by ``log2`` of
    the number of bins in the band (range 0..1).

    Sampling-rate invariance needs both a band and a segment in seconds: over 0-Nyquist the
    bins above the pass band are (nearly) empty but still count in the normaliser, and a
    256-sample segment is a different frequency resolution at every rate, so the same
    band-limited process gives different values at 250, 500 and 1000 Hz. The features pass
    the preprocessing pass band and ``welch_segment_s``.

    With ``fmin = fmax = nperseg_s = None`` this equals ``antropy.spectral_entropy(x, sfreq,
    method='welch', nperseg, normalize)`` (0-Nyquist, DC bin included). Constant signal: NaN
    (no power; antropy returns 0 or a value made of rounding noise). A band holding fewer than
    two bins raises ``ValueError``.
    """
    return _per_channel(
        "spectral_entropy_welch",
        x,
        {"nperseg": nperseg, "normalize": normalize, "nperseg_s": nperseg_s, "fmin": fmin, "fmax": fmax},
        sfreq=float(sfreq),
    )


def sample_entropy(x, order: int = 2, r_sd_factor: float = 0.2, inclusive: bool = False):
    """Sample entropy (Richman & Moorman 2000), natural log, Chebyshev distance.

    Templates of length ``m = order`` and ``m + 1`` start at ``i = 0 .. n-m-1``; ``B`` counts
    pairs ``i < j`` whose ``m`` coordinates all differ by less than ``r = r_sd_factor *
    std(x, ddof=0)`` (the std of this signal or window), ``A`` the pairs that also match on
    coordinate ``m + 1``; ``SampEn = -ln(A / B)``. ``inclusive=True`` matches ``|d| <= r``.

    Pairs are counted by sorting templates on their first coordinate and scanning only
    neighbours within ``r`` on it (same counts as the all-pairs scan, ~10x fewer pairs).

    Equals antropy.sample_entropy: its numba path (``n < 5000``) with ``inclusive=False``,
    its KDTree path (``n >= 5000``) with ``inclusive=True``. No template match (``B = 0``):
    NaN; ``B > 0`` but ``A = 0``: ``inf`` (both as antropy). Constant signal: NaN (antropy
    gives NaN or 0 depending on whether rounding leaves ``std(x)`` exactly 0). Needs
    ``n >= order + 2``.
    """
    return _per_channel("sample_entropy", x, {"order": order, "r_sd_factor": r_sd_factor, "inclusive": inclusive})


def svd_entropy(x, order: int = 3, delay: int = 1, normalize: bool = True):
    """SVD entropy (Roberts et al. 1999), in bits.

    ``H = -sum_i s_i log2 s_i`` with ``s`` the singular values of the ``(n-(order-1)delay,
    order)`` delay-embedding matrix divided by their sum; ``normalize=True`` divides by
    ``log2(order)``. Singular values by Householder QR and one-sided Jacobi (as accurate as
    LAPACK's). Equals ``antropy.svd_entropy(x, order, delay, normalize)``. Constant
    signal: 0 (at most one non-zero singular value). Needs ``n >= order * delay``.
    """
    return _per_channel("svd_entropy", x, {"order": order, "delay": delay, "normalize": normalize})


def higuchi_fd(x, kmax: int = 10):
    """Higuchi (1988) fractal dimension.

    ``L_m(k) = (n-1) / (k^2 N_m) sum_{j=1}^{N_m} |x_{m+jk} - x_{m+(j-1)k}|``, ``N_m =
    floor((n-m-1)/k)``, ``L(k)`` the mean over ``m = 0..k-1``; FD is the least-squares slope
    of ``ln L(k)`` on ``ln(1/k)``, ``k = 1..kmax`` (antropy's 1e-9 in the slope
    denominator kept). Equals ``antropy.higuchi_fd(x, kmax)``. Constant signal: NaN.
    Needs ``n >= 2 * kmax``.
    """
    return _per_channel("higuchi_fd", x, {"kmax": kmax})


def katz_fd(x):
    """Katz (1988) "fractal dimension" ``log10(L/a) / log10(d/a)``: an excursion index, not a dimension.

    ``L`` is the summed absolute successive difference, ``a`` its mean (so ``L/a = n - 1``),
    ``d`` the largest distance from the first sample: the value is ``log10(n - 1) /
    log10(d/a)``, i.e. how far the window travels from its start in units of its mean step.
    It is not bounded to [1, 2] (white noise ~5, a sine ~3.4) and, through ``n``, depends on the
    sampling rate. Equals ``antropy.katz_fd(x)``. Constant signal: NaN (0/0). Needs ``n >= 3``.
    """
    return _per_channel("katz_fd", x, {})


def dfa_scales_s(window_samples: int, sfreq: float) -> tuple[float, float]:
    """Smallest and largest DFA box of :func:`dfa` on windows of ``window_samples``, in seconds."""
    boxes = _dfa_box_sizes(int(window_samples))
    return float(boxes[0] / sfreq), float(boxes[-1] / sfreq)


def dfa(x):
    """Short-scale detrended fluctuation analysis exponent (Peng et al. 1994), nolds' convention.

    Profile ``cumsum(x - mean(x))``; non-overlapping boxes of ``n`` samples for ``n`` in 4,
    floor(4*1.2^i), ... <= 0.1 * len(x); per box a least-squares line is removed; ``F(n)`` is
    the root of the mean over boxes of the mean squared residual; alpha is the slope of
    ``ln F(n)`` on ``ln n`` over ``F(n) > 0``. Equals ``antropy.detrended_fluctuation(x)``.

    The scales are those of the signal or window given: on 2-s windows at 250 Hz they span
    16-168 ms (:func:`dfa_scales_s`), so this is a short-scale slope set by the spectrum's
    shape, not the long-range temporal correlation exponent of amplitude envelopes
    (Linkenkaer-Hansen et al. 2001), and it changes with the sampling rate.
    Constant signal: NaN (antropy: NaN when ``x - mean(x)`` is exactly 0, else a number
    made of rounding noise). Needs enough samples for two box sizes (58).
    """
    return _per_channel("dfa", x, {})


def lzc_median(x, normalize: bool = True):
    """Lempel-Ziv complexity of the signal binarised at its median (the common convention).

    Bits ``x > median(x)`` (ties with the median go to 0); LZ76 phrase count (Lempel & Ziv
    1976, Kaspar & Schuster 1987 counting; see :func:`lz76_count`); ``normalize=True``
    divides by ``n / log2(n)`` (Zhang et al. 2009). Equals ``antropy.lziv_complexity(bits,
    normalize)`` on those bits — antropy does no binarisation itself. Constant signal: all
    bits 0, count 2 for ``n >= 2`` (its value, not NaN).
    """
    return _per_channel("lzc_median", x, {"normalize": normalize})


def lzs_schartner(x, seed: int = 0, n_shuffles: int = 1, detrend: bool = False):
    """Single-channel Lempel-Ziv complexity LZs after Schartner et al. (2017, Sci Rep 7:46421), LZ76 variant.

    Bits ``|hilbert(x)| > mean(|hilbert(x)|)`` (instantaneous amplitude above its mean, per
    signal or window), LZ76 phrase count divided by the mean count of ``n_shuffles`` shuffled
    copies of the same bits. Shuffle ``k`` of channel ``c``, window ``w`` is a Fisher-Yates
    permutation driven by SplitMix64 keyed on ``(seed, c, w, k)`` (shuffle 0: the key this
    measure always used), so values do not depend on threading.

    What it gives: white noise ~1; a sine with a slow amplitude modulation << 1 (its envelope
    is smooth, so the bits come in long runs). A *pure* sine is not low: its Hilbert envelope
    is constant up to edge effects and rounding, so the bits of "envelope above its mean" are
    close to random and LZs is ~0.9 (tested in tests/eeg/test_eeg_measures_validity.py).

    Differences from the published code (see :func:`lzs_schartner_lzw`, which follows it): the
    published code demeans and linearly detrends each signal before the Hilbert transform
    (here only if ``detrend``) and counts the LZW dictionary, not LZ76 phrases; ranks agree,
    values do not. Constant signal: NaN.
    """
    return _per_channel("lzs_schartner", x, {"seed": seed, "n_shuffles": n_shuffles, "detrend": detrend})


def lzs_schartner_lzw(x, seed: int = 0, n_shuffles: int = 5, detrend: bool = True):
    """Single-channel LZs with the published convention of Schartner et al. (2017).

    Per signal or window: demean and linearly detrend (``detrend=True``, as the published
    ``detrend(x - mean(x))``), bits ``|hilbert(x)| > mean``, and the size of the LZW-style
    dictionary of the bit string (:func:`lzw_dict_size`), divided by the mean dictionary size
    of ``n_shuffles`` seeded shuffles of the bits (the paper used one shuffle; a single
    shuffle's count varies by ~1 % per window, 5 shuffles ~0.4 %, hence the default 5).
    Shuffles are keyed as in :func:`lzs_schartner` (stream kind 3). Constant signal: NaN.
    """
    return _per_channel("lzs_schartner_lzw", x, {"seed": seed, "n_shuffles": n_shuffles, "detrend": detrend})


def _spatiotemporal(measure: str, x, params: dict, n_threads: int):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"{measure} needs (n_channels, n_times) or 3-D windows, got {x.shape}")
    x3 = x[:, None, :] if x.ndim == 2 else x
    p = _params_for(measure, params)
    _check_length(measure, x3.shape[-1], {})
    bits = np.empty(x3.shape, np.uint8)
    ok = np.ones(x3.shape[1], bool)
    for ch in range(x3.shape[0]):
        rows = _rows(x3, ch)
        ok &= _row_states(rows) == _ROW_OK
        bits[ch] = schartner_bits(rows, bool(p["detrend"]))
    out = _lzc_st_parallel(bits, ok, measure, p, n_threads)
    return float(out[0]) if x.ndim == 2 else out


def lzc_schartner_st(x, seed: int = 0, n_threads: int = 1, n_shuffles: int = 1, detrend: bool = False):
    """Spatio-temporal Lempel-Ziv complexity LZc after Schartner et al. (2017), LZ76 variant.

    Each channel is binarised as in :func:`lzs_schartner`; the bits of all channels are
    concatenated time-major (``for t: for channel``) into one sequence of ``n_channels *
    n_times`` symbols whose LZ76 count is divided by the mean count of ``n_shuffles``
    shuffled copies (streams ``(seed, window index, k)``). ``x`` of shape ``(n_channels,
    n_times)`` gives a float, ``(n_channels, n_windows, n_times)`` gives ``(n_windows,)``. A
    window in which any channel is non-finite or constant gives NaN (drop flat channels
    first). Memory: about 8 bytes per symbol of workspace per thread (up to 32 if the
    automaton is needed). The published code counts the LZW dictionary instead (see
    :func:`lzc_schartner_lzw`): values here are lower (e.g. 0.29-0.76 where it gives 0.59-0.99).
    """
    return _spatiotemporal(
        "lzc_schartner_st", x, {"seed": seed, "n_shuffles": n_shuffles, "detrend": detrend}, n_threads
    )


def lzc_schartner_lzw(x, seed: int = 0, n_shuffles: int = 5, detrend: bool = True, n_threads: int = 1):
    """Spatio-temporal LZc with the published convention of Schartner et al. (2017).

    As :func:`lzc_schartner_st` (same binarisation and time-major channel order), but each
    channel's window is demeaned and linearly detrended first (``detrend=True``), the count
    is the LZW-style dictionary size of the published code (:func:`lzw_dict_size`) and the
    normaliser is the mean dictionary size of ``n_shuffles`` seeded shuffles of the sequence
    (stream kind 4). Memory: 8 bytes per symbol of workspace per thread.
    """
    return _spatiotemporal(
        "lzc_schartner_lzw", x, {"seed": seed, "n_shuffles": n_shuffles, "detrend": detrend}, n_threads
    )


def lz76_count(bits) -> int:
    """LZ76 phrase count of a 0/1 sequence, O(n) (suffix automaton; see ``_lz76_count_sam``).

    Same count as ``antropy.lziv_complexity(bits)`` (Kaspar & Schuster's O(n^2) scan) for
    every binary input; 300,000 symbols take a few milliseconds. From 16,384 symbols a
    prefix index is tried first (exact, faster on high-entropy input, bounded work).
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


# ---------------------------------------------------------------------------------------
# surrogate-normalised measures
# ---------------------------------------------------------------------------------------

#: Surrogate methods: "phase" (phase randomisation, Theiler et al. 1992) and "iaaft" (Schreiber &
#: Schmitz 1996). Defaults of the ``surrogates`` argument of :func:`compute_windowed`.
SURROGATE_DEFAULTS: dict = {"method": "phase", "n": 10, "seed": 0, "measures": [], "iaaft_iterations": 20}
SURROGATE_METHODS = ("phase", "iaaft")
#: Suffixes of the surrogate-normalised outputs of a measure ``m``: ``m + suffix``.
SURROGATE_SUFFIXES = ("_surr_ratio", "_surr_z")

MEASURE_INFO["*_surr_ratio"] = (
    "Surrogate-normalised measure m_surr_ratio = m(window) / mean over n surrogates of m(surrogate), "
    "per channel and window; surrogates share the window's periodogram (method 'phase': Fourier phases "
    "uniformly randomised, DC and Nyquist kept, Theiler et al. 1992, Physica D 58:77) or its periodogram "
    "approximately and its exact amplitude distribution (method 'iaaft', Schreiber & Schmitz 1996, PRL "
    "77:635). 1 = what a linear Gaussian process with the window's spectrum gives: it separates "
    "nonlinear/non-Gaussian structure from spectral change (e.g. alpha suppression). Surrogate k of "
    "channel c, window w is seeded from (seed, c, w, k) (SplitMix64): independent of threads. NaN where "
    "the measure is NaN"
)
MEASURE_INFO["*_surr_z"] = (
    "z of a measure against its surrogates: (m(window) - mean) / SD (ddof=1) over the n surrogates of "
    "*_surr_ratio (same surrogates); |z| > 2 means the window is unlike a linear Gaussian process with "
    "its spectrum; with n = 10 the SD is itself uncertain by ~25 %"
)


def surrogate_measure_names(measures) -> list[str]:
    """Output names of the surrogate-normalised variants of ``measures`` (ratio, then z, per measure)."""
    return [m + suffix for m in measures for suffix in SURROGATE_SUFFIXES]


def is_surrogate_measure(name: str) -> bool:
    return any(name.endswith(suffix) and name[: -len(suffix)] in MEASURES for suffix in SURROGATE_SUFFIXES)


def _surrogate_config(surrogates) -> dict | None:
    if not surrogates:
        return None
    cfg = {**SURROGATE_DEFAULTS, **dict(surrogates)}
    unknown = set(cfg) - set(SURROGATE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown surrogate setting(s) {sorted(unknown)}; known: {sorted(SURROGATE_DEFAULTS)}")
    if cfg["method"] not in SURROGATE_METHODS:
        raise ValueError(f"surrogate method {cfg['method']!r} unknown; known: {SURROGATE_METHODS}")
    if int(cfg["n"]) != cfg["n"] or cfg["n"] < 2:
        raise ValueError(f"surrogates: n must be an integer >= 2, got {cfg['n']!r}")
    for m in cfg["measures"]:
        if m in SPATIOTEMPORAL_MEASURES:
            raise ValueError(f"surrogates: {m} combines channels; surrogate normalisation is per channel only")
        _params_for(m, None)
    if not cfg["measures"]:
        return None
    cfg["n"], cfg["seed"], cfg["iaaft_iterations"] = int(cfg["n"]), int(cfg["seed"]), int(cfg["iaaft_iterations"])
    return cfg


def make_surrogates(
    rows, n: int = 10, method: str = "phase", seed: int = 0, channel: int = 0, iaaft_iterations: int = 20
) -> np.ndarray:
    """Surrogates of each row (window) of ``rows`` (n_windows, n_times): (n_windows, n, n_times).

    ``phase``: one rFFT per window, a batch of random phase rotations (DC and Nyquist kept), one
    batched irFFT; each surrogate has exactly the window's periodogram and mean. ``iaaft``:
    from a seeded shuffle of the window, ``iaaft_iterations`` rounds of (impose the window's
    Fourier amplitudes, then its sorted values by rank), batched over windows and surrogates;
    the result has exactly the window's values and approximately its periodogram. Surrogate k of
    window w of ``channel`` depends only on (seed, channel, w, k).
    """
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    n_rows, n_t = rows.shape
    spec = np.fft.rfft(rows, axis=-1)
    if method == "phase":
        return np.fft.irfft(
            _randomise_phases(spec, int(n), n_t % 2 == 0, int(seed), _KIND_PHASES, int(channel)), n_t, axis=-1
        )
    if method != "iaaft":
        raise ValueError(f"surrogate method {method!r} unknown; known: {SURROGATE_METHODS}")
    amp = np.abs(spec)[:, None, :]
    sorted_vals = np.broadcast_to(np.sort(rows, axis=-1)[:, None, :], (n_rows, int(n), n_t))
    s = _shuffled_copies(rows, int(n), int(seed), _KIND_IAAFT_START, int(channel))
    for _ in range(int(iaaft_iterations)):
        f = np.fft.rfft(s, axis=-1)
        mag = np.abs(f)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(mag > 0, f * (amp / mag), amp)
        s_spec = np.fft.irfft(f, n_t, axis=-1)
        order = np.argsort(s_spec, axis=-1, kind="stable")
        np.put_along_axis(s, order, sorted_vals, axis=-1)
    return s


def _surrogate_rows(measures, rows, raw, sfreq, p, channel, cfg) -> dict:
    """Surrogate-normalised variants (ratio and z) of ``measures`` on one channel's windows."""
    n_rows, n_t = rows.shape
    n = cfg["n"]
    surr = make_surrogates(rows, n, cfg["method"], cfg["seed"], channel, cfg["iaaft_iterations"])
    flat = np.ascontiguousarray(surr.reshape(n_rows * n, n_t))
    states = _row_states(flat)
    bits = {}
    out = {}
    for m in measures:
        if m in _SCHARTNER:
            d = bool(p[m]["detrend"])
            if d not in bits:
                bits[d] = schartner_bits(flat, d)
            vals = _schartner_rows(m, bits[d], states, p[m], channel)
        else:
            vals = _measure_rows(m, flat, states, float(sfreq), p[m], channel)
        vals = vals.reshape(n_rows, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = vals.mean(axis=1)
            sd = vals.std(axis=1, ddof=1)
            out[m + "_surr_ratio"] = raw[m] / mean
            out[m + "_surr_z"] = (raw[m] - mean) / sd
    return out


# ---------------------------------------------------------------------------------------
# measure sets
# ---------------------------------------------------------------------------------------


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


def _resolve(measures, params) -> tuple[list[str], dict[str, dict]]:
    measures = list(MEASURES if measures is None else measures)
    params = dict(params or {})
    for m in list(measures) + list(params):
        _params_for(m, None)  # unknown measure names fail here, with a hint
    extra = set(params) - set(measures)
    if extra:
        raise ValueError(f"params given for measures not requested: {sorted(extra)}")
    return measures, {m: _params_for(m, params.get(m)) for m in measures}


def compute_windowed(
    x,
    sfreq: float,
    window_samples: int | None,
    step_samples: int | None,
    measures=None,
    params: dict | None = None,
    n_threads: int = 1,
    surrogates: dict | None = None,
) -> dict[str, np.ndarray]:
    """Compute a set of measures on sliding windows of every channel.

    ``x`` is ``(n_channels, n_times)`` with ``window_samples``/``step_samples`` (see
    :func:`sliding_windows`), or already windowed ``(n_channels, n_windows, n)`` with both
    None. ``measures`` defaults to :data:`MEASURES`; ``params`` maps a measure to the
    parameters that differ from :data:`DEFAULT_PARAMS` (unknown names fail with a hint).
    Returns ``{measure: (n_channels, n_windows) float64}``, except the spatio-temporal
    measures (:data:`SPATIOTEMPORAL_MEASURES`), which are ``(n_windows,)``. Values equal the single-measure functions on the same
    windows. ``n_threads > 1`` runs channels in a thread pool (the kernels release the GIL);
    results do not depend on ``n_threads``.

    ``surrogates`` (optional) adds surrogate-normalised variants: ``{"method": "phase" |
    "iaaft", "n": 10, "seed": 0, "measures": [...], "iaaft_iterations": 20}`` (missing keys take
    :data:`SURROGATE_DEFAULTS`; the listed measures must be per-channel measures requested in
    ``measures``). For each listed ``m`` the result gains ``m + "_surr_ratio"`` (value / mean of
    the surrogates' values) and ``m + "_surr_z"`` (z against the surrogates), both
    ``(n_channels, n_windows)``; see :func:`make_surrogates` and ``MEASURE_INFO["*_surr_ratio"]``.
    """
    x = np.asarray(x, dtype=np.float64)
    if window_samples is None and step_samples is None:
        if x.ndim != 3:
            raise ValueError("without window/step, x must be (n_channels, n_windows, n_times)")
        x3 = x
    else:
        if x.ndim != 2:
            raise ValueError(f"x must be (n_channels, n_times) with window/step, got {x.shape}")
        x3 = sliding_windows(x, window_samples, step_samples)
    measures, p = _resolve(measures, params)
    n_ch, n_win, n = x3.shape
    for m in measures:
        _check_length(m, n, _length_params(p[m]))
    surr_cfg = _surrogate_config(surrogates)
    surr_measures = [] if surr_cfg is None else list(dict.fromkeys(surr_cfg["measures"]))
    missing = [m for m in surr_measures if m not in measures]
    if missing:
        raise ValueError(f"surrogates requested for measures not computed: {missing}")
    st_measures = [m for m in measures if m in SPATIOTEMPORAL_MEASURES]
    per_channel = [m for m in measures if m not in SPATIOTEMPORAL_MEASURES]
    # the Hilbert binarisation is shared by the Schartner measures with the same detrend setting
    bit_kinds = sorted({bool(p[m]["detrend"]) for m in measures if m in _SCHARTNER})

    def one_channel(ch):
        rows = _rows(x3, ch)
        states = _row_states(rows)
        bits = _schartner_bits_multi(rows, bit_kinds)
        res = {}
        for m in per_channel:
            if m in _SCHARTNER:
                res[m] = _schartner_rows(m, bits[bool(p[m]["detrend"])], states, p[m], ch)
            else:
                res[m] = _measure_rows(m, rows, states, float(sfreq), p[m], ch)
        if surr_measures:
            res.update(_surrogate_rows(surr_measures, rows, res, sfreq, p, ch, surr_cfg))
        return res, states, bits

    if n_threads > 1 and n_ch > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            results = list(pool.map(one_channel, range(n_ch)))
    else:
        results = [one_channel(ch) for ch in range(n_ch)]

    surr_names = surrogate_measure_names(surr_measures)
    out = {m: np.stack([r[0][m] for r in results]) for m in per_channel + surr_names}
    if st_measures:
        ok = np.all(np.stack([r[1] for r in results]) == _ROW_OK, axis=0)
        for m in st_measures:
            bits = np.stack([r[2][bool(p[m]["detrend"])] for r in results])
            out[m] = _lzc_st_parallel(bits, ok, m, p[m], n_threads)
    return {m: out[m] for m in measures + surr_names}


def compute_whole(
    x,
    sfreq: float,
    measures=("lzc_median", "lzs_schartner", "lzc_schartner_st"),
    params: dict | None = None,
    n_threads: int = 1,
) -> dict:
    """Measures on each whole continuous channel of ``x`` (n_channels, n_times).

    Same definitions as :func:`compute_windowed` with one window spanning the recording;
    returns ``{measure: (n_channels,)}`` and a float for ``lzc_schartner_st``. The default
    set is the Lempel-Ziv family, O(n) per channel; sample entropy is O(n^2) here.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be (n_channels, n_times), got {x.shape}")
    res = compute_windowed(x[:, None, :], sfreq, None, None, measures, params, n_threads)
    return {m: (float(v[0]) if m in SPATIOTEMPORAL_MEASURES else v[:, 0]) for m, v in res.items()}
