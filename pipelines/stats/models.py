"""Linear mixed models as tidy fixed-effect tables (statsmodels MixedLM)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd


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
