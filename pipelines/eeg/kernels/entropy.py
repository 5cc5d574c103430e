"""Entropy kernels on rows (n_rows, n_times): permutation, sample, SVD and spectral entropy."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipelines.eeg.kernels import spectral
from pipelines.eeg.kernels.common import _ROW_CONSTANT, _ROW_NONFINITE, _ROW_OK


@njit(cache=True, nogil=True)
def _ordinal_codes(x, order, delay, codes, digit):
    """Lehmer code of the stable ranking of every delay vector of ``x`` into ``codes``.

    Digit ``a`` counts the later coordinates strictly smaller than coordinate ``a``, so tied samples keep
    their positional order (= argsort(kind="stable")). One pair of coordinates at a time over all vectors:
    contiguous loops that vectorise.
    """
    n_embed = codes.size
    codes[:] = 0
    for a in range(order):
        xa = x[a * delay : a * delay + n_embed]
        digit[:] = 0
        for b in range(a + 1, order):
            xb = x[b * delay : b * delay + n_embed]
            for i in range(n_embed):
                digit[i] += xb[i] < xa[i]
        for i in range(n_embed):
            codes[i] = codes[i] * (order - a) + digit[i]


@njit(cache=True, nogil=True)
def _perm_entropy_rows(rows, states, order, delay, normalize):
    nr, n = rows.shape
    n_embed = n - (order - 1) * delay
    n_perm = 1
    for k in range(2, order + 1):
        n_perm *= k
    # four interleaved histograms: runs of one pattern (smooth signals) do not wait on the same counter
    counts = np.zeros((4, n_perm), np.int64)
    codes = np.empty(n_embed, np.int64)
    digit = np.empty(n_embed, np.int64)
    out = np.empty(nr)
    log2_nperm = math.log2(n_perm)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            out[r] = np.nan
            continue
        _ordinal_codes(rows[r], order, delay, codes, digit)
        counts[:] = 0
        n4 = n_embed - n_embed % 4
        for i in range(0, n4, 4):
            for lane in range(4):
                counts[lane, codes[i + lane]] += 1
        for i in range(n4, n_embed):
            counts[0, codes[i]] += 1
        h = 0.0
        for k in range(n_perm):
            c = counts[0, k] + counts[1, k] + counts[2, k] + counts[3, k]
            if c > 0:
                p = c / n_embed
                h -= p * math.log2(p)
        if normalize:
            h /= log2_nperm
            h = min(max(h, 0.0), 1.0)
        out[r] = h
    return out


# Cells per tolerance on the first template coordinate: templates within r there lie at most this many cells
# apart, so a template's later partners end with the cell this many after its own. More cells: fewer
# candidate pairs (1 + 1/(2 * cells) times the pairs within r on that coordinate) but a longer cell table.
_SAMPEN_CELLS_PER_TOL = 4
_SAMPEN_MAX_CELLS = 1 << 20  # bounds the rounding of the cell index (see _sampen_cells)


@njit(cache=True, nogil=True)
def _sampen_cells(x0, tol, cell, order, starts, fill):
    """Counting sort of the first template coordinates ``x0`` into cells; returns the number of cells.

    Cell of ``v``: ``floor((v - min) * q / (tol * (1 + 1e-6)))``, ``q`` cells per tolerance, clipped to
    the table (``starts.size - 1`` cells; coarser cells if the span needs more). Two values whose
    computed ``|a - b|`` is <= tol are at most ``q`` cells apart: the 1e-6 margin (``q * 1e-6`` cells)
    exceeds the rounding of the cell indices (< 4e-16 cells per cell in the table, at most 2**20 cells) by
    far. ``order`` gets template indices by cell, ``starts[c]`` the position of cell ``c``'s first template
    (``starts[n_cells] = n``). A tolerance of 0 or one that is not finite, or a span that overflows, gives
    coarser cells or a single cell, never a wrong count.
    """
    n = x0.size
    cap = starts.size - 1
    lo = x0.min()
    span = x0.max() - lo
    scale = _SAMPEN_CELLS_PER_TOL / (tol * (1.0 + 1e-6)) if tol > 0.0 else np.inf
    if not (span * scale < cap - 1):
        scale = (cap - 1) / span if 0.0 < span < np.inf else 0.0
    n_cells = 1
    for i in range(n):
        t = (x0[i] - lo) * scale
        c = 0 if not t > 0 else (int(t) if t < cap - 1 else cap - 1)
        cell[i] = c
        n_cells = max(n_cells, c + 1)
    starts[: n_cells + 1] = 0
    for i in range(n):
        starts[cell[i] + 1] += 1
    for c in range(n_cells):
        starts[c + 1] += starts[c]
    fill[:n_cells] = starts[:n_cells]
    for i in range(n):
        c = cell[i]
        order[fill[c]] = i
        fill[c] += 1
    return n_cells


@njit(cache=True, nogil=True)
def _sample_entropy_rows(rows, states, r_tol, order, inclusive):
    nr, n = rows.shape
    n_templ = n - order  # templates start at 0 .. n - order - 1 for both lengths m and m + 1
    # coordinates of the templates in cell order; the NaN tail (never within r) lets runs round up to 8
    cols = np.full((order + 1, n_templ + 8), np.nan)
    cell = np.empty(n_templ, np.int64)
    cell_of = np.empty(n_templ, np.int64)
    by_cell = np.empty(n_templ, np.int64)
    n_cells_max = min(2 * n_templ + 2, _SAMPEN_MAX_CELLS)
    starts = np.empty(n_cells_max + 1, np.int64)
    fill = np.empty(n_cells_max + 1, np.int64)
    match = np.empty(n_templ + 8, np.int64)
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: r is 0 or rounding noise, so the counts mean nothing
            continue
        x = rows[r]
        tol = r_tol[r]
        n_cells = _sampen_cells(x[:n_templ], tol, cell, by_cell, starts, fill)
        _sampen_layout(x, cell, by_cell, cols, cell_of)
        if order == 2 and not (inclusive and tol == np.inf):
            # |d| <= r is |d| < the next float above r (no float lies between); at r = inf it is not
            strict_tol = np.nextafter(tol, np.inf) if inclusive else tol
            n_m, n_m1 = _sampen_pairs_order2(cols[0], cols[1], cols[2], cell_of, starts, n_cells, strict_tol)
        else:
            n_m, n_m1 = _sampen_pairs(cols, cell_of, starts, n_cells, tol, inclusive, match)
        if n_m == 0:
            out[r] = np.nan
        elif n_m1 == 0:
            out[r] = np.inf
        else:
            out[r] = -math.log(n_m1 / n_m)
    return out


@njit(cache=True, nogil=True)
def _sampen_layout(x, cell, by_cell, cols, cell_of):
    """Template coordinates and cells in cell order. One row view per coordinate: numba then keeps the
    loop free of 2-d index arithmetic (5 times faster than ``cols[c, k]`` in an inner loop)."""
    n_coord = cols.shape[0]
    for c in range(n_coord):
        col = cols[c]
        xc = x[c:]
        for k in range(by_cell.size):
            col[k] = xc[by_cell[k]]
    for k in range(by_cell.size):
        cell_of[k] = cell[by_cell[k]]


@njit(cache=True, nogil=True, inline="always")
def _within(d, tol, inclusive):
    return d <= tol if inclusive else d < tol


@njit(cache=True, nogil=True)
def _partner_stop(k, cell_of, starts, n_cells):
    """End of the last cell that can hold partners of template ``k`` (the templates past it fail the first
    coordinate's test)."""
    return starts[min(cell_of[k] + _SAMPEN_CELLS_PER_TOL, n_cells - 1) + 1]


@njit(cache=True, nogil=True)
def _partner_run(k, cell_of, starts, n_cells):
    """Length from template ``k + 1`` to its partner stop rounded up to 8 (the templates past the stop and
    the NaN tail fail the first coordinate's test)."""
    return (_partner_stop(k, cell_of, starts, n_cells) - k - 1 + 7) // 8 * 8


@njit(cache=True, nogil=True, inline="always")
def _sampen_scan_one(c0, c1, c2, lo, hi, k, tol):
    """Pairs of template ``k`` with templates ``lo .. hi - 1``: (within r on 2 coordinates, on all 3)."""
    s0, s1, s2 = c0[lo:hi], c1[lo:hi], c2[lo:hi]
    a0, a1, a2 = c0[k], c1[k], c2[k]
    b_k = 0
    a_k = 0
    for i in range(hi - lo):
        m = np.int64(abs(s0[i] - a0) < tol) & np.int64(abs(s1[i] - a1) < tol)
        b_k += m
        a_k += m & np.int64(abs(s2[i] - a2) < tol)
    return b_k, a_k


@njit(cache=True, nogil=True, inline="always")
def _sampen_group_inner(c0, c1, c2, k, tol):
    """Pairs among templates ``k .. k + 3`` (each once): (within r on 2 coordinates, on all 3)."""
    b_k = 0
    a_k = 0
    for i in range(k, k + 3):
        for j in range(i + 1, k + 4):
            m = (abs(c0[j] - c0[i]) < tol) & (abs(c1[j] - c1[i]) < tol)
            b_k += np.int64(m)
            a_k += np.int64(m & (abs(c2[j] - c2[i]) < tol))
    return b_k, a_k


@njit(cache=True, nogil=True, inline="always")
def _sampen_group_scan(c0, c1, c2, k, lo, hi, tol):
    """Pairs of templates ``k .. k + 3`` with templates ``lo .. hi - 1``, one pass loading each partner once
    for all four (slices indexed from 0: the loop vectorises with contiguous loads)."""
    s0, s1, s2 = c0[lo:hi], c1[lo:hi], c2[lo:hi]
    a0, a1, a2 = c0[k], c1[k], c2[k]
    b0, b1, b2 = c0[k + 1], c1[k + 1], c2[k + 1]
    e0, e1, e2 = c0[k + 2], c1[k + 2], c2[k + 2]
    f0, f1, f2 = c0[k + 3], c1[k + 3], c2[k + 3]
    b_k = 0
    a_k = 0
    for i in range(hi - lo):
        v0, v1, v2 = s0[i], s1[i], s2[i]
        # the tests combined as booleans, widened once per template: 20 % fewer instructions than widening
        # every comparison
        ma = (abs(v0 - a0) < tol) & (abs(v1 - a1) < tol)
        mb = (abs(v0 - b0) < tol) & (abs(v1 - b1) < tol)
        me = (abs(v0 - e0) < tol) & (abs(v1 - e1) < tol)
        mf = (abs(v0 - f0) < tol) & (abs(v1 - f1) < tol)
        b_k += np.int64(ma) + np.int64(mb) + np.int64(me) + np.int64(mf)
        a_k += (
            np.int64(ma & (abs(v2 - a2) < tol))
            + np.int64(mb & (abs(v2 - b2) < tol))
            + np.int64(me & (abs(v2 - e2) < tol))
            + np.int64(mf & (abs(v2 - f2) < tol))
        )
    return b_k, a_k


@njit(cache=True, nogil=True)
def _sampen_pairs_order2(c0, c1, c2, cell_of, starts, n_cells, tol):
    """Pair counts (B: 2 coordinates with ``|d| < tol``, A: all 3) of templates in cell order.

    Templates go four at a time (``k .. k + 3``): their pairs among themselves, then one pass over the
    templates after them up to the last one's partner stop (rounded up to 8), testing every coordinate
    (the first included) for all four, so each partner is loaded once for four templates (fewer, longer
    passes than two at a time) and each pair within r is counted once. Partner stops grow with ``k``: past
    a template's own stop the first coordinate's test fails, as it does on the NaN tail. Integer counts:
    the order of the comparisons does not change them.
    """
    n_templ = cell_of.size
    n_m = 0
    n_m1 = 0
    n_grouped = n_templ - n_templ % 4
    for k in range(0, n_grouped, 4):
        lo = k + 4
        hi = lo + (_partner_stop(k + 3, cell_of, starts, n_cells) - lo + 7) // 8 * 8  # stop_k+3 >= k + 4
        in_b, in_a = _sampen_group_inner(c0, c1, c2, k, tol)
        out_b, out_a = _sampen_group_scan(c0, c1, c2, k, lo, hi, tol)
        n_m += in_b + out_b
        n_m1 += in_a + out_a
    for k in range(n_grouped, n_templ):  # the last templates when their number is not a multiple of 4
        last_b, last_a = _sampen_scan_one(c0, c1, c2, k + 1, k + 1 + _partner_run(k, cell_of, starts, n_cells), k, tol)
        n_m += last_b
        n_m1 += last_a
    return n_m, n_m1


@njit(cache=True, nogil=True)
def _sampen_pairs(cols, cell_of, starts, n_cells, tol, inclusive, match):
    """As :func:`_sampen_pairs_order2` for any order (cols: order + 1 coordinate rows), one coordinate at a
    time into the ``match`` flags of the run."""
    order = cols.shape[0] - 1
    n_m = 0
    n_m1 = 0
    for k in range(cell_of.size):
        run = _partner_run(k, cell_of, starts, n_cells)
        m = match[:run]
        m[:] = 1
        for c in range(order):
            s = cols[c, k + 1 : k + 1 + run]
            a = cols[c, k]
            for i in range(run):
                m[i] &= np.int64(_within(abs(s[i] - a), tol, inclusive))
        s = cols[order, k + 1 : k + 1 + run]
        a = cols[order, k]
        for i in range(run):
            n_m += m[i]
            n_m1 += m[i] & np.int64(_within(abs(s[i] - a), tol, inclusive))
    return n_m, n_m1


@njit(cache=True, nogil=True)
def _r_from_columns(cols, rmat):
    """Upper triangle of R (above the diagonal) from the reduced columns; zeros below."""
    order = rmat.shape[0]
    for k in range(order):
        for j in range(k + 1, order):
            rmat[k, j] = cols[j, k]
        for j in range(k):
            rmat[k, j] = 0.0


@njit(cache=True, nogil=True)
def _jacobi_singular_values(rmat):
    """Singular values of the square ``rmat`` by one-sided Jacobi on its columns (rotated in place)."""
    order = rmat.shape[0]
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
def _dot4(cols4, k, j, start, stop):
    """``sum(cols4[l, k, i] * cols4[l, j, i] for i in start..stop - 1)`` for the 4 lanes ``l``: four
    independent chains (one latency-bound chain per row otherwise), each in the one-row loop's order."""
    a0, a1, a2, a3 = cols4[0, k], cols4[1, k], cols4[2, k], cols4[3, k]
    b0, b1, b2, b3 = cols4[0, j], cols4[1, j], cols4[2, j], cols4[3, j]
    s0 = s1 = s2 = s3 = 0.0
    for i in range(start, stop):
        s0 += a0[i] * b0[i]
        s1 += a1[i] * b1[i]
        s2 += a2[i] * b2[i]
        s3 += a3[i] * b3[i]
    return np.array((s0, s1, s2, s3))


@njit(cache=True, nogil=True)
def _householder4(cols4, rmat4, vnorm2):
    """The Householder reduction of 4 delay embeddings at once, each with the operations of one reduced alone
    (the one-row reference in tests/eeg/test_entropy_references.py), in the same order."""
    order, n_embed = cols4.shape[1], cols4.shape[2]
    for k in range(order):
        nrm2 = _dot4(cols4, k, k, k, n_embed)
        for lane in range(4):
            nrm = math.sqrt(nrm2[lane])
            vnorm2[lane] = 0.0
            if nrm == 0.0:
                rmat4[lane, k, k] = 0.0
                continue
            ckk = cols4[lane, k, k]
            alpha = -nrm if ckk >= 0 else nrm
            v0 = ckk - alpha
            vnorm2[lane] = nrm2[lane] - ckk * ckk + v0 * v0
            cols4[lane, k, k] = v0
            rmat4[lane, k, k] = alpha
        for j in range(k + 1, order):
            dots = _dot4(cols4, k, j, k, n_embed)
            for lane in range(4):
                if vnorm2[lane] > 0.0:
                    f = 2.0 * dots[lane] / vnorm2[lane]
                    ck, cj = cols4[lane, k], cols4[lane, j]
                    for i in range(k, n_embed):
                        cj[i] -= f * ck[i]
    for lane in range(4):
        _r_from_columns(cols4[lane], rmat4[lane])


@njit(cache=True, nogil=True)
def _svd_entropy_from_sv(sv, normalize):
    total = sv.sum()
    h = 0.0
    for j in range(sv.size):
        w = sv[j] / total
        if w > 0:
            h -= w * math.log(w) / math.log(2.0)
    if normalize:
        h /= math.log2(sv.size)
    return h


@njit(cache=True, nogil=True)
def _svd_entropy_rows(rows, states, order, delay, normalize):
    """Rows 4 at a time through :func:`_householder4` (the same values as one at a time; a row's value
    does not depend on its neighbours)."""
    nr, n = rows.shape
    n_embed = n - (order - 1) * delay
    cols4 = np.empty((4, order, n_embed))
    rmat4 = np.empty((4, order, order))
    vnorm2 = np.empty(4)
    ok_rows = np.empty(nr, np.int64)
    n_ok = 0
    out = np.empty(nr)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            out[r] = np.nan
        elif states[r] == _ROW_CONSTANT:
            out[r] = 0.0  # rank <= 1: one non-zero singular value (or none)
        else:
            ok_rows[n_ok] = r
            n_ok += 1
    for first in range(0, n_ok, 4):
        n_lanes = min(4, n_ok - first)
        batch = ok_rows[first : first + n_lanes]
        for lane in range(4):
            x = rows[batch[min(lane, n_lanes - 1)]]  # spare lanes repeat the last row
            for k in range(order):
                cols4[lane, k] = x[k * delay : k * delay + n_embed]
        _householder4(cols4, rmat4, vnorm2)
        for lane in range(n_lanes):
            out[batch[lane]] = _svd_entropy_from_sv(_jacobi_singular_values(rmat4[lane]), normalize)
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


def spectral_entropy_from_psd(freqs: np.ndarray, psd: np.ndarray, normalize: bool, fmin=None, fmax=None) -> np.ndarray:
    """Spectral entropy (bits; ``normalize``: over log2 of the number of bins) of Welch spectra ``psd`` (..., freq)
    already computed, over ``[fmin, fmax]``: the arithmetic of ``spectral_entropy_welch`` after its Welch step, so a
    caller that holds the same spectra (the features' band powers) gets the same values without a second Welch."""
    if fmin is not None or fmax is not None:
        psd = psd[..., _spectral_band_mask(freqs, fmin, fmax)]
    with np.errstate(divide="ignore", invalid="ignore"):
        psd_norm = psd / psd.sum(axis=-1, keepdims=True)
        se = -_xlogx_base2(psd_norm).sum(axis=-1)
    if normalize:
        se = se / np.log2(psd_norm.shape[-1])
    return se


def _spectral_entropy_rows(rows, states, sfreq, nperseg, normalize, nperseg_s=None, fmin=None, fmax=None):
    n = rows.shape[-1]
    nperseg = _spectral_nperseg(n, sfreq, nperseg, nperseg_s)
    freqs, psd = spectral.welch_psd(rows, sfreq, nperseg)  # patchable where defined
    se = spectral_entropy_from_psd(freqs, psd, normalize, fmin, fmax)
    se[states != _ROW_OK] = np.nan  # constant: no power, entropy undefined
    return se
