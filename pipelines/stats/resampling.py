"""Subject-cluster bootstrap machinery shared by the inference routines.

Resampling unit: the subject. A bootstrap replicate draws ``n_subjects`` subjects with replacement
(a seeded numpy ``Generator``); a subject drawn k times enters every sum k times. Every statistic
here is a function of per-subject sums (cross-product matrices of person-mean-centred variables,
or subject means), so a whole bootstrap is one weighted sum: ``W @ per_subject`` with ``W`` the
(n_boot × n_subjects) matrix of draw counts (Field & Welsh 2007, "Bootstrapping clustered data",
JRSS-B 69:369 — the "cluster" bootstrap; Davison & Hinkley 1997, §3.8). Person-mean centring is
unchanged by resampling subjects (a subject's mean is its own), so centring is done once.

Intervals (``interval=``):

- ``"se_t"`` (default): bootstrap-SE interval on a stated scale (Fisher z for correlations, identity
  for slopes) with a t quantile on n_subjects − 1 degrees of freedom and the small-cluster factor
  √(G/(G−1)) on the SE; p is the matching Wald-t p. The t(G−1) reference and the G/(G−1) factor are
  the few-cluster corrections of Cameron & Miller 2015 (J Hum Resour 50:317, §VI); without them a
  12-subject bootstrap is anti-conservative (calibration: docs/statistics.md).
- ``"percentile"``: percentile interval over the finite replicates; p is the bootstrap sign
  proportion 2·min(P*(θ* ≤ 0), P*(θ* ≥ 0)) with the +1 correction (Davison & Hinkley 1997, §4.4).

- bootstrap-t (:func:`bootstrap_t_interval`, used where a per-resample cluster-robust SE is cheap,
  i.e. linear estimators): the reference distribution of t = θ̂/se is that of t* = (θ* − θ̂)/se* over
  resamples; symmetric percentile-t interval θ̂ ± q_{ci}(|t*|)·se and p = (1 + #{|t*| ≥ |t|})/(B + 1)
  (Hall 1992, *The Bootstrap and Edgeworth Expansion*; Cameron, Gelbach & Miller 2008, Rev Econ Stat
  90:414). It is second-order accurate where the bootstrap-SE interval is not, which matters with
  12 subjects and random slopes (calibration).

Einsum without BLAS is used for the weighted sums so results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "bootstrap_t_interval",
    "cluster_weights",
    "interval_from_replicates",
    "per_subject_crossproducts",
    "subject_codes",
    "within_centre",
]

INTERVALS = ("se_t", "percentile")


def subject_codes(subjects: pd.Series) -> tuple[np.ndarray, int]:
    """Integer code 0…G−1 per row (order of first appearance after sorting labels) and G."""
    codes, uniques = pd.factorize(subjects, sort=True)
    if (codes < 0).any():
        raise ValueError("subject column has missing values")
    return codes.astype(np.intp), len(uniques)


def cluster_weights(n_subjects: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot × n_subjects) draw counts of a subject-cluster bootstrap (each row sums to G)."""
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_boot).astype(float)


def within_centre(values: np.ndarray, codes: np.ndarray, n_subjects: int) -> np.ndarray:
    """Person-mean centring of the columns of ``values`` (n × p): value minus its subject's mean."""
    values = np.asarray(values, dtype=float)
    two_d = values.reshape(len(values), -1)
    sums = np.zeros((n_subjects, two_d.shape[1]))
    np.add.at(sums, codes, two_d)
    counts = np.bincount(codes, minlength=n_subjects).astype(float)
    centred = two_d - (sums / counts[:, None])[codes]
    return centred.reshape(values.shape)


def per_subject_crossproducts(centred: np.ndarray, codes: np.ndarray, n_subjects: int) -> np.ndarray:
    """(G × p × p) within-subject cross-product matrices Σ_j z_ij z_ijᵀ of centred columns."""
    out = np.zeros((n_subjects, centred.shape[1], centred.shape[1]))
    np.add.at(out, codes, np.einsum("ni,nj->nij", centred, centred))
    return out


def interval_from_replicates(
    estimate: float,
    replicates: np.ndarray,
    n_subjects: int,
    ci: float = 0.95,
    interval: str = "se_t",
    scale: str = "identity",
) -> dict:
    """CI, p and bootstrap SE for ``estimate`` from subject-cluster bootstrap ``replicates``.

    ``scale`` "fisher_z" works on arctanh (for correlations) and maps the interval back. Returns
    ci_low, ci_high, p, se_boot (on the working scale), n_boot_finite.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, not {interval!r}")
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    out = {"ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "se_boot": np.nan, "n_boot_finite": int(reps.size)}
    if reps.size < 20 or not np.isfinite(estimate) or n_subjects < 3:
        return out
    if interval == "percentile":
        tail = 100 * (1 - ci) / 2
        out["ci_low"], out["ci_high"] = np.percentile(reps, [tail, 100 - tail])
        below, above = (reps <= 0).sum(), (reps >= 0).sum()
        out["p"] = float(min(1.0, 2 * (min(below, above) + 1) / (reps.size + 1)))
        out["se_boot"] = float(reps.std(ddof=1))
        return out
    if scale == "fisher_z":
        # Clip so |r| = 1 replicates (a degenerate resample) stay finite on the z scale.
        forward = lambda r: np.arctanh(np.clip(r, -0.999999, 0.999999))
        back = np.tanh
    elif scale == "identity":
        forward = back = lambda v: v
    else:
        raise ValueError(f"unknown scale {scale!r}")
    centre, work = forward(estimate), forward(reps)
    dof = n_subjects - 1
    se = float(work.std(ddof=1) * np.sqrt(n_subjects / (n_subjects - 1)))
    half = sps.t.ppf(0.5 + ci / 2, dof) * se
    out["ci_low"], out["ci_high"] = float(back(centre - half)), float(back(centre + half))
    out["p"] = float(2 * sps.t.sf(abs(centre) / se, dof)) if se > 0 else np.nan
    out["se_boot"] = se
    return out


def bootstrap_t_interval(
    estimate: float, se: float, replicates: np.ndarray, se_replicates: np.ndarray, ci: float = 0.95
) -> dict:
    """Symmetric percentile-t interval and p from resampled (estimate, SE) pairs (see module docstring)."""
    reps, ses = np.asarray(replicates, dtype=float), np.asarray(se_replicates, dtype=float)
    ok = np.isfinite(reps) & np.isfinite(ses) & (ses > 0)
    out = {"ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "se_boot": np.nan, "n_boot_finite": int(ok.sum())}
    if ok.sum() < 20 or not (np.isfinite(estimate) and np.isfinite(se) and se > 0):
        return out
    t_star = np.abs((reps[ok] - estimate) / ses[ok])
    q = float(np.quantile(t_star, ci))
    out["ci_low"], out["ci_high"] = estimate - q * se, estimate + q * se
    out["p"] = float((1 + np.sum(t_star >= abs(estimate) / se)) / (ok.sum() + 1))
    out["se_boot"] = float(reps[ok].std(ddof=1))
    return out
