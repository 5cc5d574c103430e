"""The fast paths of the windowed Schartner measures (grouped LZW walks, shuffles, LZ76 prefix index) equal
independent straightforward definitions: the published pure-Python ``cpr`` for the LZW dictionary size, a plain
SplitMix64 Fisher-Yates for the shuffles, antropy's Kaspar & Schuster scan for LZ76. No timing here."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.eeg.kernels import lz_counts as LZC


def _cpr(s: np.ndarray) -> int:
    """Schartner et al.'s published ``cpr`` on the string of the bits (a dict of words, plain Python)."""
    d, w = {}, ""
    for c in "".join(map(str, s.tolist())):
        wc = w + c
        if wc in d:
            w = wc
        else:
            d[wc] = wc
            w = c
    return len(d)


def _rows(rng, m: int, n: int) -> np.ndarray:
    """m rows of n bits of different kinds: fair and biased coins, runs, periodic, constant."""
    rows = np.empty((m, n), np.uint8)
    for r in range(m):
        kind = r % 5
        if kind == 0:
            rows[r] = rng.random(n) < 0.5
        elif kind == 1:
            rows[r] = rng.random(n) < rng.uniform(0.02, 0.98)
        elif kind == 2:
            rows[r] = np.repeat(np.arange(n) % 2, rng.integers(1, 30, n))[:n]
        elif kind == 3:
            rows[r] = np.tile(rng.random(int(rng.integers(1, 20))) < 0.5, n)[:n]
        else:
            rows[r] = r % 2
    return rows


@pytest.mark.parametrize("n", [0, 1, 2, 3, 64, 999, 1000])
def test_lzw_six_tries_equal_the_published_cpr_row_by_row(n):
    """With six tries the rows are walked six at a time (a remainder of five with the last row twice, then
    groups of four and two); every row gets the published ``cpr`` size; the workspace starts dirty."""
    rng = np.random.default_rng(n + 40)
    for m in range(1, 14):
        rows = _rows(rng, m, n)
        rng.shuffle(rows)
        child = np.full((6, n + 3, 2), 7777, np.int32)
        out = np.full(m, -1, np.int64)
        LZC._lzw_counts(rows, child, out)
        assert list(out) == [_cpr(r) for r in rows], (m, n)


def _lz76_reference(s: np.ndarray) -> int:
    from antropy.entropy import _lz_complexity

    return int(_lz_complexity(np.asarray(s, dtype=np.uint32))) if s.size else 0


def _lz76_rows(rng) -> list[np.ndarray]:
    """Random, biased, periodic, long-run, constant rows, lengths around word and K boundaries."""
    rows = [np.zeros(0, np.uint8), np.zeros(1, np.uint8), np.ones(3, np.uint8), np.zeros(700, np.uint8)]
    for n in (2, 5, 17, 63, 64, 65, 128, 129, 999, 1000, 3001):
        rows += [
            rng.random(n) < 0.5,
            rng.random(n) < 0.1,
            np.tile(rng.random(int(rng.integers(1, 90))) < 0.5, n)[:n],
            np.repeat(np.arange(n) % 2, rng.integers(1, 9, n))[:n],
        ]
    return [np.ascontiguousarray(r, dtype=np.uint8) for r in rows]


def test_prefix_index_built_in_one_pass_equals_the_reference_scan_for_every_k():
    """The chains and first occurrences built before the parse (backwards, K <= 14; forwards, K <= 18) give
    antropy's count, as the incremental index does; a workspace too small for them is replaced, not overrun."""
    rng = np.random.default_rng(41)
    for s in _lz76_rows(rng):
        want = _lz76_reference(s)
        for kbits in (1, 2, 3, 5, 8, 11, 13, 16, 18):
            ws = np.full(s.size + (2 << kbits), -7, np.int32)
            assert LZC._lz76_count_prev(s, kbits, 10**12, ws) == want, (s.size, kbits)
            ws[:] = -7
            assert LZC._lz76_count_next(s, kbits, 10**12, ws) == want, (s.size, kbits)
            small = np.full(s.size + 1, -7, np.int32)
            assert LZC._lz76_count_hash_in(s, kbits, 10**12, small) == want, (s.size, kbits)
        for kbits in (2, 8, 13):
            ws = np.full(s.size + (1 << kbits), -7, np.int32)
            assert LZC._lz76_count_hash_chains(s, kbits, 10**12, ws) == want, (s.size, kbits)


def test_chains_and_first_occurrences_equal_their_definitions():
    rng = np.random.default_rng(42)
    for s in _lz76_rows(rng)[:30]:
        n = s.size
        for k in (1, 3, 7):
            padded = np.r_[s, np.zeros(k, np.uint8)]
            grams = [tuple(padded[p : p + k]) for p in range(n)]
            prev = np.full(n, -9, np.int32)
            LZC._lz76_prev_occurrences(s, k, np.empty(1 << k, np.int32), prev)
            want_prev = [max((q for q in range(p) if grams[q] == grams[p]), default=-1) for p in range(n)]
            assert prev.tolist() == want_prev, (n, k)
            first = np.full(1 << k, -9, np.int32)
            LZC._lz76_first_occurrences(s, k, first)
            for d in range(k):
                for x in range(1 << d):
                    bits = tuple((x >> (d - 1 - b)) & 1 for b in range(d))
                    want = min((p for p in range(n) if grams[p][:d] == bits), default=n)
                    assert first[(1 << d) + x] == want, (n, k, d, x)
            nxt, heap = np.full(n, -9, np.int32), np.full(2 << k, -9, np.int32)
            LZC._lz76_next_occurrences(s, k, nxt, heap)
            want_next = [min((q for q in range(p + 1, n) if grams[q] == grams[p]), default=n) for p in range(n)]
            assert nxt.tolist() == want_next, (n, k)
            for d in range(k + 1):
                for x in range(1 << d):
                    bits = tuple((x >> (d - 1 - b)) & 1 for b in range(d))
                    want = min((p for p in range(n) if grams[p][:d] == bits), default=n)
                    assert heap[(1 << d) + x] == want, (n, k, d, x)


