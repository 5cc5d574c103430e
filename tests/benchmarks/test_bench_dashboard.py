"""The dashboard bench's own bookkeeping (the load test itself runs in `make bench`, never in the tests)."""

from __future__ import annotations

import time

from benchmarks.bench_dashboard import _settled_processes


class _ForkingServer:
    """A server whose second worker process appears a while after the first one announced the URLs."""

    def __init__(self, second_after_s: float):
        self.t0 = time.time()
        self.second_after_s = second_after_s

    def children(self):
        return ["worker-0"] + (["worker-1"] if time.time() - self.t0 >= self.second_after_s else [])


def test_the_bench_counts_every_server_process_even_when_one_is_forked_late():
    assert _settled_processes(_ForkingServer(0.4), settle_s=0.6, timeout_s=5) == 2
    assert _settled_processes(_ForkingServer(60.0), settle_s=0.3, timeout_s=5) == 1  # a single process: settles


def test_a_server_without_children_is_one_process():
    class Single:
        def children(self):
            return []

    assert _settled_processes(Single(), settle_s=0.2, timeout_s=2) == 1
