"""The real-study benchmark's code path at a tiny size (4 short recordings): it generates, computes and reports
the fields of ``study_100_recordings_real`` and ``study_400_projection_from_real``.  Nothing here is timed: the
full 100-recording run is ``python -m benchmarks --only study_real``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_real_study_rows_at_a_tiny_size(monkeypatch):
    from benchmarks import bench_study

    monkeypatch.setenv("KW_BENCH_REAL_RECORDINGS", "4")
    size = bench_study.real_study_size(quick=True)
    assert size["subjects"] * len(size["doses"]) == 4
    real, projection = bench_study.bench_study_real(size, workers=2)

    assert real["benchmark"] == "study_4_recordings_real_small" and real["n_recordings"] == 4 and real["n_failed"] == 0
    assert real["wall_s"] > 0 and real["cpu_s"] > 0 and real["generation_s"] > 0
    # The process tree was sampled: a scheduler and two workers hold more than this process alone.
    assert real["peak_gb"] > real["peak_gb_largest_process"] > 0
    assert 0 < real["efficiency"] <= 1
    assert real["load_avg_1min_before"] is not None and "SMALL RUN" in real["notes"]
    assert projection["projected_h"] == pytest.approx(real["wall_s"] * 100 / 3600)  # 400 / 4 recordings
    assert projection["from_recordings"] == 4 and projection["meets"] == (projection["projected_h"] <= 0.5)
    # At the full size the rows carry the names.
    full = bench_study.real_study_size(quick=False)
    assert full["subjects"] * len(full["doses"]) == 4 and full["channels"] == 64 and full["minutes"] == 10
    monkeypatch.delenv("KW_BENCH_REAL_RECORDINGS")
    full = bench_study.real_study_size(quick=False)
    assert full["subjects"] * len(full["doses"]) >= 100 and full["sfreq"] == 500
