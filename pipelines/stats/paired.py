"""Paired within-subject contrasts between two conditions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from .effect_sizes import hedges_g_av

PAIRED_CONVENTION = (
    "within-subject contrast: difference b − a per subject (subjects with both conditions only); "
    "mean difference with a t-based 95 % CI and paired t-test p; Wilcoxon signed-rank p (zero "
    "differences dropped); Hedges g_av = mean difference / mean of the two SDs × (1 − 3/(8n − 9)) "
    "(Lakens 2013, eq. 10)"
)


def paired_contrast(
    data: pd.DataFrame, value: str, condition: str, subject: str, a: str, b: str, ci: float = 0.95
) -> dict:
    """One tidy row for the within-subject contrast ``b − a`` of ``value`` (see ``PAIRED_CONVENTION``).

    Subjects with only one of the two conditions are counted in ``n_unpaired`` and left out, never silently:
    the subject, not the recording, is the unit."""
    wide = data.pivot_table(index=subject, columns=condition, values=value, aggfunc="mean")
    for level in (a, b):
        if level not in wide.columns:
            raise ValueError(f"paired_contrast: no {condition} {level!r} in the data; levels: {list(wide.columns)}")
    both = wide[[a, b]].dropna()
    n_unpaired = int(len(wide) - len(both))
    x, y = both[a].to_numpy(float), both[b].to_numpy(float)
    n = len(both)
    row = {
        "value": value,
        "a": a,
        "b": b,
        "n_subjects": n,
        "n_unpaired": n_unpaired,
        "mean_a": float(np.mean(x)) if n else math.nan,
        "mean_b": float(np.mean(y)) if n else math.nan,
        "mean_difference": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "p_wilcoxon": math.nan,
        "hedges_g_av": math.nan,
        "convention": PAIRED_CONVENTION,
    }
    if n < 2:
        return row
    diff = y - x
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n))
    t_crit = float(sps.t.ppf(0.5 + ci / 2, n - 1))
    row.update(
        mean_difference=mean,
        ci_low=mean - t_crit * se,
        ci_high=mean + t_crit * se,
        p=float(sps.ttest_rel(y, x).pvalue) if se > 0 else math.nan,
    )
    if np.any(diff != 0):
        row["p_wilcoxon"] = float(sps.wilcoxon(y, x, zero_method="wilcox").pvalue)
    if n > 2 and (x.std(ddof=1) + y.std(ddof=1)) > 0:
        row["hedges_g_av"] = float(hedges_g_av(x, y)[0])
    return row
