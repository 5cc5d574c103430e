"""What every kernel family shares: parameters and definitions of each measure, windows, row states
(non-finite, constant), the regression slope antropy uses, and input handling (shapes, parameter checks)."""

from __future__ import annotations

import difflib

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.core.measures import MEASURES

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


# Precision of the Schartner binarisation (pipelines.eeg.kernels.lempel_ziv.schartner_bits), part of each
# Schartner measure's convention.
_ENVELOPE_PRECISION = (
    ". Envelope precision: sqrt(x^2 + H(x)^2), H from one real FFT pair, float64; equals "
    "|scipy.signal.hilbert(x)| within 1e-12 of the window's mean envelope (measured <= 1e-14), so a bit can "
    "differ from scipy's only where the envelope is that close to its mean (none of 57.6M on a 64-channel "
    "10-min recording)"
)


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
    "lzs_schartner_lzw): ranks agree, values do not" + _ENVELOPE_PRECISION,
    "lzc_schartner_st": "Spatio-temporal LZc after Schartner et al. (2017), LZ76 VARIANT: per-channel "
    "|hilbert| > mean bits concatenated time-major (for t: for channel), LZ76 phrase count / mean count of "
    "n_shuffles seeded shuffles (features: 1); no detrend unless detrend. Caveat: NOT the published "
    "counter (LZW dictionary, see lzc_schartner_lzw); values are lower than published LZc" + _ENVELOPE_PRECISION,
    "lzs_schartner_lzw": "Single-channel LZs as published by Schartner et al. (2017, Sci Rep 7:46421; "
    "code github.com/mschart/SignalDiversity): each window demeaned and linearly detrended, bits "
    "|hilbert(x)| > mean, size of the LZW-style dictionary (cpr: grow the word while it is in the "
    "dictionary, else add it and restart at the current symbol; dictionary starts empty), divided by the "
    "mean dictionary size of n_shuffles (default 5) seeded shuffles (the paper: one). Caveat: the shuffle "
    "normaliser keeps the fraction of ones, so it measures order, not the amplitude distribution" + _ENVELOPE_PRECISION,
    "lzc_schartner_lzw": "Spatio-temporal LZc as published by Schartner et al. (2017): each channel "
    "window demeaned and linearly detrended, |hilbert| > mean bits, concatenated time-major (for t: for "
    "channel), LZW dictionary size (as lzs_schartner_lzw) / mean over n_shuffles seeded shuffles of "
    "the sequence (default 5; the paper: one, whose count varies by ~1 % per window). NaN if "
    "any channel of the window is non-finite or constant" + _ENVELOPE_PRECISION,
}


_EPS_REG = 1e-9  # antropy.utils.epsilon, added to the regression denominator


_ROW_OK, _ROW_NONFINITE, _ROW_CONSTANT = 0, 1, 2


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
