"""The fast exact paths of the Lempel-Ziv family equal the straightforward definitions they replace.

References: antropy's O(n^2) Kaspar & Schuster scan for LZ76, ``np.median`` for the median split, and
the plain per-bin loop / NumPy expressions for the phase-randomised surrogates. No timing here (speed is
measured in benchmarks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from antropy.entropy import _lz_complexity

from pipelines.eeg.kernels import lz_counts as LZC


def _reference_lz76(s: np.ndarray) -> int:
    return int(_lz_complexity(np.asarray(s, dtype=np.uint32))) if s.size else 0


def _bit_sequences(rng, n_each: int = 60) -> list[np.ndarray]:
    """Random, biased, long-run, periodic, constant and near-constant 0/1 sequences, odd and even lengths."""
    seqs = [np.zeros(0), np.zeros(1), np.ones(1), np.zeros(2), np.ones(2), np.zeros(999), np.ones(1000)]
    seqs += [np.r_[np.zeros(500), np.ones(500)], np.r_[np.ones(1), np.zeros(998)], np.r_[np.zeros(999), 1]]
    for _ in range(n_each):
        n = int(rng.integers(2, 1400))
        seqs.append(rng.random(n) < 0.5)
        seqs.append(rng.random(n) < rng.uniform(0.02, 0.98))
        seqs.append(np.sin(np.arange(n) * rng.uniform(0.01, 0.8) + rng.uniform(0, 6)) > rng.uniform(-0.9, 0.9))
        lens = rng.integers(1, rng.integers(2, 40), n + 1)  # runs of random lengths
        seqs.append(np.repeat(np.arange(lens.size) % 2, lens)[:n])
        lens = rng.choice([3, 5, 8], n + 1)  # few distinct run lengths: long repeats
        seqs.append(np.repeat(np.arange(lens.size) % 2, lens)[:n])
        per = int(rng.integers(1, 40))
        seqs.append(np.tile(rng.random(per) < 0.5, n // per + 1)[:n])
    return [np.ascontiguousarray(s, dtype=np.uint8) for s in seqs]


def test_lz76_from_runs_equals_the_reference_scan():
    rng = np.random.default_rng(2026)
    for s in _bit_sequences(rng):
        starts = np.empty(s.size + 1, np.int32)
        m = LZC._run_starts(s, starts)
        assert m == (0 if s.size == 0 else 1 + int(np.count_nonzero(np.diff(s))))
        want = _reference_lz76(s)
        assert LZC._lz76_count_runs(starts, m, s.size, 10**12) == want, s.size
        # the dispatcher (runs, automaton or prefix index, whichever it picks) gives the same count
        assert LZC._lz76_count_alloc(s) == want, s.size
        st = np.empty((2 * s.size + 2, 4), np.int32)
        assert LZC._lz76_count_rows(s[None, :]) == want and LZC._lz76_auto(s, st) == want


def test_lz76_from_runs_gives_up_past_its_budget_and_the_dispatcher_falls_back():
    lens = np.random.default_rng(3).integers(1, 4, 3000)
    s = np.ascontiguousarray(np.repeat(np.arange(lens.size) % 2, lens)[:4000], dtype=np.uint8)
    starts = np.empty(s.size + 1, np.int32)
    m = LZC._run_starts(s, starts)
    assert LZC._lz76_count_runs(starts, m, s.size, 10) == -1
    assert LZC._lz76_count_alloc(s) == _reference_lz76(s)


@pytest.mark.parametrize("n", [999, 1000])
def test_lz76_rows_of_binarised_smooth_signals_equal_the_reference(n):
    """Rows like the binarised EEG windows the runs path is for (long runs), both parities of length."""
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.standard_normal((40, n)), axis=1)
    bits = np.ascontiguousarray(x > np.median(x, axis=1, keepdims=True), dtype=np.uint8)
    assert list(LZC._lz76_count_rows(bits)) == [_reference_lz76(b) for b in bits]


def _median_test_rows(rng) -> list[np.ndarray]:
    rows = [np.array([3.0]), np.array([2.0, -1.0]), np.zeros(65), np.full(1000, 1.5), np.arange(999.0)[::-1]]
    for n in (5, 64, 65, 127, 999, 1000, 1001, 4000):
        rows.append(rng.standard_normal(n))
        rows.append(np.cumsum(rng.standard_normal(n)))  # smooth, like EEG windows
        rows.append(rng.integers(0, 4, n).astype(float))  # heavy ties
        rows.append(np.sort(rng.standard_normal(n)))
        a = rng.standard_normal()
        adj = np.r_[np.full(n // 2, a), np.full(n - n // 2, np.nextafter(a, 9.0))]  # two adjacent floats
        rows.append(rng.permutation(adj))
        rows.append(np.r_[rng.standard_normal(n - 3) * 1e-300, 1e300, -1e300, 0.0])
    return rows


def test_median_selection_equals_numpy_median_exactly():
    rng = np.random.default_rng(11)
    for x in _median_test_rows(rng):
        buf = np.full(2 * x.size, np.nan)
        before = x.copy()
        got = LZC._median_finite(x, buf)
        assert got == np.median(x) and np.signbit(got) == np.signbit(np.median(x)) or got == 0 == np.median(x)
        np.testing.assert_array_equal(x, before)  # the row itself is not reordered


def test_lzc_median_counts_equal_the_count_of_the_numpy_median_split():
    from pipelines.eeg.kernels.common import _row_states
    from pipelines.eeg.kernels.lempel_ziv import _lzc_median_rows

    rng = np.random.default_rng(12)
    for n in (999, 1000):
        rows = np.cumsum(rng.standard_normal((30, n)), axis=1)
        rows[3] = 0.0  # constant
        rows[4, 10] = np.nan
        rows[5, 0] = np.inf
        rows[6] = rng.standard_normal(n)  # random bits: the automaton
        rows[7] = rng.integers(0, 2, n)  # ties at the median
        rows.setflags(write=False)  # windows arrive as read-only views
        states = _row_states(rows)
        got = LZC._lzc_median_counts(rows, states)
        bits = rows > np.median(rows, axis=1, keepdims=True)
        want = [_reference_lz76(b.astype(np.uint8)) for b in bits]
        ok = np.isfinite(rows).all(axis=1)
        np.testing.assert_array_equal(got[ok], np.array(want)[ok])
        norm = _lzc_median_rows(rows, states, True)
        assert np.isnan(norm[~ok]).all() and np.isfinite(norm[ok]).all()
        np.testing.assert_array_equal(norm[ok], (np.array(want, float) / (n / math.log(n, 2)))[ok])
