"""Within- and between-subject effects of a session-level predictor on an outcome (e.g. integration therapy
inside the 24–48 h window → mood improvement), and within-subject moderation.

Model (the within/between decomposition; Neuhaus & Kalbfleisch 1998, Biometrics 54:638; Curran & Bauer 2011,
Annu Rev Psychol 62:583): y_ij = β_W (x_ij − x̄_i) + β_B x̄_i + γ'(z_ij − z̄_i) + u_i + e_ij.

* **within** β_W: OLS on person-mean-centred outcome, predictor and covariates (equal to the subject
  fixed-effects estimate, so any stable subject trait — severity, therapist, a tendency to schedule therapy
  early — cannot confound it). Interval and p: wild cluster bootstrap-t of the cluster-robust t, Webb's
  six-point weights per subject (Cameron, Gelbach & Miller 2008, Rev Econ Stat 90:414; Webb 2023, Can J Econ
  56:1110), symmetric percentile-t (:func:`pipelines.stats.resampling.bootstrap_t_interval`).  With 12
  subjects, resampling subjects (pairs) gave intervals three times as wide and the bootstrap-SE interval
  under-covered.
* **between** β_B: OLS of subject means of the outcome on subject means of the predictor (and covariates),
  t-based with G − k − 1 degrees of freedom (subjects are independent). Confounded by subject traits: the
  trait-level association, not the effect of timing.
* **moderation**: the within coefficient of predictor × moderator, the moderator centred on its sample mean,
  with both main effects in the model (all person-mean centred).

Every row states its convention; the subject is the resampling unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._rows import complete_rows, make_row, table
from .resampling import bootstrap_t_interval, per_subject_crossproducts, subject_codes, within_centre

__all__ = ["within_between_effect", "within_moderation"]

WITHIN_CONVENTION = (
    "within-subject effect: OLS on person-mean-centred outcome, predictor and covariates (= subject "
    "fixed effects); wild cluster bootstrap-t (Webb weights per subject) of the cluster-robust t"
)
BETWEEN_CONVENTION = (
    "between-subject effect: OLS of subject means of the outcome on subject means of the predictor "
    "and covariates; t with G − k − 1 df; confounded by subject traits (description of traits)"
)
MODERATION_CONVENTION = (
    "within-subject moderation: coefficient of predictor × (moderator − sample mean) with both "
    "main effects, all person-mean centred; wild cluster bootstrap-t (Webb weights per subject)"
)


def _within_fit(per_subject: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Within-subject OLS of column 0 on columns 1.. and its cluster-robust SEs, from per-subject cross-products
    (G × p × p) and optional bootstrap draw counts (B × G); shapes (B × k). NaN where singular.

    A subject's score at β is X_gᵀy_g − X_gᵀX_g β, so the sandwich needs only the cross-products; the small-cluster
    factor G/(G−1) is applied (Cameron & Miller 2015)."""
    weights = np.ones((1, per_subject.shape[0])) if weights is None else weights
    n_subjects = per_subject.shape[0]
    sxx_g, sxy_g = per_subject[:, 1:, 1:], per_subject[:, 1:, 0]
    sxx = np.einsum("bg,gij->bij", weights, sxx_g)
    sxy = np.einsum("bg,gi->bi", weights, sxy_g)
    beta = np.full(sxy.shape, np.nan)
    se = np.full(sxy.shape, np.nan)
    scale = np.abs(sxx).max(axis=(-2, -1))
    ok = np.abs(np.linalg.det(sxx / np.maximum(scale, 1e-300)[:, None, None])) > 1e-10
    if not ok.any():
        return beta, se
    beta[ok] = np.linalg.solve(sxx[ok], sxy[ok][..., None])[..., 0]
    scores = sxy_g[None, :, :] - np.einsum("gij,bj->bgi", sxx_g, np.where(ok[:, None], beta, 0.0))
    meat = np.einsum("bg,bgi,bgj->bij", weights, scores, scores) * n_subjects / (n_subjects - 1)
    bread = np.full(sxx.shape, np.nan)
    bread[ok] = np.linalg.inv(sxx[ok])
    cov = np.einsum("bij,bjk,bkl->bil", bread, meat, bread)
    se[ok] = np.sqrt(np.clip(np.diagonal(cov[ok], axis1=-2, axis2=-1), 0.0, None))
    return beta, se


WEBB_WEIGHTS = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


