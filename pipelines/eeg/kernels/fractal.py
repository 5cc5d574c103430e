"""Fractal and scaling kernels on rows (n_rows, n_times): Higuchi, Katz and short-scale DFA."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipelines.eeg.kernels.common import _EPS_REG, _ROW_OK, _linreg_slope_antropy


@njit(cache=True, nogil=True)
def _higuchi_step_sums4(x4, k, m, n_steps):
    """Summed absolute steps of the sub-series ``x[m::k]`` of the 4 rows ``x4`` over their first
    ``n_steps`` steps: four independent chains (one latency-bound chain per sub-series otherwise), each
    in step order."""
    v0, v1, v2, v3 = x4[0, m::k], x4[1, m::k], x4[2, m::k], x4[3, m::k]
    s0 = s1 = s2 = s3 = 0.0
    for j in range(n_steps):
        s0 += abs(v0[j + 1] - v0[j])
        s1 += abs(v1[j + 1] - v1[j])
        s2 += abs(v2[j + 1] - v2[j])
        s3 += abs(v3[j + 1] - v3[j])
    return s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _higuchi_curve_lengths4(x4, k, step_sums, m_lm):
    """L(k) of the 4 rows ``x4`` into ``m_lm``: the mean over m of each sub-series' normalised length. The
    rows' sub-series are summed four at a time, each still in step order (same values bit for bit)."""
    n_times = x4.shape[1]
    n_common = (n_times - k) // k  # steps every sub-series has; some have one more
    for m in range(k):
        step_sums[:, m] = _higuchi_step_sums4(x4, k, m, n_common)
    for lane in range(4):
        x = x4[lane]
        total = 0.0
        for m in range(k):
            ll = step_sums[lane, m]
            n_max = (n_times - m - 1) // k
            for j in range(n_common + 1, n_max + 1):
                ll += abs(x[m + j * k] - x[m + (j - 1) * k])
            ll /= k
            ll *= (n_times - 1) / (k * n_max)
            total += ll
        m_lm[lane] = total / k


@njit(cache=True, nogil=True)
def _higuchi_fd_rows(rows, states, kmax):
    """Rows 4 at a time (spare lanes repeat the last row) through :func:`_higuchi_curve_lengths4`."""
    nr, n_times = rows.shape
    x_reg = np.empty(kmax)
    y_reg = np.empty((4, kmax))
    step_sums = np.empty((4, kmax))
    m_lm = np.empty(4)
    x4 = np.empty((4, n_times))
    ok_rows = np.empty(nr, np.int64)
    n_ok = 0
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: every curve length is 0, log(0) -> NaN slope (= antropy)
        else:
            ok_rows[n_ok] = r
            n_ok += 1
    for k in range(1, kmax + 1):
        x_reg[k - 1] = math.log(1.0 / k)
    for first in range(0, n_ok, 4):
        n_lanes = min(4, n_ok - first)
        for lane in range(4):
            x4[lane] = rows[ok_rows[first + min(lane, n_lanes - 1)]]
        for k in range(1, kmax + 1):
            _higuchi_curve_lengths4(x4, k, step_sums, m_lm)
            for lane in range(4):
                y_reg[lane, k - 1] = math.log(m_lm[lane]) if m_lm[lane] > 0 else -np.inf
        for lane in range(n_lanes):
            out[ok_rows[first + lane]] = _linreg_slope_antropy(x_reg, y_reg[lane])
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


# Rows whose boxes are fitted together: the longest boxes (n_times / 10 samples) leave only ~10 boxes per
# row, too few for the box loops to vectorise; 8 rows give ~80. Their profiles are interleaved sample by
# sample (``lanes[i * 8 + j]``: row j at sample i), so one step of one box in all 8 rows is a block of 8
# adjacent doubles: laying the profiles out step-major for a box size moves whole blocks (a cache line
# each), not single samples. One row's profile stays 8 kB.
_DFA_ROWS_PER_BATCH = 8  # the block width of the interleaved profiles (made 4 rows at a time)


@njit(cache=True, nogil=True)
def _dfa_box_sums_4steps(by_step, t0, n_all, sy, sxy):
    """Steps ``t0 .. t0 + 3`` of every box's sums: the same additions in the same order as four one-step
    passes, but each box's running sums are loaded and stored once instead of four times."""
    y0, y1, y2, y3 = by_step[t0], by_step[t0 + 1], by_step[t0 + 2], by_step[t0 + 3]
    t1, t2, t3 = t0 + 1, t0 + 2, t0 + 3
    for b in range(n_all):
        sxy[b] = (((sxy[b] + t0 * y0[b]) + t1 * y1[b]) + t2 * y2[b]) + t3 * y3[b]
        sy[b] = (((sy[b] + y0[b]) + y1[b]) + y2[b]) + y3[b]


