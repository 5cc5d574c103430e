"""Benchmark: questionnaire scoring + mood outcomes for many participants (row ``scoring_10000x5``).

Data are simulated in memory (not timed): per participant and session one MEQ30 row (30 items 0–5),
one 5D-ASC row (94 items 0–100) and MADRS at five time points (10 items 0–6). Timed: validation
and scoring of the three item-level tables with :func:`pipelines.phenotype.questionnaires.score_items`, and
change / response / remission with :func:`pipelines.phenotype.mood.mood_outcomes`.

Baseline: a naive scorer that loops over rows in Python (``DataFrame.iterrows``, per-item range
checks and per-score means/sums, then a per-row baseline lookup for MADRS outcomes), timed on a
subset of ``baseline_subset`` participants and scaled linearly to the full size (it is linear in
rows); the row says so.

Run: ``python benchmarks/bench_scoring.py`` prints the row as JSON.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from pipelines.phenotype.mood import mood_outcomes
from pipelines.phenotype.questionnaires import SCALES, score_items

TIMEPOINTS = ("baseline", "4h", "24h", "7d", "14d")


def simulate_tables(n_participants: int, n_sessions: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Item-level MEQ30, 5D-ASC (one row per subject-session) and MADRS (per time point)."""
    rng = np.random.default_rng(seed)
    subjects = np.array([f"sub-{i:05d}" for i in range(n_participants)], dtype=object)
    sessions = np.array([f"ses-{j}" for j in range(n_sessions)], dtype=object)
    subject_col = np.repeat(subjects, n_sessions)
    session_col = np.tile(sessions, n_participants)
    n = len(subject_col)

    def table(scale: str, values: np.ndarray, keys: dict) -> pd.DataFrame:
        frame = pd.DataFrame(values, columns=SCALES[scale].item_columns)
        for position, (name, column) in enumerate(keys.items()):
            frame.insert(position, name, pd.array(column, dtype="str"))
        return frame

    keys = {"participant_id": subject_col, "session_id": session_col}
    meq30 = table("meq30", rng.integers(0, 6, size=(n, 30)).astype(float), keys)
    asc5d = table("asc5d", rng.uniform(0, 100, size=(n, 94)).round(1), keys)
    n_tp = len(TIMEPOINTS)
    madrs_keys = {
        "participant_id": np.repeat(subject_col, n_tp),
        "session_id": np.repeat(session_col, n_tp),
        "timepoint": np.tile(np.array(TIMEPOINTS, dtype=object), n),
    }
    madrs = table("madrs", rng.integers(0, 7, size=(n * n_tp, 10)).astype(float), madrs_keys)
    return {"meq30": meq30, "asc5d": asc5d, "madrs": madrs}


def score_all(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The timed work: score the three tables and derive MADRS outcomes."""
    meq = score_items(tables["meq30"], "meq30", response_scale=(0, 5)).scores
    asc = score_items(tables["asc5d"], "asc5d", response_scale=(0, 100)).scores
    madrs = score_items(tables["madrs"], "madrs", response_scale=(0, 6)).scores
    outcomes = mood_outcomes(madrs, "madrs_total")
    return {"meq30": meq, "asc5d": asc, "madrs": outcomes}


def naive_score_all(tables: dict[str, pd.DataFrame]) -> dict[str, list]:
    """Reference the slow way: one Python iteration per row (the baseline)."""
    results: dict[str, list] = {}
    for scale in ("meq30", "asc5d", "madrs"):
        key = SCALES[scale]
        rows = []
        for _, row in tables[scale].iterrows():
            scored = {}
            for column in key.item_columns:
                value = float(row[column])
                if not key.item_min <= value <= key.item_max[0]:
                    raise ValueError(f"out of range in {column}")
            for name, spec in key.item_scores.items():
                answers = [float(row[key.item_column(i)]) for i in spec.items]
                scored[name] = sum(answers) / len(answers) if spec.rule == "mean" else sum(answers)
            rows.append((row["participant_id"], row["session_id"], row.get("timepoint"), scored))
        results[scale] = rows
    baseline = {(s, ses): sc["total"] for s, ses, tp, sc in results["madrs"] if tp == "baseline"}
    results["outcomes"] = [
        (sc["total"] - baseline[(s, ses)], (baseline[(s, ses)] - sc["total"]) >= 0.5 * baseline[(s, ses)])
        for s, ses, tp, sc in results["madrs"]
    ]
    return results


def bench_scoring(
    n_participants: int = 10_000, n_sessions: int = 5, baseline_subset: int = 200, repeats: int = 3
) -> dict:
    """Time scoring + outcomes; best of ``repeats`` runs. Returns the bench.json row."""
    tables = simulate_tables(n_participants, n_sessions)
    ours = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = score_all(tables)
        ours.append(time.perf_counter() - start)
    subset_ids = set(tables["meq30"]["participant_id"].unique()[:baseline_subset])
    subset = {k: t[t["participant_id"].isin(subset_ids)] for k, t in tables.items()}
    start = time.perf_counter()
    naive = naive_score_all(subset)
    naive_s = (time.perf_counter() - start) * n_participants / baseline_subset
    # Same numbers both ways on the subset (guards the benchmark against comparing different work).
    ours_subset = result["meq30"][result["meq30"]["participant_id"].isin(subset_ids)]
    naive_total = np.array([sc["total"] for *_, sc in naive["meq30"]])
    np.testing.assert_allclose(np.sort(ours_subset["meq30_total"].to_numpy()), np.sort(naive_total))
    ours_s = min(ours)
    return {
        "benchmark": f"scoring_{n_participants}x{n_sessions}",
        "ours_s": round(ours_s, 4),
        "baseline": (
            f"naive per-row Python loop (iterrows), timed on {baseline_subset} "
            f"participants and scaled linearly to {n_participants}"
        ),
        "baseline_s": round(naive_s, 3),
        "speedup": round(naive_s / ours_s, 1),
        "rows_scored": int(sum(len(t) for t in tables.values())),
        "tables": "MEQ30 + 5D-ASC per subject-session, MADRS at 5 time points + outcomes",
    }


if __name__ == "__main__":
    print(json.dumps(bench_scoring(), indent=2))