def test_one_pass_prefix_index_gives_up_past_its_budget():
    s = np.zeros(5000, np.uint8)
    s[::7] = 1  # periodic: every earlier occurrence extends far
    ws = np.empty(s.size + (2 << 4), np.int32)
    for count in (LZC._lz76_count_prev, LZC._lz76_count_next):
        assert count(s, 4, 10, ws) == -1
        assert count(s, 4, 10**12, ws) == _lz76_reference(s)


def test_shuffled_copies_counted_directly_equal_the_reference_scan():
    """Shuffled copies skip the dispatcher's test for long runs (prefix index, K = log2(n) - 1, automaton
    when it gives up): the count is antropy's for fair, biased and constant copies, short and long, and
    for the strongly biased one the index does give up (the fallback is exercised)."""
    rng = np.random.default_rng(43)
    rows = [np.zeros(n, np.uint8) for n in (0, 1, 3, 4, 1000)] + [np.ones(5, np.uint8)]
    for n in (4, 5, 63, 999, 1000, 20001):
        for p in (0.5, 0.28, 0.05):
            rows.append((rng.random(n) < p).astype(np.uint8))
    biased = (rng.random(70001) < 0.01).astype(np.uint8)
    rows.append(biased)
    k = int(np.log2(biased.size)) - 1
    assert LZC._lz76_count_hash_in(biased, k, 4 * biased.size + 10_000, np.empty(0, np.int32)) == -1
    for s in rows:
        st = np.full((2 * s.size + 2, 4), -3, np.int32)
        assert LZC._lz76_shuffled(s, st) == _lz76_reference(s), (s.size, s.mean() if s.size else 0)


def _plain_fisher_yates(n: int, key: int, multiply_shift: bool) -> list[int]:
    """Fisher-Yates of range(n) driven by a SplitMix64 stream started at ``key``, in plain Python integers:
    the index for i is the draw modulo i + 1 (kinds 1, 2) or its top 32 bits times i + 1, top 32 bits (3, 4)."""
    m64 = (1 << 64) - 1
    a, state = list(range(n)), key
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & m64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
        z ^= z >> 31
        j = ((z >> 32) * (i + 1)) >> 32 if multiply_shift else z % (i + 1)
        a[i], a[j] = a[j], a[i]
    return a


@pytest.mark.parametrize("n", [1, 2, 3, 65, 1000, 70001])
def test_shuffles_in_passes_equal_a_plain_fisher_yates(n):
    """The shuffles draw their indices in passes of len(idx) - 1 (any workspace length, even one entry):
    the permutation is the plain SplitMix64 Fisher-Yates one, element for element."""
    for kind in (1, 2, 3, 4):
        key = int(LZC._shuffle_key(9, kind, 4, 7, 2))
        want = _plain_fisher_yates(n, key, kind >= 3)
        for size in (0, 1, 2, 3, 64, 65535, n):
            got = np.arange(n, dtype=np.int32)
            LZC._shuffle_keyed_idx(got, 9, kind, 4, 7, 2, np.empty(size, np.int32))
            assert got.tolist() == want, (n, kind, size)


def test_long_shuffles_in_passes_equal_the_one_pass_shuffle():
    """From 2^20 elements the swaps prefetch ahead within each pass: still the one-pass permutation."""
    n = (1 << 20) + 77
    for kind in (2, 4):
        one = np.arange(n, dtype=np.int32)
        LZC._shuffle_keyed(one, 3, kind, 0, 0, 1)
        for size in (4097, LZC._SHUFFLE_CHUNK, n):
            two = np.arange(n, dtype=np.int32)
            LZC._shuffle_keyed_idx(two, 3, kind, 0, 0, 1, np.empty(size, np.int32))
            np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("n_shuffles", [1, 2, 3])
def test_spatiotemporal_lz76_equals_its_definition_window_by_window(n_shuffles):
    """lzc_schartner_st per window: LZ76 of the time-major sequence over its mean over the keyed shuffles
    (each made from the unshuffled sequence, the last one in place), NaN where the window is not usable."""
    rng = np.random.default_rng(44 + n_shuffles)
    n_ch, n_win, n = 5, 4, 301
    bits = (rng.random((n_ch, n_win, n)) < 0.4).astype(np.uint8)
    bits[:, 2] = np.repeat(np.arange(n) % 2, rng.integers(1, 20, n))[:n]  # long runs in every channel
    ok = np.array([True, True, True, False])
    got = LZC._lzc_st_windows(bits, ok, 13, 0, n_win, 2, n_shuffles, False)
    for w in range(n_win):
        if not ok[w]:
            assert np.isnan(got[w])
            continue
        seq = np.ascontiguousarray(bits[:, w, :].T.ravel())
        copies = []
        for k in range(n_shuffles):
            c = seq.copy()
            LZC._shuffle_keyed(c, 13, 2, 0, w, k)
            copies.append(_lz76_reference(c))
        want = _lz76_reference(seq) / (sum(float(c) for c in copies) / n_shuffles)
        assert got[w] == want, (w, got[w], want)
