"""Correlation tables (Pearson/Spearman, partial, bootstrap CIs, BH-FDR) and repeated-measures correlation.

Conventions: partial correlations remove covariates from both variables (pingouin ``partial_corr`` semantics: ranks of
all variables for Spearman); p from the t distribution with n - 2 - k degrees of freedom (k covariates), as scipy and
pingouin; bootstrap CIs resample rows with replacement ``n_boot`` times, seeded (numpy ``default_rng(seed)``; the same
draws for every pair of equal n), percentile interval (numpy linear interpolation) over the finite replicates.
Rows are treated as independent: for sessions of one person use :mod:`pipelines.stats.association`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from .multiple_comparisons import fdr_bh

CORRELATION_COLUMNS = [
    "x",
    "y",
    "method",
    "n",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "significant_fdr",
    "covariates",
    "n_boot",
    "seed",
]


# Bootstrap work arrays are cut into chunks of about this many numbers to bound memory.
_BOOT_CHUNK_VALUES = 4_000_000


def _batched_partial_r(samples: np.ndarray) -> np.ndarray:
    """Correlation of columns 0 and 1 of each sample (B, n, p), partialling out columns 2…p-1.

    Pearson on whatever the columns hold (pass ranks for Spearman). Partial correlation from the
    pseudo-inverse of the correlation matrix, as pingouin ``partial_corr``. Degenerate samples
    (a constant column) give NaN.
    """
    centred = samples - samples.mean(axis=1, keepdims=True)
    cov = np.einsum("bni,bnj->bij", centred, centred)
    sd = np.sqrt(np.einsum("bii->bi", cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / sd[:, :, None] / sd[:, None, :]
        if samples.shape[2] == 2:
            r = corr[:, 0, 1]
        else:
            ok = np.isfinite(corr).all(axis=(1, 2))
            r = np.full(len(samples), np.nan)
            if ok.any():
                precision = np.linalg.pinv(corr[ok], hermitian=True)
                r[ok] = -precision[:, 0, 1] / np.sqrt(precision[:, 0, 0] * precision[:, 1, 1])
    r = np.where(np.isfinite(r), np.clip(r, -1.0, 1.0), np.nan)
    return r


def _prepare(values: np.ndarray, method: str, axis: int) -> np.ndarray:
    return sps.rankdata(values, axis=axis) if method == "spearman" else values


def _r_p_value(r: float, n: int, k: int) -> float:
    """Two-sided p of a (partial) correlation from t with n − 2 − k degrees of freedom."""
    dof = n - 2 - k
    if not np.isfinite(r) or dof < 1:
        return np.nan
    if abs(r) >= 1:
        return 0.0
    t = r * np.sqrt(dof / (1 - r * r))
    return float(2 * sps.t.sf(abs(t), dof))


def _bootstrap_r(values: np.ndarray, method: str, n_boot: int, seed: int) -> np.ndarray:
    n, p = values.shape
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_VALUES // max(1, n * p))
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        index = rng.integers(0, n, size=(size, n))
        samples = _prepare(values[index], method, axis=1)
        replicates[start : start + size] = _batched_partial_r(samples)
    return replicates


def _percentile_ci(replicates: np.ndarray, ci: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 2:
        return np.nan, np.nan
    tail = 100 * (1 - ci) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _one_correlation(values: np.ndarray, method: str, n_boot: int, ci: float, seed: int) -> dict:
    n, p = values.shape
    k = p - 2
    if n - 2 - k < 1:
        return {"n": n, "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    r = float(_batched_partial_r(_prepare(values, method, axis=0)[None])[0])
    low, high = (
        _percentile_ci(_bootstrap_r(values, method, n_boot, seed), ci)
        if n_boot > 0 and np.isfinite(r)
        else (np.nan, np.nan)
    )
    return {"n": n, "estimate": r, "ci_low": low, "ci_high": high, "p": _r_p_value(r, n, k)}


def _numeric_columns(data: pd.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in data.columns:
            raise KeyError(f"column {column!r} not in data")
        if not (pd.api.types.is_numeric_dtype(data[column]) and not pd.api.types.is_bool_dtype(data[column])):
            raise TypeError(f"column {column!r} must be numeric, is {data[column].dtype}")


def correlation_table(
    data: pd.DataFrame,
    x: list[str],
    y: list[str],
    method: str = "spearman",
    covariates: list[str] | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    group: str | None = None,
) -> pd.DataFrame:
    """Correlate every column of ``x`` with every column of ``y`` (per level of ``group``).

    ``method`` "spearman" or "pearson"; with ``covariates`` a partial correlation (both variables
    adjusted; equals pingouin ``partial_corr``). Rows with NaN in x, y or a covariate are dropped per
    pair (``n`` is what remains). CI: bootstrap percentile at level ``ci`` over ``n_boot`` seeded
    resamples of rows (covariates resampled with them). ``p_fdr``: Benjamini–Hochberg across every
    row returned; ``significant_fdr`` = ``p_fdr <= fdr_alpha`` (as statsmodels ``multipletests``).

    Columns: x, y, [group,] method, n, estimate, ci_low, ci_high, p, p_fdr, significant_fdr,
    covariates ("none" or comma-separated), n_boot, seed. Pairs with x == y are skipped.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError("method must be 'spearman' or 'pearson'")
    if not 0 < ci < 1:
        raise ValueError("ci must be in (0, 1)")
    x, y = _as_list(x), _as_list(y)
    covariates = _as_list(covariates) if covariates else []
    overlap = set(covariates) & (set(x) | set(y))
    if overlap:
        raise ValueError(f"covariates also among x/y: {sorted(overlap)}")
    _numeric_columns(data, [*x, *y, *covariates])
    if group is not None and group not in data.columns:
        raise KeyError(f"group column {group!r} not in data")

    groups = (
        [(None, data)]
        if group is None
        else [(level, part) for level, part in data.groupby(group, sort=True, observed=True)]
    )
    rows = []
    for level, part in groups:
        for x_col in x:
            for y_col in y:
                if x_col == y_col:
                    continue
                values = part[[x_col, y_col, *covariates]].to_numpy(dtype=float, na_value=np.nan)
                values = values[~np.isnan(values).any(axis=1)]
                row = {"x": x_col, "y": y_col}
                if group is not None:
                    row["group"] = level
                row["method"] = method
                row.update(_one_correlation(values, method, n_boot, ci, seed))
                rows.append(row)
    columns = CORRELATION_COLUMNS if group is None else ["x", "y", "group", *CORRELATION_COLUMNS[2:]]
    table = pd.DataFrame(
        rows, columns=[c for c in columns if c not in ("p_fdr", "significant_fdr", "covariates", "n_boot", "seed")]
    )
    table["p_fdr"] = fdr_bh(table["p"].to_numpy(dtype=float))
    table["significant_fdr"] = table["p_fdr"].to_numpy() <= fdr_alpha
    table["covariates"] = ", ".join(covariates) if covariates else "none"
    table["n_boot"] = n_boot
    table["seed"] = seed
    table["n"] = table["n"].astype(np.int64)
    table.attrs.update(
        {
            "ci": ci,
            "ci_method": "bootstrap percentile",
            "fdr": "Benjamini-Hochberg",
            "fdr_alpha": fdr_alpha,
            "group": group,
        }
    )
    return table[columns]


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _rm_not_estimable(x_col: str, y_col: str, part: pd.DataFrame, subject: str) -> dict:
    nan = float("nan")
    n_repeated = int((part.groupby(subject).size() >= 2).sum())
    return {
        "x": x_col,
        "y": y_col,
        "method": "rm_corr",
        "n": len(part),
        "n_subjects": part[subject].nunique(),
        "estimate": nan,
        "ci_low": nan,
        "ci_high": nan,
        "p": nan,
        "dof": 0,
        "note": f"not estimable: {n_repeated} subject(s) with 2+ observations; a within-subject correlation "
        "needs repeated observations of the same people",
    }


