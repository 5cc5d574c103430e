"""Entropy kernels on rows (n_rows, n_times): permutation, sample, SVD and spectral entropy."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipelines.eeg.kernels import spectral
from pipelines.eeg.kernels.common import _ROW_CONSTANT, _ROW_NONFINITE, _ROW_OK


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


def _spectral_entropy_rows(rows, states, sfreq, nperseg, normalize, nperseg_s=None, fmin=None, fmax=None):
    n = rows.shape[-1]
    nperseg = _spectral_nperseg(n, sfreq, nperseg, nperseg_s)
    freqs, psd = spectral.welch_psd(rows, sfreq, nperseg)  # patchable where defined
    if fmin is not None or fmax is not None:
        psd = psd[..., _spectral_band_mask(freqs, fmin, fmax)]
    with np.errstate(divide="ignore", invalid="ignore"):
        psd_norm = psd / psd.sum(axis=-1, keepdims=True)
        se = -_xlogx_base2(psd_norm).sum(axis=-1)
    if normalize:
        se = se / np.log2(psd_norm.shape[-1])
    se[states != _ROW_OK] = np.nan  # constant: no power, entropy undefined
    return se
