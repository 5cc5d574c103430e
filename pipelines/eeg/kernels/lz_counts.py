"""Lempel-Ziv counters (numba): LZ76 phrase counts (suffix automaton, prefix index), the LZW dictionary
size of Schartner et al. (2017), seeded shuffles, and the per-window and spatio-temporal loops over them."""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pipelines.eeg.kernels.common import _ROW_NONFINITE, _ROW_OK

_LZ_HASH_MIN_N = 1 << 14  # from this length the prefix index beats the suffix automaton
_LZ_HASH_DRAM_N = 1 << 22  # from this length the prefix index's chains (int32 per symbol) are beyond cache


@njit(cache=True, nogil=True)
def _lz76_count_sam(s, st):
    """LZ76 phrase count of a binary sequence ``s`` (uint8, values 0/1), O(n).

    The count is the one of Kaspar & Schuster (1987) / antropy's ``_lz_complexity``: the
    first phrase is ``s[0]``; each next phrase starting at ``i`` is the longest prefix of
    ``s[i:]`` that occurs starting before ``i`` (the copy may overlap ``i``) plus one new
    symbol; a final phrase that is a pure copy also counts. The longest previous factor is
    found with a suffix automaton of ``s[:i + l]``, grown one symbol per step of the match,
    so every symbol is added once and matched once. ``st`` is workspace of shape
    ``(2 * len(s) + 2, 4)`` int32 holding (next0, next1, suffix link, length) per state.
    """
    n = s.size
    if n == 0:
        return 0
    st[0, 0] = -1
    st[0, 1] = -1
    st[0, 2] = -1
    st[0, 3] = 0
    size = 1
    last = 0
    built = 0
    count = 0
    i = 0
    while i < n:
        state = 0
        length = 0
        while True:
            # the match s[i:i+length+1] must start before i, i.e. lie in s[:i + length]
            while built < i + length:
                c = s[built]
                cur = size
                size += 1
                st[cur, 0] = -1
                st[cur, 1] = -1
                st[cur, 3] = st[last, 3] + 1
                p = last
                while p != -1 and st[p, c] == -1:
                    st[p, c] = cur
                    p = st[p, 2]
                if p == -1:
                    st[cur, 2] = 0
                else:
                    q = st[p, c]
                    if st[p, 3] + 1 == st[q, 3]:
                        st[cur, 2] = q
                    else:
                        clone = size
                        size += 1
                        st[clone, 0] = st[q, 0]
                        st[clone, 1] = st[q, 1]
                        st[clone, 2] = st[q, 2]
                        st[clone, 3] = st[p, 3] + 1
                        while p != -1 and st[p, c] == q:
                            st[p, c] = clone
                            p = st[p, 2]
                        st[q, 2] = clone
                        st[cur, 2] = clone
                last = cur
                built += 1
                # a split may have moved the matched string into the clone (= suffix link)
                if state != 0 and st[st[state, 2], 3] >= length:
                    state = st[state, 2]
            if i + length >= n:
                break
            t = st[state, s[i + length]]
            if t == -1:
                break
            state = t
            length += 1
        count += 1
        i += length + 1
    return count


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to load ``arr[idx]`` into cache (``llvm.prefetch``, read, high locality); no effect on
    values. Used where a loop's future random accesses are known ahead (the prefix index's tables)."""
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def _llvm_bit_scan(name: str, zero_undefined: bool):
    """An intrinsic calling ``llvm.<name>.i64`` on a uint64 (one lzcnt/tzcnt instruction)."""

    @intrinsic
    def scan(typingctx, x):
        sig = types.uint64(types.uint64)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            i1 = ir.IntType(1)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i1]), f"llvm.{name}.i64")
            return builder.call(fn, [args[0], ir.Constant(i1, int(zero_undefined))])

        return sig, codegen

    return scan


_clz64 = _llvm_bit_scan("ctlz", zero_undefined=False)  # leading zero bits of a uint64; 64 for 0
_cttz64 = _llvm_bit_scan("cttz", zero_undefined=True)  # index of the lowest set bit of a NON-ZERO uint64


@njit(cache=True, nogil=True)
def _pack_bits(s, words):
    """Bits of ``s`` (0/1) into ``words`` (uint64, >= len(s) // 64 + 2), first symbol in the top bit of
    word 0, zeros after the end (as the prefix index pads its K-grams)."""
    n = s.size
    words[:] = 0
    for w in range(n >> 6):  # whole words in a register (no store per symbol)
        x = np.uint64(0)
        for b in range(64):
            x = (x << np.uint64(1)) | np.uint64(s[(w << 6) + b])
        words[w] = x
    for t in range(n & ~63, n):
        words[t >> 6] |= np.uint64(s[t]) << np.uint64(63 - (t & 63))


@njit(cache=True, nogil=True, inline="always")
def _bits_at(words, p):
    """The 64 symbols from position p of :func:`_pack_bits` words, the first in the top bit."""
    w = p >> 6
    o = np.uint64(p & 63)
    hi = words[w] << o
    if o == 0:
        return hi
    return hi | (words[w + 1] >> (np.uint64(64) - o))


@njit(cache=True, nogil=True, inline="always")
def _common_prefix(words, p, i, start, cap):
    """Length of the common prefix of the sequence from p and from i, known to be >= ``start``, capped at
    ``cap``: 64 symbols per comparison (the packed words, 1/8 of the bytes, mostly in cache)."""
    ln = start
    while ln < cap:
        x = _bits_at(words, p + ln) ^ _bits_at(words, i + ln)
        if x != 0:
            ln += np.int64(_clz64(x))
            break
        ln += 64
    return min(ln, cap)


# The prefix index prefetches the table entries of the position this many symbols ahead of the one it inserts.
_LZ_PREFETCH_AHEAD = 24


@njit(cache=True, nogil=True)
def _lz76_count_hash(s, kbits, budget):
    """:func:`_lz76_count_hash_in` with its own workspace."""
    return _lz76_count_hash_in(s, kbits, budget, np.empty(s.size + (1 << kbits), np.int32))


@njit(cache=True, nogil=True, inline="always")
def _longest_on_chain(words, link, p, i, K, rem, work, budget):
    """Longest previous factor of the phrase at i among the earlier starts p, link[p], link[link[p]], ... that
    share its K-gram (the chain ends at the first p outside [0, i): -1, or a start at or after i), each
    extended 64 symbols per comparison; returns (length, work), the work past ``budget`` when it gave up."""
    length = K
    while 0 <= p < i:
        nxt = link[p]  # loaded with the comparison, not after it
        ln = _common_prefix(words, p, i, K, rem)
        work += ln - K + 1
        if ln > length:
            length = ln
        if length == rem or work > budget:
            break
        p = nxt
    return length, work


@njit(cache=True, nogil=True, inline="always")
def _longest_short_prefix(first, gi, i, K, hi, top):
    """Longest d <= hi (< K) whose d-symbol prefix of the K-gram ``gi`` first occurs before i (``first``: the
    heap of first occurrences, node (1 << d) + prefix), by a binary search in fixed steps ``top``, ``top / 2``,
    ... 1 with selects: the branches would be coin flips."""
    length = 0
    step = top
    while step > 0:
        cand = length + step
        c = min(cand, K - 1)
        ok = (cand <= hi) & (first[(1 << c) + (gi >> (K - c))] < i)
        length = cand if ok else length
        step >>= 1
    return length


# From this K the prefix index keeps its incremental head table and chains (_lz76_count_hash_chains, with
# prefetches; the whole-recording sequence); below it the chains are built in one pass (_lz76_count_prev),
# up to _LZ_NEXT_MAX_K forwards from each K-gram's first occurrence (_lz76_count_next: tables in L2).
_LZ_PREV_MAX_K = 18
_LZ_NEXT_MAX_K = 14


@njit(cache=True, nogil=True)
def _lz76_count_hash_in(s, kbits, budget, ws):
    """The same LZ76 count via an index of K-bit prefixes; returns -1 past ``budget`` work.

    Fast on long, high-entropy sequences (a shuffled copy), where the suffix automaton is memory-bound: a
    previous factor shorter than K is found from which prefixes of K-grams occur before the phrase start, a
    longer one by extending each earlier occurrence of the phrase's K-gram (a chain), 64
    symbols per comparison on a bit-packed copy (:func:`_common_prefix`). On regular sequences the chains get
    long; past ``budget`` comparisons it gives up and the caller uses the automaton. Up to K = 18 the chains
    and the first occurrences are built before the phrases are parsed (:func:`_lz76_count_next` up to
    K = 14, :func:`_lz76_count_prev`), else as the parse goes (:func:`_lz76_count_hash_chains`). The count
    depends neither on K nor on the order the earlier occurrences are tried in. ``ws`` is int32 workspace
    (the caller's automaton workspace, reused from count to count); it is used if it holds len(s) + 2^(K+1)
    entries (len(s) + 2^K from K = 19), else a new one is made.
    """
    if kbits > _LZ_PREV_MAX_K:
        return _lz76_count_hash_chains(s, kbits, budget, ws)
    need = s.size + (2 << kbits)
    if ws.size < need:
        ws = np.empty(need, np.int32)
    if kbits <= _LZ_NEXT_MAX_K:
        return _lz76_count_next(s, kbits, budget, ws)
    return _lz76_count_prev(s, kbits, budget, ws)


@njit(cache=True, nogil=True)
def _lz76_count_hash_chains(s, kbits, budget, ws):
    """:func:`_lz76_count_hash_in` with the index grown as the parse goes.

    Positions before the phrase start are indexed by their next ``kbits`` symbols (hash chains) and all
    shorter prefixes are marked in a binary heap of flags, so a previous factor shorter than K is found by
    binary search over prefix lengths and a longer one by extending each chained candidate. The flags are
    bit-packed and kept for prefixes shorter than K only (a K-gram occurs iff its chain is not empty; 2^K / 8
    bytes, 1 MiB for a 19.2M-symbol spatio-temporal sequence; only a new K-gram walks them). The table
    entries of the position 24 symbols ahead are prefetched when the head table is 2 MB or more (random
    accesses into up to 32 MB overlap; a smaller table is in cache, where prefetches only cost). The head
    table and the chains live in ``ws`` (int32, >= len(s) + 2^K; the caller's automaton workspace, reused
    from count to count, so a long sequence's shuffled copy does not page in 100 MB afresh).
    """
    n = s.size
    K = kbits
    mask = (1 << K) - 1
    head = ws[: 1 << K]
    head[:] = -1
    chain = ws[1 << K : (1 << K) + n]
    # bit of node (1 << k) + prefix for prefix length k < K (length K: the K-gram's chain is not empty)
    marks = np.zeros(max(1, (1 << K) >> 6), np.uint64)
    words = np.empty((n >> 6) + 2, np.uint64)
    _pack_bits(s, words)
    g = np.int64(_bits_at(words, 0) >> np.uint64(64 - K))
    ahead = _LZ_PREFETCH_AHEAD  # < 64: its K-gram is in the first two words
    ga = np.int64(_bits_at(words, ahead) >> np.uint64(64 - K))  # K-gram at inserted + ahead, fetched ahead
    big = K >= 19  # head table of 2 MB or more (beyond L2): prefetch; a smaller one is in cache already
    inserted = 0
    work = 0
    count = 0
    i = 0
    while i < n:
        while inserted < i:  # index every start before i (the copy may overlap i)
            if big:
                _prefetch(head, ga)
                _prefetch(marks, ((1 << (K - 1)) + (ga >> 1)) >> 6)
            ga = ((ga << 1) & mask) | (np.int64(s[inserted + ahead + K]) if inserted + ahead + K < n else 0)
            first = head[g]
            if first == -1:  # a new K-gram: mark its shorter prefixes up to the first one already marked
                v = (1 << (K - 1)) + (g >> 1)
                while v > 0 and (marks[v >> 6] >> np.uint64(v & 63)) & np.uint64(1) == 0:
                    marks[v >> 6] |= np.uint64(1) << np.uint64(v & 63)
                    v >>= 1
            chain[inserted] = first
            head[g] = inserted
            nb = np.int64(s[inserted + K]) if inserted + K < n else 0
            g = ((g << 1) & mask) | nb
            inserted += 1
        rem = n - i
        gi = np.int64(_bits_at(words, i) >> np.uint64(64 - K))
        lo = 0
        hi = K if K < rem else rem
        while lo < hi:  # longest marked prefix of gi (marks are closed under prefixes)
            mid = (lo + hi + 1) >> 1
            node = (1 << mid) + (gi >> (K - mid))
            if (head[gi] != -1) if mid == K else (marks[node >> 6] >> np.uint64(node & 63)) & np.uint64(1):
                lo = mid
            else:
                hi = mid - 1
        length = lo
        if length == K:
            length, work = _longest_on_chain(words, chain, head[gi], i, K, rem, work, budget)
            if work > budget:
                return -1
        count += 1
        i += length + 1
    return count


@njit(cache=True, nogil=True)
def _lz76_prev_occurrences(s, K, last, prev):
    """``prev[p]``: the last position before p with the same K symbols from it (zero padded past the end), or
    -1; the chains of the prefix index, built in one pass (``last``: 2^K int32 workspace)."""
    n = s.size
    mask = (1 << K) - 1
    last[:] = -1
    g = 0
    for p in range(min(K, n)):
        g = (g << 1) | np.int64(s[p])
    g <<= K - min(K, n)
    for p in range(n - K):
        prev[p] = last[g]
        last[g] = p
        g = ((g << 1) & mask) | np.int64(s[p + K])
    for p in range(max(0, n - K), n):
        prev[p] = last[g]
        last[g] = p
        g = (g << 1) & mask


@njit(cache=True, nogil=True)
def _lz76_first_occurrences(s, K, first):
    """``first[(1 << d) + x]``: the first position whose next d symbols (zero padded past the end) are x, for
    d < K (len(s) if none), as a heap: a node is the minimum of its two children."""
    n = s.size
    h = 1 << (K - 1)
    first[h : 2 * h] = n
    if K == 1:
        first[1] = 0
    else:
        x = 0
        for p in range(n - 1, -1, -1):  # (K-1)-grams backwards: a node's last write is its first position
            x = (x >> 1) | (np.int64(s[p]) << (K - 2))
            first[h + x] = p
    for v in range(h - 1, 0, -1):
        first[v] = min(first[2 * v], first[2 * v + 1])


@njit(cache=True, nogil=True)
def _lz76_count_prev(s, kbits, budget, ws):
    """:func:`_lz76_count_hash_in` with the chains and the first occurrences of every prefix shorter than K
    built before the parse, each in one pass without branches (~1.5x faster than growing them phrase by
    phrase): the earlier occurrences of the K-gram at i are ``prev[i]``, ``prev[prev[i]]``, ...; a prefix of
    length d < K occurs before i iff its first occurrence is before i, so the longest one is found by a
    branch-free binary search. ``ws``: int32, >= len(s) + 2^(K+1)."""
    n = s.size
    K = kbits
    prev = ws[:n]
    _lz76_prev_occurrences(s, K, ws[n : n + (1 << K)], prev)
    first = ws[n + (1 << K) : n + (2 << K)]
    _lz76_first_occurrences(s, K, first)
    words = np.empty((n >> 6) + 2, np.uint64)
    _pack_bits(s, words)
    top = 1
    while top * 2 < K:
        top *= 2
    work = 0
    count = 0
    i = 0
    while i < n:
        rem = n - i
        gi = np.int64(_bits_at(words, i) >> np.uint64(64 - K))
        p = np.int64(prev[i])
        if p != -1 and rem >= K:
            length = K
        else:
            length = _longest_short_prefix(first, gi, i, K, min(rem, K - 1), top)
        if length == K:
            length, work = _longest_on_chain(words, prev, p, i, K, rem, work, budget)
            if work > budget:
                return -1
        count += 1
        i += length + 1
    return count


@njit(cache=True, nogil=True)
def _lz76_next_occurrences(s, K, nxt, heap):
    """One pass backwards: ``nxt[p]``, the next position after p with the same K symbols from it (zero padded
    past the end; len(s) if none), and ``heap[(1 << d) + x]``, the first position whose next d symbols are
    x, for d <= K (len(s) if none): the K-gram table itself is the heap's last level, a node the minimum of
    its two children. ``heap``: 2^(K+1) int32."""
    n = s.size
    leaf = 1 << K
    heap[leaf : 2 * leaf] = n
    g = 0
    for p in range(n - 1, -1, -1):
        g = (g >> 1) | (np.int64(s[p]) << (K - 1))
        nxt[p] = heap[leaf + g]
        heap[leaf + g] = p
    for v in range(leaf - 1, 0, -1):
        heap[v] = min(heap[2 * v], heap[2 * v + 1])


@njit(cache=True, nogil=True)
def _lz76_count_next(s, kbits, budget, ws):
    """:func:`_lz76_count_prev` from one backward pass (:func:`_lz76_next_occurrences`) instead of two: the
    earlier occurrences of the K-gram at i are tried from its first one forwards (``heap`` leaf, ``nxt``, ...
    while before i). ~1.15x faster while the tables are in L2 (K <= 14); beyond, the first candidate's
    random read costs more than the pass it saves. ``ws``: int32, >= len(s) + 2^(K+1)."""
    n = s.size
    K = kbits
    nxt = ws[:n]
    heap = ws[n : n + (2 << K)]
    _lz76_next_occurrences(s, K, nxt, heap)
    words = np.empty((n >> 6) + 2, np.uint64)
    _pack_bits(s, words)
    top = 1
    while top * 2 < K:
        top *= 2
    leaf = 1 << K
    work = 0
    count = 0
    i = 0
    while i < n:
        rem = n - i
        gi = np.int64(_bits_at(words, i) >> np.uint64(64 - K))
        p = np.int64(heap[leaf + gi])
        if p < i and rem >= K:
            length = K
        else:
            length = _longest_short_prefix(heap, gi, i, K, min(rem, K - 1), top)
        if length == K:
            length, work = _longest_on_chain(words, nxt, p, i, K, rem, work, budget)
            if work > budget:
                return -1
        count += 1
        i += length + 1
    return count


@njit(cache=True, nogil=True)
def _run_starts(s, starts):
    """Start of each run of equal symbols of ``s`` into ``starts`` (int32, >= len(s) + 1), then
    ``starts[m] = len(s)``; returns the number of runs m."""
    n = s.size
    if n == 0:
        starts[0] = 0
        return 0
    starts[0] = 0
    m = 1
    for t in range(1, n):
        starts[m] = t
        m += np.int64(s[t] != s[t - 1])
    starts[m] = n
    return m


@njit(cache=True, nogil=True)
def _runs_ext(starts, m, a, b):
    """Symbols matched from the start of run a on against the start of run b > a on (same symbol): whole
    runs while their lengths agree, then the shorter of the first pair that differs or of the pair where
    the sequence ends (b reaches the last run). Returns (matched symbols, the run b where it stopped)."""
    ext = 0
    while True:
        la = starts[a + 1] - starts[a]
        lb = starts[b + 1] - starts[b]
        if la != lb or b == m - 1:
            return ext + min(la, lb), b
        ext += la
        a += 1
        b += 1


@njit(cache=True, nogil=True)
def _runs_scan(starts, m, v, r0, best):
    """Longest copy for a phrase in run v with r0 symbols left, over every earlier run of the same symbol
    (see :func:`_lz76_count_runs_short`), at least ``best``; returns (copy length, work done)."""
    last = v == m - 1
    work = v >> 1
    u = v - 2
    while u >= 0:
        ln = starts[u + 1] - starts[u]
        if ln < r0:
            if ln > best:
                best = ln
        else:
            cand = r0
            if not last:
                ext, b = _runs_ext(starts, m, u + 1, v + 1)
                cand += ext
                work += b - v
            if cand > best:
                best = cand
        u -= 2
    return best, work


@njit(cache=True, nogil=True)
def _pair_key(la, lb, parity, hmask):
    return ((la * 0x9E3779B1) ^ (lb * 0x85EBCA6B) ^ parity) & hmask


@njit(cache=True, nogil=True)
def _runs_chain_best(starts, m, v, r0, best, u, pair):
    """Longest copy over the runs u, chain[u], ... of the phrase's symbol with >= r0 symbols (``pair``: only
    those whose next two run lengths equal the phrase's, as the pair index may collide). Returns (copy
    length, work, whether any run qualified)."""
    chain = pair[0]
    work = 0
    found = False
    l1 = starts[v + 2] - starts[v + 1]
    l2 = starts[v + 3] - starts[v + 2] if pair[1] else 0
    while u >= 0:
        work += 1
        ok = starts[u + 1] - starts[u] >= r0 and ((u ^ v) & 1) == 0
        if pair[1]:
            ok = ok and starts[u + 2] - starts[u + 1] == l1 and starts[u + 3] - starts[u + 2] == l2
        if ok:
            ext, b = _runs_ext(starts, m, u + 1, v + 1)
            work += b - v
            found = True
            best = max(best, r0 + ext)
        u = chain[u]
    return best, work, found


@njit(cache=True, nogil=True)
def _runs_table_best(next_max, r0, la, best):
    """The copy :func:`_runs_scan` finds where no earlier run u of the phrase's symbol with >= r0 symbols is
    followed by a run of la (the phrase's next run, not the last): a start in a run of fewer than r0
    symbols copies that run's length at most, one in a run of >= r0 copies r0 + min(next run of u, la), as
    the first pair of next runs differs. ``next_max[a]``: the longest run after an earlier run of a symbols
    (-1: none). So the longest short run and the longest next run behind the runs of >= r0 symbols are read
    from the table (a pass over run lengths, not over all earlier runs), the same copy."""
    for a in range(min(r0 - 1, next_max.size - 1), best, -1):
        if next_max[a] >= 0:
            best = a
            break
    mx = -1
    for a in range(r0, next_max.size):
        mx = max(mx, next_max[a])
        if mx >= la:
            break
    if mx >= 0:
        best = max(best, r0 + min(mx, la))
    return best


@njit(cache=True, nogil=True)
def _lz76_count_runs_indexed(starts, m, n, budget, ws):
    """:func:`_lz76_count_runs_short` for long sequences, with the earlier runs of each symbol indexed by the
    lengths of the one and of the two runs after them. A run u of the phrase's symbol with >= r0 symbols
    whose next two runs are as long as the two after the phrase's run copies r0 + both + more, which no
    start whose next two runs differ beats (r0 + the first + at most the second), nor any shorter run
    (< r0); without one, the runs whose next run alone agrees are extended (they beat the rest likewise);
    without those, the best copy is read from a table by run length (:func:`_runs_table_best`, not a scan
    of all earlier runs). Same counts. The pair index is skipped where the second run after the phrase's
    is the last (a longer run there copies to the end too). ``ws`` is int32 workspace of at least
    2 * (longest run) + 2 + 6 m."""
    longest = 0
    for u in range(m):
        longest = max(longest, starts[u + 1] - starts[u])
    nk = 2 * longest + 2
    hsize = 1
    while hsize < 2 * m:
        hsize *= 2
    head1 = ws[:nk]
    chain1 = ws[nk : nk + m]
    head2 = ws[nk + m : nk + m + hsize]
    chain2 = ws[nk + m + hsize : nk + 2 * m + hsize]
    head1[:] = -1
    head2[:] = -1
    next_max = np.full((2, longest + 1), -1, np.int64)  # per parity and run length: longest next run
    inserted = 0
    count = 0
    work = 0
    i = 0
    v = 0
    while i < n:
        while starts[v + 1] <= i:
            v += 1
        r0 = starts[v + 1] - i
        best = r0 if starts[v] < i else 0
        if v < m - 1:
            while inserted <= v - 2:  # index every earlier run u (u < v - 1) by the next one and two lengths
                la = starts[inserted + 2] - starts[inserted + 1]
                k1 = 2 * la + (inserted & 1)
                chain1[inserted] = head1[k1]
                head1[k1] = inserted
                k2 = _pair_key(la, starts[inserted + 3] - starts[inserted + 2], inserted & 1, hsize - 1)
                chain2[inserted] = head2[k2]
                head2[k2] = inserted
                lu = starts[inserted + 1] - starts[inserted]
                next_max[inserted & 1, lu] = max(next_max[inserted & 1, lu], la)
                inserted += 1
            found = False
            la = starts[v + 2] - starts[v + 1]
            if v + 2 < m - 1:
                k2 = _pair_key(la, starts[v + 3] - starts[v + 2], v & 1, hsize - 1)
                best, w, found = _runs_chain_best(starts, m, v, r0, best, head2[k2], (chain2, True))
                work += w
            if not found:
                best, w, found = _runs_chain_best(starts, m, v, r0, best, head1[2 * la + (v & 1)], (chain1, False))
                work += w
            if not found:
                best = _runs_table_best(next_max[v & 1], r0, la, best)
                work += 1
        elif best < r0:
            best, w = _runs_scan(starts, m, v, r0, best)
            work += w
        if work > budget:
            return -1
        count += 1
        i += best + 1
    return count


# Rows shorter than the prefix-index length are counted from their runs when the runs are at least this
# long on average (binarised EEG: ~25 samples); random-like rows (mean run ~2) go to the automaton.
_LZ_RUNS_MIN_MEAN = 6


@njit(cache=True, nogil=True)
def _hash_ws(flat, n, k):
    """The prefix index's workspace: ``flat`` (the automaton's, reused) if it holds n + 2^k entries, else new."""
    if flat.size >= n + (1 << k):
        return flat
    return np.empty(n + (1 << k), np.int32)


@njit(cache=True, nogil=True)
def _lz76_auto(s, st):
    """LZ76 count by the fastest exact method for the length: from 16k symbols the indexed runs
    (:func:`_lz76_count_runs_indexed`) of a sequence of long runs (gives up past 8n steps), else or then
    the prefix index (K = log2(n) - 2 bits; falls back past n + 10^4 comparisons), from 4M symbols the
    two-level sparse index instead (:func:`pipelines.eeg.kernels.lz_sparse._lz76_count_sparse`, falls back
    past n + 10^4 candidates); below 16k symbols the runs
    (:func:`_lz76_count_runs_short`) of a sequence of long runs (falls back past 4n + 64 steps), else the
    prefix index with K = log2(n) - 1 in [6, 12] (falls back past 2n + 1000 comparisons); the
    automaton where they give up. ``st`` is the automaton's workspace (C-contiguous)."""
    n = s.size
    starts = st.reshape(-1)
    if n >= _LZ_HASH_MIN_N:
        c = -1
        head = s[:_LZ_HASH_MIN_N]  # runs only where the first 16k symbols have long ones (not a shuffle)
        if np.count_nonzero(head[1:] != head[:-1]) * _LZ_RUNS_MIN_MEAN <= head.size:
            m = _run_starts(s, starts)
            if m * _LZ_RUNS_MIN_MEAN <= n:
                c = _lz76_count_runs_indexed(starts, m, n, 8 * n, starts[n + 1 :])
        if c < 0 and n >= _LZ_HASH_DRAM_N:
            # beyond cache the full index pays a random access per symbol into its 2^K-entry table: a flag for
            # every start and an index of every 8th start (19.2M symbols: 0.19-0.26 s, not 0.36-0.45 s)
            l0, kb, q = _lz_sparse._sparse_params(n)
            c = _lz_sparse._lz76_count_sparse(s, l0, kb, q, n + 10_000, _lz_sparse._sparse_ws(starts, n, l0, kb, q))
        elif c < 0:
            # K = log2(n) - 2 while the chains are in cache (their candidates then cost a few packed
            # comparisons; 8-12 % faster than log2(n) - 1 at 64k and 300k symbols)
            k = int(math.log2(n)) - 2
            c = _lz76_count_hash_in(s, k, n + 10_000, _hash_ws(starts, n, k))
        if c >= 0:
            return c
    else:
        m = _run_starts(s, starts)
        if m * _LZ_RUNS_MIN_MEAN <= n:
            c = _lz76_count_runs_short(starts, m, n, starts[n + 1 :], 4 * n + 64)
        else:  # short runs (a shuffled row): the prefix index with a small K
            k = min(12, max(6, int(math.log2(max(n, 2))) - 1))
            c = _lz76_count_hash_in(s, k, 2 * n + 1000, _hash_ws(starts, n, k))
        if c >= 0:
            return c
    return _lz76_count_sam(s, st)


@njit(cache=True, nogil=True)
def _lz76_count_rows(bits):
    nr, n = bits.shape
    st = np.empty((2 * n + 2, 4), np.int32)
    out = np.empty(nr, np.int64)
    for r in range(nr):
        out[r] = _lz76_auto(bits[r], st)
    return out


@njit(cache=True, nogil=True)
def _splitmix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _stream_key(seed, kind, channel, window):
    h = _splitmix64(np.uint64(seed))
    h = _splitmix64(h ^ np.uint64(kind))
    h = _splitmix64(h ^ np.uint64(channel))
    return _splitmix64(h ^ np.uint64(window))


@njit(cache=True, nogil=True)
def _shuffle_inplace(a, key):
    """Fisher-Yates shuffle driven by a SplitMix64 stream started at ``key``."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_stream(a, seed, kind, channel, window):
    _shuffle_inplace(a, _stream_key(seed, kind, channel, window))


@njit(cache=True, nogil=True)
def _shuffle_key(seed, kind, channel, window, k):
    """Key of shuffle ``k`` of (seed, kind, channel, window): shuffle 0 is the stream key itself
    (the single shuffle the LZ76 measures always used), shuffle k > 0 a SplitMix64 hash of it and k."""
    key = _stream_key(seed, kind, channel, window)
    if k == 0:
        return key
    return _splitmix64(key ^ _splitmix64(np.uint64(k)))


@njit(cache=True, nogil=True)
def _shuffle_inplace_fast(a, key):
    """Fisher-Yates shuffle like :func:`_shuffle_inplace`, but the index is drawn by Lemire's
    multiply-shift (high 32 bits of a draw times i + 1) instead of a 64-bit modulo: ~3x faster,
    bias below 2^-32 x n. Used by the streams added with the LZW measures and surrogates
    (kinds >= 3); kinds 1 and 2 keep the modulo so the LZ76 measures keep their values."""
    state = np.uint64(key)
    for i in range(a.size - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True)
def _shuffle_keyed(a, seed, kind, channel, window, k):
    if kind >= 3:
        _shuffle_inplace_fast(a, _shuffle_key(seed, kind, channel, window, k))
    else:
        _shuffle_inplace(a, _shuffle_key(seed, kind, channel, window, k))


@njit(cache=True, nogil=True)
def _lzw_dict_size(s, child):
    """Size of the LZW dictionary of Schartner et al.'s published ``cpr`` for a 0/1 sequence, O(n).

    The published code: ``d = {}; w = ''; for c in s: wc = w + c; if wc in d: w = wc; else:
    d[wc] = wc; w = c``; the result is ``len(d)``. The dictionary starts empty (the single
    symbols are not pre-loaded) and the word after an addition restarts at the symbol that
    ended it, so a word can be in the dictionary while its one-symbol prefix is not. Here the
    dictionary is a binary trie: nodes 1 and 2 are the words "0" and "1" (their membership
    flags kept apart), every other node is created only when its word is added. ``child`` is
    workspace of shape ``(len(s) + 3, 2)`` int32.
    """
    n = s.size
    child[0, 0] = 1
    child[0, 1] = 2
    child[1, 0] = -1
    child[1, 1] = -1
    child[2, 0] = -1
    child[2, 1] = -1
    in_d0 = False
    in_d1 = False
    size = 3
    count = 0
    node = 0
    for i in range(n):
        c = s[i]
        if node == 0:  # w is empty (first symbol only): wc = c
            if c == 0:
                if not in_d0:
                    in_d0 = True
                    count += 1
            else:
                if not in_d1:
                    in_d1 = True
                    count += 1
            node = 1 + c
            continue
        nxt = child[node, c]
        if nxt != -1:
            node = nxt  # wc is in the dictionary: grow the word
        else:
            child[node, c] = size  # add wc, restart the word at c
            child[size, 0] = -1
            child[size, 1] = -1
            size += 1
            count += 1
            node = 1 + c
    return count


# Sequences up to this length are counted four at a time (workspace 4 x (n + 3) x 2 int32 = 32 bytes per
# symbol); longer ones (whole recordings) one at a time. Shuffles always take two passes (4 bytes per symbol).
_LZW_GROUP_MAX_N = 1 << 20


@njit(cache=True, nogil=True)
def _lzw_reset(child):
    child[1, 0] = -1
    child[1, 1] = -1
    child[2, 0] = -1
    child[2, 1] = -1


@njit(cache=True, nogil=True, inline="always")
def _lzw_step(c, c64, node, z, a):
    """One symbol ``a`` of an LZW walk at ``node`` with next free node ``z``; returns (node, z) after it.

    Without branches (selects; the stores always made): whether a word is new is a coin flip on shuffled
    bits, so a branch there is mispredicted often; the walks of :func:`_lzw_dict_size4` then run ~1.6x
    faster on shuffled bits, ~1.2x on binarised EEG. When ``wc`` is known the stores rewrite what is there
    (``c[node, a]``) or touch the next free node, which is (re)initialised before it is used, so the
    dictionary is the same. ``c64`` is ``c`` viewed as one int64 per node: the next free node's two
    children are set to -1 in one store (that store also keeps the compiler from turning the rewrite of
    ``c[node, a]`` into a branch)."""
    x = c[node, a]
    new = x < 0
    c[node, a] = z if new else x
    c64[z] = -1
    return (1 + np.int64(a)) if new else np.int64(x), z + np.int64(new)


@njit(cache=True, nogil=True)
def _lzw_nodes64(c):
    """The trie(s) ``c`` (..., nodes, 2) int32, C-contiguous, flat, as one int64 per node (both children)."""
    return c.reshape(-1).view(np.int64)


@njit(cache=True, nogil=True)
def _lzw_dict_size4(s0, s1, s2, s3, c0, c1, c2, c3):
    """:func:`_lzw_dict_size` of four sequences of one length, stepped together (same counts).

    The trie walk is a chain of dependent loads; four independent walks in one loop let the CPU
    overlap them (about 2x faster than four walks one after another). The first symbol is always
    added (the dictionary starts empty) and after it the word never becomes empty again, so each
    walk starts at the node of its first symbol with a count of 1; the count is then 1 + the
    number of nodes created, i.e. (next free node) - 2. Each step is :func:`_lzw_step`."""
    n = s0.size
    if n == 0:
        return 0, 0, 0, 0
    _lzw_reset(c0)
    _lzw_reset(c1)
    _lzw_reset(c2)
    _lzw_reset(c3)
    z0 = 3
    z1 = 3
    z2 = 3
    z3 = 3
    n0 = 1 + np.int64(s0[0])
    n1 = 1 + np.int64(s1[0])
    n2 = 1 + np.int64(s2[0])
    n3 = 1 + np.int64(s3[0])
    d0, d1, d2, d3 = _lzw_nodes64(c0), _lzw_nodes64(c1), _lzw_nodes64(c2), _lzw_nodes64(c3)
    for i in range(1, n):
        n0, z0 = _lzw_step(c0, d0, n0, z0, s0[i])
        n1, z1 = _lzw_step(c1, d1, n1, z1, s1[i])
        n2, z2 = _lzw_step(c2, d2, n2, z2, s2[i])
        n3, z3 = _lzw_step(c3, d3, n3, z3, s3[i])
    return z0 - 2, z1 - 2, z2 - 2, z3 - 2


@njit(cache=True, nogil=True)
def _lzw_dict_size2(s0, s1, c0, c1):
    """:func:`_lzw_dict_size4` for two sequences."""
    n = s0.size
    if n == 0:
        return 0, 0
    _lzw_reset(c0)
    _lzw_reset(c1)
    z0 = 3
    z1 = 3
    n0 = 1 + np.int64(s0[0])
    n1 = 1 + np.int64(s1[0])
    d0, d1 = _lzw_nodes64(c0), _lzw_nodes64(c1)
    for i in range(1, n):
        n0, z0 = _lzw_step(c0, d0, n0, z0, s0[i])
        n1, z1 = _lzw_step(c1, d1, n1, z1, s1[i])
    return z0 - 2, z1 - 2


@njit(cache=True, nogil=True)
def _lzw_dict_size6(seqs, r, child):
    """:func:`_lzw_dict_size4` of the six rows ``r`` of ``seqs``, stepped together in the six tries
    ``child[:6]`` (same counts): an original and its five shuffles in one pass, ~1.2x faster than a group
    of four and one of two, as six walks overlap their dependent loads better."""
    n = seqs.shape[1]
    out = np.zeros(6, np.int64)
    if n == 0:
        return out
    s0, s1, s2, s3, s4, s5 = seqs[r[0]], seqs[r[1]], seqs[r[2]], seqs[r[3]], seqs[r[4]], seqs[r[5]]
    c0, c1, c2, c3, c4, c5 = child[0], child[1], child[2], child[3], child[4], child[5]
    t64 = _lzw_nodes64(child).reshape(child.shape[0], child.shape[1])
    d0, d1, d2, d3, d4, d5 = t64[0], t64[1], t64[2], t64[3], t64[4], t64[5]
    for c in (c0, c1, c2, c3, c4, c5):
        _lzw_reset(c)
    z0 = z1 = z2 = z3 = z4 = z5 = 3
    n0, n1, n2 = 1 + np.int64(s0[0]), 1 + np.int64(s1[0]), 1 + np.int64(s2[0])
    n3, n4, n5 = 1 + np.int64(s3[0]), 1 + np.int64(s4[0]), 1 + np.int64(s5[0])
    for i in range(1, n):
        n0, z0 = _lzw_step(c0, d0, n0, z0, s0[i])
        n1, z1 = _lzw_step(c1, d1, n1, z1, s1[i])
        n2, z2 = _lzw_step(c2, d2, n2, z2, s2[i])
        n3, z3 = _lzw_step(c3, d3, n3, z3, s3[i])
        n4, z4 = _lzw_step(c4, d4, n4, z4, s4[i])
        n5, z5 = _lzw_step(c5, d5, n5, z5, s5[i])
    out[0], out[1], out[2], out[3], out[4], out[5] = z0 - 2, z1 - 2, z2 - 2, z3 - 2, z4 - 2, z5 - 2
    return out


@njit(cache=True, nogil=True)
def _lzw_counts(seqs, child, out):
    """LZW dictionary sizes of the rows of ``seqs`` (m, n) into ``out`` (m,): six at a time
    (:func:`_lzw_dict_size6`) when ``child`` holds six tries (a remainder of five: the last row twice), then
    four at a time (:func:`_lzw_dict_size4`), a remainder of one or two rows two at a time (a single row is
    walked twice). ``child`` is workspace (4 or 6, n + 3, 2) int32."""
    m = seqs.shape[0]
    g = 0
    if child.shape[0] >= 6:
        r = np.empty(6, np.int64)
        while m - g >= 5:
            for t in range(6):
                r[t] = min(g + t, m - 1)
            got = _lzw_dict_size6(seqs, r, child)
            for t in range(min(6, m - g)):
                out[g + t] = got[t]
            g += 6
    while m - g >= 3:
        r3 = g + 3 if g + 3 < m else g
        a, b, c, d = _lzw_dict_size4(
            seqs[g], seqs[g + 1], seqs[g + 2], seqs[r3], child[0], child[1], child[2], child[3]
        )
        out[g] = a
        out[g + 1] = b
        out[g + 2] = c
        if g + 3 < m:
            out[g + 3] = d
        g += 4
    if m - g > 0:
        r1 = g + 1 if g + 1 < m else g
        a, b = _lzw_dict_size2(seqs[g], seqs[r1], child[0], child[1])
        out[g] = a
        if g + 1 < m:
            out[g + 1] = b


# The callers' shuffles draw at most this many indices per pass (int32: 4 MB), then make their swaps: a whole
# recording's 19.2M-symbol sequence no longer pages in a 77 MB index array; shorter rows take one pass.
_SHUFFLE_CHUNK = 1 << 20


@njit(cache=True, nogil=True, inline="always")
def _draw_fast(state, i):
    """Advance the SplitMix64 stream ``state`` and draw the index for step i by multiply-shift; (state, j)."""
    z = _splitmix64(state)  # the mix of the advanced state
    return state + np.uint64(0x9E3779B97F4A7C15), np.int32(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))


@njit(cache=True, nogil=True)
def _shuffle_fast_idx(a, key, idx):
    """:func:`_shuffle_inplace_fast` in passes, the same permutation: the draws first (they do not depend on
    the array, so the loop pipelines), then their swaps; one pass if ``idx`` (int32) holds len(a) entries,
    else passes of len(idx) - 1 draws (a long array does not page in an index array as long as itself; the
    draws loop of a pass vectorises less well, ~12 % slower, so short rows keep the single pass)."""
    state = np.uint64(key)
    if idx.size >= a.size:
        for i in range(a.size - 1, 0, -1):
            state, idx[i] = _draw_fast(state, i)
        _apply_swaps(a, idx, 0, a.size - 1)
        return
    if idx.size < 2:
        idx = np.empty(2, np.int32)
    hi = a.size - 1
    while hi > 0:
        lo = max(0, hi - (idx.size - 1))
        for t in range(hi - lo, 0, -1):  # i = lo + t
            state, idx[t] = _draw_fast(state, lo + t)
        _apply_swaps(a, idx, lo, hi)
        hi = lo


@njit(cache=True, nogil=True, inline="always")
def _mod_u32(z, d):
    """``z % d`` for a uint64 ``z`` and an int ``1 <= d < 2^32``, exactly, from two float64 divisions (~1.6x
    faster than the 64-bit integer modulo here). With ``z = zh 2^32 + zl``: ``r1 = zh % d`` (zh < 2^32 is
    exact in float64 and the rounded quotient is within 2^-21 / d of zh / d, closer than any other integer,
    so its truncation is the floor), then ``(r1 2^32 + zl) % d``: that is below d 2^32, its float64 quotient
    is within 2^-20 of the true one, so its floor is off by at most one, and the remainder is corrected into
    [0, d) by one addition or subtraction of d. IEEE division is correctly rounded on every CPU."""
    df = np.float64(d)
    zh = np.int64(z >> np.uint64(32))
    r1 = zh - np.int64(np.float64(zh) / df) * d
    t = (np.uint64(r1) << np.uint64(32)) | (z & np.uint64(0xFFFFFFFF))
    r2 = np.int64(t - np.uint64(np.float64(t) / df) * np.uint64(d))
    r2 = r2 + d if r2 < 0 else r2
    return r2 - d if r2 >= d else r2


# From this length the swaps of a shuffle prefetch the element they swap this many steps ahead (the array
# is beyond L2; a whole recording's 19.2M-symbol sequence: ~1.5x faster swaps).
_SWAP_PREFETCH_MIN_N = 1 << 20
_SWAP_PREFETCH_AHEAD = 48


@njit(cache=True, nogil=True)
def _apply_swaps(a, idx, lo, hi):
    """The swaps of a Fisher-Yates shuffle for i = hi .. lo + 1 with their draws ``idx[i - lo]``: a[i] with
    a[idx[i - lo]]. The draws are read as unsigned (they are in [0, i]): no negative-index wraparound per
    swap (~1.2x faster)."""
    if a.size >= _SWAP_PREFETCH_MIN_N:
        for t in range(hi - lo, 0, -1):
            if t > _SWAP_PREFETCH_AHEAD:
                _prefetch(a, idx[t - _SWAP_PREFETCH_AHEAD])
            j = np.uint64(idx[t])
            tmp = a[lo + t]
            a[lo + t] = a[j]
            a[j] = tmp
        return
    for t in range(hi - lo, 0, -1):
        j = np.uint64(idx[t])
        tmp = a[lo + t]
        a[lo + t] = a[j]
        a[j] = tmp


@njit(cache=True, nogil=True, inline="always")
def _draw_mod(state, i):
    """Advance the SplitMix64 stream ``state`` and draw the index for step i by the modulo; (state, j)."""
    return state + np.uint64(0x9E3779B97F4A7C15), np.int32(_mod_u32(_splitmix64(state), np.int64(i + 1)))


@njit(cache=True, nogil=True)
def _shuffle_mod_idx(a, key, idx):
    """:func:`_shuffle_inplace` (64-bit modulo draws, computed by :func:`_mod_u32`) in passes like
    :func:`_shuffle_fast_idx`, the same permutation (lengths below 2^31)."""
    state = np.uint64(key)
    if idx.size >= a.size:
        for i in range(a.size - 1, 0, -1):
            state, idx[i] = _draw_mod(state, i)
        _apply_swaps(a, idx, 0, a.size - 1)
        return
    if idx.size < 2:
        idx = np.empty(2, np.int32)
    hi = a.size - 1
    while hi > 0:
        lo = max(0, hi - (idx.size - 1))
        for t in range(hi - lo, 0, -1):  # i = lo + t
            state, idx[t] = _draw_mod(state, lo + t)
        _apply_swaps(a, idx, lo, hi)
        hi = lo


@njit(cache=True, nogil=True)
def _shuffle_keyed_idx(a, seed, kind, channel, window, k, idx):
    """:func:`_shuffle_keyed` in passes (draws, then swaps) with int32 workspace ``idx``: same permutation."""
    if kind >= 3:
        _shuffle_fast_idx(a, _shuffle_key(seed, kind, channel, window, k), idx)
    else:
        _shuffle_mod_idx(a, _shuffle_key(seed, kind, channel, window, k), idx)


@njit(cache=True, nogil=True)
def _lz_count(s, st, child, lzw):
    return _lzw_dict_size(s, child) if lzw else _lz76_auto(s, st)


# Shuffled copies shorter than this go straight to the prefix index (_lz76_shuffled); longer ones (a whole
# recording's spatio-temporal sequence) to the dispatcher, as their originals.
_LZ_SHUFFLED_MAX_N = 1 << 21


@njit(cache=True, nogil=True)
def _lz76_shuffled(s, st):
    """LZ76 count of a shuffled copy (``st``: the automaton's workspace, (2 len(s) + 2, 4) int32).

    Its runs are short (mean ~2 for binarised EEG), so the test for long runs of :func:`_lz76_auto` (a pass
    over the copy, ~1/4 of a 1000-symbol count) is skipped: the prefix index directly, with K = log2(n) - 1
    (measured best on shuffled copies of 1000, 64000 and 300000 symbols with the one-pass index: 8-12 %
    faster than the dispatcher's K at 64k and 300k) and a budget of 4n + 10^4 comparisons (a biased copy,
    28 % ones, needs ~3n: the dispatcher's n + 10^4 sent it to the automaton, 3x slower), then the
    automaton (a strongly biased copy: long chains of one K-gram). Same count: every method is exact."""
    n = s.size
    if n < 4 or n >= _LZ_SHUFFLED_MAX_N:
        return _lz76_auto(s, st)
    k = min(_LZ_PREV_MAX_K, int(math.log2(n)) - 1)
    c = _lz76_count_hash_in(s, k, 4 * n + 10_000, st.reshape(-1))
    return c if c >= 0 else _lz76_count_sam(s, st)


@njit(cache=True, nogil=True)
def _lz_count_shuffled(s, st, child, lzw):
    return _lzw_dict_size(s, child) if lzw else _lz76_shuffled(s, st)


@njit(cache=True, nogil=True)
def _lz_workspace(n, lzw):
    st = np.empty((1 if lzw else 2 * n + 2, 4), np.int32)
    child = np.empty((n + 3 if lzw else 1, 2), np.int32)
    return st, child


@njit(cache=True, nogil=True)
def _lzs_rows(bits, states, seed, channel, kind, n_shuffles, lzw):
    """count(bits) / mean over k of count(shuffle k of bits) per row (window); row w, shuffle k
    uses the key ``_shuffle_key(seed, kind, channel, w, k)``; count is LZ76 or the LZW dictionary."""
    nr, n = bits.shape
    out = np.empty(nr)
    if lzw and n <= _LZW_GROUP_MAX_N:
        # The original and its shuffles are counted together (:func:`_lzw_counts`): same values.
        seqs = np.empty((n_shuffles + 1, n), np.uint8)
        child = np.empty((6, n + 3, 2), np.int32)
        idx = np.empty(min(n, _SHUFFLE_CHUNK), np.int32)
        counts = np.empty(n_shuffles + 1, np.int64)
        for w in range(nr):
            if states[w] != _ROW_OK:
                out[w] = np.nan
                continue
            seqs[0, :] = bits[w]
            for k in range(n_shuffles):
                seqs[k + 1, :] = bits[w]
                _shuffle_keyed_idx(seqs[k + 1], seed, kind, channel, w, k, idx)
            _lzw_counts(seqs, child, counts)
            total = 0.0
            for k in range(n_shuffles):
                total += counts[k + 1]
            out[w] = counts[0] / (total / n_shuffles)
        return out
    st, child1 = _lz_workspace(n, lzw)
    buf = np.empty(n, np.uint8)
    idx = np.empty(min(n, _SHUFFLE_CHUNK), np.int32)
    for w in range(nr):
        if states[w] != _ROW_OK:
            out[w] = np.nan
            continue
        c_orig = _lz_count(bits[w], st, child1, lzw)
        total = 0.0
        for k in range(n_shuffles):
            buf[:] = bits[w]
            _shuffle_keyed_idx(buf, seed, kind, channel, w, k, idx)
            total += _lz_count_shuffled(buf, st, child1, lzw)
        out[w] = c_orig / (total / n_shuffles)
    return out


@njit(cache=True, nogil=True)
def _lzc_st_windows(bits, window_ok, seed, w_start, w_stop, kind, n_shuffles, lzw):
    """Spatio-temporal LZc for windows [w_start, w_stop) of bits (n_channels, n_windows, n)."""
    n_ch, _, n = bits.shape
    m = n_ch * n
    out = np.empty(w_stop - w_start)
    if lzw and m <= _LZW_GROUP_MAX_N:
        seqs = np.empty((n_shuffles + 1, m), np.uint8)
        child = np.empty((6, m + 3, 2), np.int32)
        idx = np.empty(min(m, _SHUFFLE_CHUNK), np.int32)
        counts = np.empty(n_shuffles + 1, np.int64)
        for w in range(w_start, w_stop):
            if not window_ok[w]:
                out[w - w_start] = np.nan
                continue
            _st_sequence(bits, w, seqs[0])
            for k in range(n_shuffles):
                seqs[k + 1, :] = seqs[0]
                _shuffle_keyed_idx(seqs[k + 1], seed, kind, 0, w, k, idx)
            _lzw_counts(seqs, child, counts)
            total = 0.0
            for k in range(n_shuffles):
                total += counts[k + 1]
            out[w - w_start] = counts[0] / (total / n_shuffles)
        return out
    st, child1 = _lz_workspace(m, lzw)
    seq = np.empty(m, np.uint8)
    # the last shuffle is made in place (the sequence is rebuilt for the next window): with one shuffle no
    # copy at all (a whole recording: 19.2 MB less to page in)
    buf = np.empty(m if n_shuffles > 1 else 0, np.uint8)
    idx = np.empty(min(m, _SHUFFLE_CHUNK), np.int32)
    for w in range(w_start, w_stop):
        if not window_ok[w]:
            out[w - w_start] = np.nan
            continue
        _st_sequence(bits, w, seq)
        c_orig = _lz_count(seq, st, child1, lzw)
        total = 0.0
        for k in range(n_shuffles):
            target = seq
            if k < n_shuffles - 1:
                buf[:] = seq
                target = buf
            _shuffle_keyed_idx(target, seed, kind, 0, w, k, idx)
            total += _lz_count_shuffled(target, st, child1, lzw)
        out[w - w_start] = c_orig / (total / n_shuffles)
    return out


@njit(cache=True, nogil=True)
def _st_sequence(bits, w, seq):
    """Window w of bits (n_channels, n_windows, n) time-major: all channels at t, then t + 1."""
    n_ch, _, n = bits.shape
    k = 0
    for t in range(n):
        for ch in range(n_ch):
            seq[k] = bits[ch, w, t]
            k += 1


@njit(cache=True, nogil=True)
def _lz76_count_alloc(seq):
    return _lz76_auto(seq, np.empty((2 * seq.size + 2, 4), np.int32))


@njit(cache=True, nogil=True)
def _lzw_count_alloc(seq):
    return _lzw_dict_size(seq, np.empty((seq.size + 3, 2), np.int32))


@njit(cache=True, nogil=True)
def _select_kth(a, n, k):
    """Reorder ``a[:n]`` so that ``a[k]`` is its k-th smallest value, everything before it <= and everything
    after it >= (Hoare-partition selection, median-of-three pivot); returns ``a[k]``. Finite values."""
    lo = 0
    hi = n - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        x0 = a[lo]
        x1 = a[mid]
        x2 = a[hi]
        piv = max(min(x0, x1), min(max(x0, x1), x2))
        i = lo
        j = hi
        while i <= j:
            while a[i] < piv:
                i += 1
            while piv < a[j]:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(cache=True, nogil=True)
def _bracket_pass(src, nsrc, dst, k_lo, k_hi):
    """Copy to ``dst`` the values of ``src[:nsrc]`` (>= 64 finite values) inside a bracket [lo, hi] that
    holds ranks k_lo..k_hi; returns (number below lo, number copied). The bracket is taken from 32 evenly
    spaced samples around the sample rank of k_lo; where it misses a rank it is widened (at worst to all
    values), so the result depends on the sample only in how long it takes."""
    samp = np.empty(32)
    for q in range(32):
        v = src[((2 * q + 1) * nsrc) // 64]
        p = q
        while p > 0 and samp[p - 1] > v:
            samp[p] = samp[p - 1]
            p -= 1
        samp[p] = v
    c = (k_lo * 32) // nsrc
    r_lo = c - 2
    r_hi = c + 3
    while True:
        lo = samp[r_lo] if r_lo >= 0 else -np.inf
        hi = samp[r_hi] if r_hi < 32 else np.inf
        below = 0
        nm = 0
        for t in range(nsrc):
            v = src[t]
            dst[nm] = v
            nm += np.int64((v >= lo) & (v <= hi))
            below += np.int64(v < lo)
        if below <= k_lo and k_hi < below + nm:
            return below, nm
        if below > k_lo:
            r_lo -= 8
        if k_hi >= below + nm:
            r_hi += 8


@njit(cache=True, nogil=True)
def _median_finite(x, buf):
    """``np.median(x)`` of a finite 1-D ``x`` (n >= 1), exactly: the middle value, or for even n the mean
    of the two middle values computed as NumPy does, ``(a + b) / 2``. ``buf`` is float64 workspace >= 2n.

    Selection without sorting: while more than 64 candidates are left, a pass keeps those inside a
    bracket around the middle ranks (:func:`_bracket_pass`), then the middle values are selected among
    the few left (:func:`_select_kth`)."""
    n = x.size
    k_lo = (n - 1) // 2
    k_hi = n // 2
    if n > 64:  # first pass reads x (possibly read-only), the later ones the two halves of buf
        below, nsrc = _bracket_pass(x, n, buf[:n], k_lo, k_hi)
        k_lo -= below
        k_hi -= below
    else:
        buf[:n] = x
        nsrc = n
    half = 0
    while 64 < nsrc < n:
        below, nm = _bracket_pass(buf[half : half + n], nsrc, buf[n - half : 2 * n - half], k_lo, k_hi)
        k_lo -= below
        k_hi -= below
        if nm == nsrc:  # ties: the bracket cannot narrow, select among these
            break
        nsrc = nm
        half = n - half
    src = buf[half : half + n]
    a = _select_kth(src, nsrc, k_lo)
    if k_hi == k_lo:
        return a
    b = src[k_lo + 1]
    for t in range(k_lo + 2, nsrc):
        if src[t] < b:
            b = src[t]
    return (a + b) / 2.0


def _lzc_median_counts(rows, states):
    """LZ76 count of ``row > np.median(row)`` per row (0 for a non-finite row, whose value is NaN anyway):
    float32 rows (the phase surrogates) by :func:`_lzc_median_counts_f32`, others by
    :func:`_lzc_median_counts_sel` (the same counts)."""
    if rows.dtype == np.float32:
        return _lzc_median_counts_f32(rows, states)
    return _lzc_median_counts_sel(rows, states)


@njit(cache=True, nogil=True)
def _lzc_median_counts_sel(rows, states):
    """:func:`_lzc_median_counts` by :func:`_median_finite` and :func:`_lz76_auto` (any float rows)."""
    nr, n = rows.shape
    out = np.zeros(nr, np.int64)
    if n == 0:
        return out
    buf = np.empty(2 * n)
    bits = np.empty(n, np.uint8)
    st = np.empty((2 * n + 2, 4), np.int32)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            continue
        row = rows[r]
        m = _median_finite(row, buf)
        for t in range(n):
            bits[t] = row[t] > m
        out[r] = _lz76_auto(bits, st)
    return out


@njit(cache=True, nogil=True)
def _pack_flags(flags, words):
    """0/1 bytes ``flags`` (length a multiple of 64, 8-byte aligned) -> ``words``: flag t is bit t % 64 of
    word t // 64. Eight flags at a time: one multiply gathers the low bit of each byte into the top byte."""
    w8 = flags.view(np.uint64)
    for i in range(words.size):
        w = np.uint64(0)
        for q in range(8):
            w |= ((w8[8 * i + q] * np.uint64(0x0102040810204080)) >> np.uint64(56)) << np.uint64(8 * q)
        words[i] = w


@njit(cache=True, nogil=True)
def _count_below(x, p):
    """Number of values of ``x`` below ``p`` (a branch-free loop the compiler vectorises; integer sum)."""
    c = 0
    for t in range(x.size):
        c += x[t] < p
    return c


# Sample values per round of the float32 median selection (sorted; 2^4 - 1: four counting passes).
_MEDIAN_PIVOTS = 15


@njit(cache=True, nogil=True)
def _pivot_bracket(x, k, piv):
    """Neighbouring values lo <= (k-th smallest of ``x``) < hi among ``piv.size`` (2^j - 1) sorted evenly
    spaced sample values of ``x`` (or -inf / inf past them) and the numbers of values below lo and below
    hi: a binary search over the sample, each step counting the values below one sample value (a
    vectorised pass). ``piv`` is float32 workspace."""
    n = x.size
    npv = piv.size
    for q in range(npv):
        v = x[((2 * q + 1) * n) // (2 * npv)]
        p = q
        while p > 0 and piv[p - 1] > v:
            piv[p] = piv[p - 1]
            p -= 1
        piv[p] = v
    qa = -1  # invariant: (values below piv[qa]) <= k < (values below piv[qb]); -1: -inf, npv: +inf
    qb = npv
    ca = 0
    cb = n
    while qb - qa > 1:
        q = (qa + qb) >> 1
        c = _count_below(x, piv[q])
        if c <= k:
            qa = q
            ca = c
        else:
            qb = q
            cb = c
    lo = piv[qa] if qa >= 0 else np.float32(-np.inf)
    hi = piv[qb] if qb < npv else np.float32(np.inf)
    return lo, hi, ca, cb


@njit(cache=True, nogil=True)
def _kth_smallest_f32(x, k, flags, words, cand):
    """The k-th smallest value of a finite 1-D float32 ``x`` of n values, exactly, ``x`` not reordered.
    Workspace: ``flags`` uint8 and ``cand`` float32 of >= n rounded up to 64, ``words`` uint64 of that / 64.
    The rank is bracketed by sample values (:func:`_pivot_bracket`, the sample affects only the time), the
    values inside the bracket are flagged (vectorised), their flags packed to bits and only those values
    copied (one per set bit); a second bracket narrows those (copied in place), and the k-th is selected
    among the rest (:func:`_select_kth`)."""
    n = x.size
    if n <= 4 * _MEDIAN_PIVOTS:
        cand[:n] = x
        return _select_kth(cand, n, k)
    piv = np.empty(_MEDIAN_PIVOTS, np.float32)
    lo, hi, ca, cb = _pivot_bracket(x, k, piv)
    nw = (n + 63) >> 6
    for t in range(n):
        v = x[t]
        flags[t] = (v >= lo) & (v < hi)
    flags[n : nw << 6] = 0
    _pack_flags(flags[: nw << 6], words[:nw])
    nc = 0
    for i in range(nw):
        w = words[i]
        while w != 0:
            cand[nc] = x[(i << 6) + _cttz64(w)]
            nc += 1
            w &= w - np.uint64(1)
    k -= ca
    if nc > 2 * _MEDIAN_PIVOTS:
        lo, hi, ca, cb = _pivot_bracket(cand[:nc], k, piv)
        j = 0
        for t in range(nc):
            v = cand[t]
            cand[j] = v
            j += (v >= lo) & (v < hi)
        nc = j
        k -= ca
    return _select_kth(cand, nc, k)


@intrinsic
def _popcount64(typingctx, x):
    """Set bits of a uint64 (``llvm.ctpop.i64``: one popcnt instruction where the CPU has it)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return sig, codegen


def _word_compare_f32(op: str):
    """An intrinsic ``(x, base, thr) -> uint64``: bit q set iff ``x[base + q] <op> thr`` for q < 64 (float32
    ``x``, C-contiguous, base + 64 <= x.size; ordered comparison: false for NaN, as Python's). One vector
    load and compare whose mask is the word (AVX-512: a mask register; elsewhere the compiler's equivalent)."""

    @intrinsic
    def compare(typingctx, x, base, thr):
        sig = types.uint64(x, types.intp, types.float32)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]], wraparound=False)
            vt = ir.VectorType(ir.FloatType(), 64)
            vec = builder.load(builder.bitcast(ptr, vt.as_pointer()), align=4)
            one = builder.insert_element(ir.Constant(vt, ir.Undefined), args[2], ir.Constant(ir.IntType(32), 0))
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), 64), [0] * 64)
            mask = builder.fcmp_ordered(op, vec, builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined), zeros))
            return builder.bitcast(mask, ir.IntType(64))

        return sig, codegen

    return compare


