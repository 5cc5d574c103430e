"""Surrogate-normalised measures: phase-randomised and IAAFT surrogates, seeded per (channel, window,
surrogate), and each measure's ratio and z against them."""

from __future__ import annotations

import numpy as np
from numba import njit

from pipelines.core.measures import MEASURES, SPATIOTEMPORAL_MEASURES
from pipelines.eeg.kernels.common import _ROW_NONFINITE, _SCHARTNER, MEASURE_INFO, _params_for, _row_states
from pipelines.eeg.kernels.lempel_ziv import _lzc_median_rows, _schartner_rows, schartner_bits
from pipelines.eeg.kernels.lz_counts import _shuffle_inplace_fast, _shuffle_key
from pipelines.eeg.kernels.measure_functions import _measure_rows

_KIND_PHASES, _KIND_IAAFT_START = 5, 6


@njit(cache=True, nogil=True)
def _randomise_phases(spec, n_surr, n_even, seed, kind, channel):
    """``spec`` (n_rows, n_freqs) rFFT of the windows -> (n_rows, n_surr, n_freqs): every bin but
    DC (and Nyquist for even n) multiplied by a unit complex number of uniformly distributed
    phase, drawn from the SplitMix64 stream of (seed, kind, channel, row, surrogate): a point
    uniform in the square [-1, 1)^2 (two 32-bit halves of one draw), rejected outside the unit
    disc (or too near 0), divided by its length (no cos/sin). DC and Nyquist stay real, so each
    surrogate has the window's mean and exactly its periodogram."""
    out = np.empty((spec.shape[0], n_surr, spec.shape[1]), np.complex128)
    _randomise_phases_into(spec, out, n_even, seed, kind, channel, 0)
    return out


# Draws made per batch by _accepted_draws (its outputs need this much room past the accepted points they return).
_DRAW_BATCH = 64


@njit(cache=True, nogil=True)
def _accepted_draws(key, nb, ua, ub, ur2):
    """The first ``nb`` accepted points of the SplitMix64 stream started at ``key`` into ``ua``, ``ub`` and
    their squared lengths into ``ur2`` (see :func:`_randomise_phases`); each of the three needs room for
    ``nb + _DRAW_BATCH`` values. SplitMix64 is counter-based (draw j hashes ``key + (j + 1) * golden``), so
    the draws and their acceptance are made a batch of 64 at a time in a loop without dependencies
    (vectorised: exact integer operations, and the same IEEE operations per point as one at a time), then
    compacted without a branch: every point is stored at the next free slot, which advances only when the
    point is accepted (points accepted past the nb-th are written and ignored); the squared lengths of the
    accepted points are computed again afterwards, in a vectorised pass (the same values)."""
    scale = 1.0 / 2147483648.0  # 2^-31: a 32-bit half -> [-1, 1)
    golden = np.uint64(0x9E3779B97F4A7C15)
    ba = np.empty(_DRAW_BATCH)
    bb = np.empty(_DRAW_BATCH)
    ok = np.empty(_DRAW_BATCH, np.int64)
    state = key
    cnt = 0
    while cnt < nb:
        for j in range(_DRAW_BATCH):
            z = state + np.uint64(j + 1) * golden
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            x = float(z >> np.uint64(32)) * scale - 1.0
            y = float(z & np.uint64(0xFFFFFFFF)) * scale - 1.0
            ba[j] = x
            bb[j] = y
            r2 = x * x + y * y
            ok[j] = np.int64((1e-12 < r2) & (r2 <= 1.0))
        state = state + np.uint64(_DRAW_BATCH) * golden
        for j in range(_DRAW_BATCH):
            ua[cnt] = ba[j]
            ub[cnt] = bb[j]
            cnt += ok[j]
    for j in range(nb):  # the squared lengths of the accepted points (the same operations)
        ur2[j] = ua[j] * ua[j] + ub[j] * ub[j]


