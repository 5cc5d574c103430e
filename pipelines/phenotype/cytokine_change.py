"""Paired change of cytokines from baseline to a later time point, per session x stratum x analyte.
Conventions: :mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sstats

from pipelines.phenotype.cytokine_censoring import (
    STRATEGIES,
    STRATEGY_DESCRIPTIONS,
    censored_normal_mle,
    ln_bounds,
    substitute_censored,
    value_bounds,
)
from pipelines.stats.effect_sizes import hedges_g_av, rank_biserial

#: How a change baseline → post is expressed: the natural-log ratio ln(post/baseline) (default; exp() of a
#: mean is the geometric-mean fold change) or the absolute difference post − baseline in the analyte's unit.
CHANGE_SCALES = ("ln_ratio", "difference")
CHANGE_SCALE_TEXT = {
    "ln_ratio": "ln(post/baseline) (natural log; exp(mean) = geometric-mean fold change)",
    "difference": "post − baseline in the analyte's unit (absolute difference)",
}


def _pairs(parsed: pd.DataFrame, baseline: str, post: str, analytes) -> pd.DataFrame:
    """One row per subject-session-analyte with both time points' value/censoring/limit."""
    missing = [t for t in (baseline, post) if t not in set(parsed["timepoint"])]
    if missing:
        raise ValueError(f"time point(s) {missing} not in the table (have {sorted(set(parsed['timepoint']))})")
    data = parsed if analytes is None else parsed[parsed["analyte"].isin(list(analytes))]
    columns = ["participant_id", "session_id", "analyte", "value", "censoring", "limit"]
    base = data.loc[data["timepoint"] == baseline, columns]
    after = data.loc[data["timepoint"] == post, columns]
    pairs = base.merge(after, on=["participant_id", "session_id", "analyte"], suffixes=("_baseline", "_post"))
    present = (pairs["censoring_baseline"] != "missing") & (pairs["censoring_post"] != "missing")
    return pairs[present].reset_index(drop=True)


