"""DFA, Katz and Higuchi kernels against plain-numpy implementations of their documented definitions, written
independently here, on many windows at once (smooth, white, tied, constant and NaN rows).

Tolerance: rtol 1e-12 (the references sum in numpy's order, the kernels in their own; the kernels were
made faster without changing their values, which this pins well below antropy's 1e-9 in test_kernels.py).
"""

import numpy as np
import pytest

import pipelines.eeg.kernels as K

RTOL = 1e-12
EPS_REG = 1e-9  # antropy's epsilon in the regression denominator, part of the definition


def _slope(x, y):
    n = x.size
    return (n * (x * y).sum() - x.sum() * y.sum()) / (n * (x**2).sum() - x.sum() ** 2 + EPS_REG)


def _box_sizes(n_times):
    """4, floor(4 * 1.2^i), ... <= 0.1 * n_times, each once (antropy.utils._log_n(4, 0.1 * n, 1.2))."""
    max_i = int(np.floor(np.log(0.1 * n_times / 4) / np.log(1.2)))
    return np.unique([4] + [int(np.floor(4 * 1.2**i)) for i in range(max_i + 1)])


def _dfa_reference(x):
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan
    walk = np.cumsum(x - x.mean())
    sizes, flucts = [], []
    for n in _box_sizes(x.size):
        boxes = walk[: (x.size // n) * n].reshape(-1, n)
        t = np.arange(n, dtype=float)
        sx, sx2 = t.sum(), (t**2).sum()
        sy, sxy = boxes.sum(axis=1), (boxes * t).sum(axis=1)
        slope = (n * sxy - sx * sy) / (n * sx2 - sx**2 + EPS_REG)
        intercept = sy / n - slope * (sx / n)
        resid = boxes - (intercept[:, None] + slope[:, None] * t)
        f = np.sqrt(((resid**2).sum(axis=1) / n).mean())
        if f != 0:
            sizes.append(n)
            flucts.append(f)
    return _slope(np.log(sizes), np.log(flucts))


def _katz_reference(x):
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan
    steps = np.abs(np.diff(x))
    mean_step = steps.sum() / steps.size
    return np.log10(steps.sum() / mean_step) / np.log10(np.abs(x - x[0]).max() / mean_step)


def _higuchi_reference(x, kmax=10):
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan
    n = x.size
    log_inv_k, log_length = [], []
    for k in range(1, kmax + 1):
        lengths = []
        for m in range(k):
            sub = x[m::k]
            n_max = (n - m - 1) // k
            lengths.append(np.abs(np.diff(sub[: n_max + 1])).sum() / k * (n - 1) / (k * n_max))
        log_inv_k.append(np.log(1.0 / k))
        log_length.append(np.log(np.mean(lengths)))
    return _slope(np.array(log_inv_k), np.array(log_length))


@pytest.fixture(scope="module")
def windows():
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(5)
    n = 500
    smooth = sosfiltfilt(butter(4, [1, 40], "bandpass", fs=250.0, output="sos"), rng.standard_normal((4, n)))
    white = rng.standard_normal((3, n))
    walk = np.cumsum(rng.standard_normal((2, n)), axis=-1) + 1e6  # large offset
    ties = rng.integers(-2, 3, (3, n)).astype(float)
    special = np.zeros((2, n))
    special[1] = 1.5  # constant
    special[0, 3] = np.nan
    return np.concatenate([smooth, white, walk, ties, special])


@pytest.mark.parametrize(
    ("measure", "reference"),
    [("dfa", _dfa_reference), ("katz_fd", _katz_reference), ("higuchi_fd", _higuchi_reference)],
)
def test_kernel_equals_numpy_definition(windows, measure, reference):
    got = K.compute_windowed(windows[None], 250.0, None, None, measures=[measure])[measure][0]
    want = np.array([reference(w) for w in windows])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    assert np.isfinite(want).sum() == windows.shape[0] - 2


@pytest.mark.parametrize("n", [58, 100, 257, 1000])
def test_dfa_lengths_equal_numpy_definition(n):
    x = np.cumsum(np.random.default_rng(n).standard_normal((3, n)), axis=-1)
    np.testing.assert_allclose(K.dfa(x), [_dfa_reference(r) for r in x], rtol=RTOL, atol=0)


@pytest.mark.parametrize("kmax", [2, 3, 7, 13])
def test_higuchi_kmax_equals_numpy_definition(windows, kmax):
    got = K.higuchi_fd(windows, kmax=kmax)
    np.testing.assert_allclose(got, [_higuchi_reference(w, kmax) for w in windows], rtol=RTOL, atol=0)


def test_katz_step_sum_is_numpys_sum_bit_for_bit():
    """Katz's summed step is summed in numpy's pairwise order, so it equals np.sum exactly at any length."""
    from pipelines.eeg.kernels.fractal import _numpy_pairwise_sum

    rng = np.random.default_rng(9)
    frames, left_sums = np.empty((3, 64), np.int64), np.empty(64)
    for n in [*range(1, 140), 255, 256, 257, 999, 1000, 4095, 8192, 8193, 30001, 150000]:
        a = np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-3, 3, n)  # wide range: order matters
        assert _numpy_pairwise_sum(a, n, frames, left_sums) == np.sum(a), n


def _dfa_box_by_box(x):
    """DFA with the kernel's arithmetic written box by box in plain Python floats (IEEE doubles, one
    operation at a time in the kernel's order), so the batched kernel must equal it bit for bit."""
    from pipelines.eeg.kernels.fractal import _dfa_box_sizes

    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan
    x = [float(v) for v in x]
    mean = 0.0
    for v in x:
        mean += v
    mean /= len(x)
    walk, acc = [], 0.0
    for v in x:
        acc += v - mean
        walk.append(acc)
    log_n, log_f = [], []
    for n in _dfa_box_sizes(len(x)).tolist():
        sx = sx2 = 0.0
        for t in range(n):
            sx += t
            sx2 += float(t) ** 2
        den, mean_t, total, n_boxes = n * sx2 - sx**2, sx / n, 0.0, len(x) // n
        for b in range(n_boxes):
            box = walk[b * n : (b + 1) * n]
            sy = sxy = ss = 0.0
            for t in range(n):
                sxy += t * box[t]
                sy += box[t]
            slope = (n * sxy - sx * sy) / (den + EPS_REG)
            intercept = sy / n - slope * mean_t
            for t in range(n):
                d = box[t] - (intercept + slope * t)
                ss += d * d
            total += ss / n
        f = np.sqrt(total / n_boxes)
        if f != 0.0:
            log_n.append(np.log(n))
            log_f.append(np.log(f))
    sx2 = sx = sy = sxy = 0.0
    for a, b in zip(log_n, log_f):
        sx2, sx, sxy, sy = sx2 + a**2, sx + a, sxy + a * b, sy + b
    return (len(log_n) * sxy - sx * sy) / (len(log_n) * sx2 - sx**2 + EPS_REG)


@pytest.mark.parametrize("n_times", [58, 59, 120, 301, 1000, 1001])
def test_dfa_rows_in_batches_equal_box_by_box_bit_for_bit(n_times):
    """The kernel fits the boxes of several rows together (8 interleaved rows, spare lanes repeating the
    last row): values must not depend on a row's neighbours, its place in a batch, or the number of rows
    (batches of 8 with NaN and constant rows skipped), for odd and even lengths and the shortest rows."""
    rng = np.random.default_rng(n_times)
    rows = np.concatenate(
        [
            np.cumsum(rng.standard_normal((6, n_times)), axis=-1),
            rng.standard_normal((5, n_times)) * 10.0 ** rng.uniform(-8, 8, (5, 1)),  # wide scales
            rng.integers(-2, 3, (3, n_times)).astype(float),
            np.full((1, n_times), 3.0),
            np.cumsum(rng.standard_normal((3, n_times)), axis=-1) + 1e7,
        ]
    )
    rows[4, 7] = np.nan
    rows = rows[rng.permutation(rows.shape[0])]
    want = [_dfa_box_by_box(r) for r in rows]
    for n_rows in (1, 7, 9, rows.shape[0]):
        got = K.dfa(rows[:n_rows][None])[0]  # one channel: its windows go through the batches
        np.testing.assert_array_equal(got, want[:n_rows])


@pytest.mark.parametrize("n_times", [58, 61, 200, 1000, 1003])
def test_dfa_equals_antropy_on_random_walk_and_tied_rows(n_times):
    """Independent reference: antropy.detrended_fluctuation (numpy least squares, its own order of sums,
    so rtol 1e-9), row by row, on rows computed together with a constant and a NaN row (both NaN)."""
    import antropy

    rng = np.random.default_rng(n_times)
    rows = np.concatenate(
        [
            rng.standard_normal((3, n_times)),
            np.cumsum(rng.standard_normal((3, n_times)), axis=-1),
            rng.integers(-2, 3, (3, n_times)).astype(float),
            np.full((1, n_times), -1.5),
            rng.standard_normal((1, n_times)),
        ]
    )
    rows[-1, n_times // 3] = np.nan
    got = K.dfa(rows)
    assert np.isnan(got[-2]) and np.isnan(got[-1])
    want = [antropy.detrended_fluctuation(r) for r in rows[:-2]]
    np.testing.assert_allclose(got[:-2], want, rtol=1e-9, atol=0)


def _higuchi_step_by_step(x, kmax):
    """Higuchi FD with the kernel's arithmetic in plain Python floats, one operation at a time in the
    kernel's order (each sub-series summed in step order), so the batched kernel must equal it exactly."""
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan
    x, n = [float(v) for v in x], len(x)
    log_inv_k, log_length = [], []
    for k in range(1, kmax + 1):
        total = 0.0
        for m in range(k):
            n_max = (n - m - 1) // k
            ll = 0.0
            for j in range(1, n_max + 1):
                ll += abs(x[m + j * k] - x[m + (j - 1) * k])
            ll /= k
            ll *= (n - 1) / (k * n_max)
            total += ll
        log_inv_k.append(np.log(1.0 / k))
        log_length.append(np.log(total / k))
    sx2 = sx = sy = sxy = 0.0
    for a, b in zip(log_inv_k, log_length):
        sx2, sx, sxy, sy = sx2 + a**2, sx + a, sxy + a * b, sy + b
    return (kmax * sxy - sx * sy) / (kmax * sx2 - sx**2 + EPS_REG)


@pytest.mark.parametrize(("n_times", "kmax"), [(20, 10), (301, 10), (1000, 10), (257, 7)])
def test_higuchi_rows_in_batches_equal_step_by_step_bit_for_bit(n_times, kmax):
    """The kernel sums the sub-series of 4 rows together: a row's value must not depend on its neighbours
    or its place in a batch (any number of rows, NaN and constant rows skipped)."""
    rng = np.random.default_rng(n_times + kmax)
    rows = np.concatenate(
        [
            np.cumsum(rng.standard_normal((4, n_times)), axis=-1) + 1e6,
            rng.standard_normal((4, n_times)) * 10.0 ** rng.uniform(-8, 8, (4, 1)),
            rng.integers(-2, 3, (2, n_times)).astype(float),
            np.full((1, n_times), -2.0),
        ]
    )
    rows[3, 5] = np.nan
    rows = rows[rng.permutation(rows.shape[0])]
    want = [_higuchi_step_by_step(r, kmax) for r in rows]
    for n_rows in (1, 3, 5, rows.shape[0]):
        np.testing.assert_array_equal(K.higuchi_fd(rows[:n_rows][None], kmax=kmax)[0], want[:n_rows])
