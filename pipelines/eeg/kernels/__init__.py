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

Modules, by family (every name below is importable from ``pipelines.eeg.kernels`` itself)
------------------------------------------------------------------------------------
* ``common``: each measure's parameters and definition (``DEFAULT_PARAMS``, ``MEASURE_INFO``), windows,
  row states, input handling.
* ``spectral``: :func:`welch_psd` (callers use ``spectral.welch_psd``, so patching it there reaches every one).
* ``entropy``: permutation, sample, SVD and spectral entropy on rows.
* ``fractal``: Higuchi, Katz, short-scale DFA on rows.
* ``lz_counts``: the numba Lempel-Ziv counters (LZ76, LZW) and seeded shuffles.
* ``lempel_ziv``: binarisation and the Lempel-Ziv measures (single-channel, spatio-temporal, whole-recording).
* ``measure_functions``: the single-measure functions and the dispatch from a measure name to its kernel.
* ``surrogates``: surrogate-normalised measures.
* ``compute``: :func:`compute_windowed` and :func:`compute_whole`.
"""

from __future__ import annotations

from pipelines.eeg.kernels._cache import keyed_cache as _keyed_cache

# numba picks each kernel's cache directory when its module is imported: every kernel module is imported here,
# inside the directory keyed on the sources of them all (see _cache: a cache never outlives an edit of a callee)
with _keyed_cache():
    from pipelines.eeg.kernels import (  # noqa: F401
        common,
        compute,
        entropy,
        fractal,
        lempel_ziv,
        lz_counts,
        lz_sparse,
        measure_functions,
        spectral,
        surrogates,
    )

from pipelines.core.measures import MEASURES, PER_CHANNEL_MEASURES, SPATIOTEMPORAL_MEASURES  # the names' one owner
from pipelines.eeg.kernels.common import (
    DEFAULT_PARAMS,
    MEASURE_INFO,
    sliding_windows,
    window_starts,
)
from pipelines.eeg.kernels.compute import (
    compute_whole,
    compute_windowed,
)
from pipelines.eeg.kernels.fractal import (
    _dfa_box_sizes as _dfa_box_sizes,
)
from pipelines.eeg.kernels.lempel_ziv import (
    _schartner_bits_multi as _schartner_bits_multi,
)
from pipelines.eeg.kernels.lempel_ziv import (
    linear_detrend,
    lz76_count,
    lzw_dict_size,
    schartner_bits,
    shuffle_bits,
)
from pipelines.eeg.kernels.lz_counts import (
    _lz76_count_hash as _lz76_count_hash,
)
from pipelines.eeg.kernels.lz_counts import (
    _lz76_count_sam as _lz76_count_sam,
)
from pipelines.eeg.kernels.lz_counts import (
    _lzw_counts as _lzw_counts,
)
from pipelines.eeg.kernels.lz_counts import (
    _shuffle_keyed as _shuffle_keyed,
)
from pipelines.eeg.kernels.lz_counts import (
    _shuffle_keyed_idx as _shuffle_keyed_idx,
)
from pipelines.eeg.kernels.measure_functions import (
    dfa,
    dfa_scales_s,
    higuchi_fd,
    katz_fd,
    lzc_median,
    lzc_schartner_lzw,
    lzc_schartner_st,
    lzs_schartner,
    lzs_schartner_lzw,
    min_samples,
    perm_entropy,
    sample_entropy,
    spectral_entropy_welch,
    svd_entropy,
)
from pipelines.eeg.kernels.spectral import (
    welch_psd,
)
from pipelines.eeg.kernels.surrogates import (
    SURROGATE_DEFAULTS,
    SURROGATE_METHODS,
    SURROGATE_SUFFIXES,
    is_surrogate_measure,
    make_surrogates,
    surrogate_measure_names,
)

# The private names above (``_x as _x``) are re-exported for the tests and benchmarks that reach them.
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
    "SURROGATE_METHODS",
    "SURROGATE_SUFFIXES",
    "linear_detrend",
]
