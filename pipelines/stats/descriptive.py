"""Descriptive summaries: grouped means with t-based confidence intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps


def mean_t_ci(data: pd.DataFrame, by: list[str], value: str, dropna_groups: bool = True) -> pd.DataFrame:
    """n, mean, SD and t-based 95 % CI of ``value`` per group of ``by`` (NaN values left out; NaN CI for n = 1);
    ``dropna_groups=False`` keeps groups whose key is NaN (e.g. no dose for a per-subject mood table)."""
    table = (
        data.dropna(subset=[value])
        .groupby(by, sort=False, dropna=dropna_groups)[value]
        .agg(n="count", mean="mean", sd="std")
        .reset_index()
    )
    half = sps.t.ppf(0.975, np.maximum(table["n"] - 1, 1)) * table["sd"] / np.sqrt(table["n"])
    table["ci_low"], table["ci_high"] = table["mean"] - half, table["mean"] + half
    table["ci_method"] = "t 95%"
    return table
