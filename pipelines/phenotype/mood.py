"""Mood outcomes from scored depression scales: change from baseline, response, remission, rates.

Definitions (one place each; thresholds live in :mod:`pipelines.phenotype.questionnaires`):

- change = score − baseline score of the same subject-session; % change = 100 × change / baseline
  (negative = improvement; undefined when the baseline is 0).
- response = reduction from baseline of *at least* ``min_reduction`` (default 50 %, inclusive:
  exactly 50 % is a response; a strict ">" gives different rates).
- remission = score ≤ threshold (inclusive). Default per scale, its published cut-off (MADRS ≤ 10,
  HAM-D17 ≤ 7, QIDS-SR16 ≤ 5, BDI-II ≤ 13; sources in :mod:`pipelines.phenotype.questionnaires`); an explicit
  threshold that is not the scale's warns (:func:`pipelines.phenotype.questionnaires.remission_threshold`).
- rates with Wilson score intervals (statsmodels ``proportion_confint(method="wilson")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from pipelines.core.errors import InputError
from pipelines.phenotype.questionnaires import RESPONSE_MIN_REDUCTION
from pipelines.phenotype.questionnaires import remission_threshold as _remission_threshold

__all__ = ["mood_outcomes", "outcome_rates"]


def mood_outcomes(
    scores: pd.DataFrame,
    score: str = "madrs_total",
    *,
    baseline: str = "baseline",
    timepoint: str = "timepoint",
    keys: Sequence[str] = ("participant_id", "session_id"),
    min_reduction: float = RESPONSE_MIN_REDUCTION,
    remission_threshold: float | None = None,
) -> pd.DataFrame:
    """Change from baseline, response and remission at every time point of every subject-session.

    Parameters
    ----------
    scores : one row per subject-session-timepoint with ``score`` (e.g. ``ScoringResult.scores``,
        possibly merged with doses); other columns are kept.
    baseline : the time-point label of the baseline rating (each subject-session has its own).
    min_reduction : response when (baseline − score) / baseline ≥ this fraction (inclusive).
    remission_threshold : remission when score ≤ this; None = the scale's published cut-off
        (``REMISSION_THRESHOLDS``: madrs_total 10, hamd_total 7, qids_total 5, bdi_total 13), required
        for other scores. A value outside the scale's total range raises; one that is not the scale's
        cut-off (or a listed alternative, MADRS 9 or 12) warns (``RemissionThresholdWarning``).

    Adds ``<score>_baseline``, ``_change``, ``_pct_change``, ``_response``, ``_remission`` (nullable
    booleans: NA when the score or, for response, the baseline is missing or 0). Baseline rows are
    kept (change 0). ``attrs["n_without_baseline"]`` counts subject-sessions with no baseline score.
    """
    source = scores.attrs.get("source", "<DataFrame>")
    for column in [*keys, timepoint, score]:
        if column not in scores.columns:
            raise InputError(f"scores table has no {column} column", file=source, field=column)
    remission_threshold = _remission_threshold(score, remission_threshold)
    if not 0 < min_reduction <= 1:
        raise ValueError("min_reduction must be in (0, 1]")
    labels = scores[timepoint].astype(str)
    if not (labels == baseline).any():
        raise InputError(
            f"no row has the baseline time point {baseline!r} (time points found: "
            f"{', '.join(sorted(labels.unique())[:10])})",
            file=source,
            field=timepoint,
        )
    _check_one_row_each(scores, keys, timepoint, source)

    baseline_rows = scores.loc[labels == baseline, [*keys, score]]
    baseline_values = baseline_rows.rename(columns={score: f"{score}_baseline"})
    out = scores.merge(baseline_values, on=list(keys), how="left", validate="many_to_one")
    _add_outcomes(out, score, min_reduction, remission_threshold)
    out.attrs.update(scores.attrs)
    with_keys = scores[list(keys)].drop_duplicates()
    out.attrs["n_without_baseline"] = int(len(with_keys) - len(baseline_rows.dropna()))
    out.attrs["outcome_definitions"] = {
        "baseline": baseline,
        "min_reduction": min_reduction,
        "remission_threshold": remission_threshold,
        "score": score,
    }
    return out


def _check_one_row_each(scores: pd.DataFrame, keys: Sequence[str], timepoint: str, source: str) -> None:
    """InputError naming the first duplicate subject-session-timepoint row."""
    duplicated = scores.duplicated([*keys, timepoint], keep=False).to_numpy()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        # The 1-based data row of the file when the table came from read_phenotype_table.
        row = int(scores.index[i]) if scores.index.name == "row" else i + 1
        raise InputError(
            "duplicate subject-session-timepoint rows",
            file=source,
            row=row,
            subject=str(scores[keys[0]].iloc[i]),
            session=str(scores[keys[1]].iloc[i]) if len(keys) > 1 else None,
            timepoint=str(scores[timepoint].iloc[i]),
        )


def _add_outcomes(out: pd.DataFrame, score: str, min_reduction: float, remission_threshold: float) -> None:
    """Add change, % change, response and remission of ``score`` from its ``_baseline`` column (in place)."""
    value = out[score].to_numpy(dtype=float, na_value=np.nan)
    base = out[f"{score}_baseline"].to_numpy(dtype=float, na_value=np.nan)
    change = value - base
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_change = np.where(base != 0, 100.0 * change / base, np.nan)
        # (base - value) / base is correctly rounded, so a reduction of exactly 50 % compares
        # equal to 0.5: the boundary is inclusive without a tolerance.
        reduction = np.where(base > 0, (base - value) / base, np.nan)
    out[f"{score}_change"] = change
    out[f"{score}_pct_change"] = pct_change
    out[f"{score}_response"] = _nullable(reduction >= min_reduction, np.isnan(reduction))
    out[f"{score}_remission"] = _nullable(value <= remission_threshold, np.isnan(value))


def _nullable(values: np.ndarray, undefined: np.ndarray) -> pd.arrays.BooleanArray:
    return pd.array(np.where(undefined, None, values), dtype="boolean")


def outcome_rates(
    outcomes: pd.DataFrame,
    outcome: str,
    *,
    by: Sequence[str] = ("dose_mg_per_kg", "timepoint"),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Proportion of ``outcome`` (a boolean column, e.g. ``madrs_total_response``) per group.

    NA outcomes are excluded from n. CIs are Wilson score intervals at level 1 − ``alpha``
    (statsmodels ``proportion_confint``). Columns: the ``by`` columns, ``outcome``, ``n``,
    ``n_events``, ``rate``, ``ci_low``, ``ci_high``, ``ci_method``.
    """
    by = list(by)
    missing_cols = [c for c in [*by, outcome] if c not in outcomes.columns]
    if missing_cols:
        raise InputError(
            f"outcomes table has no {', '.join(missing_cols)} column(s)",
            file=outcomes.attrs.get("source", "<DataFrame>"),
            field=missing_cols[0],
        )
    flags = outcomes[outcome].astype("boolean")
    frame = outcomes[by].assign(_event=flags.astype("Float64"))
    grouped = frame.groupby(by, observed=True, sort=True, dropna=False)["_event"]
    table = grouped.agg(n="count", n_events="sum").reset_index()
    n = table["n"].to_numpy(dtype=np.int64)
    events = table["n_events"].to_numpy(dtype=float).round().astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = proportion_confint(events, np.maximum(n, 1), alpha=alpha, method="wilson")
        rate = np.where(n > 0, events / np.maximum(n, 1), np.nan)
    table["n_events"] = events
    table.insert(len(by), "outcome", outcome)
    table["rate"] = rate
    table["ci_low"] = np.where(n > 0, low, np.nan)
    table["ci_high"] = np.where(n > 0, high, np.nan)
    table["ci_method"] = f"wilson {100 * (1 - alpha):g}%"
    return table