@njit(cache=True, nogil=True)
def _randomise_phases_into(spec, out, n_even, seed, kind, channel, w0):
    """:func:`_randomise_phases` into ``out`` (n_rows, n_surr, n_freqs), row r keyed as window w0 + r.

    The accepted draws of a surrogate are collected first (:func:`_accepted_draws`), then the unit vectors
    are made with array operations the compiler vectorises (``1 / sqrt(r2)``, both IEEE-exact) and the bins
    rotated as numba's complex product does, ``(sr c - si d) + i (sr d + si c)``: the same values. A complex64
    ``spec``/``out`` gets the same unit vectors rounded to float32 and the product in float32."""
    n_rows, n_surr, nf = out.shape
    nb = nf - 1 - (1 if n_even and nf > 1 else 0)  # bins 1..nb are rotated
    m = max(nb, 1)
    ua = np.empty(m + _DRAW_BATCH)
    ub = np.empty(m + _DRAW_BATCH)
    ur2 = np.empty(m + _DRAW_BATCH)
    inv = np.empty(m)
    uc = np.empty_like(spec.real[0, :m])  # float32 for a complex64 spectrum: the product in float32
    ud = np.empty_like(uc)
    for r in range(n_rows):
        for k in range(n_surr):
            _accepted_draws(_shuffle_key(seed, kind, channel, w0 + r, k), nb, ua, ub, ur2)
            np.sqrt(ur2[:m], inv)
            np.divide(1.0, inv, inv)
            for f in range(m):
                uc[f] = ua[f] * inv[f]
                ud[f] = ub[f] * inv[f]
            out[r, k, 0] = spec[r, 0]
            for f in range(1, nb + 1):
                c = uc[f - 1]
                d = ud[f - 1]
                sr = spec[r, f].real
                si = spec[r, f].imag
                out[r, k, f] = complex(sr * c - si * d, sr * d + si * c)
            if nb + 1 < nf:
                out[r, k, nf - 1] = spec[r, nf - 1]


@njit(cache=True, nogil=True)
def _nonfinite_states(rows):
    """Per row: ``_ROW_NONFINITE`` if any sample is NaN or infinite, else 0 (the only state lzc_median
    reads; constant rows are not told apart). ``x - x`` is +0 for a finite x and NaN otherwise, summed in
    four independent chains (about twice as fast as :func:`_row_states`)."""
    nr, n = rows.shape
    out = np.zeros(nr, np.uint8)
    for r in range(nr):
        row = rows[r]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        t = 0
        while t + 4 <= n:
            a0 += row[t] - row[t]
            a1 += row[t + 1] - row[t + 1]
            a2 += row[t + 2] - row[t + 2]
            a3 += row[t + 3] - row[t + 3]
            t += 4
        while t < n:
            a0 += row[t] - row[t]
            t += 1
        if not (a0 + a1 + a2 + a3 == 0.0):
            out[r] = _ROW_NONFINITE
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
    "the measure is NaN. Precision: lzc_median's phase surrogates are float32 (the window's float64 spectrum "
    "and the unit rotations rounded to float32, float32 product and irFFT; the median split reads the float32 "
    "samples); every other measure's surrogates are float64. Stated tolerance against float64 surrogates: "
    "samples within 1e-5 of the surrogate's SD, at most 1 in 1000 surrogate counts different (each by <= 2), "
    "lzc_median_surr_ratio within 1 % and lzc_median_surr_z within 0.5; measured on a 64-channel 10-min "
    "recording: samples within 1.3e-6 SD, 0 of 171,520 counts different"
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


# Windows per block of the fused phase-surrogate path (8 x 10 surrogates x 1000 samples: ~1 MB, stays in cache).
_SURR_BLOCK_WINDOWS = 8


#: Precision of the phase surrogates lzc_median is measured on (the fused path): float32 (see
#: ``MEASURE_INFO["*_surr_ratio"]`` and :func:`_phase_surrogate_lzc_median`).
PHASE_SURROGATE_LZC_DTYPE = np.float32

#: Stated tolerance of the float32 phase surrogates against float64 ones (tests/eeg/test_kernel_precision.py):
#: each sample within this fraction of the surrogate's SD, at most this fraction of the surrogates' lzc_median
#: counts different (each by at most PHASE_SURROGATE_LZC_COUNT_ATOL), and a window's lzc_median_surr_ratio
#: within PHASE_SURROGATE_LZC_RATIO_RTOL (relative), its _surr_z within PHASE_SURROGATE_LZC_Z_ATOL.
PHASE_SURROGATE_SAMPLE_RTOL = 1e-5
PHASE_SURROGATE_LZC_COUNT_FRACTION = 1e-3
PHASE_SURROGATE_LZC_COUNT_ATOL = 2
PHASE_SURROGATE_LZC_RATIO_RTOL = 1e-2
PHASE_SURROGATE_LZC_Z_ATOL = 0.5


