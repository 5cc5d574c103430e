"""Linear mixed models as tidy fixed-effect tables (statsmodels MixedLM)."""

from __future__ import annotations

import re

import pandas as pd


def mixed_model(data: pd.DataFrame, formula: str, groups: str, reml: bool = True, ci: float = 0.95) -> pd.DataFrame:
    """Linear mixed model with a random intercept per ``groups`` (statsmodels MixedLM).

    Rows with NaN in any column named in the formula or in ``groups`` are dropped. Fitted by REML
    (``reml=False`` for ML, to compare fixed-effect structures by likelihood). CI: Wald, normal
    quantile, at level ``ci``; p: Wald z. One row per fixed effect: term, estimate, se, ci_low,
    ci_high, z, p, n, n_groups, method, formula, converged.
    """
    import statsmodels.formula.api as smf  # heavy import kept out of module import

    if groups not in data.columns:
        raise KeyError(f"groups column {groups!r} not in data")
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula)) & set(data.columns)
    used = data[sorted(named | {groups})].dropna()
    model = smf.mixedlm(formula, used, groups=used[groups])
    fit = model.fit(reml=reml)
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
    table["method"] = f"MixedLM {'REML' if reml else 'ML'}, random intercept per {groups}, Wald {100 * ci:g}% CI"
    table["formula"] = formula
    table["converged"] = bool(fit.converged)
    return table
