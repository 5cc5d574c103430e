"""The two-level sparse index (lz_sparse) counts LZ76 phrases exactly as the suffix automaton and antropy's
O(n^2) Kaspar & Schuster scan do. Small index parameters (short flagged prefixes, few buckets) drive every
branch on short sequences: level-1 answers, bucket scans over the q shifts, matches longer than an entry
holds, copies to the end, lengths just around multiples of q and of 64. No timing here (benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest
from antropy.entropy import _lz_complexity

from pipelines.eeg.kernels import lz_counts as LZC
from pipelines.eeg.kernels import lz_sparse as LZS

# (l0, kbits, q): kbits + q - 1 <= l0; q = 1 (every start indexed) to 16, tiny and production-sized flags
_PARAMS = [(6, 6, 1), (6, 4, 2), (8, 5, 4), (10, 7, 3), (13, 7, 7), (12, 1, 12), (16, 9, 8), (20, 5, 16), (26, 19, 8)]


def _sam(s: np.ndarray) -> int:
    return int(LZC._lz76_count_sam(s, np.empty((2 * s.size + 2, 4), np.int32)))


def _sparse(s: np.ndarray, l0: int, kbits: int, q: int, budget: int = 10**15) -> int:
    """The kernel on a dirty workspace (garbage left by an earlier count must not matter)."""
    ws = np.random.default_rng(s.size).integers(-(2**31), 2**31 - 1, LZS._sparse_ws_size(s.size, l0, kbits, q))
    return int(LZS._lz76_count_sparse(s, l0, kbits, q, budget, ws.astype(np.int32)))


def _rows(rng, n: int) -> list[np.ndarray]:
    """Random, biased (p = 0.1), long runs (binarised noise), periodic, a repeated block, all 0, all 1."""
    block = rng.random(max(1, min(n, 200))) < 0.5
    per = rng.random(int(rng.integers(1, 70))) < 0.5
    noise = np.cumsum(rng.standard_normal(n))
    rows = [
        rng.random(n) < 0.5,
        rng.random(n) < 0.1,
        noise > np.median(noise) if n else noise > 0,
        np.tile(per, n // per.size + 1)[:n],
        np.r_[block, rng.random(40) < 0.5, block, ~block, block, block][:n],
        np.zeros(n),
        np.ones(n),
    ]
    return [np.ascontiguousarray(np.resize(r, n), dtype=np.uint8) for r in rows]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 191, 192, 193, 1000, 1001])
def test_sparse_count_equals_the_reference_scan_and_the_automaton(n):
    rng = np.random.default_rng(1000 + n)
    for s in _rows(rng, n):
        want = int(_lz_complexity(s.astype(np.uint32)))
        assert _sam(s) == want
        for params in _PARAMS:
            assert _sparse(s, *params) == want, (n, params, s[:20])


@pytest.mark.parametrize("n", [4095, 4096, 4097, 4103, 65535, 65536, 65537])
def test_sparse_count_equals_the_automaton_on_longer_rows(n):
    rng = np.random.default_rng(n)
    for s in _rows(rng, n):
        want = _sam(s)
        for params in _PARAMS:
            assert _sparse(s, *params) == want, (n, params)


def _spatio_temporal(rng, n_ch: int, n_t: int) -> np.ndarray:
    """Channels of binarised noise interleaved time-major, as the whole-recording sequence is built."""
    x = np.cumsum(rng.standard_normal((n_ch, n_t)), axis=1)
    x -= np.cumsum(rng.standard_normal((1, n_t)), axis=1)  # a shared component: channels alike
    bits = (x > np.median(x, axis=1, keepdims=True)).astype(np.uint8)
    return np.ascontiguousarray(bits.T.reshape(-1))


def test_sparse_count_equals_the_automaton_on_million_symbol_sequences():
    """Million-symbol random, biased and spatio-temporal sequences (and a shuffle of the last), with small
    parameters (long bucket scans, many matches longer than an entry) and with the production ones."""
    rng = np.random.default_rng(77)
    st = _spatio_temporal(rng, 16, 1 << 16)
    seqs = [
        (rng.random((1 << 20) + 5) < 0.5).astype(np.uint8),
        (rng.random((1 << 20) - 3) < 0.2).astype(np.uint8),
        st,
        rng.permutation(st),
    ]
    for s in seqs:
        want = _sam(s)
        assert _sparse(s, 16, 9, 8) == want
        assert _sparse(s, *LZS._sparse_params(s.size)) == want


def test_long_sequences_go_to_the_sparse_index_and_count_alike():
    """From _LZ_HASH_DRAM_N symbols the dispatcher uses the sparse index in the automaton's workspace: on
    random and biased sequences it counts (no fallback) and equals the automaton; on a very regular
    spatio-temporal sequence (correlated random-walk channels) it gives up and the dispatcher falls back."""
    rng = np.random.default_rng(5)
    n = LZC._LZ_HASH_DRAM_N + 37
    l0, kbits, q = LZS._sparse_params(n)
    regular = _spatio_temporal(rng, 64, n // 64 + 1)[:n].copy()
    seqs = [(rng.random(n) < 0.5).astype(np.uint8), (rng.random(n) < 0.4).astype(np.uint8), regular]
    for s, counts in zip(seqs, [True, True, False], strict=True):
        st = np.empty((2 * n + 2, 4), np.int32)
        flat = st.reshape(-1)
        assert np.shares_memory(LZS._sparse_ws(flat, n, l0, kbits, q), flat)  # no fresh workspace
        got = LZS._lz76_count_sparse(s, l0, kbits, q, n + 10_000, flat)
        want = _sam(s)
        assert got == (want if counts else -1)
        assert LZC._lz76_auto(s, st) == want


def test_sparse_index_gives_up_past_its_budget():
    """Periodic and biased sequences make long buckets: past the budget the count is -1 (the dispatcher then
    uses the automaton); with enough budget it is exact."""
    rng = np.random.default_rng(9)
    s = np.ascontiguousarray(np.tile(rng.random(37) < 0.5, 3000), dtype=np.uint8)
    b = (rng.random(50_000) < 0.03).astype(np.uint8)
    for seq in (s, b):
        assert _sparse(seq, 13, 7, 7, budget=50) == -1
        assert _sparse(seq, 13, 7, 7) == _sam(seq)


@pytest.mark.parametrize("n", [1, 100, 1 << 22, 19_200_000, (1 << 22) * 7 + 3, 1 << 28])
def test_sparse_parameters_are_valid_and_fit_the_automaton_workspace(n):
    l0, kbits, q = LZS._sparse_params(n)
    assert 1 <= q <= 16 and kbits + q - 1 <= l0 <= 32 and kbits >= 1
    if n >= LZC._LZ_HASH_DRAM_N:
        assert LZS._sparse_ws_size(n, l0, kbits, q) <= 8 * n + 8  # the automaton's (2n + 2, 4) int32