def _within(
    data: pd.DataFrame, outcome: str, predictors: list[str], subject: str, target: int, n_boot: int, seed: int
) -> tuple[float, dict, int, int]:
    """Within estimate of predictor ``target`` with a wild cluster bootstrap-t interval (see the module docstring).

    Each resample keeps every subject and its design, and multiplies the subject's residuals by one draw of
    Webb's six-point distribution: y*_g = X_g β̂ + w_g ê_g.  In cross-product form the subject's score becomes
    w_g s_g, so β* = β̂ + Sxx⁻¹ Σ_g w_g s_g and its scores w_g s_g − Sxx_g (β* − β̂): no data are re-centred."""
    codes, n_subjects = subject_codes(data[subject])
    values = data[[outcome, *predictors]].to_numpy(float)
    centred = within_centre(values, codes, n_subjects)
    per_subject = per_subject_crossproducts(centred, codes, n_subjects)
    beta, se = _within_fit(per_subject)
    beta, se = beta[0], se[0]
    if not np.isfinite(beta[target]):
        return float("nan"), {}, n_subjects, len(data)
    sxx_g, sxy_g = per_subject[:, 1:, 1:], per_subject[:, 1:, 0]
    scores = sxy_g - sxx_g @ beta  # (G × k) subject scores at β̂
    bread = np.linalg.inv(sxx_g.sum(axis=0))
    weights = np.random.default_rng(seed).choice(WEBB_WEIGHTS, size=(n_boot, n_subjects))
    shift = np.einsum("kl,bg,gl->bk", bread, weights, scores)  # β* − β̂
    new_scores = weights[:, :, None] * scores[None] - np.einsum("gkl,bl->bgk", sxx_g, shift)
    meat = np.einsum("bgk,bgl->bkl", new_scores, new_scores) * n_subjects / (n_subjects - 1)
    se_star = np.sqrt(np.clip(np.einsum("kl,blm,mk->bk", bread, meat, bread), 0.0, None))
    interval = bootstrap_t_interval(
        float(beta[target]), float(se[target]), beta[target] + shift[:, target], se_star[:, target]
    )
    return float(beta[target]), interval, n_subjects, len(data)


def within_between_effect(
    df: pd.DataFrame,
    outcome: str,
    predictor: str,
    subject: str,
    covariates: Sequence[str] = (),
    n_boot: int = 1999,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows ``within`` and ``between`` for ``predictor`` → ``outcome`` (see the module docstring)."""
    covariates = [c for c in covariates if c != predictor]
    data = complete_rows(df, [subject, outcome, predictor, *covariates], [outcome, predictor, *covariates])
    # A covariate constant within every subject carries no within information (and would make the fit singular).
    varying = [c for c in covariates if data.groupby(subject)[c].nunique().max() > 1]
    rows = []
    if data.groupby(subject)[predictor].nunique().max() > 1:
        estimate, interval, g, n = _within(data, outcome, [predictor, *varying], subject, 0, n_boot, seed)
        rows.append(
            make_row(
                "within_between_effect",
                "within",
                estimate,
                interval,
                g,
                n,
                "wild cluster bootstrap-t",
                WITHIN_CONVENTION,
                covariates=", ".join(varying) or "none",
            )
        )
    else:
        rows.append(
            make_row(
                "within_between_effect",
                "within",
                np.nan,
                None,
                data[subject].nunique(),
                len(data),
                "not estimable",
                WITHIN_CONVENTION + "; the predictor does not vary within any subject",
                covariates=", ".join(varying) or "none",
            )
        )
    means = data.groupby(subject)[[outcome, predictor, *covariates]].mean()
    between_covs = [c for c in covariates if means[c].nunique() > 1]
    x = np.column_stack([np.ones(len(means)), means[[predictor, *between_covs]].to_numpy(float)])
    y = means[outcome].to_numpy(float)
    dof = len(means) - x.shape[1]
    interval, estimate = None, np.nan
    if dof >= 1 and np.linalg.matrix_rank(x) == x.shape[1]:
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        resid = y - x @ coef
        cov = (resid @ resid / dof) * np.linalg.inv(x.T @ x)
        estimate, se = float(coef[1]), float(np.sqrt(cov[1, 1]))
        half = sps.t.ppf(0.975, dof) * se
        interval = {
            "ci_low": estimate - half,
            "ci_high": estimate + half,
            "p": float(2 * sps.t.sf(abs(estimate / se), dof)) if se > 0 else np.nan,
        }
    rows.append(
        make_row(
            "within_between_effect",
            "between",
            estimate,
            interval,
            len(means),
            len(data),
            "OLS on subject means",
            BETWEEN_CONVENTION,
            covariates=", ".join(between_covs) or "none",
        )
    )
    return table(rows)


def within_moderation(
    df: pd.DataFrame,
    outcome: str,
    predictor: str,
    moderator: str,
    subject: str,
    covariates: Sequence[str] = (),
    n_boot: int = 1999,
    seed: int = 0,
) -> pd.DataFrame:
    """One row: the within-subject predictor × moderator interaction (see the module docstring)."""
    covariates = [c for c in covariates if c not in (predictor, moderator)]
    data = complete_rows(
        df, [subject, outcome, predictor, moderator, *covariates], [outcome, predictor, moderator, *covariates]
    ).copy()
    data["_interaction"] = data[predictor] * (data[moderator] - data[moderator].mean())
    varying = [c for c in covariates if data.groupby(subject)[c].nunique().max() > 1]
    terms = ["_interaction", predictor, moderator, *varying]
    if data.groupby(subject)["_interaction"].nunique().max() < 2:
        return table(
            [
                make_row(
                    "within_moderation",
                    f"{predictor} × {moderator}",
                    np.nan,
                    None,
                    data[subject].nunique(),
                    len(data),
                    "not estimable",
                    MODERATION_CONVENTION + "; the interaction does not vary within any subject",
                    moderator=moderator,
                )
            ]
        )
    estimate, interval, g, n = _within(data, outcome, terms, subject, 0, n_boot, seed)
    return table(
        [
            make_row(
                "within_moderation",
                f"{predictor} × {moderator}",
                estimate,
                interval,
                g,
                n,
                "wild cluster bootstrap-t",
                MODERATION_CONVENTION,
                moderator=moderator,
                covariates=", ".join(varying) or "none",
            )
        ]
    )