def rm_correlation(data: pd.DataFrame, x, y, subject: str, fdr_alpha: float = 0.05) -> pd.DataFrame:
    """Repeated-measures correlation (Bakdash & Marusich 2017) via pingouin ``rm_corr``.

    ``x`` and ``y`` may be column names or lists (every pair, BH-FDR across them). Rows with NaN in
    x, y or subject are dropped per pair. CI: pingouin's 95 % Fisher-z CI with n = dof + 2, not rounded
    (pingouin rounds it to 2 decimals). Columns: x, y, method, n (observations), n_subjects, estimate,
    ci_low, ci_high, p, p_fdr, significant_fdr, dof, note. With one observation per subject (no within-subject
    variation: a parallel or single-session design) the row is NaN and ``note`` says why, instead of an error.
    """
    import pingouin as pg  # heavy import kept out of module import

    rows = []
    for x_col in _as_list(x):
        for y_col in _as_list(y):
            if x_col == y_col:
                continue
            _numeric_columns(data, [x_col, y_col])
            part = data[[x_col, y_col, subject]].dropna()
            if len(part) - part[subject].nunique() - 1 < 1:
                # One observation per subject (a parallel or single-session design): no within-subject slope.
                rows.append(_rm_not_estimable(x_col, y_col, part, subject))
                continue
            result = pg.rm_corr(data=part, x=x_col, y=y_col, subject=subject)
            r, dof = float(result["r"].iloc[0]), int(result["dof"].iloc[0])
            # pingouin rounds its CI to 2 decimals; the same Fisher-z interval (n = dof + 2), unrounded.
            half = sps.norm.ppf(0.975) / np.sqrt(dof + 2 - 3) if dof > 1 else np.nan
            low, high = np.tanh(np.arctanh(r) - half), np.tanh(np.arctanh(r) + half)
            rows.append(
                {
                    "x": x_col,
                    "y": y_col,
                    "method": "rm_corr",
                    "n": len(part),
                    "n_subjects": part[subject].nunique(),
                    "estimate": float(result["r"].iloc[0]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p": float(result["pval"].iloc[0]),
                    "dof": int(result["dof"].iloc[0]),
                    "note": "",
                }
            )
    table = pd.DataFrame(
        rows, columns=["x", "y", "method", "n", "n_subjects", "estimate", "ci_low", "ci_high", "p", "dof", "note"]
    )
    table.insert(9, "p_fdr", fdr_bh(table["p"].to_numpy(dtype=float)))
    table.insert(10, "significant_fdr", table["p_fdr"].to_numpy() <= fdr_alpha)
    return table
