"""Group comparisons where each subject is in one group (parallel arms) or where one group is followed up.

The unit is the subject: every routine takes one row per subject (or per subject and time point for the
mixed model) and refuses a table that repeats a subject where one row is expected.

* :func:`ancova_difference` — arm difference in an outcome adjusted for its baseline (ANCOVA; Vickers &
  Altman 2001, BMJ 323:1123): OLS, t-based CI and p with residual degrees of freedom (exact under normal
  errors, so it needs no small-sample correction).
* :func:`binary_difference` — risk difference with the Newcombe (1998, Stat Med 17:873, method 10) hybrid
  score CI, and the conditional maximum-likelihood odds ratio with its exact CI (scipy
  ``contingency.odds_ratio``, which stays finite-or-bounded with a zero cell); the p-value is Fisher's exact
  test, the test the exact OR interval inverts.
* :func:`change_from_baseline` — a single group's mean change with a t CI and the paired t-test.
* :func:`trajectory_mixed_model` — scores over post-baseline weeks by arm: ``score ~ baseline + C(time) *
  arm`` with a random intercept per subject (REML), the arm difference at each time point and averaged over
  the weeks.  Its Wald z intervals are labelled as such: with few subjects they are the model's, not a
  calibrated test; the calibrated test of the averaged effect is the summary-measure ANCOVA (mean of each
  subject's post-baseline values; Matthews et al. 1990, BMJ 300:230) from :func:`ancova_difference`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._rows import make_row, table

ANCOVA_CONVENTION = (
    "difference of arm means of the outcome adjusted for its baseline (OLS: outcome ~ arm + "
    "baseline), {b} − {a}; t-based 95 % CI and p with n − 3 degrees of freedom; one row per "
    "subject"
)
RD_CONVENTION = (
    "risk difference p_{b} − p_{a}, Newcombe hybrid score 95 % CI (method 10, from Wilson intervals); "
    "p: Fisher's exact test (two-sided)"
)
OR_CONVENTION = (
    "odds ratio {b} vs {a}, conditional maximum-likelihood estimate with exact 95 % CI (scipy "
    "contingency.odds_ratio kind='conditional'); p: Fisher's exact test (two-sided)"
)
CHANGE_CONVENTION = (
    "mean change from baseline (later − baseline; negative = fewer symptoms), t-based 95 % CI, "
    "paired t-test p; d_z = mean change / SD of change"
)
MIXED_CONVENTION = (
    "REML linear mixed model score ~ baseline + C(time) * arm + (1 | subject) over post-baseline "
    "time points; arm difference {b} − {a} per time point and averaged over them; Wald z 95 % CI "
    "(model-based, not calibrated for few subjects: the summary-measure ANCOVA is the test)"
)


def _one_row_per_subject(data: pd.DataFrame, subject: str, what: str) -> None:
    repeated = data[subject].duplicated(keep=False)
    if repeated.any():
        raise ValueError(
            f"{what}: subject {data.loc[repeated, subject].iloc[0]!r} has more than one row; "
            "pass one row per subject (the subject is the unit)"
        )


def _two_levels(data: pd.DataFrame, group: str, reference: str | None) -> tuple[str, list[str]]:
    levels = sorted(data[group].dropna().astype(str).unique())
    if len(levels) < 2:
        raise ValueError(f"{group}: needs 2 or more groups, found {levels}")
    reference = reference if reference is not None else levels[0]
    if reference not in levels:
        raise ValueError(f"{group}: reference {reference!r} is not among {levels}")
    return reference, [level for level in levels if level != reference]


def ancova_difference(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    subject: str,
    baseline: str | None = None,
    reference: str | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Baseline-adjusted difference of ``outcome`` between each group and ``reference`` (rows per group)."""
    columns = [subject, group, outcome] + ([baseline] if baseline else [])
    work = data[columns].dropna().copy()
    _one_row_per_subject(work, subject, "ancova_difference")
    work[group] = work[group].astype(str)
    reference, others = _two_levels(work, group, reference)
    rows = []
    y = work[outcome].to_numpy(float)
    levels = [reference, *others]
    design = [np.ones(len(work))] + [(work[group] == level).to_numpy(float) for level in others]
    if baseline:
        design.append(work[baseline].to_numpy(float) - work[baseline].mean())
    x = np.column_stack(design)
    dof = len(work) - x.shape[1]
    counts = work[group].value_counts()
    if dof >= 1:  # one fit gives every level's difference from the reference
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        residual = y - x @ coef
        cov = float(residual @ residual) / dof * np.linalg.pinv(x.T @ x)
        t_crit = float(sps.t.ppf(0.5 + ci / 2, dof))
    for k, level in enumerate(others, start=1):
        if dof < 1 or counts.get(level, 0) < 1 or counts.get(reference, 0) < 1:
            estimate, interval = math.nan, None
        else:
            estimate, se = float(coef[k]), math.sqrt(max(float(cov[k, k]), 0.0))
            p = float(2 * sps.t.sf(abs(estimate / se), dof)) if se > 0 else math.nan
            interval = {"ci_low": estimate - t_crit * se, "ci_high": estimate + t_crit * se, "p": p}
        rows.append(
            make_row(
                "ancova_difference",
                f"{level} − {reference}",
                estimate,
                interval,
                n_subjects=int(counts.get(level, 0) + counts.get(reference, 0)),
                n_obs=int(counts.get(level, 0) + counts.get(reference, 0)),
                method="OLS ANCOVA" if baseline else "OLS (no baseline)",
                convention=ANCOVA_CONVENTION.format(a=reference, b=level),
                group=level,
                reference=reference,
                outcome=outcome,
                dof=dof,
                mean_reference=float(work.loc[work[group] == reference, outcome].mean()),
                mean_group=float(work.loc[work[group] == level, outcome].mean()),
                levels=", ".join(levels),
            )
        )
    return table(rows)


