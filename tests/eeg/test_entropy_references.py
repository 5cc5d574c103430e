"""Permutation entropy against a plain-numpy definition written here (stable argsort of every delay
vector), on smooth, white, tied, constant and NaN rows. Patterns are compared exactly, entropies at rtol
1e-12 (the reference sums the terms in its own order)."""

import math

import numpy as np
import pytest

import pipelines.eeg.kernels as K

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
