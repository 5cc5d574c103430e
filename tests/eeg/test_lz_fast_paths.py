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
        assert LZC._lz76_count_runs_short(starts, m, s.size, np.empty(2 * m + 4, np.int32), 10**12) == want, s.size
        # the dispatcher (runs, automaton or prefix index, whichever it picks) gives the same count
        assert LZC._lz76_count_alloc(s) == want, s.size
        st = np.empty((2 * s.size + 2, 4), np.int32)
        assert LZC._lz76_count_rows(s[None, :]) == want and LZC._lz76_auto(s, st) == want


def test_lz76_from_indexed_runs_equals_the_reference_scan():
    rng = np.random.default_rng(2027)
    for s in _bit_sequences(rng):
        starts = np.empty(s.size + 1, np.int32)
        m = LZC._run_starts(s, starts)
        ws = np.full(2 * s.size + 6 * s.size + 8, -7, np.int32)
        assert LZC._lz76_count_runs_indexed(starts, m, s.size, 10**12, ws) == _reference_lz76(s), s.size


@pytest.mark.parametrize("mean_run", [8, 25, 60])
def test_long_sequences_of_long_runs_count_alike_by_every_method(mean_run):
    """From 16k symbols a sequence of long runs goes through the indexed runs: equal to the automaton (itself
    tested against the reference) and, on the shortest, to the reference scan."""
    rng = np.random.default_rng(mean_run)
    for n in (16384, 20001, 120000):
        t = np.arange(n)
        smooth = np.sin(2 * np.pi * t / (2 * mean_run) + np.cumsum(rng.standard_normal(n)) * 0.05) > 0
        lens = rng.choice([mean_run - 3, mean_run, mean_run + 2], n // mean_run + 2)  # few run lengths
        few = np.repeat(np.arange(lens.size) % 2, lens)[:n]
        for s in (smooth, few):
            s = np.ascontiguousarray(s, dtype=np.uint8)
            got = LZC._lz76_count_alloc(s)
            assert got == LZC._lz76_count_sam(s, np.empty((2 * n + 2, 4), np.int32)), (n, mean_run)
            if n == 20001:
                assert got == _reference_lz76(s)
    # long runs first, then random: the runs give up (or are not tried) and the prefix index or automaton count
    s = np.ascontiguousarray(np.r_[smooth[:30000], rng.random(90000) < 0.5], dtype=np.uint8)
    assert LZC._lz76_count_alloc(s) == LZC._lz76_count_sam(s, np.empty((2 * s.size + 2, 4), np.int32))
    starts = np.empty(n + 1, np.int32)
    assert LZC._lz76_count_runs_indexed(starts, LZC._run_starts(s, starts), n, 10, np.empty(8 * n + 8, np.int32)) == -1


@pytest.mark.parametrize("n", [16384, 100001, 300000])
def test_indexed_runs_of_eeg_like_channels_equal_the_automaton(n):
    """Whole-recording channels (filtered noise split at the median, or at the mean of its envelope): runs of
    many lengths, rare long ones, so phrases often find no earlier run with the same next run and take the
    run-length table (:func:`_runs_table_best`); counts equal the automaton's, budget or not."""
    rng = np.random.default_rng(n)
    for width in (5, 25, 80):
        x = np.convolve(rng.standard_normal(n + 4 * width), np.hanning(2 * width), "valid")[:n]
        for s in (x > np.median(x), np.abs(x) > np.abs(x).mean(), (x > 0) ^ (rng.random(n) < 0.002)):
            s = np.ascontiguousarray(s, dtype=np.uint8)
            want = LZC._lz76_count_sam(s, np.empty((2 * n + 2, 4), np.int32))
            starts = np.empty(n + 1, np.int32)
            m = LZC._run_starts(s, starts)
            got = LZC._lz76_count_runs_indexed(starts, m, n, 10**12, np.empty(2 * n + 2 + 6 * m, np.int32))
            assert got == want, (n, width)
            assert LZC._lz76_count_alloc(s) == want


def test_lz76_from_runs_gives_up_past_its_budget_and_the_dispatcher_falls_back():
    lens = np.random.default_rng(3).integers(1, 4, 3000)
    s = np.ascontiguousarray(np.repeat(np.arange(lens.size) % 2, lens)[:4000], dtype=np.uint8)
    starts = np.empty(s.size + 1, np.int32)
    m = LZC._run_starts(s, starts)
    assert LZC._lz76_count_runs_short(starts, m, s.size, np.empty(2 * m + 4, np.int32), 10) == -1
    assert LZC._lz76_count_alloc(s) == _reference_lz76(s)


@pytest.mark.parametrize("n", [999, 1000])
def test_lz76_rows_of_binarised_smooth_signals_equal_the_reference(n):
    """Rows like the binarised EEG windows the runs path is for (long runs), both parities of length."""
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.standard_normal((40, n)), axis=1)
    bits = np.ascontiguousarray(x > np.median(x, axis=1, keepdims=True), dtype=np.uint8)
    assert list(LZC._lz76_count_rows(bits)) == [_reference_lz76(b) for b in bits]


