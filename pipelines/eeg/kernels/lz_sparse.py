"""LZ76 phrase count of long binary sequences (millions of symbols) by a two-level index (numba).

The count is the one of :func:`pipelines.eeg.kernels.lz_counts._lz76_count_sam` (Kaspar & Schuster 1987): a
phrase starting at i is 1 + the longest previous factor LPF[i] = max over j < i of the common prefix of the
sequence from j and from i (the copy may overlap i), capped at the end. Level 1 flags, for every start before i,
its ``l0``-symbol prefix (one bit per prefix plus radix-64 levels above: 8 MiB for 19.2M symbols, flagged in
sequence order with prefetch), which gives LPF[i] exactly when it is shorter than ``l0``. Level 2 lists only the
starts that are multiples of ``q``, bucketed by their next ``kbits`` symbols (``kbits + q - 1 <= l0``); when
LPF[i] >= l0 the best start j* lies in the bucket of the ``kbits``-gram at i + d for d = (-j*) mod q, so LPF[i]
is the longest match among the candidates j = p - d of the q buckets (each entry carries the symbols around p,
so most are measured without touching the sequence). A bit per symbol and an entry per q symbols replace the
full prefix index's random access per symbol into a 32 MB head table plus its 77 MB of chains (19.2M symbols).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipelines.eeg.kernels.lz_counts import _bits_at, _clz64, _common_prefix, _pack_bits, _prefetch

# Level-1 flags of the start this many symbols ahead of the one being flagged are prefetched.
_SEEN_AHEAD = 32
_SEEN_MAX_LEVELS = 8  # radix-64 levels of the level-1 flags (l0 <= 42)


@njit(cache=True, nogil=True)
def _seen_levels(l0, lev):
    """Word offsets ``lev`` of the radix-64 levels of the level-1 flags; returns (levels, total words).
    Level t has one bit per (l0 - 6t)-symbol prefix, set when its word at level t - 1 is not zero (for
    t = 0: when a start has that l0-symbol prefix); the last level is one word."""
    nlev = 0
    total = 0
    b = l0
    while True:
        lev[nlev] = total
        nlev += 1
        total += max(1, (1 << b) >> 6)
        if b <= 6:
            return nlev, total
        b -= 6


@njit(cache=True, nogil=True)
def _sparse_params(n):
    """(l0, kbits, q) for n symbols: l0 = log2(n) + 2 in [8, 28] (26 for 16M-32M symbols: 8 MiB of flags,
    ~16 % of a shuffled 19.2M-symbol sequence's phrases reach level 2), q = 8 and kbits = l0 - 7 (2^kbits
    buckets of ~5 entries at the end; measured best of q = 5-10 on the spatio-temporal sequences)."""
    lg = 0
    while (n >> (lg + 1)) > 0:
        lg += 1
    l0 = min(28, max(8, lg + 2))
    return l0, l0 - 7, 8


@njit(cache=True, nogil=True)
def _sparse_ws_size(n, l0, kbits, q):
    """int32 entries of :func:`_lz76_count_sparse`'s workspace for n symbols."""
    lev = np.empty(_SEEN_MAX_LEVELS, np.int64)
    _, nm = _seen_levels(l0, lev)
    return 2 * ((n >> 6) + 3) + 2 * nm + 2 * ((n + q - 1) // q) + (1 << kbits) + 2


@njit(cache=True, nogil=True)
def _sparse_ws(flat, n, l0, kbits, q):
    """The workspace: ``flat`` (the automaton's, reused; 8-byte aligned) if big enough, else new."""
    size = _sparse_ws_size(n, l0, kbits, q)
    if flat.size >= size:
        return flat
    return np.empty(size, np.int32)


@njit(cache=True, nogil=True)
def _flag_up(marks, lev, nlev, g):
    """Level-1 flags above a word that was empty: set the prefix's bit on each level up to a non-empty word."""
    for t in range(1, nlev):
        g >>= 6
        w = lev[t] + (g >> 6)
        old = marks[w]
        marks[w] = old | (np.uint64(1) << np.uint64(g & 63))
        if old != 0:
            return


@njit(cache=True, nogil=True, inline="always")
def _flag_starts(marks, lev, nlev, s, a, b, g, ga, l0):
    """Flag the l0-symbol prefixes g of starts a..b-1 (zeros past the end), rolled one symbol per start, and
    prefetch the flags of the start _SEEN_AHEAD symbols on (prefix ga); returns the next (g, ga)."""
    n = s.size
    mask = (1 << l0) - 1
    if b + _SEEN_AHEAD + l0 <= n:  # no symbol past the end: no bounds tests
        for p in range(a, b):
            _prefetch(marks, ga >> 6)
            ga = ((ga << 1) & mask) | np.int64(s[p + _SEEN_AHEAD + l0])
            old = marks[g >> 6]
            marks[g >> 6] = old | (np.uint64(1) << np.uint64(g & 63))
            if old == 0:
                _flag_up(marks, lev, nlev, g)
            g = ((g << 1) & mask) | np.int64(s[p + l0])
        return g, ga
    for p in range(a, b):
        ga = ((ga << 1) & mask) | (np.int64(s[p + _SEEN_AHEAD + l0]) if p + _SEEN_AHEAD + l0 < n else 0)
        old = marks[g >> 6]
        marks[g >> 6] = old | (np.uint64(1) << np.uint64(g & 63))
        if old == 0:
            _flag_up(marks, lev, nlev, g)
        g = ((g << 1) & mask) | (np.int64(s[p + l0]) if p + l0 < n else 0)
    return g, ga


@njit(cache=True, nogil=True, inline="always")
def _longest_flagged(marks, lev, nlev, l0, g):
    """Longest l <= l0 such that the l-symbol prefix of the l0-symbol prefix g is flagged: the first level
    whose word around g is not empty, then the smallest aligned block of 2^r bits around g with a flag."""
    for t in range(nlev):
        wd = marks[lev[t] + (g >> 6)]
        if wd != 0:
            b = g & 63
            for r in range(7):
                blk = 1 << r
                msk = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - blk)
                if (wd >> np.uint64(b & ~(blk - 1))) & msk:
                    return max(0, l0 - 6 * t - r)
        g >>= 6
    return 0


