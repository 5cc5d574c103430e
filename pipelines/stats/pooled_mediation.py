"""Row-resampled mediation with a pooled b path: the old analysis, kept only as the calibration suite's comparator
(it is miscalibrated for repeated sessions; reports use :func:`pipelines.stats.mediation.within_subject_mediation`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .correlation import _BOOT_CHUNK_VALUES, _as_list, _numeric_columns


def _ols(design: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS coefficients, their standard errors (residual variance with n − p dof) and dof."""
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    dof = design.shape[0] - design.shape[1]
    residual = target - design @ coef
    sigma2 = residual @ residual / dof
    se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(design.T @ design)))
    return coef, se, dof


def _batched_coef(design: np.ndarray, target: np.ndarray, column: int) -> np.ndarray:
    """Coefficient ``column`` of OLS fits of (B, n) targets on (B, n, p) designs."""
    gram = np.einsum("bni,bnj->bij", design, design)
    moment = np.einsum("bni,bn->bi", design, target)
    try:
        return np.linalg.solve(gram, moment[..., None])[:, column, 0]
    except np.linalg.LinAlgError:
        return np.einsum("bij,bj->bi", np.linalg.pinv(gram), moment)[:, column]


def mediation(
    data: pd.DataFrame,
    x: str,
    m: str,
    y: str,
    covariates: list[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    ci_method: str = "percentile",
) -> pd.DataFrame:
    """Single-mediator model x → m → y (Baron & Kenny paths; indirect effect a·b, Preacher & Hayes
    2008 bootstrap).

    Paths (OLS, each with the covariates): a = m ~ x; b = y ~ m adjusting for x; c = y ~ x (total);
    c' = y ~ x adjusting for m (direct); indirect = a·b. Paths a, b, c, c' have t-based CIs and
    p-values (n − p dof). The indirect effect has a bootstrap CI over ``n_boot`` resamples of rows,
    ``ci_method`` "percentile" or "bias_corrected" (pingouin's; resampling indices are drawn as
    pingouin ``mediation_analysis`` draws them, ``np.random.RandomState(seed)``, so with the same
    seed the bootstrap distributions are identical), its se is the bootstrap SD (ddof=1) and its p
    is the bootstrap two-sided sign proportion 2·min(P(ab* > 0), P(ab* < 0)) (as pingouin).

    Note pingouin's row "Y ~ M" is y regressed on m *without* x; ``b`` here adjusts for x (the b
    used in a·b by both). Columns: path, description, estimate, se, ci_low, ci_high, p, n, ci_method,
    n_boot, seed, x, m, y, covariates.
    """
    if ci_method not in ("percentile", "bias_corrected"):
        raise ValueError("ci_method must be 'percentile' or 'bias_corrected'")
    covariates = _as_list(covariates)
    values = _complete_rows(data, [x, m, y, *covariates], len(covariates) + 4)
    n = len(values)
    xv, mv, yv, cv = values[:, 0], values[:, 1], values[:, 2], values[:, 3:]
    ones = np.ones((n, 1))
    design_x = np.column_stack([ones, xv, cv])  # [1, x, covariates]
    design_xm = np.column_stack([ones, xv, mv, cv])  # [1, x, m, covariates]
    rows = [
        _path("a", f"{m} ~ {x}", design_x, mv, 1, ci),
        _path("b", f"{y} ~ {m} | {x}", design_xm, yv, 2, ci),
        _path("c", f"{y} ~ {x} (total)", design_x, yv, 1, ci),
        _path("c_prime", f"{y} ~ {x} | {m} (direct)", design_xm, yv, 1, ci),
    ]
    indirect = rows[0]["estimate"] * rows[1]["estimate"]
    replicates = _bootstrap_indirect(design_x, design_xm, mv, yv, n_boot, seed)
    low, high = _indirect_ci(replicates, indirect, ci, ci_method)
    p_boot = 1.0 if indirect == 0 else min(1.0, 2 * min((replicates > 0).sum(), (replicates < 0).sum()) / n_boot)
    rows.append(
        {
            "path": "indirect",
            "description": f"a*b ({x} -> {m} -> {y})",
            "estimate": indirect,
            "se": replicates.std(ddof=1),
            "ci_low": low,
            "ci_high": high,
            "p": p_boot,
        }
    )
    table = pd.DataFrame(rows)
    table["n"] = n
    table["ci_method"] = ["t"] * 4 + [f"bootstrap {ci_method.replace('_', '-')}"]
    table["n_boot"] = [0] * 4 + [n_boot]
    table["seed"] = seed
    table["x"], table["m"], table["y"] = x, m, y
    table["covariates"] = ", ".join(covariates) if covariates else "none"
    return table


def _complete_rows(data: pd.DataFrame, columns: list[str], minimum: int) -> np.ndarray:
    """The numeric values of ``columns`` in the rows where none is missing; at least ``minimum`` rows."""
    _numeric_columns(data, columns)
    values = data[columns].to_numpy(dtype=float, na_value=np.nan)
    values = values[~np.isnan(values).any(axis=1)]
    n = len(values)
    if n < minimum:
        raise ValueError(f"mediation needs at least {minimum} complete rows, has {n}")
    return values


def _path(name: str, description: str, design: np.ndarray, target: np.ndarray, column: int, ci: float) -> dict:
    """One path's OLS coefficient with its se, t CI and two-sided p (n − p dof)."""
    coef, se, dof = _ols(design, target)
    t = coef[column] / se[column]
    half = sps.t.ppf(0.5 + ci / 2, dof) * se[column]
    return {
        "path": name,
        "description": description,
        "estimate": coef[column],
        "se": se[column],
        "ci_low": coef[column] - half,
        "ci_high": coef[column] + half,
        "p": 2 * sps.t.sf(abs(t), dof),
    }


def _bootstrap_indirect(
    design_x: np.ndarray, design_xm: np.ndarray, mv: np.ndarray, yv: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """a*·b* of ``n_boot`` resamples of rows, fitted in chunks."""
    n = len(mv)
    # Same draws as pingouin.mediation_analysis (legacy RandomState), so results can be compared.
    index = np.random.RandomState(seed).choice(np.arange(n), replace=True, size=(n_boot, n))
    replicates = np.empty(n_boot)
    chunk = max(1, _BOOT_CHUNK_VALUES // max(1, n * design_xm.shape[1]))
    for start in range(0, n_boot, chunk):
        idx = index[start : start + chunk]
        a_star = _batched_coef(design_x[idx], mv[idx], 1)
        b_star = _batched_coef(design_xm[idx], yv[idx], 2)
        replicates[start : start + len(idx)] = a_star * b_star
    return replicates


def _indirect_ci(replicates: np.ndarray, indirect: float, ci: float, ci_method: str) -> tuple[float, float]:
    """Percentile or bias-corrected percentile bootstrap CI of the indirect effect."""
    tail = (1 - ci) / 2
    if ci_method == "percentile":
        low, high = np.percentile(replicates, [100 * tail, 100 * (1 - tail)])
    else:
        # Bias-corrected percentile (Efron 1982), without acceleration, as pingouin.
        z0 = sps.norm.ppf(np.mean(replicates < indirect))
        levels = sps.norm.cdf(2 * z0 + sps.norm.ppf([tail, 1 - tail])) * 100
        low, high = np.percentile(replicates, levels)
    return low, high