def _phase_surrogate_lzc_median(rows, n, seed, channel, normalize, dtype=PHASE_SURROGATE_LZC_DTYPE) -> np.ndarray:
    """lzc_median of the ``n`` phase surrogates of each row: (n_rows, n), made a block of windows at a time
    into reused buffers (rotation, irFFT, median split and count stay in cache; no 24 MB arrays per channel).
    ``np.fft.irfft`` transforms each row on its own, so blocks do not change the surrogates.

    Precision ``dtype``: with float64 the values of :func:`make_surrogates` then the measure on all of them;
    with float32 (the default) the window's float64 spectrum rounded to complex64 is rotated by the same unit
    vectors (float64 draws, rounded to float32) in float32 and the surrogates made by a float32 irFFT (the
    median split then reads float32 samples): a
    surrogate's bits differ from float64's only where a sample lies within float32 rounding (~1e-7 of the
    signal's scale) of its median. NumPy's pocketfft makes the same float32 operations on every CPU. A channel
    whose values could overflow float32 is made in float64 (:func:`_surrogate_precision_and_states`)."""
    n_rows, n_t = rows.shape
    dtype, row_states = _surrogate_precision_and_states(rows, dtype)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128
    spec = np.fft.rfft(rows, axis=-1).astype(cdtype, copy=False)
    b = min(_SURR_BLOCK_WINDOWS, n_rows)
    phased = np.empty((b, n, spec.shape[1]), cdtype)
    surr = np.empty((b, n, n_t), dtype)
    out = np.empty((n_rows, n))
    for w0 in range(0, n_rows, b):
        nw = min(b, n_rows - w0)
        _randomise_phases_into(spec[w0 : w0 + nw], phased[:nw], n_t % 2 == 0, int(seed), _KIND_PHASES, int(channel), w0)
        with np.errstate(invalid="ignore", over="ignore"):  # a non-finite window: NaN surrogates, NaN values
            np.fft.irfft(phased[:nw], n_t, axis=-1, out=surr[:nw])
        flat = surr[:nw].reshape(nw * n, n_t)
        states = _nonfinite_states(flat) if row_states is None else np.repeat(row_states[w0 : w0 + nw], n)
        out[w0 : w0 + nw] = _lzc_median_rows(flat, states, normalize).reshape(nw, n)
    return out


def _surrogate_precision_and_states(rows, dtype):
    """The dtype to make the surrogates in and the non-finite state of every surrogate of each row, or None
    for the states (check each surrogate). A surrogate sample is bounded by the sum of the spectrum's moduli,
    <= n^2 max|x| (every FFT intermediate likewise): with n^2 max|x| below 1e-8 of the dtype's largest value
    a finite row has finite surrogates and a non-finite row NaN ones, so the row's state is theirs. Rows that
    could overflow float32 (|x| ~ 1e24 for n = 1000; no EEG) are made in float64 instead."""
    states = _nonfinite_states(rows)
    bound = _max_abs_of_finite_rows(rows, states) * rows.shape[1] ** 2
    if dtype == np.float32 and bound >= 1e-8 * float(np.finfo(np.float32).max):
        dtype = np.float64
    return dtype, (states if bound < 1e-8 * float(np.finfo(dtype).max) else None)


@njit(cache=True, nogil=True)
def _max_abs_of_finite_rows(rows, states):
    """Largest |x| over the rows whose state is 0 (finite); 0.0 if there is none."""
    top = 0.0
    for r in range(rows.shape[0]):
        if states[r] == 0:
            for v in rows[r]:
                top = max(top, abs(v))
    return top


def _surrogate_rows(measures, rows, raw, sfreq, p, channel, cfg) -> dict:
    """Surrogate-normalised variants (ratio and z) of ``measures`` on one channel's windows."""
    n_rows, n_t = rows.shape
    n = cfg["n"]
    flat = states = None
    bits = {}
    out = {}
    for m in measures:
        if m == "lzc_median" and cfg["method"] == "phase":
            vals = _phase_surrogate_lzc_median(rows, n, cfg["seed"], channel, bool(p[m]["normalize"]))
            _ratio_and_z(out, m, raw[m], vals)
            continue
        if flat is None:
            surr = make_surrogates(rows, n, cfg["method"], cfg["seed"], channel, cfg["iaaft_iterations"])
            flat = np.ascontiguousarray(surr.reshape(n_rows * n, n_t))
            states = _row_states(flat)
        if m in _SCHARTNER:
            d = bool(p[m]["detrend"])
            if d not in bits:
                bits[d] = schartner_bits(flat, d)
            vals = _schartner_rows(m, bits[d], states, p[m], channel)
        else:
            vals = _measure_rows(m, flat, states, float(sfreq), p[m], channel)
        _ratio_and_z(out, m, raw[m], vals.reshape(n_rows, n))
    return out


def _ratio_and_z(out: dict, m: str, raw: np.ndarray, vals: np.ndarray) -> None:
    """``m_surr_ratio`` and ``m_surr_z`` of the raw values against the surrogates' values (n_rows, n)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vals.mean(axis=1)
        sd = vals.std(axis=1, ddof=1)
        out[m + "_surr_ratio"] = raw / mean
        out[m + "_surr_z"] = (raw - mean) / sd