@pytest.mark.parametrize("n", [63, 64, 65, 129, 1000, 16383, 16384, 16385, 70001])
def test_prefix_index_equals_the_automaton_across_word_boundaries(n):
    """The prefix index compares 64 packed symbols at a time: matches ending just before, at and after a
    word boundary, copies longer than 64 and 128 symbols (periodic rows, a repeated block, runs), random and
    biased rows, for several K, equal the suffix automaton's count (itself tested against the reference)."""
    rng = np.random.default_rng(n)
    block = rng.random(min(n, 300)) < 0.5
    rows = [
        rng.random(n) < 0.5,
        rng.random(n) < 0.1,
        np.tile(rng.random(int(rng.integers(60, 140))) < 0.5, n // 60 + 1)[:n],
        np.r_[block, rng.random(50) < 0.5, block, ~block, block][:n] if n > 1 else block,
        np.repeat(np.arange(n) % 2, rng.integers(1, 5, n))[:n],
        np.zeros(n),
    ]
    for s in rows:
        s = np.ascontiguousarray(np.resize(s, n), dtype=np.uint8)
        want = LZC._lz76_count_sam(s, np.empty((2 * n + 2, 4), np.int32))
        for kbits in (1, 5, 13, 23):
            assert LZC._lz76_count_hash(s, kbits, 10**12) == want, (n, kbits)
        assert LZC._lz76_count_alloc(s) == want
    assert n > 20000 or LZC._lz76_count_alloc(s) == _reference_lz76(s)


def _lzw_reference(s: np.ndarray) -> int:
    """The published ``cpr`` on the string of the bits (a dict of words, plain Python)."""
    d, w = set(), ""
    for c in "".join(map(str, s.tolist())):
        if w + c in d:
            w += c
        else:
            d.add(w + c)
            w = c
    return len(d)


def test_lzw_group_counters_equal_the_published_algorithm_row_by_row():
    """The grouped walks (four, two, one row twice) give each row's own dictionary size, whatever the group
    size and however the rows' words repeat (constant, periodic, random, runs); workspace starts dirty."""
    rng = np.random.default_rng(15)
    seqs = [s for s in _bit_sequences(rng, 8) if s.size]
    for m in range(1, 10):
        for n in (1, 2, 3, 64, 999, 1000):
            rows = np.empty((m, n), np.uint8)
            for r in range(m):
                s = seqs[int(rng.integers(len(seqs)))]
                rows[r] = np.resize(s, n) if r % 3 else rng.random(n) < 0.5
            child = np.full((4, n + 3, 2), 12345, np.int32)
            out = np.full(m, -1, np.int64)
            LZC._lzw_counts(rows, child, out)
            want = [_lzw_reference(r) for r in rows]
            assert list(out) == want, (m, n)
            assert [LZC._lzw_dict_size(r, np.empty((n + 3, 2), np.int32)) for r in rows] == want


def test_float_modulo_equals_the_integer_modulo():
    """``_mod_u32`` (two float64 divisions, corrected) is ``z % d`` exactly: random and extreme z, every d up to
    5000 and random ones up to 2^32 - 1, and z just below, at and above multiples of d (where a rounded
    quotient lands on the other side of an integer)."""
    rng = np.random.default_rng(16)
    edges = [0, 1, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 2**11, 2**64 - 1]
    zs = np.r_[rng.integers(0, 2**64 - 1, 300, dtype=np.uint64, endpoint=True), np.array(edges, dtype=np.uint64)]
    ds = np.r_[np.arange(1, 5001), rng.integers(5001, 2**32, 3000), [2**31 - 1, 2**31, 2**32 - 5, 2**32 - 1]]
    pairs = [(int(z), int(d)) for z in zs for d in ds[:: 7 if int(z) % 2 else 1]]
    for d in np.r_[np.arange(1, 400), rng.integers(400, 2**32, 400)]:
        top = (2**64 - 1) // int(d)
        for q in (1, 2**31, top // 3, top - 1, top):
            pairs += [(q * int(d) + e, int(d)) for e in (-1, 0, 1) if 0 <= q * int(d) + e < 2**64]
    z = np.array([p[0] for p in pairs], dtype=np.uint64)
    d = np.array([p[1] for p in pairs], dtype=np.int64)
    got = np.array([LZC._mod_u32(zz, dd) for zz, dd in zip(z[:2000], d[:2000], strict=True)])
    np.testing.assert_array_equal(got, (z[:2000] % d[:2000].astype(np.uint64)).astype(np.int64))
    got = _mod_all(z, d)
    want = np.array([p[0] % p[1] for p in pairs], dtype=np.int64)
    np.testing.assert_array_equal(got, want)


def _mod_all(z, d):
    from numba import njit

    @njit
    def run(z, d):
        out = np.empty(z.size, np.int64)
        for t in range(z.size):
            out[t] = LZC._mod_u32(z[t], d[t])
        return out

    return run(z, d)


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 64001, (1 << 20) + 7])
def test_two_pass_shuffles_are_the_one_pass_permutations(n):
    """The two-pass shuffles (float-modulo draws, prefetched swaps from 2^20 elements) give the permutation of
    the one-pass Fisher-Yates with the 64-bit integer modulo / multiply-shift, element for element."""
    idx = np.empty(n, np.int32)
    for kind in (1, 2, 3, 4):
        for k in (0, 3):
            one, two = np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32)
            LZC._shuffle_keyed(one, 11, kind, 5, 2, k)
            LZC._shuffle_keyed_idx(two, 11, kind, 5, 2, k, idx)
            np.testing.assert_array_equal(one, two)
            assert n < 10 or not np.array_equal(one, np.arange(n))


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
    assert list(LZC._lzc_median_counts(np.empty((2, 0)), np.zeros(2, np.uint8))) == [0, 0]