_lt_word_f32 = _word_compare_f32("<")
_gt_word_f32 = _word_compare_f32(">")


@njit(cache=True, nogil=True)
def _below_words(x, a, b, wa, wb):
    """Bit t % 64 of word t // 64 of ``wa`` (``wb``): ``x[t] < a`` (``< b``), zeros past the end; returns the
    numbers of values below a and below b (one vector compare per whole word, :func:`_word_compare_f32`)."""
    n = x.size
    nw = (n + 63) >> 6
    for i in range(n >> 6):
        wa[i] = _lt_word_f32(x, i << 6, a)
        wb[i] = _lt_word_f32(x, i << 6, b)
    if n & 63 and n > 64:  # the last 64 values, shifted down to the partial word's bits
        sh = np.uint64(64 - (n & 63))
        wa[nw - 1] = _lt_word_f32(x, n - 64, a) >> sh
        wb[nw - 1] = _lt_word_f32(x, n - 64, b) >> sh
    elif n & 63:
        wa_i = np.uint64(0)
        wb_i = np.uint64(0)
        for q in range(n):
            wa_i |= np.uint64(x[q] < a) << np.uint64(q)
            wb_i |= np.uint64(x[q] < b) << np.uint64(q)
        wa[0] = wa_i
        wb[0] = wb_i
    ca = 0
    cb = 0
    for i in range(nw):
        ca += _popcount64(wa[i])
        cb += _popcount64(wb[i])
    return np.int64(ca), np.int64(cb)


