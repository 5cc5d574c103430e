"""Measure sets: :func:`compute_windowed` (every requested measure on every channel's windows, threads
over channels) and :func:`compute_whole` (whole continuous channels)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipelines.core.measures import MEASURES, SPATIOTEMPORAL_MEASURES
from pipelines.eeg.kernels.common import _ROW_OK, _SCHARTNER, _params_for, _row_states, _rows, sliding_windows
from pipelines.eeg.kernels.lempel_ziv import _lzc_st_parallel, _schartner_bits_multi, _schartner_rows
from pipelines.eeg.kernels.measure_functions import _check_length, _length_params, _measure_rows
from pipelines.eeg.kernels.surrogates import _surrogate_config, _surrogate_rows, surrogate_measure_names


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
