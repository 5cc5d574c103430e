"""Benchmarks of the workbench: ``make bench`` (``python -m benchmarks``) runs them all and writes
``reports/bench/bench.json`` and ``reports/bench/bench.md``.  Each ``bench_*.py`` module also runs alone."""