def log_change_table(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Per subject-session-analyte ``ln_baseline``, ``ln_post``, ``ln_change`` = ln(post) − ln(baseline)
    after substitution (``strategy`` must be a substitution), with ``any_censored``; ``value_baseline``,
    ``value_post`` (the analyte's unit) and ``change`` on ``scale`` (:data:`CHANGE_SCALES`: ``ln_change`` or
    post − baseline), with ``change_scale``."""
    if scale not in CHANGE_SCALES:
        raise ValueError(f"scale must be one of {CHANGE_SCALES}, not {scale!r}")
    sub = substitute_censored(parsed, strategy)
    pairs = _pairs(sub.assign(value=sub["value_substituted"]), baseline, post, analytes)
    pairs["ln_baseline"] = np.log(pairs["value_baseline"])
    pairs["ln_post"] = np.log(pairs["value_post"])
    pairs["ln_change"] = pairs["ln_post"] - pairs["ln_baseline"]
    pairs["any_censored"] = (pairs["censoring_baseline"] != "observed") | (pairs["censoring_post"] != "observed")
    pairs["strategy"] = strategy
    pairs["change"] = pairs["ln_change"] if scale == "ln_ratio" else pairs["value_post"] - pairs["value_baseline"]
    pairs["change_scale"] = scale
    return pairs[
        [
            "participant_id",
            "session_id",
            "analyte",
            "ln_baseline",
            "ln_post",
            "ln_change",
            "value_baseline",
            "value_post",
            "change",
            "change_scale",
            "any_censored",
            "strategy",
        ]
    ]


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences ``d`` (zeros dropped, ``zero_method="wilcox"``),
    equal to ``scipy.stats.wilcoxon(d, zero_method="wilcox").pvalue``.

    With ties or zeros and n ≤ 13, scipy computes the exact sign-flip permutation p with a Python-level
    statistic per flip (~1 s per call, and substituted censored values make ties common); here the same
    permutation test runs vectorised: flipping signs leaves the ranks of |d| unchanged, so R+ of every flip
    is a sum of fixed ranks.
    """
    d = np.asarray(d, dtype=float)
    nonzero = np.abs(d[d != 0])
    if d.size > 13 or (nonzero.size == d.size and np.unique(nonzero).size == nonzero.size):
        return float(sstats.wilcoxon(d, zero_method="wilcox").pvalue)
    ranks = np.zeros(d.size)
    ranks[d != 0] = sstats.rankdata(nonzero)

    def r_plus(x, axis=-1):
        return np.sum(np.where(x > 0, ranks, 0.0), axis=axis)

    result = sstats.permutation_test(
        (d,), r_plus, permutation_type="samples", vectorized=True, n_resamples=np.inf, alternative="two-sided"
    )
    return float(result.pvalue)


def _percentile_ci(samples: np.ndarray, ci: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(samples, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def _substitution_stats(ln_base, ln_post, n_censored, *, n_boot, ci, seed) -> dict:
    d = ln_post - ln_base
    n = d.size
    row = {"n": n, "n_censored": n_censored, "n_uninformative": 0}
    # Every statistic starts as NaN (filled below when the sample allows it): the columns after the counts.
    nan_keys = _CHANGE_COLUMNS[_CHANGE_COLUMNS.index("n_uninformative") + 1 :]
    row.update(dict.fromkeys(nan_keys, math.nan))
    if n == 0:
        return row
    row["estimate"] = float(d.mean())
    if n < 2:
        return row
    sd = float(d.std(ddof=1))
    half = sstats.t.ppf(0.5 + ci / 2, n - 1) * sd / math.sqrt(n)
    row.update(sd_change=sd, ci_low=row["estimate"] - half, ci_high=row["estimate"] + half)
    if sd > 0:
        row["p_ttest"] = float(sstats.ttest_1samp(d, 0.0).pvalue)
    if np.any(d != 0):
        row["p_wilcoxon"] = wilcoxon_p(d)
    row["hedges_g_av"] = float(hedges_g_av(ln_base, ln_post)[0]) if n >= 3 else math.nan
    row["rank_biserial"] = float(rank_biserial(d)[0])
    if n >= 3 and n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        row["g_ci_low"], row["g_ci_high"] = _percentile_ci(hedges_g_av(ln_base[idx], ln_post[idx]), ci)
        row["rb_ci_low"], row["rb_ci_high"] = _percentile_ci(rank_biserial(d[idx]), ci)
    return row


def _mle_stats(pairs: pd.DataFrame, *, ci, scale: str = "ln_ratio") -> dict:
    bounds = ln_bounds if scale == "ln_ratio" else value_bounds
    lo_b, hi_b = bounds(pairs.rename(columns=lambda c: c.removesuffix("_baseline")))
    lo_p, hi_p = bounds(pairs.rename(columns=lambda c: c.removesuffix("_post")))
    with np.errstate(invalid="ignore"):
        lower, upper = lo_p - hi_b, hi_p - lo_b
    fit = censored_normal_mle(lower, upper, ci=ci)
    row = dict.fromkeys(
        ("p_wilcoxon", "p_ttest", "hedges_g_av", "g_ci_low", "g_ci_high", "rank_biserial", "rb_ci_low", "rb_ci_high"),
        math.nan,
    )
    row.update(
        n=fit["n"],
        n_censored=fit["n_censored"],
        n_uninformative=fit["n_uninformative"],
        estimate=fit["mean"],
        ci_low=fit["ci_low"],
        ci_high=fit["ci_high"],
        sd_change=fit["sd"],
        p_mle=fit["p"],
    )
    return row


def _fdr_within(table: pd.DataFrame, family: Sequence[str], alpha: float) -> pd.DataFrame:
    from pipelines.stats import fdr_bh

    table = table.copy()
    table["p_fdr"] = np.nan
    for _, idx in table.groupby(list(family), sort=False).groups.items():
        table.loc[idx, "p_fdr"] = fdr_bh(table.loc[idx, "p"].to_numpy(dtype=float))  # NaN p stays NaN
    table["significant_fdr"] = table["p_fdr"] <= alpha
    return table


def _attach_strata(data: pd.DataFrame, strata: pd.DataFrame | None) -> pd.DataFrame:
    if strata is None:
        return data.assign(stratum="all")
    on = [c for c in ("participant_id", "session_id") if c in strata.columns]
    if "participant_id" not in on or "stratum" not in strata.columns:
        raise ValueError("strata needs participant_id (optionally session_id) and stratum columns")
    if strata.duplicated(on).any():
        raise ValueError(f"strata has duplicate rows for {on}")
    merged = data.merge(strata[[*on, "stratum"]], on=on, how="left")
    merged["stratum"] = merged["stratum"].fillna("unassigned")
    return merged


def paired_change(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    strata: pd.DataFrame | None = None,
    primary_test: str = "wilcoxon",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Paired ln-change ``baseline`` → ``post`` per session × stratum × analyte, one tidy row each.

    ``scale="difference"`` expresses every change as post − baseline in the analyte's unit instead (estimate,
    CIs, effect sizes; fold-change columns NaN; censored_mle then fits normal differences whose censored
    members are bounded by 0 and the limit). The scale is stated in ``change_scale`` and ``estimand``.

    ``estimate`` = mean ln(post/baseline) (natural log; ``fold_change`` = exp) with a t CI, or the
    censored-likelihood estimate and Wald CI for ``strategy="censored_mle"``. Substitution strategies
    also give ``p_wilcoxon`` (scipy signed-rank, zeros dropped), ``p_ttest`` (paired t), Hedges ``g_av``
    and the matched-pairs ``rank_biserial`` with seeded percentile-bootstrap CIs. ``p`` is the
    ``primary_test`` p-value ("wilcoxon" or "ttest"; the likelihood-ratio p for censored_mle) and
    ``p_fdr`` its BH adjustment across analytes within each session × stratum. With ``strata`` (from
    :func:`inflammation_strata`) each stratum gets rows, plus ``stratum="all"``. Sessions are analysed
    separately: a subject contributes one pair per session row.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if primary_test not in ("wilcoxon", "ttest"):
        raise ValueError("primary_test must be 'wilcoxon' or 'ttest'")
    if scale not in CHANGE_SCALES:
        raise ValueError(f"scale must be one of {CHANGE_SCALES}, not {scale!r}")
    pairs = _stratified_pairs(parsed, baseline, post, strategy, analytes, strata)
    rows = _change_rows(pairs, strategy, scale, n_boot=n_boot, ci=ci, seed=seed)
    table = pd.DataFrame.from_records(rows, columns=_CHANGE_COLUMNS)
    if strategy == "censored_mle":
        table["p"] = table["p_mle"]
    else:
        table["p"] = table["p_wilcoxon" if primary_test == "wilcoxon" else "p_ttest"]
    table = _fdr_within(table, ["session_id", "stratum"], fdr_alpha)
    for col in ("estimate", "ci_low", "ci_high"):
        table[col.replace("estimate", "fold_change").replace("ci_", "fold_ci_")] = (
            np.exp(table[col]) if scale == "ln_ratio" else np.nan
        )
    table["baseline"], table["post"], table["strategy"] = baseline, post, strategy
    table["change_scale"] = scale
    table["estimand"] = (
        "mean of ln(post/baseline); exp() = geometric-mean fold change"
        if scale == "ln_ratio"
        else "mean of (post − baseline), in the analyte's unit"
    )
    table["method"] = _change_method(strategy, primary_test, n_boot, seed)
    return table.reset_index(drop=True)


#: The statistics columns of :func:`paired_change`, in order (its method columns follow).
_CHANGE_COLUMNS = [
    "analyte",
    "session_id",
    "stratum",
    "n",
    "n_censored",
    "n_uninformative",
    "estimate",
    "ci_low",
    "ci_high",
    "sd_change",
    "p_wilcoxon",
    "p_ttest",
    "p_mle",
    "hedges_g_av",
    "g_ci_low",
    "g_ci_high",
    "rank_biserial",
    "rb_ci_low",
    "rb_ci_high",
]


def _stratified_pairs(parsed, baseline, post, strategy, analytes, strata) -> pd.DataFrame:
    """The baseline/post pairs (substituted unless censored_mle) with their stratum; with strata, stacked on a
    copy labelled ``all``."""
    if strategy == "censored_mle":
        pairs = _pairs(parsed, baseline, post, analytes)
    else:
        sub = substitute_censored(parsed, strategy)
        pairs = _pairs(sub.assign(value=sub["value_substituted"]), baseline, post, analytes)
    pairs = _attach_strata(pairs, strata)
    if strata is not None:
        pairs = pd.concat([pairs, pairs.assign(stratum="all")], ignore_index=True)
    return pairs


def _change_rows(pairs: pd.DataFrame, strategy: str, scale: str, *, n_boot: int, ci: float, seed: int) -> list[dict]:
    """One row of change statistics per session × stratum × analyte."""
    transform = np.log if scale == "ln_ratio" else (lambda v: v)
    rows = []
    for (session, stratum, analyte), group in pairs.groupby(["session_id", "stratum", "analyte"], sort=False):
        censored = int(((group["censoring_baseline"] != "observed") | (group["censoring_post"] != "observed")).sum())
        if strategy == "censored_mle":
            stats_row = _mle_stats(group, ci=ci, scale=scale)
        else:
            stats_row = _substitution_stats(
                transform(group["value_baseline"].to_numpy(float)),
                transform(group["value_post"].to_numpy(float)),
                censored,
                n_boot=n_boot,
                ci=ci,
                seed=seed,
            )
        rows.append({"analyte": analyte, "session_id": session, "stratum": stratum, **stats_row})
    return rows


def _change_method(strategy: str, primary_test: str, n_boot: int, seed: int) -> str:
    """How :func:`paired_change` estimated and tested, in one line."""
    test = (
        "likelihood-ratio test"
        if strategy == "censored_mle"
        else {"wilcoxon": "Wilcoxon signed-rank", "ttest": "paired t"}[primary_test]
    )
    return f"{STRATEGY_DESCRIPTIONS[strategy]}; p from {test}; BH-FDR across analytes within session x stratum; " + (
        "Wald CI"
        if strategy == "censored_mle"
        else f"t CI; effect-size CIs: percentile bootstrap n_boot={n_boot}, seed={seed}"
    )


def sensitivity_comparison(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategies: Sequence[str] = STRATEGIES,
    **kwargs,
) -> pd.DataFrame:
    """:func:`paired_change` under each censoring strategy, stacked into one tidy table (column ``strategy``)."""
    return pd.concat(
        [paired_change(parsed, baseline, post, strategy=s, **kwargs) for s in strategies], ignore_index=True
    )
