"""Values below or above the assay's limits of quantification: censoring counts, substitution, interval bounds,
outliers, the kynurenine/tryptophan ratio and the censored-normal (Tobit-style) likelihood.  Conventions:
:mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as sstats

from pipelines.core.errors import InputError
from pipelines.phenotype.cytokine_tables import KEYS
from pipelines.phenotype.cytokine_values import unit_conversion_factor

CENSORING_LEVELS = ("observed", "below", "above", "missing")
SUBSTITUTION_STRATEGIES = ("lloq_half", "lloq_sqrt2")
STRATEGIES = (*SUBSTITUTION_STRATEGIES, "censored_mle")
STRATEGY_DESCRIPTIONS = {
    "lloq_half": "below-LLOQ values replaced by bound/2, above-ULOQ values by the ULOQ",
    "lloq_sqrt2": "below-LLOQ values replaced by bound/sqrt(2), above-ULOQ values by the ULOQ",
    "censored_mle": "left/right/interval-censored normal likelihood on ln-changes (Tobit-style MLE)",
}

KYN_TRP_UNIT = "µmol/mmol"

MAD_TO_SD = 1.4826


def censoring_summary(parsed: pd.DataFrame, by: Sequence[str] = ("analyte", "timepoint")) -> pd.DataFrame:
    """Counts per analyte × time point: ``n`` rows = ``n_observed + n_below + n_above + n_missing``.

    Only rows present in the table are counted (an absent subject is not invented as missing).
    """
    by = list(by)
    counts = (
        pd.crosstab([parsed[c] for c in by], parsed["censoring"])
        .reindex(columns=list(CENSORING_LEVELS), fill_value=0)
        .rename(columns={c: f"n_{c}" for c in CENSORING_LEVELS})
    )
    counts.columns.name = None
    counts.insert(0, "n", counts.sum(axis=1))
    counts["pct_censored"] = 100 * (counts["n_below"] + counts["n_above"]) / counts["n"]
    out = counts.reset_index()
    order = {c: list(dict.fromkeys(parsed[c])) for c in by}
    return out.sort_values(by, key=lambda s: s.map({v: i for i, v in enumerate(order[s.name])})).reset_index(drop=True)


def substitute_censored(parsed: pd.DataFrame, strategy: str = "lloq_half") -> pd.DataFrame:
    """Add ``value_substituted`` (the analyte's unit) and ``strategy``: observed values unchanged, below →
    bound/2 (``lloq_half``) or bound/√2 (``lloq_sqrt2``), above → the bound (ULOQ), missing → NaN."""
    if strategy not in SUBSTITUTION_STRATEGIES:
        raise ValueError(
            f"strategy {strategy!r} is not a substitution; choose from {SUBSTITUTION_STRATEGIES} "
            "(censored_mle is an estimator: use paired_change(strategy='censored_mle') or censored_normal_mle)"
        )
    divisor = 2.0 if strategy == "lloq_half" else math.sqrt(2.0)
    out = parsed.copy()
    cens = out["censoring"]
    out["value_substituted"] = np.select(
        [cens == "observed", cens == "below", cens == "above"],
        [out["value"], out["limit"] / divisor, out["limit"]],
        default=np.nan,
    )
    out["strategy"] = strategy
    return out


def ln_transform(df: pd.DataFrame, column: str = "value_substituted", out: str = "ln_value") -> pd.DataFrame:
    """Add ``out`` = natural log of ``column``; a non-positive value is an error, never -inf or NaN."""
    values = df[column].astype(float)
    bad = values.notna() & (values <= 0)
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise InputError(
            f"{row.get('source', '<table>')}: subject {row['participant_id']}, session {row['session_id']}, "
            f"analyte {row['analyte']}: {column}={row[column]} cannot be log-transformed"
        )
    result = df.copy()
    result[out] = np.log(values)
    return result


def value_bounds(parsed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Interval (lower, upper) of each row on the concentration scale: observed x → (x, x); below L → (0, L);
    above U → (U, +inf); missing → (NaN, NaN)."""
    cens = parsed["censoring"].to_numpy()
    value = parsed["value"].to_numpy(dtype=float)
    limit = parsed["limit"].to_numpy(dtype=float)
    lower = np.select([cens == "observed", cens == "below", cens == "above"], [value, 0.0, limit], np.nan)
    upper = np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan)
    return lower, upper