@njit(cache=True, nogil=True)
def _dfa_box_residuals_4steps(by_step, t0, n_all, intercept, slope, ss):
    """Steps ``t0 .. t0 + 3`` of every box's summed squared residual, in the one-step passes' order."""
    y0, y1, y2, y3 = by_step[t0], by_step[t0 + 1], by_step[t0 + 2], by_step[t0 + 3]
    t1, t2, t3 = t0 + 1, t0 + 2, t0 + 3
    for b in range(n_all):
        c, m = intercept[b], slope[b]
        d0 = y0[b] - (c + m * t0)
        d1 = y1[b] - (c + m * t1)
        d2 = y2[b] - (c + m * t2)
        d3 = y3[b] - (c + m * t3)
        ss[b] = (((ss[b] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3


@njit(cache=True, nogil=True)
def _dfa_fluctuations(lanes, n_times, n, by_step, per_box, fluct):
    """F(n) of the 8 interleaved profiles ``lanes`` into ``fluct[:8]``: root of the mean over a row's boxes
    of the mean squared residual from each box's line.

    Every box sums over its samples in the same order as a box-by-box loop would (bit-identical sums), but
    all boxes of all the rows advance together: the profiles are laid out step-major in ``by_step`` (box
    ``b`` of row ``j`` at column ``b * 8 + j``) so each step's update is one contiguous loop over boxes,
    independent chains that vectorise instead of one latency-bound chain. Each row's mean over its boxes
    is summed in box order.
    """
    n_boxes = n_times // n
    n_all = n_boxes * 8
    sy, sxy, slope, intercept, ss = per_box[0], per_box[1], per_box[2], per_box[3], per_box[4]
    # x of the per-box regression is 0..n-1, the same for every box
    sx = 0.0
    sx2 = 0.0
    for t in range(n):
        sx += t
        sx2 += float(t) ** 2
    den = n * sx2 - sx**2
    mean_t = sx / n
    # blocks of 8 (one step of one box in the 8 rows) to their step's row, moved as 4 complex128 each
    # (a plain copy of the bits; 1.7 times faster than 8 doubles, which numba does not vectorise)
    src_blocks = lanes.view(np.complex128)
    dst_blocks = by_step.view(np.complex128)
    for b in range(n_boxes):
        for t in range(n):
            src = (b * n + t) * 4
            dst = (t * n_boxes + b) * 4
            for j in range(4):
                dst_blocks[dst + j] = src_blocks[src + j]
    by_step = by_step[: n * n_all].reshape((n, n_all))
    sy[:n_all] = 0.0
    sxy[:n_all] = 0.0
    for t0 in range(0, n - 3, 4):
        _dfa_box_sums_4steps(by_step, t0, n_all, sy, sxy)
    for t in range(n - n % 4, n):
        ys = by_step[t]
        for b in range(n_all):
            sxy[b] += t * ys[b]
            sy[b] += ys[b]
    for b in range(n_all):
        slope[b] = (n * sxy[b] - sx * sy[b]) / (den + _EPS_REG)
        intercept[b] = sy[b] / n - slope[b] * mean_t
    ss[:n_all] = 0.0
    for t0 in range(0, n - 3, 4):
        _dfa_box_residuals_4steps(by_step, t0, n_all, intercept, slope, ss)
    for t in range(n - n % 4, n):
        ys = by_step[t]
        for b in range(n_all):
            d = ys[b] - (intercept[b] + slope[b] * t)
            ss[b] += d * d
    # each row's boxes summed in box order, the 8 rows side by side (independent chains instead of one
    # latency-bound chain per row); the quotients first, in a loop that vectorises
    for f in range(n_all):
        sy[f] = ss[f] / n  # sy is free scratch by now
    total = fluct[:8]
    total[:] = 0.0
    for b in range(n_boxes):
        for j in range(8):
            total[j] += sy[b * 8 + j]
    for j in range(8):
        fluct[j] = math.sqrt(total[j] / n_boxes)


@njit(cache=True, nogil=True)
def _dfa_walks4(x0, x1, x2, x3, lanes, j0):
    """Profiles (cumulative sums of the deviations from the mean) of 4 rows into lanes ``j0 .. j0 + 3`` of
    the interleaved ``lanes``: four independent chains (one latency-bound chain per row otherwise), each
    row summed in time order."""
    n_times = x0.size
    m0 = m1 = m2 = m3 = 0.0
    for i in range(n_times):
        m0 += x0[i]
        m1 += x1[i]
        m2 += x2[i]
        m3 += x3[i]
    m0 /= n_times
    m1 /= n_times
    m2 /= n_times
    m3 /= n_times
    a0 = a1 = a2 = a3 = 0.0
    for i in range(n_times):
        a0 += x0[i] - m0
        a1 += x1[i] - m1
        a2 += x2[i] - m2
        a3 += x3[i] - m3
        o = i * 8 + j0
        lanes[o], lanes[o + 1], lanes[o + 2], lanes[o + 3] = a0, a1, a2, a3


@njit(cache=True, nogil=True)
def _dfa_slope(fluct, nvals, log_n, log_f):
    """Slope of log F(n) on log n over the sizes with F(n) != 0 (NaN if none)."""
    k = 0
    for i_n in range(nvals.size):
        if fluct[i_n] != 0.0:
            log_n[k] = math.log(nvals[i_n])
            log_f[k] = math.log(fluct[i_n])
            k += 1
    return np.nan if k == 0 else _linreg_slope_antropy(log_n[:k], log_f[:k])


@njit(cache=True, nogil=True)
def _dfa_rows(rows, states, nvals):
    nr, n_times = rows.shape
    n_sizes = nvals.size
    batch = _DFA_ROWS_PER_BATCH
    lanes = np.empty(batch * n_times)
    by_step = np.empty(batch * n_times)
    per_box = np.empty((5, batch * (n_times // nvals.min())))  # sums, line and residual of each box
    fluct = np.empty((n_sizes, batch))
    log_n = np.empty(n_sizes)
    log_f = np.empty(n_sizes)
    ok_rows = np.empty(nr, np.int64)
    n_ok = 0
    out = np.empty(nr)
    for r in range(nr):
        if states[r] != _ROW_OK:
            out[r] = np.nan  # constant: every fluctuation is 0 -> no line to fit (= antropy)
        else:
            ok_rows[n_ok] = r
            n_ok += 1
    for first in range(0, n_ok, batch):
        n_rows = min(batch, n_ok - first)
        for j in range(0, batch, 4):  # spare lanes repeat the batch's last row (fitted, not used)
            x = [rows[ok_rows[first + min(j + lane, n_rows - 1)]] for lane in range(4)]
            _dfa_walks4(x[0], x[1], x[2], x[3], lanes, j)
        for i_n in range(n_sizes):
            _dfa_fluctuations(lanes, n_times, nvals[i_n], by_step, per_box, fluct[i_n])
        for j in range(n_rows):
            out[ok_rows[first + j]] = _dfa_slope(fluct[:, j], nvals, log_n, log_f)
    return out


@njit(cache=True, nogil=True)
def _numpy_block_sum(a, start, n):
    """numpy's float64 sum of a block of <= 128 values: 8 interleaved accumulators, then the rest in order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[start + i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = start + 8
    stop = start + n - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        res += a[i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _numpy_pairwise_sum(a, n, frames, left_sums):
    """Sum of ``a[:n]`` in numpy's order for float64 (``np.add.reduce`` along a contiguous axis: halves,
    rounded to multiples of 8, down to blocks of <= 128), so the kernel equals ``np.sum`` bit for bit.

    numpy's recursion is emulated with explicit frames (a cached recursive numba function segfaults when
    loaded, numba issue 6061):
    ``frames[:, d]`` holds the start, length and phase of the right half pending at depth ``d``,
    ``left_sums[d]`` its left half's sum; 64 frames cover any length.
    """
    depth = 0
    start, m = 0, n
    while True:
        while m > 128:
            half = m // 2
            half -= half % 8
            frames[0, depth], frames[1, depth], frames[2, depth] = start + half, m - half, 0
            depth += 1
            m = half
        v = _numpy_block_sum(a, start, m)
        while depth > 0 and frames[2, depth - 1] == 1:  # a right half is done: add its left half
            depth -= 1
            v = left_sums[depth] + v
        if depth == 0:
            return v
        left_sums[depth - 1] = v  # a left half is done: go on with its right half
        frames[2, depth - 1] = 1
        start, m = frames[0, depth - 1], frames[1, depth - 1]


@njit(cache=True, nogil=True)
def _katz_sums(rows):
    """Per row: summed absolute step (as ``np.sum(np.abs(np.diff(x)))``) and largest distance from the first
    sample, in one pass without the (rows, n) temporaries."""
    nr, n = rows.shape
    steps = np.empty(n - 1)
    frames = np.empty((3, 64), np.int64)
    left_sums = np.empty(64)
    total = np.empty(nr)
    far = np.empty(nr)
    for r in range(nr):
        x = rows[r]
        x0 = x[0]
        hi = 0.0
        for i in range(n - 1):
            steps[i] = abs(x[i + 1] - x[i])
        for i in range(n):
            hi = max(hi, abs(x[i] - x0))
        total[r] = _numpy_pairwise_sum(steps, n - 1, frames, left_sums)
        far[r] = hi
    return total, far


def _katz_fd_rows(rows, states):
    total, far = _katz_sums(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = total / (rows.shape[-1] - 1)  # = np.mean of the steps: numpy's sum over their count
        kfd = np.log10(total / avg) / np.log10(far / avg)
    kfd[states != _ROW_OK] = np.nan
    return kfd
