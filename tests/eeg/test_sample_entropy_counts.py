"""Sample entropy's pair counts against an all-pairs scan written independently here (plain numpy).

The kernel counts pairs through cells on the first template coordinate; this reference compares every
pair of templates on every coordinate, so equal values mean equal counts B and A (values compared
exactly). Data with many ties and a tolerance that equals their spacing exercise ``|d| < r`` against
``|d| <= r`` at the boundary.
"""

import math

import numpy as np
import pytest

import pipelines.eeg.kernels as K


def _sampen_all_pairs(x, order, r_sd_factor, inclusive):
    """Richman & Moorman sample entropy by comparing all template pairs i < j (O(n^2) memory)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
        return np.nan  # the documented rule: non-finite or constant signal -> NaN
    r = r_sd_factor * np.std(x, ddof=0)
    n_templ = x.size - order
    emb = np.stack([x[c : c + n_templ] for c in range(order + 1)], axis=1)
    dist = np.abs(emb[:, None, :] - emb[None, :, :])
    close = dist <= r if inclusive else dist < r
    upper = np.triu_indices(n_templ, 1)
    b = int(close[..., :order].all(axis=-1)[upper].sum())
    a = int(close.all(axis=-1)[upper].sum())
    if b == 0:
        return np.nan
    return np.inf if a == 0 else -math.log(a / b)


def _signals():
    rng = np.random.default_rng(2024)
    n = 260
    white = rng.standard_normal((3, n))
    smooth = np.cumsum(rng.standard_normal((3, n)), axis=-1)  # random walk: long runs within r
    ties = rng.integers(-3, 4, (4, n)).astype(float)  # 7 levels, many pairs at exactly the spacing
    offset = 1e9 + rng.standard_normal((2, n)) * 1e-3  # cell index rounding far from zero
    heavy = rng.standard_cauchy((2, n))  # huge span / r: the cell table is capped, cells coarser
    tail_only = np.zeros((1, n))
    tail_only[0, -1] = 1.0  # first templates constant, the row is not
    return np.concatenate([white, smooth, ties, offset, heavy, tail_only])


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("r_sd_factor", [0.0, 0.05, 0.2, 0.5, 3.0])
def test_sample_entropy_counts_equal_all_pairs(order, inclusive, r_sd_factor):
    x = _signals()
    got = K.sample_entropy(x, order=order, r_sd_factor=r_sd_factor, inclusive=inclusive)
    want = np.array([_sampen_all_pairs(row, order, r_sd_factor, inclusive) for row in x])
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(want).sum() >= 3 or r_sd_factor == 0.0  # the comparison is not all NaN/inf


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize(("r_sd_factor", "r"), [(0.4, 2.0), (1.2, 6.0)])
def test_sample_entropy_ties_at_exactly_r(order, r_sd_factor, r):
    # values -7, -1, 1, 7 equally often: mean 0, std exactly 5, so r is exact and equals a spacing
    x = np.random.default_rng(7).permutation(np.repeat([-7.0, -1.0, 1.0, 7.0], 75))
    assert np.std(x) == 5.0 and r_sd_factor * np.std(x) == r
    strict = K.sample_entropy(x, order=order, r_sd_factor=r_sd_factor, inclusive=False)
    inclusive = K.sample_entropy(x, order=order, r_sd_factor=r_sd_factor, inclusive=True)
    assert strict == _sampen_all_pairs(x, order, r_sd_factor, False)
    assert inclusive == _sampen_all_pairs(x, order, r_sd_factor, True)
    assert strict != inclusive  # pairs at exactly r count only when inclusive


def test_sample_entropy_constant_and_nan_rows_are_nan_and_leave_others_alone():
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (5, 200)).astype(float)
    x[1] = 4.0
    x[3, 17] = np.nan
    got = K.sample_entropy(x)
    assert np.isnan(got[1]) and np.isnan(got[3])
    for i in (0, 2, 4):
        assert got[i] == _sampen_all_pairs(x[i], 2, 0.2, False)


def test_sample_entropy_windows_equal_all_pairs_and_threads():
    rng = np.random.default_rng(11)
    x = np.round(np.cumsum(rng.standard_normal((3, 1200)), axis=-1) * 2)  # quantised walk, ties
    want = np.array([[_sampen_all_pairs(w, 2, 0.2, False) for w in ch] for ch in K.sliding_windows(x, 300, 150)])
    for n_threads in (1, 2):
        got = K.compute_windowed(x, 250.0, 300, 150, measures=["sample_entropy"], n_threads=n_threads)
        np.testing.assert_array_equal(got["sample_entropy"], want)


@pytest.mark.parametrize("tol", [0.375, 2.0**-10, 24576.0])
def test_cells_keep_every_pair_within_r_at_most_q_cells_apart(tol):
    """The cell index may round: pairs exactly r apart, for starts on a fine grid (so some sit just below
    a cell boundary), must still be at most q cells apart, and the cell order must be a sort by cell.
    Tolerance and grid are short binary fractions, so ``lower + tol`` is exact."""
    from pipelines.eeg.kernels.entropy import _SAMPEN_CELLS_PER_TOL, _sampen_cells

    lower = 3.0 + np.arange(20001) * (tol * 2.0**-13)
    x0 = np.concatenate([lower, lower + tol])
    n = x0.size
    cell, by_cell = np.empty(n, np.int64), np.empty(n, np.int64)
    starts, fill = np.empty(2 * n + 3, np.int64), np.empty(2 * n + 3, np.int64)
    n_cells = _sampen_cells(x0, tol, cell, by_cell, starts, fill)
    assert np.all(x0[20001:] - x0[:20001] == tol)
    assert np.abs(cell[20001:] - cell[:20001]).max() <= _SAMPEN_CELLS_PER_TOL
    np.testing.assert_array_equal(np.sort(by_cell), np.arange(n))
    assert np.all(np.diff(cell[by_cell]) >= 0) and starts[0] == 0 and starts[n_cells] == n
    np.testing.assert_array_equal(np.searchsorted(cell[by_cell], np.arange(n_cells)), starts[:n_cells])


@pytest.mark.parametrize("n", [11, 12, 13, 14, 259, 260, 1001])
@pytest.mark.parametrize("inclusive", [False, True])
def test_order2_counts_with_odd_and_even_numbers_of_templates(n, inclusive):
    """The order-2 scan takes templates four at a time; 1-3 left over are scanned alone at the end."""
    rng = np.random.default_rng(n)
    x = np.concatenate(
        [
            np.cumsum(rng.standard_normal((2, n)), axis=-1),  # long partner runs
            rng.integers(-2, 3, (2, n)).astype(float),  # ties at exactly r for some factors
            rng.standard_normal((1, n)),
        ]
    )
    for r_sd_factor in (0.1, 0.2, 0.5, 1.0):
        got = K.sample_entropy(x, order=2, r_sd_factor=r_sd_factor, inclusive=inclusive)
        want = np.array([_sampen_all_pairs(row, 2, r_sd_factor, inclusive) for row in x])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("order", [2, 3])
def test_infinite_tolerance_counts_infinite_distances_only_when_inclusive(order):
    """Values near the float maximum: np.std overflows to r = inf and some distances are inf, which
    |d| <= r counts and |d| < r does not (the order-2 scan compares |d| < the next float above r, which
    does not exist for r = inf, so that case takes the general scan)."""
    x = np.full(61, 1.5e308)
    x[::7] = -1.5e308
    x[1::5] = 1e308
    with np.errstate(over="ignore", invalid="ignore"):
        assert 0.2 * np.std(x) == np.inf
        strict = K.sample_entropy(x, order=order, inclusive=False)
        inclusive = K.sample_entropy(x, order=order, inclusive=True)
        assert strict == _sampen_all_pairs(x, order, 0.2, False)
        assert inclusive == _sampen_all_pairs(x, order, 0.2, True) == 0.0  # every pair matches
    assert np.isfinite(strict) and strict > 0.0


def _order2_counts_all_pairs(x, tol, inclusive):
    """(B, A) of order 2 by comparing every pair of templates i < j (plain numpy)."""
    n_templ = x.size - 2
    emb = np.stack([x[c : c + n_templ] for c in range(3)], axis=1)
    dist = np.abs(emb[:, None, :] - emb[None, :, :])
    close = dist <= tol if inclusive else dist < tol
    upper = np.triu_indices(n_templ, 1)
    return int(close[..., :2].all(axis=-1)[upper].sum()), int(close.all(axis=-1)[upper].sum())


def _order2_counts_kernel(x, tol, inclusive):
    """(B, A) from the kernel's cells and four-at-a-time scan, as _sample_entropy_rows runs them."""
    from pipelines.eeg.kernels.entropy import _SAMPEN_MAX_CELLS, _sampen_cells, _sampen_layout, _sampen_pairs_order2

    n_templ = x.size - 2
    cols = np.full((3, n_templ + 8), np.nan)
    cell, cell_of, by_cell = (np.empty(n_templ, np.int64) for _ in range(3))
    n_cells_max = min(2 * n_templ + 2, _SAMPEN_MAX_CELLS)
    starts, fill = np.empty(n_cells_max + 1, np.int64), np.empty(n_cells_max + 1, np.int64)
    n_cells = _sampen_cells(x[:n_templ], tol, cell, by_cell, starts, fill)
    _sampen_layout(x, cell, by_cell, cols, cell_of)
    strict_tol = np.nextafter(tol, np.inf) if inclusive else tol
    return _sampen_pairs_order2(cols[0], cols[1], cols[2], cell_of, starts, n_cells, strict_tol)


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8, 9, 10, 37, 38, 39, 40, 301])
@pytest.mark.parametrize("inclusive", [False, True])
def test_order2_group_scan_counts_equal_all_pairs(n, inclusive):
    """Both counts (not only their ratio) equal an all-pairs count for every number of templates mod 4
    (groups of four plus 0-3 left over), short rows, ties at exactly r and long partner runs."""
    rng = np.random.default_rng(100 + n)
    rows = [
        rng.standard_normal(n),
        np.cumsum(rng.standard_normal(n)),  # long runs within r: groups scan far
        rng.integers(-2, 3, n).astype(float),  # ties, spacing 1
        np.repeat(rng.standard_normal((n + 2) // 3), 3)[:n],  # equal neighbours: pairs inside a group
    ]
    checked = 0
    for x in rows:
        for tol in (0.5, 1.0, 0.2 * np.std(x), 3.0):  # 0.5, 1.0: some distances exactly r
            want = _order2_counts_all_pairs(x, tol, inclusive)
            assert _order2_counts_kernel(x, tol, inclusive) == want
            checked += want[0] > 0
    assert checked >= (8 if n >= 10 else 1)  # most cases have pairs to count


def test_order2_matches_antropy_on_random_and_walk_rows():
    """Independent reference: antropy.sample_entropy (numba path, |d| < r) on rows of every length mod 4,
    computed together with a constant and a NaN row (both NaN by the documented rule) in one call."""
    import antropy

    rng = np.random.default_rng(5)
    for n in (50, 51, 52, 53, 400, 1000):
        rows = np.stack([rng.standard_normal(n), np.cumsum(rng.standard_normal(n)), np.full(n, 2.5), rng.random(n)])
        rows[3, n // 2] = np.nan
        got = K.sample_entropy(rows, order=2)
        assert np.isnan(got[2]) and np.isnan(got[3])
        for i in (0, 1):
            want = antropy.sample_entropy(rows[i], order=2)
            assert got[i] == want or (np.isinf(got[i]) and np.isinf(want))
