"""Permutation entropy against a plain-numpy definition written here (stable argsort of every delay
vector), on smooth, white, tied, constant and NaN rows. Patterns are compared exactly, entropies at rtol
1e-12 (the reference sums the terms in its own order)."""

import math

import numba
import numpy as np
import pytest

import pipelines.eeg.kernels as K
import pipelines.eeg.kernels.entropy as E

RTOL = 1e-12


def _embed(x, order, delay):
    n_embed = x.size - (order - 1) * delay
    return np.stack([x[a * delay : a * delay + n_embed] for a in range(order)], axis=1)


def _lehmer_codes(x, order, delay):
    """Index of each delay vector's stable ranking among all order! rankings (Lehmer code of argsort)."""
    codes = []
    for vec in _embed(x, order, delay):
        rank = np.argsort(np.argsort(vec, kind="stable"), kind="stable")  # ties ranked by position
        code = 0
        for a in range(order):
            code = code * (order - a) + int((rank[a + 1 :] < rank[a]).sum())
        codes.append(code)
    return np.array(codes)


def _perm_entropy_reference(x, order, delay, normalize):
    if not np.all(np.isfinite(x)):
        return np.nan
    _, counts = np.unique(_lehmer_codes(x, order, delay), return_counts=True)
    p = counts / counts.sum()
    h = -(p * np.log2(p)).sum()
    return min(max(h / math.log2(math.factorial(order)), 0.0), 1.0) if normalize else h


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(17)
    n = 300
    smooth = np.cumsum(rng.standard_normal((2, n)), axis=-1)
    white = rng.standard_normal((2, n))
    ties = rng.integers(0, 3, (3, n)).astype(float)
    special = np.full((2, n), 2.0)  # constant
    special[1, 40] = np.nan
    return np.concatenate([smooth, white, ties, special])


@pytest.mark.parametrize(("order", "delay"), [(2, 1), (3, 1), (3, 4), (4, 2), (6, 1), (7, 3)])
def test_ordinal_codes_equal_stable_argsort(rows, order, delay):
    from pipelines.eeg.kernels.entropy import _ordinal_codes

    for x in rows[:-1]:  # finite rows (the NaN row never reaches the codes)
        n_embed = x.size - (order - 1) * delay
        codes, digit = np.empty(n_embed, np.int64), np.empty(n_embed, np.int64)
        _ordinal_codes(x, order, delay, codes, digit)
        np.testing.assert_array_equal(codes, _lehmer_codes(x, order, delay))


@pytest.mark.parametrize(("order", "delay", "normalize"), [(3, 1, True), (4, 2, False), (5, 1, True)])
def test_perm_entropy_equals_numpy_definition(rows, order, delay, normalize):
    got = K.perm_entropy(rows, order=order, delay=delay, normalize=normalize)
    want = np.array([_perm_entropy_reference(x, order, delay, normalize) for x in rows])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-15)
    assert got[-2] == 0.0  # constant: one pattern


@numba.njit(cache=False)
def _singular_values_embedding(x, order, delay, cols, rmat):
    """Singular values of the (n_embed, order) delay embedding of ``x``, one embedding alone: the reference the
    kernel's 4-at-a-time reduction must equal bit for bit.

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
        if nrm == 0.0:  # nothing left below the diagonal: R's diagonal entry is 0 (not the previous row's)
            rmat[k, k] = 0.0
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
    E._r_from_columns(cols, rmat)
    return E._jacobi_singular_values(rmat)


def _svd_entropy_one_row_at_a_time(rows, order, delay, normalize):
    """The one-row kernel path on one channel's windows: each embedding reduced alone (workspace reused)."""
    n_embed = rows.shape[1] - (order - 1) * delay
    cols, rmat = np.empty((order, n_embed)), np.zeros((order, order))
    out = []
    for x in rows:
        if not np.all(np.isfinite(x)):
            out.append(np.nan)
            continue
        if np.ptp(x) == 0:
            out.append(0.0)
            continue
        sv = _singular_values_embedding(x, order, delay, cols, rmat)
        w = sv / sv.sum()
        h = 0.0
        for wj in w:
            if wj > 0:
                h -= wj * math.log(wj) / math.log(2.0)
        out.append(h / math.log2(order) if normalize else h)
    return np.array(out)


@pytest.mark.parametrize(("order", "delay", "normalize"), [(3, 1, True), (2, 1, False), (4, 3, True), (6, 2, False)])
@pytest.mark.parametrize("n_rows", [1, 3, 4, 5, 9, 14])
def test_svd_entropy_rows_in_batches_equal_one_row_at_a_time_bit_for_bit(rows, order, delay, normalize, n_rows):
    """The kernel reduces 4 embeddings at once; values must equal the one-row path exactly at any number
    of rows, with NaN and constant rows skipped, and rows whose first column is all zeros."""
    rng = np.random.default_rng(100 * order + n_rows)
    n = rows.shape[1]
    zero_head = np.zeros((2, n))
    zero_head[:, -(order - 1) * delay :] = rng.standard_normal((2, (order - 1) * delay))  # column 0 all zero
    extra = np.concatenate([rng.standard_normal((4, n)) * 10.0 ** rng.uniform(-6, 6, (4, 1)), zero_head])
    x = np.concatenate([rows, extra])[rng.permutation(rows.shape[0] + extra.shape[0])][:n_rows]
    got = K.svd_entropy(x[None], order=order, delay=delay, normalize=normalize)[0]  # one channel's windows
    np.testing.assert_array_equal(got, _svd_entropy_one_row_at_a_time(x, order, delay, normalize))


def test_svd_entropy_row_after_a_zero_column_row_equals_one_row_at_a_time():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 200))
    x[2, :-2] = 0.0  # order 3: the first embedding column of row 2 is all zeros
    x[5, :-2] = 0.0
    got = K.svd_entropy(x[None], order=3, delay=1, normalize=True)[0]  # one channel's windows
    np.testing.assert_array_equal(got, _svd_entropy_one_row_at_a_time(x, 3, 1, True))
    assert np.all(np.isfinite(got))


def test_svd_entropy_of_a_zero_column_window_does_not_depend_on_its_neighbours():
    """A window whose first embedding column is all zeros (a flat stretch then two samples) has R's diagonal
    entry 0 there; it once kept the previous window's entry, so its value changed with its neighbours."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 200))
    x[3, :-2] = 0.0
    alone = K.svd_entropy(x[3:4][None], order=3, delay=1, normalize=True)[0, 0]
    among = K.svd_entropy(x[None], order=3, delay=1, normalize=True)[0, 3]
    assert alone == among
    embedding = np.stack([x[3, k : k + 198] for k in range(3)], axis=1)
    sv = np.linalg.svd(embedding, compute_uv=False)
    w = sv / sv.sum()
    reference = -np.sum(w[w > 0] * np.log2(w[w > 0])) / np.log2(3)
    assert alone == pytest.approx(reference, abs=1e-12)