@njit(cache=True, nogil=True)
def _sparse_index(words, n, kbits, q, sbits, off, ent):
    """Bucket the starts p = k * q by their next ``kbits`` symbols (counting sort: each bucket in increasing
    p): bucket g is ent[off[g]:off[g + 1]], an entry k << sbits | the sbits symbols from p - q + 1 (zeros
    before the start), so a candidate j = p - d is measured over its first sbits - (q - 1 - d) symbols."""
    shk = np.uint64(64 - kbits)
    ss = np.uint64(64 - sbits)
    nk = (n + q - 1) // q
    off[:] = 0
    for k in range(nk):
        off[np.int64(_bits_at(words, k * q) >> shk) + 2] += 1
    for g in range(1, off.size):  # now off[g + 1] is the start of bucket g
        off[g] += off[g - 1]
    for k in range(nk):
        p = k * q
        g = np.int64(_bits_at(words, p) >> shk)
        if p >= q - 1:
            sig = _bits_at(words, p - q + 1) >> ss
        else:  # p = 0
            sig = (_bits_at(words, 0) >> np.uint64(q - 1)) >> ss
        ent[off[g + 1]] = (np.uint64(k) << np.uint64(sbits)) | sig
        off[g + 1] += 1  # ends as the end of bucket g


@njit(cache=True, nogil=True)
def _sparse_longest(words, off, ent, x, i, rem, kbits, q, sbits, length, bnd):
    """LPF[i] (capped at rem) when it is known to be >= ``length`` (>= kbits + q - 1), and the work done:
    the longest match over the candidates j = p - d < i of the buckets of the kbits-grams at i + d (x: the
    64 symbols from i). All 2q bucket bounds are fetched before any is scanned (independent accesses)."""
    shk = np.uint64(64 - kbits)
    for d in range(q):
        g = np.int64((x << np.uint64(d)) >> shk)
        bnd[d] = g
        _prefetch(off, g)
    for d in range(q):
        g = bnd[d]
        bnd[d] = off[g]
        bnd[q + d] = off[g + 1]
        _prefetch(ent, bnd[d])
    ss = np.uint64(64 - sbits)
    first = np.uint64(1) << np.uint64(sbits)  # entries below: p = 0
    work = 0
    for d in range(q):
        a = bnd[d]
        b = bnd[q + d]
        lim = np.uint64((i + d + q - 1) // q) << np.uint64(sbits)  # entries below: j = p - d < i
        sd = np.uint64(q - 1 - d)
        c = sbits - (q - 1 - d)  # symbols from j held by an entry
        if d > 0 and a < b and ent[a] < first:
            a += 1  # p = 0 gives no start j = -d
        while a < b:
            e = ent[a]
            if e >= lim:
                break
            a += 1
            work += 1
            ln = np.int64(_clz64(x ^ ((e << ss) << sd)))
            if ln >= c:  # longer than the entry holds: compare the sequence itself
                ln = _common_prefix(words, np.int64(e >> np.uint64(sbits)) * q - d, i, c, rem)
                work += ln >> 6
            if ln > length:
                length = ln
        if length >= rem:
            break
    return min(length, rem), work


@njit(cache=True, nogil=True)
def _lz76_count_sparse(s, l0, kbits, q, budget, ws):
    """LZ76 phrase count of ``s`` (uint8 0/1) by the two-level index of the module docstring; -1 past
    ``budget`` work (scanned candidates + 64-symbol comparisons; regular sequences, where buckets get long:
    the caller then uses the automaton). Needs 1 <= q <= 16 and kbits + q - 1 <= l0 <= 32.
    ``ws``: int32 workspace of :func:`_sparse_ws_size` entries, 8-byte aligned (the automaton's, reused)."""
    n = s.size
    lev = np.empty(_SEEN_MAX_LEVELS, np.int64)
    nlev, nm = _seen_levels(l0, lev)
    nw = (n >> 6) + 3  # zeros past the end for every _bits_at below
    nk = (n + q - 1) // q
    words = ws[: 2 * nw].view(np.uint64)
    marks = ws[2 * nw : 2 * (nw + nm)].view(np.uint64)
    ent = ws[2 * (nw + nm) : 2 * (nw + nm + nk)].view(np.uint64)
    off = ws[2 * (nw + nm + nk) : 2 * (nw + nm + nk) + (1 << kbits) + 2]
    _pack_bits(s, words)
    marks[:] = 0
    sbits = 64
    while nk >> (64 - sbits) > 0:  # an entry's start index k <= nk takes the top 64 - sbits bits
        sbits -= 1
    _sparse_index(words, n, kbits, q, sbits, off, ent)
    bnd = np.empty(2 * q, np.int64)
    sh0 = np.uint64(64 - l0)
    g = np.int64(_bits_at(words, 0) >> sh0)  # l0-symbol prefix of the next start to flag
    ga = np.int64(_bits_at(words, _SEEN_AHEAD) >> sh0)
    flagged = 0
    work = 0
    count = 0
    i = 0
    while i < n:
        x = _bits_at(words, i)
        _prefetch(marks, np.int64(x >> sh0) >> 6)  # the flags read below, while the starts before i are flagged
        g, ga = _flag_starts(marks, lev, nlev, s, flagged, i, g, ga, l0)
        flagged = i
        rem = n - i
        length = min(_longest_flagged(marks, lev, nlev, l0, np.int64(x >> sh0)), l0, rem)
        if length == l0:
            length, w = _sparse_longest(words, off, ent, x, i, rem, kbits, q, sbits, l0, bnd)
            work += w
            if work > budget:
                return -1
        count += 1
        i += length + 1
    return count
