"""The tidy result row every inference routine returns (column order fixed here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

ROW_COLUMNS = [
    "routine",
    "quantity",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "n_subjects",
    "n_obs",
    "method",
    "convention",
]


def make_row(
    routine: str,
    quantity: str,
    estimate,
    interval: dict | None,
    n_subjects: int,
    n_obs: int,
    method: str,
    convention: str,
    **extra,
) -> dict:
    interval = interval or {}
    row = {
        "routine": routine,
        "quantity": quantity,
        "estimate": float(estimate) if estimate is not None else np.nan,
        "ci_low": float(interval.get("ci_low", np.nan)),
        "ci_high": float(interval.get("ci_high", np.nan)),
        "p": float(interval.get("p", np.nan)),
        "n_subjects": int(n_subjects),
        "n_obs": int(n_obs),
        "method": method,
        "convention": convention,
    }
    for key in ("se_boot", "n_boot_finite"):
        if key in interval:
            row[key] = interval[key]
    row.update(extra)
    return row


def table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    rest = [c for c in frame.columns if c not in ROW_COLUMNS]
    return frame[ROW_COLUMNS + rest]


def complete_rows(df: pd.DataFrame, columns: list[str], numeric: list[str]) -> pd.DataFrame:
    """The rows of ``df`` complete in ``columns``; ``numeric`` columns must be numeric."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in data (have {list(df.columns)})")
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise TypeError(f"column {column!r} must be numeric, is {df[column].dtype}")
    return df[columns].dropna().reset_index(drop=True)
