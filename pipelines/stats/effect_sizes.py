"""Effect sizes of paired (within-subject) comparisons, vectorised: rows of a 2-D input are separate samples
(bootstrap replicates).

- Hedges g_av (Lakens 2013, eq. 10): mean difference over the mean of the two SDs, small-sample corrected;
- matched-pairs rank-biserial correlation (Kerby 2014), zero differences dropped as Wilcoxon's ``zero_method="wilcox"``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sstats


def hedges_g_av(baseline: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Hedges g_av (Lakens 2013, eq. 10): mean(post − baseline) / mean(SD_baseline, SD_post) ×
    (1 − 3 / (4·2n − 9)); rows of a 2-D input are separate samples (bootstrap)."""
    baseline, post = np.atleast_2d(baseline), np.atleast_2d(post)
    n = baseline.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        d_av = (post - baseline).mean(axis=1) / ((baseline.std(axis=1, ddof=1) + post.std(axis=1, ddof=1)) / 2)
    return d_av * (1 - 3 / (4 * 2 * n - 9))


def rank_biserial(diff: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial correlation (Kerby 2014), zero differences dropped as in Wilcoxon's
    ``zero_method='wilcox'``: (R+ − R−)/(R+ + R−); rows of a 2-D input are separate samples."""
    diff = np.atleast_2d(np.asarray(diff, dtype=float))
    a = np.where(diff == 0, np.nan, np.abs(diff))
    ranks = sstats.rankdata(a, axis=1, nan_policy="omit")
    total = np.nansum(ranks, axis=1)
    plus = np.nansum(np.where(diff > 0, ranks, 0.0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (2 * plus - total) / total, np.nan)
