"""Shared statistics, returned as tidy tables (one row per test: estimate, CI, p, FDR-adjusted p, n,
method). Used by the peak-experience/mood analysis and the cytokine analysis; the public signatures
are a contract, keep them.

Conventions:
- correlations: Pearson or Spearman (average ranks for ties); partial correlations remove covariates
  from both variables (pingouin ``partial_corr`` semantics: ranks of all variables for Spearman);
  p from the t distribution with n − 2 − k degrees of freedom (k covariates), as scipy and pingouin.
- bootstrap CIs: rows resampled with replacement, ``n_boot`` times, seeded (numpy
  ``default_rng(seed)``; the same draws for every pair of equal n, so results do not depend on the
  order of the family); percentile interval (numpy linear interpolation) over the finite replicates.
- multiple comparisons: Benjamini–Hochberg across the whole family returned, NaN p-values excluded.
- displayed p-values: :func:`format_p`, the one formatter every report and summary text uses (tables keep
  the raw float ``p``/``p_fdr`` columns).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "P_FLOOR",
    "correlation_table",
    "fdr_bh",
    "format_p",
    "mediation",
    "mixed_model",
    "paired_contrast",
    "rm_correlation",
]

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


# Smallest p-value written as a number; anything below is "p < 0.001" (APA 7th ed., section 6.36).
P_FLOOR = 0.001


def format_p(p, label: str = "p") -> str:
    """A p-value as report text: ``"p < 0.001"``, ``"p = 0.003"``, ``"p = 0.032"``, ``"p = 0.41"``.

    Convention (one for every report; APA Publication Manual, 7th ed., section 6.36: "report exact p
    values to two or three decimal places ... report p values less than .001 as p < .001"):

    - p < 0.001 → ``"< 0.001"`` (never ``"= 0.0"`` or ``"= 3e-172"``: a p that small only says "very
      small", and an exact 0 is an artefact of floating point or of an asymptotic approximation);
    - 0.001 ≤ p < 0.1 → three decimals (``0.003``, ``0.032``, ``0.046``: values near 0.05 stay
      distinguishable from it);
    - p ≥ 0.1 → two decimals (``0.41``, ``1.00``);
    - NaN, None, ``pd.NA`` or ±inf → ``"n/a"``.

    The range is chosen on the unrounded value, then the shortest decimal of the float is rounded half
    up (0.0625 → ``0.063``). A leading zero is kept (APA omits it; the workbench's reports use it).
    ``label`` is the name written before the relation (``"p_FDR"``, ``"FDR-adjusted p"``). A finite p
    outside [0, 1] is a bug upstream and raises ValueError.
    """
    if p is None or p is pd.NA:
        return f"{label} = n/a"
    if isinstance(p, (str, bytes)):
        raise ValueError(f"format_p: {p!r} is not a number")
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"format_p: {p!r} is not a number") from None
    if not math.isfinite(value):
        return f"{label} = n/a"
    if value < 0 or value > 1:
        raise ValueError(f"format_p: p = {value!r} is outside [0, 1]")
    if value < P_FLOOR:
        return f"{label} < {P_FLOOR:g}"
    places = Decimal("0.001") if value < 0.1 else Decimal("0.01")
    text = Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_UP)
    return f"{label} = {text}"


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


# ---------------------------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------------------------


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


def rm_correlation(data: pd.DataFrame, x, y, subject: str, fdr_alpha: float = 0.05) -> pd.DataFrame:
    """Repeated-measures correlation (Bakdash & Marusich 2017) via pingouin ``rm_corr``.

    ``x`` and ``y`` may be column names or lists (every pair, BH-FDR across them). Rows with NaN in
    x, y or subject are dropped per pair. CI: pingouin's 95 % Fisher-z CI with n = dof + 2, not rounded
    (pingouin rounds it to 2 decimals). Columns: x, y, method, n (observations), n_subjects, estimate,
    ci_low, ci_high, p, p_fdr, significant_fdr, dof.
    """
    import pingouin as pg  # heavy import kept out of module import

    rows = []
    for x_col in _as_list(x):
        for y_col in _as_list(y):
            if x_col == y_col:
                continue
            _numeric_columns(data, [x_col, y_col])
            part = data[[x_col, y_col, subject]].dropna()
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
                }
            )
    table = pd.DataFrame(
        rows, columns=["x", "y", "method", "n", "n_subjects", "estimate", "ci_low", "ci_high", "p", "dof"]
    )
    table.insert(9, "p_fdr", fdr_bh(table["p"].to_numpy(dtype=float)))
    table.insert(10, "significant_fdr", table["p_fdr"].to_numpy() <= fdr_alpha)
    return table


# ---------------------------------------------------------------------------------------------
# Mixed model
# ---------------------------------------------------------------------------------------------


def mixed_model(data: pd.DataFrame, formula: str, groups: str, reml: bool = True, ci: float = 0.95) -> pd.DataFrame:
    """Linear mixed model with a random intercept per ``groups`` (statsmodels MixedLM).

    Rows with NaN in any column named in the formula or in ``groups`` are dropped. Fitted by REML
    (``reml=False`` for ML, to compare fixed-effect structures by likelihood). CI: Wald, normal
    quantile, at level ``ci``; p: Wald z. One row per fixed effect: term, estimate, se, ci_low,
    ci_high, z, p, n, n_groups, method, formula, converged. When the default optimiser (BFGS) does not converge,
    Nelder-Mead then Powell are tried; one is kept only if it converged to at least the same likelihood, and
    ``method`` names it (``converged`` stays False otherwise: never silenced).
    """
    import statsmodels.formula.api as smf  # heavy import kept out of module import

    if groups not in data.columns:
        raise KeyError(f"groups column {groups!r} not in data")
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula)) & set(data.columns)
    used = data[sorted(named | {groups})].dropna()
    model = smf.mixedlm(formula, used, groups=used[groups])
    fit, optimizer = model.fit(reml=reml), "bfgs"
    if not fit.converged:
        # Fallback optimisers (reported in ``method``): gradient methods can stall near a zero subject variance
        # that derivative-free ones pass; a retry counts only if it converged to a likelihood at least as high.
        for method in ("nm", "powell"):
            retry = model.fit(reml=reml, method=method)
            if retry.converged and np.isfinite(retry.llf) and retry.llf >= fit.llf - 1e-9:
                fit, optimizer = retry, f"{method} (bfgs did not converge)"
                break
    fixed = fit.fe_params.index
    interval = fit.conf_int(alpha=1 - ci).loc[fixed]
    table = pd.DataFrame(
        {
            "term": list(fixed),
            "estimate": fit.fe_params.to_numpy(),
            "se": fit.bse_fe.to_numpy(),
            "ci_low": interval.iloc[:, 0].to_numpy(),
            "ci_high": interval.iloc[:, 1].to_numpy(),
            "z": fit.tvalues.loc[fixed].to_numpy(),
            "p": fit.pvalues.loc[fixed].to_numpy(),
        }
    )
    table["n"] = int(fit.nobs)
    table["n_groups"] = int(used[groups].nunique())
    table["method"] = f"MixedLM {'REML' if reml else 'ML'}, random intercept per {groups}, Wald {100 * ci:g}% CI" + (
        "" if optimizer == "bfgs" else f", optimizer {optimizer}"
    )
    table["formula"] = formula
    table["converged"] = bool(fit.converged)
    return table


# ---------------------------------------------------------------------------------------------
# Mediation
# ---------------------------------------------------------------------------------------------


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
    _numeric_columns(data, [x, m, y, *covariates])
    values = data[[x, m, y, *covariates]].to_numpy(dtype=float, na_value=np.nan)
    values = values[~np.isnan(values).any(axis=1)]
    n = len(values)
    if n < len(covariates) + 4:
        raise ValueError(f"mediation needs at least {len(covariates) + 4} complete rows, has {n}")
    xv, mv, yv, cv = values[:, 0], values[:, 1], values[:, 2], values[:, 3:]
    ones = np.ones((n, 1))
    design_x = np.column_stack([ones, xv, cv])  # [1, x, covariates]
    design_xm = np.column_stack([ones, xv, mv, cv])  # [1, x, m, covariates]
    quantile = lambda dof: sps.t.ppf(0.5 + ci / 2, dof)

    def path(name, description, design, target, column):
        coef, se, dof = _ols(design, target)
        t = coef[column] / se[column]
        half = quantile(dof) * se[column]
        return {
            "path": name,
            "description": description,
            "estimate": coef[column],
            "se": se[column],
            "ci_low": coef[column] - half,
            "ci_high": coef[column] + half,
            "p": 2 * sps.t.sf(abs(t), dof),
        }

    rows = [
        path("a", f"{m} ~ {x}", design_x, mv, 1),
        path("b", f"{y} ~ {m} | {x}", design_xm, yv, 2),
        path("c", f"{y} ~ {x} (total)", design_x, yv, 1),
        path("c_prime", f"{y} ~ {x} | {m} (direct)", design_xm, yv, 1),
    ]
    indirect = rows[0]["estimate"] * rows[1]["estimate"]

    # Same draws as pingouin.mediation_analysis (legacy RandomState), so results can be compared.
    index = np.random.RandomState(seed).choice(np.arange(n), replace=True, size=(n_boot, n))
    replicates = np.empty(n_boot)
    chunk = max(1, _BOOT_CHUNK_VALUES // max(1, n * design_xm.shape[1]))
    for start in range(0, n_boot, chunk):
        idx = index[start : start + chunk]
        a_star = _batched_coef(design_x[idx], mv[idx], 1)
        b_star = _batched_coef(design_xm[idx], yv[idx], 2)
        replicates[start : start + len(idx)] = a_star * b_star
    tail = (1 - ci) / 2
    if ci_method == "percentile":
        low, high = np.percentile(replicates, [100 * tail, 100 * (1 - tail)])
    else:
        # Bias-corrected percentile (Efron 1982), without acceleration, as pingouin.
        z0 = sps.norm.ppf(np.mean(replicates < indirect))
        levels = sps.norm.cdf(2 * z0 + sps.norm.ppf([tail, 1 - tail])) * 100
        low, high = np.percentile(replicates, levels)
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


PAIRED_CONVENTION = (
    "within-subject contrast: difference b − a per subject (subjects with both conditions only); "
    "mean difference with a t-based 95 % CI and paired t-test p; Wilcoxon signed-rank p (zero "
    "differences dropped); Hedges g_av = mean difference / mean of the two SDs × (1 − 3/(8n − 9)) "
    "(Lakens 2013, eq. 10)"
)


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
    sd_mean = (x.std(ddof=1) + y.std(ddof=1)) / 2
    if n > 2 and sd_mean > 0:
        row["hedges_g_av"] = float(mean / sd_mean * (1 - 3 / (8 * n - 9)))
    return row
