"""1-1-1 within-subject mediation: x → m → y, all measured in every session, sessions nested in subjects.

Model (1-1-1 multilevel mediation; Bauer, Preacher & Gil 2006, Psychol Methods 11:142; Zhang, Zyphur &
Preacher 2009, Organ Res Methods 12:695). Every level-1 variable is person-mean centred (centring
within cluster, CWC), so the paths are *within-subject* paths and a subject trait that shifts a
subject's mean mediator and mean outcome cannot enter them:

    a path:   m̃_ij = a·x̃_ij + Σ κ·c̃_ij + e_ij
    b, c':    ỹ_ij = b·m̃_ij + c'·x̃_ij + Σ λ·c̃_ij + u_ij
    total c:  ỹ_ij = c·x̃_ij + Σ μ·c̃_ij + v_ij           (z̃ = z − z̄_subject; c̃ = covariates, e.g. period dummies)

fitted by OLS on the centred variables, i.e. with subject fixed intercepts (for the within slopes this
equals CWC with the subject mean as a level-2 predictor, Zhang et al. 2009). Convention: the within-subject
indirect effect is a×b, the product of the average within-subject paths (Zhang et al. 2009's within
indirect effect). Bauer et al. 2006 add cov(a_j, b_j) when both paths vary randomly across subjects; that
term is NOT included (it is not identified from a few sessions per subject). Random variation of the
paths across subjects is carried into the interval by the subject-cluster bootstrap.

Inference: subject-cluster bootstrap (subjects resampled with replacement, seeded numpy Generator; all
paths of a resample from one weighted sum of per-subject cross-product matrices). Paths a, b, c, c':
bootstrap SE × √(G/(G−1)) with t(G−1). Indirect a×b: ``indirect_interval`` "percentile" (default;
the product's sampling distribution is skewed, Preacher & Selig 2012) with the bootstrap sign p, or
"se_t". Calibration: docs/statistics.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import resampling as rs
from ._rows import complete_rows, make_row, table
from .association import _design_columns

__all__ = ["within_subject_mediation"]


def _coef(cross: np.ndarray, predictors: list[int], target: int, column: int) -> np.ndarray:
    """OLS coefficient of predictors[column] for ``target`` from cross-product matrices (…, p, p)."""
    gram = cross[..., predictors, :][..., :, predictors]
    moment = cross[..., predictors, target]
    if gram.ndim == 2:
        return np.linalg.solve(gram, moment)[column]
    with np.errstate(invalid="ignore"):
        return np.einsum("bij,bj->bi", np.linalg.pinv(gram, hermitian=True), moment)[:, column]


def within_subject_mediation(
    df: pd.DataFrame,
    x: str,
    m: str,
    y: str,
    subject: str,
    covariates: Sequence[str] = (),
    categorical: Sequence[str] = (),
    *,
    n_boot: int = 499,
    ci: float = 0.95,
    seed: int = 0,
    indirect_interval: str = "percentile",
) -> pd.DataFrame:
    """Within-subject paths a, b, c', c and indirect effect a×b with subject-cluster bootstrap CIs.

    Rows (quantity): "a", "b", "c_prime", "c_total", "indirect". ``covariates`` numeric, ``categorical``
    dummy-coded (e.g. period); both person-mean centred; covariates constant within subjects are
    dropped (reported). Extra columns: path, covariates_used, covariates_dropped, n_boot, seed, x, m, y.
    """
    covariates, categorical = list(covariates), list(categorical)
    data = complete_rows(df, [subject, x, m, y, *covariates, *categorical], [x, m, y, *covariates])
    codes, n_subj = rs.subject_codes(data[subject])
    centred, used, dropped = _centred_mediation_columns(data, x, m, y, covariates, categorical, codes, n_subj)
    n_obs = len(data)
    specs, estimates, replicates = _mediation_paths(centred, codes, n_subj, n_boot, seed, x, m, y)

    base = (
        "1-1-1 within-subject mediation: person-mean-centred x, m, y (and covariates), OLS with "
        "subject fixed intercepts (Zhang, Zyphur & Preacher 2009 CWC within paths)"
    )
    boot_note = f"subject-cluster bootstrap ({n_boot} resamples of {n_subj} subjects)"
    common = {
        "covariates_used": ", ".join(used) or "none",
        "covariates_dropped": ", ".join(dropped) or "none",
        "n_boot": n_boot,
        "seed": seed,
        "x": x,
        "m": m,
        "y": y,
    }
    rows = []
    for name, (_, _, _, description) in specs.items():
        rows.append(
            make_row(
                "within_subject_mediation",
                name,
                estimates[name],
                rs.interval_from_replicates(estimates[name], replicates[name], n_subj, ci, "se_t"),
                n_subj,
                n_obs,
                f"{boot_note}, bootstrap-SE t(G-1) interval",
                f"{base}; path {description}",
                path=description,
                **common,
            )
        )
    rows.append(
        make_row(
            "within_subject_mediation",
            "indirect",
            estimates["indirect"],
            rs.interval_from_replicates(estimates["indirect"], replicates["indirect"], n_subj, ci, indirect_interval),
            n_subj,
            n_obs,
            f"{boot_note}, {indirect_interval} interval",
            f"{base}; within-subject indirect effect = a*b, product of the average within-subject paths; "
            "the Bauer, Preacher & Gil (2006) cov(a_j, b_j) term is not included",
            path=f"a*b ({x} -> {m} -> {y}, within)",
            **common,
        )
    )
    return table(rows)


def _centred_mediation_columns(data, x, m, y, covariates, categorical, codes, n_subj):
    """Person-mean-centred x, m, y and the covariates that vary within subjects; their names, and the names of
    those dropped (constant within subjects)."""
    extra, names = _design_columns(data, covariates, categorical)
    centred = rs.within_centre(np.column_stack([data[[x, m, y]].to_numpy(float), extra]), codes, n_subj)
    scale = np.abs(centred).max(axis=0)
    keep_extra = [j for j in range(3, centred.shape[1]) if scale[j] > 1e-10 * max(1.0, np.abs(extra[:, j - 3]).max())]
    used = [names[j - 3] for j in keep_extra]
    dropped = [n for n in names if n not in used]
    return centred[:, [0, 1, 2, *keep_extra]], used, dropped


def _mediation_paths(centred, codes, n_subj, n_boot, seed, x, m, y):
    """Paths a, b, c', c and a*b in the sample and in every subject-cluster resample; also each path's
    (predictors, target, column of interest, description)."""
    cols = list(range(3, centred.shape[1]))
    X, M, Y = 0, 1, 2
    cross = rs.per_subject_crossproducts(centred, codes, n_subj)
    total = cross.sum(axis=0)
    weights = rs.cluster_weights(n_subj, n_boot, np.random.default_rng(seed))
    boot = np.einsum("bs,sij->bij", weights, cross)

    specs = {  # quantity: (predictors, target, column of interest, description)
        "a": ([X, *cols], M, 0, f"{m} ~ {x} (within)"),
        "b": ([M, X, *cols], Y, 0, f"{y} ~ {m} | {x} (within)"),
        "c_prime": ([M, X, *cols], Y, 1, f"{y} ~ {x} | {m} (within, direct)"),
        "c_total": ([X, *cols], Y, 0, f"{y} ~ {x} (within, total)"),
    }
    estimates, replicates = {}, {}
    for name, (predictors, target, column, _) in specs.items():
        estimates[name] = float(_coef(total, predictors, target, column))
        replicates[name] = _coef(boot, predictors, target, column)
    estimates["indirect"] = estimates["a"] * estimates["b"]
    replicates["indirect"] = replicates["a"] * replicates["b"]
    return specs, estimates, replicates
