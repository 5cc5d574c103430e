"""Welch power spectral density, as ``scipy.signal.welch`` computes it, for many rows at once."""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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
