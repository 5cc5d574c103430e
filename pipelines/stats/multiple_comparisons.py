"""Multiple comparisons: Benjamini-Hochberg across the whole family returned, NaN p-values excluded."""

from __future__ import annotations

import numpy as np


def fdr_bh(pvals) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (same shape as ``pvals``).

    NaN p-values stay NaN and do not count in the number of tests. Equals statsmodels
    ``multipletests(method="fdr_bh")[1]`` on the non-NaN values.
    """
    p = np.asarray(pvals, dtype=float)
    flat = p.reshape(-1)
    finite = ~np.isnan(flat)
    values = flat[finite]
    if ((values < 0) | (values > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(flat.shape, np.nan)
    m = values.size
    if m:
        order = np.argsort(values, kind="stable")
        scaled = values[order] * m / np.arange(1, m + 1)
        # Step-up: each adjusted p is the smallest scaled p at or above its rank.
        monotone = np.minimum.accumulate(scaled[::-1])[::-1]
        result = np.empty(m)
        result[order] = np.minimum(monotone, 1.0)
        adjusted[finite] = result
    return adjusted.reshape(p.shape)