def ln_bounds(parsed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Natural-log interval (lower, upper) of each row: observed x → (ln x, ln x); below L → (−inf, ln L);
    above U → (ln U, +inf); missing → (NaN, NaN). The input of :func:`censored_normal_mle`."""
    cens = parsed["censoring"].to_numpy()
    value = np.log(parsed["value"].to_numpy(dtype=float))
    limit = np.log(parsed["limit"].to_numpy(dtype=float))
    lower = np.select([cens == "observed", cens == "below", cens == "above"], [value, -np.inf, limit], np.nan)
    upper = np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan)
    return lower, upper


def flag_outliers(
    df: pd.DataFrame, column: str = "ln_value", k: float = 3.5, by: Sequence[str] = ("analyte", "timepoint")
) -> pd.DataFrame:
    """Add ``outlier`` (bool) and ``outlier_reason``: observed values outside median ± k·MAD (MAD × 1.4826)
    of ``column`` within each ``by`` group. Censored values are not judged; nothing is deleted."""
    out = df.copy()
    out["outlier"] = False
    out["outlier_reason"] = ""
    observed = out["censoring"] == "observed"
    for keys, idx in out[observed].groupby(list(by)).groups.items():
        x = out.loc[idx, column].astype(float)
        if x.notna().sum() < 3:
            continue
        median = float(x.median())
        mad = MAD_TO_SD * float((x - median).abs().median())
        if mad == 0:
            continue
        low, high = median - k * mad, median + k * mad
        label = ", ".join(f"{b}={v}" for b, v in zip(by, keys if isinstance(keys, tuple) else (keys,)))
        for i, v in x.items():
            if v > high or v < low:
                side = f"> median + {k}*MAD = {high:.3g}" if v > high else f"< median - {k}*MAD = {low:.3g}"
                out.loc[i, "outlier"] = True
                out.loc[i, "outlier_reason"] = (
                    f"{column}={v:.3g} {side} (median {median:.3g}, scaled MAD {mad:.3g}; {label})"
                )
    return out


def add_kyn_trp_ratio(parsed: pd.DataFrame, kyn: str = "KYN", trp: str = "TRP", name: str = "KYN_TRP") -> pd.DataFrame:
    """Append rows for ``name`` = KYN[µmol/L]/TRP[µmol/L] × 1000 (unit µmol/mmol) per subject-session-timepoint.

    Censoring propagates through the bounds; both members censored so that the ratio's direction is
    undetermined (e.g. both below) gives ``missing``. Mass units for KYN/TRP are an error.
    """
    if name in set(parsed["analyte"]):
        raise ValueError(f"analyte {name!r} already present")
    halves = {}
    for analyte in (kyn, trp):
        part = parsed[parsed["analyte"] == analyte]
        if part.empty:
            raise InputError(f"{parsed.attrs.get('source', '<table>')}: no {analyte} rows for the {name} ratio")
        factors = {}
        for unit in part["unit"].unique():
            try:
                factors[unit] = unit_conversion_factor(unit, "umol/L")
            except ValueError as exc:
                raise InputError(f"{part['source'].iloc[0]}: analyte {analyte}: {exc}") from None
        f = part["unit"].map(factors).astype(float)
        halves[analyte] = part.assign(value=part["value"] * f, limit=part["limit"] * f)[
            [*KEYS, "value", "censoring", "limit", "source"]
        ]
    both = halves[kyn].merge(halves[trp], on=list(KEYS), suffixes=("_k", "_t"))
    rows = []
    for r in both.itertuples(index=False):
        ck, ct = r.censoring_k, r.censoring_t
        # numerator bound and direction, denominator bound and direction -> ratio bound and direction
        value, cens, limit = math.nan, "missing", math.nan
        if "missing" in (ck, ct):
            pass
        elif ck == "observed" and ct == "observed":
            value, cens = r.value_k / r.value_t * 1000, "observed"
        else:
            num = r.value_k if ck == "observed" else r.limit_k
            den = r.value_t if ct == "observed" else r.limit_t
            up = {"observed": 0, "below": -1, "above": 1}
            direction = up[ck] - up[ct]  # numerator below or denominator above -> ratio below
            if direction != 0:  # both censored the same way: direction unknown -> missing
                cens, limit = ("below" if direction < 0 else "above"), num / den * 1000
        rows.append(
            {
                "participant_id": r.participant_id,
                "session_id": r.session_id,
                "timepoint": r.timepoint,
                "analyte": name,
                "value": value,
                "censoring": cens,
                "limit": limit,
                "unit": KYN_TRP_UNIT,
                "n_replicates": 1,
                "n_replicates_censored": int(cens in ("below", "above")),
                "replicate_cv_pct": math.nan,
                "value_raw": "",
                "unit_raw": "",
                "source": f"derived: {kyn}/{trp}*1000 from {r.source_k}",
                "source_rows": "",
            }
        )
    out = pd.concat([parsed, pd.DataFrame.from_records(rows, columns=parsed.columns)], ignore_index=True)
    out.attrs = dict(parsed.attrs)
    return out


# ------------------------------------------------------------------------------ censored MLE
def _log_interval_prob(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """log(Φ(zb) − Φ(za)) for za < zb, computed on the tail where it is accurate."""
    flip = za > 0
    a = np.where(flip, -zb, za)
    b = np.where(flip, -za, zb)
    log_b = special.log_ndtr(b)
    return log_b + np.log1p(-np.exp(np.minimum(special.log_ndtr(a) - log_b, 0.0)) + 1e-300)


def _censored_loglik(mu: float, log_sigma: float, exact, left_upper, right_lower, int_lower, int_upper) -> float:
    sigma = math.exp(log_sigma)
    ll = np.sum(sstats.norm.logpdf(exact, mu, sigma))
    ll += np.sum(special.log_ndtr((left_upper - mu) / sigma))
    ll += np.sum(special.log_ndtr(-(right_lower - mu) / sigma))
    if int_lower.size:
        ll += np.sum(_log_interval_prob((int_lower - mu) / sigma, (int_upper - mu) / sigma))
    return float(ll)


def _hessian(f, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    n = x.size
    h = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * step, np.eye(n)[j] * step
            h[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * step * step)
    return h


def censored_normal_mle(lower, upper, *, ci: float = 0.95, null_mean: float = 0.0) -> dict:
    """Maximum-likelihood mean and SD of a normal sample observed as intervals (Tobit-style).

    Each observation is an interval on the analysis (here: natural-log) scale: ``lower == upper`` exact;
    ``lower = -inf`` left-censored; ``upper = +inf`` right-censored; both finite an interval. Exact values
    contribute the density, censored ones the probability of their interval. Rows with NaN or with
    both ends infinite carry no information and are counted in ``n_uninformative``. Needs ≥ 2 exact
    values. Returns ``mean, sd, se_mean, ci_low, ci_high`` (Wald, observed information), ``p`` (likelihood
    ratio test of mean == ``null_mean``), ``n`` (informative), ``n_exact``, ``n_censored``,
    ``n_uninformative``, ``loglik``, ``converged``.
    """
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if lower.shape != upper.shape:
        raise ValueError("lower and upper must have the same shape")
    if np.any(lower > upper):
        raise ValueError("every interval needs lower <= upper")
    informative = ~(np.isnan(lower) | np.isnan(upper)) & ~(np.isneginf(lower) & np.isposinf(upper))
    lo, hi = lower[informative], upper[informative]
    exact = lo[lo == hi]
    left = hi[np.isneginf(lo) & np.isfinite(hi)]
    right = lo[np.isfinite(lo) & np.isposinf(hi)]
    is_int = np.isfinite(lo) & np.isfinite(hi) & (lo < hi)
    int_lo, int_hi = lo[is_int], hi[is_int]
    result = {
        "mean": math.nan,
        "sd": math.nan,
        "se_mean": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "n": int(informative.sum()),
        "n_exact": int(exact.size),
        "n_censored": int(informative.sum() - exact.size),
        "n_uninformative": int((~informative).sum()),
        "loglik": math.nan,
        "converged": False,
    }
    if exact.size < 2:
        return result
    data = (exact, left, right, int_lo, int_hi)

    def nll(theta):
        return -_censored_loglik(theta[0], theta[1], *data)

    sd0 = float(np.std(exact, ddof=1)) or 1.0
    start = np.array([float(np.mean(exact)), math.log(sd0)])
    fit = optimize.minimize(nll, start, method="BFGS")
    if not fit.success:
        fit = optimize.minimize(
            nll, fit.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 5000}
        )
    theta = fit.x
    cov = np.linalg.pinv(_hessian(nll, theta))
    se = math.sqrt(cov[0, 0]) if cov[0, 0] > 0 else math.nan
    z = sstats.norm.ppf(0.5 + ci / 2)
    null = optimize.minimize_scalar(
        lambda ls: -_censored_loglik(null_mean, ls, *data), bracket=(theta[1] - 1, theta[1] + 1)
    )
    lr = max(2 * (null.fun - fit.fun), 0.0)
    result.update(
        mean=float(theta[0]),
        sd=math.exp(theta[1]),
        se_mean=se,
        ci_low=theta[0] - z * se,
        ci_high=theta[0] + z * se,
        p=float(sstats.chi2.sf(lr, 1)),
        loglik=-float(fit.fun),
        converged=bool(fit.success) and np.isfinite(se),
    )
    return result