def _float32_median_rows(rng) -> list[np.ndarray]:
    """float32 rows for the float32 median split: smooth (the surrogates), random, heavy ties, constant, two
    adjacent float32 values, denormals and values near the float32 limits, odd and even lengths."""
    rows = [np.array([3.0]), np.array([2.0, -1.0]), np.zeros(65), np.full(1000, 1.5), np.arange(999.0)[::-1]]
    rows += [np.r_[np.zeros(500), np.full(500, -0.0)], np.r_[np.full(3, np.float32(1e-45)), np.zeros(4)]]
    for n in (2, 3, 5, 60, 61, 63, 64, 65, 127, 128, 999, 1000, 1001, 4000):
        rows.append(rng.standard_normal(n))
        rows.append(np.cumsum(rng.standard_normal(n)))
        rows.append(np.sin(np.arange(n) * rng.uniform(0.01, 0.3)) * 50)  # long runs, many near-equal values
        rows.append(rng.integers(0, 4, n))
        rows.append(np.sort(rng.standard_normal(n)))
        a = np.float32(rng.standard_normal())
        adj = np.r_[np.full(n // 2, a), np.full(n - n // 2, np.nextafter(a, np.float32(9.0)))]
        rows.append(rng.permutation(adj))
        rows.append(rng.standard_normal(n) * 1e-44)  # float32 denormals
        rows.append(np.r_[rng.standard_normal(n - 2) * 1e-40, 3.4e38, -3.4e38][:n])
    return [np.ascontiguousarray(r, dtype=np.float32) for r in rows]


def test_float32_kth_smallest_equals_numpy_partition_exactly():
    rng = np.random.default_rng(21)
    for x in _float32_median_rows(rng):
        nw = (x.size + 63) // 64
        flags = np.full(nw * 64, 7, np.uint8)
        cand = np.full(nw * 64, np.nan, np.float32)
        before = x.copy()
        for k in {0, (x.size - 1) // 2, x.size // 2, x.size - 1}:
            got = LZC._kth_smallest_f32(x, k, flags, np.empty(nw, np.uint64), cand)
            assert got == np.partition(x, k)[k], (x.size, k)
        np.testing.assert_array_equal(x, before)


def _bits_of_words(words: np.ndarray, n: int) -> np.ndarray:
    """0/1 of bit t % 64 of word t // 64, t < n (independent of the kernels' packing)."""
    return ((words[np.arange(n) // 64] >> (np.arange(n) % 64).astype(np.uint64)) & np.uint64(1)).astype(bool)


def test_float32_word_comparisons_and_their_counts_equal_numpy():
    """Bit t of the comparison words is ``x[t] < thr`` (NaN: false), zeros past the end, and the counts are
    the numbers of set bits, for every length (whole words, a partial last word, shorter than one word)."""
    rng = np.random.default_rng(31)
    for n in (1, 5, 63, 64, 65, 127, 128, 129, 999, 1000):
        x = rng.standard_normal(n).astype(np.float32)
        x[rng.random(n) < 0.05] = np.nan
        x[rng.random(n) < 0.05] = 0.25
        nw = (n + 63) // 64
        for a, b in ((0.25, 0.5), (-np.inf, np.inf), (np.nan, 0.25), (1.0, -1.0)):
            wa = np.full(nw, 12345, np.uint64)
            wb = np.full(nw, 12345, np.uint64)
            ca, cb = LZC._below_words(x, np.float32(a), np.float32(b), wa, wb)
            for w, c, t in ((wa, ca, a), (wb, cb, b)):
                want = x < np.float32(t)
                np.testing.assert_array_equal(_bits_of_words(w, n), want)
                assert c == want.sum() and np.all(_bits_of_words(w, nw * 64)[n:] == 0), (n, t)


def test_rank_select_equals_numpy_partition_with_ties():
    rng = np.random.default_rng(32)
    for n in (1, 2, 3, 8, 31, 64):
        for a in (rng.standard_normal(n), rng.integers(0, 3, n), np.zeros(n)):
            a = a.astype(np.float32)
            for k in range(n):
                assert LZC._rank_select(a.copy(), n, k) == np.partition(a, k)[k], (n, k)


def test_float32_median_split_words_equal_numpy_partition_and_the_split():
    """The bracketed selection returns np.partition's k-th value and the words hold ``x > it`` (zeros past
    the end), with the bracket found (planted: smooth rows, every length) and missed (its fallback: heavy
    ties, a constant row, two adjacent values, a skewed row whose median is far from the sample mean)."""
    rng = np.random.default_rng(33)
    rows = _float32_median_rows(rng)
    rows += [np.r_[np.zeros(700), rng.uniform(1, 1e6, 300)].astype(np.float32) for _ in range(3)]
    found = missed = 0
    for x in rows:
        n = x.size
        nw = (n + 63) // 64
        before = x.copy()
        for k in {0, (n - 1) // 2, n // 2, n - 1}:
            ws = np.full((4, nw), 77, np.uint64)
            hit = LZC._median_bracket_f32(x, k, ws.copy())[0]
            found += hit
            missed += not hit
            a = LZC._median_split_words_f32(x, k, ws, np.empty(nw * 64, np.uint8), np.empty(nw * 64, np.float32))
            assert a == np.partition(x, k)[k], (n, k)
            np.testing.assert_array_equal(_bits_of_words(ws[3], n), x > a)
            assert np.all(_bits_of_words(ws[3], nw * 64)[n:] == 0)
            starts = np.full(n + 1, -5, np.int32)
            m = LZC._run_starts_words(ws[3], n, starts)
            want = np.empty(n + 1, np.int32)
            assert m == LZC._run_starts((x > a).astype(np.uint8), want)
            np.testing.assert_array_equal(starts[: m + 1], want[: m + 1])
        np.testing.assert_array_equal(x, before)
    assert found > 20 and missed > 5


def test_float32_lzc_median_counts_equal_the_general_path_and_the_numpy_median_split():
    """The float32 kernel splits at the lower middle value and counts from packed bits; the general kernel
    (:func:`_median_finite`, :func:`_lz76_auto`) and the reference (``np.median`` in float64, antropy's scan)
    give the same counts, also for rows with NaN (skipped: 0) and for blocks of equal-length rows."""
    rng = np.random.default_rng(22)
    for x in _float32_median_rows(rng):
        rows = np.stack([x, x[::-1].copy(), rng.permutation(x)])
        states = np.zeros(3, np.uint8)
        got = LZC._lzc_median_counts(rows, states)
        np.testing.assert_array_equal(got, LZC._lzc_median_counts_sel(rows, states))
        want = [_reference_lz76((r > np.median(r.astype(np.float64))).astype(np.uint8)) for r in rows]
        np.testing.assert_array_equal(got, want)
    from pipelines.eeg.kernels import surrogates as S
    from pipelines.eeg.kernels.common import _ROW_NONFINITE

    for n_t in (999, 1000):  # the rows the kernel is for: float32 phase surrogates of smooth windows
        win = np.cumsum(rng.standard_normal((12, n_t)), axis=1)
        spec = np.fft.rfft(win, axis=-1).astype(np.complex64)
        phased = np.empty((12, 10, spec.shape[1]), np.complex64)
        S._randomise_phases_into(spec, phased, n_t % 2 == 0, 1, S._KIND_PHASES, 0, 0)
        surr = np.fft.irfft(phased, n_t, axis=-1).reshape(-1, n_t)
        states = np.zeros(surr.shape[0], np.uint8)
        got = LZC._lzc_median_counts(surr, states)
        np.testing.assert_array_equal(got, LZC._lzc_median_counts_sel(surr, states))
        bits = surr > np.median(surr.astype(np.float64), axis=1, keepdims=True)
        np.testing.assert_array_equal(got[:20], [_reference_lz76(b.astype(np.uint8)) for b in bits[:20]])
    rows = np.cumsum(rng.standard_normal((6, 1000)), axis=1).astype(np.float32)
    rows[2, 5] = np.nan
    states = np.zeros(6, np.uint8)
    states[2] = _ROW_NONFINITE
    got = LZC._lzc_median_counts(rows, states)
    assert got[2] == 0 and list(got) == list(LZC._lzc_median_counts_sel(rows, states))
    assert list(LZC._lzc_median_counts(np.empty((2, 0), np.float32), np.zeros(2, np.uint8))) == [0, 0]


def test_lz76_from_runs_by_parity_scan_equals_the_reference_scan():
    """The branch-free scan of the float32 median path, on every kind of sequence (short runs too), also
    from the float32 split's own run starts; past its budget it gives up (-1) rather than a wrong count."""
    rng = np.random.default_rng(2028)
    gave_up = 0
    for s in _bit_sequences(rng):
        if s.size == 0:
            continue
        starts = np.empty(s.size + 1, np.int32)
        m = LZC._run_starts(s, starts)
        ws = np.full(2 * m + 4, -7, np.int32)
        want = _reference_lz76(s)
        assert LZC._lz76_count_runs_short(starts, m, s.size, ws, 10**12) == want, s.size
        c = LZC._lz76_count_runs_short(starts, m, s.size, ws, 4 * s.size + 64)
        assert c in (want, -1)
        gave_up += c == -1 and m * LZC._LZ_RUNS_MIN_MEAN <= s.size  # a sequence of long runs
        x = s.astype(np.float32) + rng.uniform(-0.4, 0.4, s.size).astype(np.float32)
        nw = (s.size + 63) // 64
        got = np.full(s.size + 1, -9, np.int32)
        assert (
            LZC._split_run_starts_f32(x, np.float32(0.5), np.empty(nw * 64, np.uint8), np.empty(nw, np.uint64), got)
            == m
        )
        np.testing.assert_array_equal(got[: m + 1], starts[: m + 1])
    assert gave_up == 0


def test_runs_walk_over_the_scans_marked_runs_equals_the_walk_over_every_run():
    """The runs the parity scan marks (bit j: run 2 j + v % 2 goes on past its next run) extend to the same
    longest copy and work as checking every earlier run of the phrase's symbol, for every run v and every r0
    on periodic sequences (many equal run lengths: many marked runs), random ones and ones of > 128 runs."""
    rng = np.random.default_rng(34)
    seqs = [np.tile(np.r_[np.zeros(3), np.ones(3)], 30), np.tile(np.r_[np.zeros(2), np.ones(5), 0, 1], 20)]
    seqs += [rng.random(400) < 0.5, np.sin(np.arange(900) * 0.3) > 0.2, np.repeat(rng.random(150) < 0.5, 3)]
    checked = marked = 0
    for s in seqs:
        s = np.asarray(s, np.uint8)
        starts = np.empty(s.size + 1, np.int32)
        m = LZC._run_starts(s, starts)
        lens = np.diff(starts[: m + 1])
        for v in range(2, m - 2):
            p = v & 1
            for r0 in range(1, lens[v] + 1):
                lb = lens[v + 1]
                best, walk = LZC._scan_parity(
                    lens[p::2].astype(np.int32), lens[p + 1 :: 2].astype(np.int32), v >> 1, r0, lb
                )
                want_walk = [(lens[u] >= r0) & (lens[u + 1] == lb) for u in range(p, v, 2)]
                assert (walk != 0) == any(want_walk)
                if walk == 0 or v >> 1 > 63:
                    continue
                got = LZC._runs_walk(starts, m, v, r0, lb, 0, 0, walk, False)
                assert got == LZC._runs_walk(starts, m, v, r0, lb, 0, 0, walk, True), (v, r0)
                checked += 1
                marked += bin(int(walk)).count("1") > 1
    assert checked > 100 and marked > 20


def _reference_phases(spec: np.ndarray, n_surr: int, n_even: bool, seed: int, kind: int, channel: int) -> np.ndarray:
    """The per-bin loop the phase surrogates were defined with, in plain Python (IEEE doubles, CPython's
    complex product ``(ac - bd) + i(ad + bc)``): the draws of the SplitMix64 stream of (seed, kind,
    channel, row, surrogate), rejected outside the unit disc or too near 0."""
    mask = (1 << 64) - 1
    n_rows, nf = spec.shape
    out = np.empty((n_rows, n_surr, nf), np.complex128)
    for r in range(n_rows):
        for k in range(n_surr):
            state = int(LZC._shuffle_key(seed, kind, channel, r, k))
            for f in range(nf):
                if f == 0 or (n_even and f == nf - 1):
                    out[r, k, f] = spec[r, f]
                    continue
                while True:
                    state = (state + 0x9E3779B97F4A7C15) & mask
                    z = state
                    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
                    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
                    z ^= z >> 31
                    a = float(z >> 32) * 2.0**-31 - 1.0
                    b = float(z & 0xFFFFFFFF) * 2.0**-31 - 1.0
                    r2 = a * a + b * b
                    if 1e-12 < r2 <= 1.0:
                        break
                inv = 1.0 / math.sqrt(r2)
                out[r, k, f] = complex(spec[r, f]) * complex(a * inv, b * inv)
    return out


@pytest.mark.parametrize("n_t", [1, 2, 3, 64, 65, 1000])
def test_phase_rotation_equals_the_per_bin_reference(n_t):
    from pipelines.eeg.kernels import surrogates as S

    rng = np.random.default_rng(n_t)
    rows = rng.standard_normal((3, n_t)) * 10.0 ** rng.integers(-3, 4, (3, 1))
    spec = np.fft.rfft(rows, axis=-1)
    want = _reference_phases(spec, 4, n_t % 2 == 0, 7, S._KIND_PHASES, 5)
    got = S._randomise_phases(spec, 4, n_t % 2 == 0, 7, S._KIND_PHASES, 5)
    np.testing.assert_array_equal(got.view(np.float64), want.view(np.float64))
    # rows keyed as window w0 + r: a later block of windows gets the same rotations
    part = np.empty((2, 4, spec.shape[1]), np.complex128)
    S._randomise_phases_into(spec[1:], part, n_t % 2 == 0, 7, S._KIND_PHASES, 5, 1)
    np.testing.assert_array_equal(part, got[1:])


@pytest.mark.parametrize("n_t", [999, 1000])
def test_fused_phase_surrogate_lzc_median_equals_the_measure_on_all_surrogates(n_t):
    from pipelines.eeg.kernels import surrogates as S
    from pipelines.eeg.kernels.common import _row_states
    from pipelines.eeg.kernels.lempel_ziv import _lzc_median_rows

    rng = np.random.default_rng(n_t)
    rows = np.cumsum(rng.standard_normal((S._SURR_BLOCK_WINDOWS * 2 + 3, n_t)), axis=1)  # a partial last block
    rows[4, 7] = np.nan
    rows[9] = 2.0  # constant window: surrogates are the constant
    surr = S.make_surrogates(rows, 6, "phase", 3, 2).reshape(-1, n_t)
    want = _lzc_median_rows(surr, _row_states(surr), True).reshape(rows.shape[0], 6)
    # the float64 precision of the fused path is exact; the float32 default is checked against this float64
    # reference within its stated tolerance in test_kernel_precision.py
    got = S._phase_surrogate_lzc_median(rows, 6, 3, 2, True, np.float64)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[4]).all() and np.isfinite(np.delete(got, 4, axis=0)).all()
    got32 = S._phase_surrogate_lzc_median(rows, 6, 3, 2, True)
    assert np.isnan(got32[4]).all() and np.isfinite(np.delete(got32, 4, axis=0)).all()
    np.testing.assert_array_equal(got32[9], want[9])  # a constant window's surrogates are the constant


@pytest.mark.parametrize("n", [1, 3, 4, 999, 1000])
def test_nonfinite_states_flag_exactly_the_rows_row_states_calls_non_finite(n):
    from pipelines.eeg.kernels import surrogates as S
    from pipelines.eeg.kernels.common import _ROW_NONFINITE, _row_states

    rng = np.random.default_rng(n)
    rows = rng.standard_normal((12, n)) * 1e300
    rows[1] = 5.0  # constant: not non-finite
    for r, bad in zip(range(2, 11), [np.nan, np.inf, -np.inf] * 3, strict=True):
        rows[r, rng.integers(n) if r < 8 else n - 1] = bad  # anywhere, and in the last (tail) position
    got = S._nonfinite_states(rows)
    np.testing.assert_array_equal(got == _ROW_NONFINITE, _row_states(rows) == _ROW_NONFINITE)
    assert set(np.unique(got)) <= {0, _ROW_NONFINITE}
