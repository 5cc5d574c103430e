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