@njit(cache=True, nogil=True)
def _rank_select(a, n, k):
    """The k-th smallest of ``a[:n]`` (a few finite values): the value with fewer than k + 1 values below it
    and more than k at or below it, ranks counted by comparisons without branches (no reordering)."""
    for i in range(n):
        v = a[i]
        lt = 0
        le = 0
        for j in range(n):
            lt += a[j] < v
            le += a[j] <= v
        if lt <= k < le:
            return v
    return _select_kth(a, n, k)  # not reached for finite values


# The float32 median's first bracket: mean -+ this many SDs of 32 evenly spaced samples (contains the median of
# all but ~0.5 % of the phase surrogates), then narrowed to about twice _MEDIAN_NARROW values, at most 4 times.
_MEDIAN_FIRST_SD = 0.3
_MEDIAN_NARROW = 6


@njit(cache=True, nogil=True)
def _median_bracket_f32(x, k, ws):
    """Values lo < hi with (values of ``x`` below lo) <= k < (values below hi), as bit words: ``ws[i0]`` marks
    x < lo, ``ws[i1]`` x < hi (ws uint64 (4, n / 64 rounded up)). Returns (found, i0, i1, values below lo);
    not found where the first bracket misses the rank (the caller selects otherwise). The bracket is placed by
    a sample's mean and SD, then narrowed where the k-th value is expected by linear interpolation of the
    counts; the invariant holds after every step whatever the thresholds, so they affect only the time."""
    n = x.size
    s = 0.0
    q = 0.0
    for j in range(32):
        v = np.float64(x[((2 * j + 1) * n) // 64])
        s += v
        q += v * v
    mu = s / 32
    sd = math.sqrt(max(q / 32 - mu * mu, 0.0))
    lo = np.float32(mu - _MEDIAN_FIRST_SD * sd)
    hi = np.float32(mu + _MEDIAN_FIRST_SD * sd)
    i0, i1, i2, i3 = 0, 1, 2, 3
    cl, ch = _below_words(x, lo, hi, ws[i0], ws[i1])
    if not (cl <= k < ch and np.isfinite(lo) and np.isfinite(hi)):
        return False, i0, i1, cl
    for _ in range(4):
        if ch - cl <= 2 * _MEDIAN_NARROW:
            break
        span = np.float64(hi) - np.float64(lo)
        t = np.float64(lo) + span * ((k + 0.5 - cl) / (ch - cl))
        h = span * _MEDIAN_NARROW / (ch - cl)
        a = np.float32(max(np.float64(lo), t - h))
        b = np.float32(min(np.float64(hi), t + h))
        ca, cb = _below_words(x, a, b, ws[i2], ws[i3])
        if ca <= k < cb:
            lo, hi, cl, ch = a, b, ca, cb
            i0, i1, i2, i3 = i2, i3, i0, i1
        elif k < ca:
            hi, ch = a, ca
            i1, i2 = i2, i1
        else:
            lo, cl = b, cb
            i0, i3 = i3, i0
    return True, i0, i1, cl


@njit(cache=True, nogil=True)
def _median_split_words_f32(x, k, ws, flags, cand):
    """The k-th smallest value a of a finite float32 ``x`` and the bits of ``x > a`` in ``ws[3]``
    (zeros past the end). Inside a bracket (:func:`_median_bracket_f32`) only its few values are copied and
    a selected among them (:func:`_rank_select`); the split is then (x >= hi) or (in the bracket and > a),
    with no pass over the row. Where the bracket misses, :func:`_kth_smallest_f32` and a comparison pass."""
    n = x.size
    nw = (n + 63) >> 6
    found, i0, i1, cl = _median_bracket_f32(x, k, ws)
    if not found:
        a = _kth_smallest_f32(x, k, flags, ws[0], cand)
        for i in range(n >> 6):
            ws[3, i] = _gt_word_f32(x, i << 6, a)
        if n & 63 and n > 64:
            ws[3, nw - 1] = _gt_word_f32(x, n - 64, a) >> np.uint64(64 - (n & 63))
        elif n & 63:
            w = np.uint64(0)
            for q in range(n):
                w |= np.uint64(x[q] > a) << np.uint64(q)
            ws[3, 0] = w
        return a
    nc = 0
    for i in range(nw):
        w = ws[i1, i] & ~ws[i0, i]
        while w != 0:
            cand[nc] = x[(i << 6) + _cttz64(w)]
            nc += 1
            w &= w - np.uint64(1)
    a = _rank_select(cand, nc, k - cl) if nc <= 64 else _select_kth(cand, nc, k - cl)
    for i in range(nw):
        inside = ws[i1, i] & ~ws[i0, i]
        above = ~ws[i1, i]
        w = inside
        while w != 0:
            b = _cttz64(w)
            above |= np.uint64(x[(i << 6) + b] > a) << np.uint64(b)
            w &= w - np.uint64(1)
        ws[3, i] = above
    if n & 63:
        ws[3, nw - 1] &= (np.uint64(1) << np.uint64(n & 63)) - np.uint64(1)
    return a


@njit(cache=True, nogil=True)
def _split_run_starts_f32(x, thr, flags, words, starts):
    """:func:`_run_starts` of the sequence ``x > thr`` (``x`` float32 of n >= 1 values), without storing the
    sequence: the flags are packed to bits (workspace as :func:`_kth_smallest_f32`), then
    :func:`_run_starts_words`. Returns the number of runs."""
    n = x.size
    nw = (n + 63) >> 6
    for t in range(n):
        flags[t] = x[t] > thr
    flags[n : nw << 6] = 0
    _pack_flags(flags[: nw << 6], words[:nw])
    return _run_starts_words(words, n, starts)


@njit(cache=True, nogil=True)
def _run_starts_words(words, n, starts):
    """:func:`_run_starts` of the n bits of ``words`` (bit t % 64 of word t // 64): a run starts at each bit
    that differs from the one before (and at 0); one store per run. Returns the number of runs."""
    nw = (n + 63) >> 6
    m = 0
    carry = words[0] & np.uint64(1)  # bit 0 always starts a run: compare it with its own complement
    carry ^= np.uint64(1)
    for i in range(nw):
        w = words[i]
        d = w ^ ((w << np.uint64(1)) | carry)
        carry = w >> np.uint64(63)
        if i == nw - 1 and n & 63:
            d &= (np.uint64(1) << np.uint64(n & 63)) - np.uint64(1)
        while d != 0:
            starts[m] = (i << 6) + _cttz64(d)
            m += 1
            d &= d - np.uint64(1)
    starts[m] = n
    return m


@njit(cache=True, nogil=True)
def _lzc_median_counts_f32(rows, states):
    """:func:`_lzc_median_counts` of float32 rows (the phase surrogates), the same counts, faster: the split
    ``row > median`` equals ``row > a`` with a the lower middle value (for even n the float64 mean of two
    distinct float32 values lies strictly between them, and no value does), selected with the split's bits by
    :func:`_median_split_words_f32`; the runs of the split are found from those bits and counted by
    :func:`_lz76_count_runs_short` where :func:`_lz76_auto` would count runs (long runs), else the bits go to
    :func:`_lz76_auto` itself (every path is the exact LZ76 count)."""
    nr, n = rows.shape
    out = np.zeros(nr, np.int64)
    if n == 0:
        return out
    nw = (n + 63) >> 6
    flags = np.empty(nw << 6, np.uint8)
    ws = np.empty((4, nw), np.uint64)
    cand = np.empty(nw << 6, np.float32)
    st = np.empty((2 * n + 2, 4), np.int32)
    starts = st.reshape(-1)
    for r in range(nr):
        if states[r] == _ROW_NONFINITE:
            continue
        row = rows[r]
        a = _median_split_words_f32(row, (n - 1) // 2, ws, flags, cand)
        m = _run_starts_words(ws[3], n, starts)
        c = -1
        if n < _LZ_HASH_MIN_N and m * _LZ_RUNS_MIN_MEAN <= n:
            c = _lz76_count_runs_short(starts, m, n, starts[n + 1 :], 4 * n + 64)
        if c < 0:
            bits = flags[:n]
            for t in range(n):
                bits[t] = row[t] > a
            c = _lz76_auto(bits, st)
        out[r] = c
    return out


@njit(cache=True, nogil=True)
def _scan_parity(a, b, cnt, r0, lb):
    """Longest copy over the earlier runs of one symbol, branch-free: ``a[j]`` the length of the j-th such run,
    ``b[j]`` of the run after it, ``lb`` of the run after the phrase's; and the runs whose copy must go on past
    the next run (at least r0 long, next runs equally long) as bit j of a word (j < 64; bit 63 also stands for
    any j >= 64: the caller then checks every run)."""
    best = 0
    walk = np.uint64(0)
    for j in range(cnt):
        ln = a[j]
        la = b[j]
        best = max(best, ln if ln < r0 else r0 + min(la, lb))
        walk |= np.uint64((ln >= r0) & (la == lb)) << np.uint64(min(j, 63))
    return best, walk


@njit(cache=True, nogil=True)
def _lz76_count_runs_short(starts, m, n, ws, budget):
    """The LZ76 count of :func:`_lz76_count_sam` from the runs of the sequence (``starts`` of
    :func:`_run_starts`, m runs, length n); -1 past ``budget`` candidate runs examined. ``ws`` is int32
    workspace >= 2 m + 4.

    Runs alternate between the two symbols, so two runs hold the same symbol iff their indices have
    the same parity. A phrase starting at i, inside run v with r0 = (end of run v) - i symbols left
    of it, copies from some j < i. A start j in an earlier run u of the same symbol with fewer than
    r0 symbols left in its run matches those symbols only; a start with more left than r0 (also any
    start before i in run v itself) matches exactly r0 (then one side flips and the other does not,
    or the sequence ends); the start with exactly r0 left (exists iff run u has >= r0 symbols)
    matches r0 and then the following runs while their lengths agree, plus the shorter of the first
    pair that differs (or of the pair where the sequence ends). The longest over all starts, capped
    by the sequence end, is the copy; the phrase is the copy plus one symbol. Fast on sequences of
    long runs (binarised EEG), O(phrases x runs) in general, hence the budget.

    The earlier runs are scanned without branches: a run u of the phrase's symbol gives a copy of min(its
    length, r0) plus, where it is at least r0 long, the shorter of the next two runs (u + 1, v + 1); only where
    those two are equally long (and not the last) does the copy go on, and only those runs, marked by the scan,
    are extended (:func:`_runs_walk`). The run lengths are laid out by parity so that the scan reads two arrays
    in order."""
    h = (m >> 1) + 2
    ev = ws[:h]  # lengths of runs 0, 2, 4, ...
    od = ws[h : 2 * h]  # of runs 1, 3, 5, ...
    for u in range(m):
        if u & 1:
            od[u >> 1] = starts[u + 1] - starts[u]
        else:
            ev[u >> 1] = starts[u + 1] - starts[u]
    count = 0
    work = 0
    i = 0
    v = 0
    while i < n:
        while starts[v + 1] <= i:
            v += 1
        r0 = starts[v + 1] - i
        best = r0 if starts[v] < i else 0
        cnt = v >> 1  # earlier runs of the phrase's symbol: u = 2 j + (v & 1), j < cnt
        if v == m - 1:  # the last run: a copy of r0 symbols reaches the end
            if best < r0:
                a = od if v & 1 else ev
                for j in range(cnt):
                    best = max(best, min(a[j], r0))
        else:
            lb = starts[v + 2] - starts[v + 1]
            if v & 1:
                b, walk = _scan_parity(od, ev[1:], cnt, r0, lb)
            else:
                b, walk = _scan_parity(ev, od, cnt, r0, lb)
            best = max(best, b)
            work += cnt
            if walk != 0 and v + 1 < m - 1:
                best, work = _runs_walk(starts, m, v, r0, lb, best, work, walk, cnt > 63)
            if work > budget:
                return -1
        count += 1
        i += best + 1
    return count


@njit(cache=True, nogil=True)
def _runs_walk(starts, m, v, r0, lb, best, work, walk, every):
    """The copies of the runs u (the phrase's symbol, before run v) that go on past their next run, extended
    by :func:`_runs_ext`: the runs marked in ``walk`` (bit j: run 2 j + v % 2), or with ``every`` each run
    that qualifies (at least r0 long, next run lb long). Returns the longest copy and the work, updated (the
    same whatever the order the runs are taken in)."""
    if every:
        for u in range(v - 2, -1, -2):
            if starts[u + 1] - starts[u] >= r0 and starts[u + 2] - starts[u + 1] == lb:
                ext, e = _runs_ext(starts, m, u + 1, v + 1)
                best = max(best, r0 + ext)
                work += e - v
        return best, work
    while walk != 0:
        u = 2 * np.int64(_cttz64(walk)) + (v & 1)
        ext, e = _runs_ext(starts, m, u + 1, v + 1)
        best = max(best, r0 + ext)
        work += e - v
        walk &= walk - np.uint64(1)
    return best, work


# The long-sequence counter uses the helpers above (imported here, after them, so either module may be
# imported first); _lz76_auto resolves it when first compiled.
from pipelines.eeg.kernels import lz_sparse as _lz_sparse  # noqa: E402
