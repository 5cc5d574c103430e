"""The single-measure functions (one signal, whole channels or windows) and the dispatch from a measure
name to its kernel on rows."""

from __future__ import annotations

import numpy as np

from pipelines.eeg.kernels.common import _ROW_OK, _as_3d, _params_for, _restore, _row_states, _rows
from pipelines.eeg.kernels.entropy import (
    _perm_entropy_rows,
    _sample_entropy_rows,
    _spectral_entropy_rows,
    _svd_entropy_rows,
)
from pipelines.eeg.kernels.fractal import _dfa_box_sizes, _dfa_rows, _higuchi_fd_rows, _katz_fd_rows
from pipelines.eeg.kernels.lempel_ziv import _lzc_median_rows, _lzc_st_parallel, _schartner_rows, schartner_bits


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

    Pairs are counted by bucketing templates into cells of ``r / 4`` on their first coordinate
    and comparing each only with the later templates up to four cells on (same counts as the
    all-pairs scan, ~8x fewer pairs).

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