def newcombe_interval(events_a: int, n_a: int, events_b: int, n_b: int, ci: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p_b − p_a."""
    from statsmodels.stats.proportion import proportion_confint  # the Wilson interval pipelines.phenotype.mood uses

    pa, pb = events_a / n_a, events_b / n_b
    la, ua = proportion_confint(events_a, n_a, alpha=1 - ci, method="wilson")
    lb, ub = proportion_confint(events_b, n_b, alpha=1 - ci, method="wilson")
    diff = pb - pa
    low = diff - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = diff + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return low, high


def binary_difference(
    data: pd.DataFrame, event: str, group: str, subject: str, reference: str | None = None, ci: float = 0.95
) -> pd.DataFrame:
    """Risk difference and odds ratio of a binary ``event`` (True/False, NA left out) for each group vs
    ``reference``: two rows per group (quantity ``risk difference`` and ``odds ratio``)."""
    from scipy.stats.contingency import odds_ratio

    work = data[[subject, group, event]].dropna().copy()
    _one_row_per_subject(work, subject, "binary_difference")
    work[group] = work[group].astype(str)
    work[event] = work[event].astype(bool)
    reference, others = _two_levels(work, group, reference)
    ref = work.loc[work[group] == reference, event]
    rows = []
    for level in others:
        this = work.loc[work[group] == level, event]
        ea, na, eb, nb = int(ref.sum()), len(ref), int(this.sum()), len(this)
        counts = {
            "events_reference": ea,
            "n_reference": na,
            "events_group": eb,
            "n_group": nb,
            "group": level,
            "reference": reference,
            "outcome": event,
        }
        if na == 0 or nb == 0:
            continue
        p = float(sps.fisher_exact([[eb, nb - eb], [ea, na - ea]]).pvalue)
        low, high = newcombe_interval(ea, na, eb, nb, ci)
        rows.append(
            make_row(
                "binary_difference",
                f"risk difference {level} − {reference}",
                eb / nb - ea / na,
                {"ci_low": low, "ci_high": high, "p": p},
                n_subjects=na + nb,
                n_obs=na + nb,
                method="Newcombe hybrid score",
                convention=RD_CONVENTION.format(a=reference, b=level),
                **counts,
            )
        )
        result = odds_ratio([[eb, nb - eb], [ea, na - ea]], kind="conditional")
        interval = result.confidence_interval(confidence_level=ci)
        rows.append(
            make_row(
                "binary_difference",
                f"odds ratio {level} vs {reference}",
                result.statistic,
                {"ci_low": interval.low, "ci_high": interval.high, "p": p},
                n_subjects=na + nb,
                n_obs=na + nb,
                method="conditional MLE, exact CI",
                convention=OR_CONVENTION.format(a=reference, b=level),
                **counts,
            )
        )
    return table(rows) if rows else pd.DataFrame()


def change_from_baseline(data: pd.DataFrame, change: str, subject: str, ci: float = 0.95) -> dict:
    """One row: a single group's mean change (one row per subject), t CI, paired t p, d_z."""
    work = data[[subject, change]].dropna()
    _one_row_per_subject(work, subject, "change_from_baseline")
    values = work[change].to_numpy(float)
    n = len(values)
    interval, dz = None, math.nan
    if n >= 2:
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        se = sd / math.sqrt(n)
        t_crit = float(sps.t.ppf(0.5 + ci / 2, n - 1))
        p = float(2 * sps.t.sf(abs(mean / se), n - 1)) if se > 0 else math.nan
        interval = {"ci_low": mean - t_crit * se, "ci_high": mean + t_crit * se, "p": p}
        dz = mean / sd if sd > 0 else math.nan
    return make_row(
        "change_from_baseline",
        "mean change",
        float(values.mean()) if n else math.nan,
        interval,
        n_subjects=n,
        n_obs=n,
        method="one-sample t",
        convention=CHANGE_CONVENTION,
        d_z=dz,
        outcome=change,
    )


def trajectory_mixed_model(
    data: pd.DataFrame,
    score: str,
    group: str,
    time: str,
    subject: str,
    baseline: str,
    time_order: list[str],
    reference: str | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Arm difference per post-baseline time point and averaged over them, from one mixed model (see module)."""
    import statsmodels.formula.api as smf

    work = data[[subject, group, time, score, baseline]].dropna().copy()
    work[group] = work[group].astype(str)
    reference, others = _two_levels(work, group, reference)
    times = [t for t in time_order if t in set(work[time])]
    if len(times) < 1 or work[subject].nunique() < 4:
        return pd.DataFrame()
    work["_time"] = pd.Categorical(work[time], categories=times)
    work["_arm"] = pd.Categorical(work[group], categories=[reference, *others])
    work["_baseline"] = work[baseline] - work[baseline].mean()
    formula = f"{score} ~ _baseline + C(_time) * C(_arm)" if len(times) > 1 else f"{score} ~ _baseline + C(_arm)"
    model = smf.mixedlm(formula, work, groups=work[subject])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(reml=True)
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    names = list(fit.fe_params.index)
    cov = fit.cov_params().loc[names, names].to_numpy()
    z = float(sps.norm.ppf(0.5 + ci / 2))
    rows = []
    for level in others:
        arm_term = f"C(_arm)[T.{level}]"
        contrasts = {}
        for t in times:
            vector = np.zeros(len(names))
            vector[names.index(arm_term)] = 1.0
            interaction = f"C(_time)[T.{t}]:C(_arm)[T.{level}]"
            if interaction in names:
                vector[names.index(interaction)] = 1.0
            contrasts[t] = vector
        contrasts["average over time points"] = np.mean(list(contrasts.values()), axis=0)
        for label, vector in contrasts.items():
            estimate = float(vector @ fit.fe_params.to_numpy())
            se = math.sqrt(max(float(vector @ cov @ vector), 0.0))
            p = float(2 * sps.norm.sf(abs(estimate / se))) if se > 0 else math.nan
            rows.append(
                make_row(
                    "trajectory_mixed_model",
                    f"{level} − {reference}",
                    estimate,
                    {"ci_low": estimate - z * se, "ci_high": estimate + z * se, "p": p},
                    n_subjects=int(work[subject].nunique()),
                    n_obs=len(work),
                    method="MixedLM REML, Wald z",
                    convention=MIXED_CONVENTION.format(a=reference, b=level),
                    timepoint=label,
                    group=level,
                    reference=reference,
                    outcome=score,
                    converged=bool(fit.converged),
                    fit_notes="; ".join(notes),
                )
            )
    return table(rows)
