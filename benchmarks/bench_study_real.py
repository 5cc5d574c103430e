"""A real study run: >= 100 recordings of 64 ch x 10 min x 500 Hz generated and processed end to end, and 400
projected from it (rows ``study_100_recordings_real`` and ``study_400_projection_from_real``).

The code is ``benchmarks.bench_study.bench_study_real``; this module gives it its own fresh interpreter and
time limit in ``python -m benchmarks`` (it takes tens of minutes: ``--only study_real`` runs it alone).
``KW_BENCH_REAL_RECORDINGS`` sets the number of recordings (default 100; ``--quick``: 4 small ones).
"""

from __future__ import annotations

from benchmarks.bench_study import run_real


def run(quick: bool = False) -> list[dict]:
    return run_real(quick)
