"""Dose-response in a within-subject (crossover) dose study: a random-slope mixed model with crossover
terms, and the two-lines test for a U / inverted U.

``dose_response_mixed`` — model (Jones & Kenward 2014, *Design and Analysis of Cross-Over Trials*,
3rd ed., ch. 5; random slopes: Barr, Levy, Scheepers & Tily 2013, J Mem Lang 68:255):

    y_ij = β0 + β_dose·dose_ij + π_period(ij) + σ_sequence(i) + γ·carryover_ij + b0_i + b1_i·dose_ij + e_ij
    (b0_i, b1_i) ~ N(0, G),  e_ij ~ N(0, σ²),  REML (statsmodels MixedLM)

The random dose slope is fitted when identified (at least 3 subjects with ≥ 3 distinct doses, so a
subject's slope is separable from its residual); otherwise, or if the random-slope fit fails, the
random-intercept model is fitted and the row says so (``random_effects``, ``fallback_reason``).
Optimiser warnings (non-convergence, singular random-effects covariance, boundary) are captured and
written to the row (``warnings``, ``converged``, ``boundary``), never silenced.

Inference for the fixed effects (convention): subject-cluster bootstrap of the GLS fixed-effect
estimator β̂ = (Σ_i X_iᵀV_i⁻¹X_i)⁻¹ Σ_i X_iᵀV_i⁻¹y_i with V_i = Z_i Ĝ Z_iᵀ + σ̂²I held at the REML
estimates (subjects resampled with replacement; β̂ itself equals MixedLM's estimate), studentised:
each resample's t* = (β* − β̂)/se*(CR1 cluster-robust sandwich SE of the GLS estimator) gives the
reference distribution of t = β̂/se; symmetric percentile-t interval and p (Hall 1992; Cameron,
Gelbach & Miller 2008). Why studentised: with 12 subjects and random slopes the bootstrap-SE/t(G−1)
interval rejected 8.0 % of 500 null studies, the bootstrap-t ~6 % (docs/statistics.md).
Why not Wald z: with 12 subjects a z reference is anti-conservative (issue 11: 9–18 %). Why not
within-subject permutation of dose labels: it tests the sharp null "no dose effect in any subject",
and under mean-zero random slopes it rejects too often. The model-based Wald z p is kept in ``p_wald_z``.

``two_lines_test`` — Simonsohn 2018 (Adv Methods Pract Psychol Sci 1:538), adapted to discrete doses
(stated in the rows): two lines joined at a breakpoint (a linear spline y ~ xlow + xhigh with
xlow = min(dose − k, 0), xhigh = max(dose − k, 0), subject fixed intercepts and period terms); the
breakpoint k is chosen by Simonsohn's "Robin Hood" rule among interior dose levels; both slopes need
p < alpha with opposite signs (low > 0, high < 0 for an inverted U). Slopes' inference: subject-cluster
bootstrap, same interval as above. Also reported: the within-subject contrast of the top dose against
the dose with the highest subject-centred mean (paired t over subjects).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import resampling as rs
from ._rows import complete_rows, make_row, table

__all__ = ["dose_response_mixed", "two_lines_test"]

_BOOT_NOTE = "subject-cluster bootstrap ({n} resamples of {g} subjects), bootstrap-SE t(G-1) interval"


def _fit_mixed(data: pd.DataFrame, formula: str, random_slope: bool):
    """Fit MixedLM, capturing (not silencing) warnings. Returns (fit, model, warnings list, error)."""
    import statsmodels.formula.api as smf

    caught_messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(formula, data, groups=data["_subject"], re_formula="~_dose" if random_slope else "1")
            fit = model.fit(reml=True)
            error = None
        except (np.linalg.LinAlgError, ValueError) as exc:
            fit, model, error = None, None, f"{type(exc).__name__}: {exc}"
    for item in caught:
        message = f"{item.category.__name__}: {item.message}"
        if message not in caught_messages:
            caught_messages.append(message)
    return fit, model, caught_messages, error


def _gls_pieces(model, fit, codes: np.ndarray, n_subj: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject X_iᵀV_i⁻¹X_i (G × p × p) and X_iᵀV_i⁻¹y_i (G × p) at the fitted variance components."""
    x, z, y = model.exog, model.exog_re, model.endog
    cov_re, scale = np.asarray(fit.cov_re, dtype=float), float(fit.scale)
    gram = np.zeros((n_subj, x.shape[1], x.shape[1]))
    moment = np.zeros((n_subj, x.shape[1]))
    for s in range(n_subj):
        rows = codes == s
        v = z[rows] @ cov_re @ z[rows].T + scale * np.eye(rows.sum())
        vinv_x = np.linalg.solve(v, x[rows])
        gram[s] = x[rows].T @ vinv_x
        moment[s] = vinv_x.T @ y[rows]
    return gram, moment


def dose_response_mixed(
    df: pd.DataFrame,
    outcome: str,
    dose: str,
    subject: str,
    period: str | None = None,
    sequence: str | None = None,
    carryover: str | None = None,
    *,
    n_boot: int = 499,
    ci: float = 0.95,
    seed: int = 0,
    random_slope: bool | str = "auto",
) -> pd.DataFrame:
    """Fixed dose effect (per unit dose) from a random-intercept + random-dose-slope MixedLM.

    ``period`` and ``sequence`` enter as categorical fixed effects, ``carryover`` (e.g. the previous
    period's dose; 0 in period 1) as numeric if numeric, else categorical. One row per fixed term
    except the intercept (quantity = term; the dose row first). ``random_slope``: "auto" (fit when
    identified), True (require; fallback still reported) or False. Extra columns: term, random_effects,
    fallback_reason, converged, boundary, warnings, sd_intercept, sd_slope, residual_sd, p_wald_z,
    ci_wald_low/high, formula, n_boot, seed.
    """
    work, terms, formula = _mixed_design(df, outcome, dose, subject, period, sequence, carryover)
    codes, n_subj = rs.subject_codes(work["_subject"])
    fit, model, messages, use_slope, fallback_reason = _fit_with_slope_fallback(work, formula, random_slope)
    cov_re = np.asarray(fit.cov_re, dtype=float)
    boundary = bool(
        np.min(np.linalg.eigvalsh(cov_re)) <= 1e-6 * max(float(fit.scale), 1e-12)
        or any("boundary" in m or "singular" in m for m in messages)
    )
    beta, se, reps, se_b = _gls_cluster_bootstrap(model, fit, codes, n_subj, n_boot, seed)

    re_text = "random intercept + random dose slope" if use_slope else "random intercept only"
    convention = (
        f"fixed effect per unit of {dose} in LMM (REML) with {re_text} per {subject}"
        + (f", crossover terms: {', '.join(t for t in (period, sequence, carryover) if t)}" if len(terms) > 1 else "")
        + "; CI/p: subject-cluster bootstrap-t of the GLS estimator at the REML variance "
        "components (CR1 sandwich SE per resample, symmetric percentile-t)"
    )
    display_formula = (
        formula.replace("_y", outcome)
        .replace("_dose", dose)
        .replace("_period", str(period))
        .replace("_sequence", str(sequence))
        .replace("_carry", str(carryover))
    )
    names = list(model.exog_names)
    wald = fit.conf_int(alpha=1 - ci)
    sd = np.sqrt(np.clip(np.diag(cov_re), 0, None))
    method = (
        f"MixedLM REML, {re_text}; subject-cluster bootstrap-t ({n_boot} resamples of "
        f"{n_subj} subjects, CR1 sandwich SE, symmetric percentile-t interval)"
    )
    rows = []
    for j in _dose_first_order(names):
        name = names[j]
        label = _term_label(name, dose, period, sequence, carryover)
        rows.append(
            make_row(
                "dose_response_mixed",
                label,
                beta[j],
                rs.bootstrap_t_interval(beta[j], se[j], reps[:, j], se_b[:, j], ci),
                n_subj,
                len(work),
                method,
                convention,
                term=label,
                random_effects=re_text,
                fallback_reason=fallback_reason or "none",
                se_cr1=float(se[j]),
                converged=bool(fit.converged),
                boundary=boundary,
                warnings=" | ".join(messages) or "none",
                sd_intercept=float(sd[0]),
                sd_slope=float(sd[1]) if use_slope else np.nan,
                residual_sd=float(np.sqrt(fit.scale)),
                p_wald_z=float(fit.pvalues[name]),
                ci_wald_low=float(wald.loc[name, 0]),
                ci_wald_high=float(wald.loc[name, 1]),
                formula=display_formula,
                n_boot=n_boot,
                seed=seed,
            )
        )
    return table(rows)


def _term_label(name: str, dose: str, period: str | None, sequence: str | None, carryover: str | None) -> str:
    """A model term (``_dose``, ``C(_period)[T.2]``, …) in the caller's column names."""
    return {"_dose": dose, "_carry": carryover}.get(
        name,
        name.replace("C(_period)", f"C({period})")
        .replace("C(_sequence)", f"C({sequence})")
        .replace("C(_carry)", f"C({carryover})"),
    )


def _dose_first_order(names: list[str]) -> list[int]:
    """Indices of the fixed terms but the intercept: the dose row first, then carry-over, period and sequence."""
    return sorted(
        (j for j, name in enumerate(names) if name != "Intercept"),
        key=lambda j: (names[j] != "_dose", names[j] != "_carry", j),
    )


def _mixed_design(
    df: pd.DataFrame,
    outcome: str,
    dose: str,
    subject: str,
    period: str | None,
    sequence: str | None,
    carryover: str | None,
) -> tuple[pd.DataFrame, list[str], str]:
    """Complete rows of :func:`dose_response_mixed` as model columns (``_y``, ``_dose``, …), its terms and formula."""
    columns = [subject, outcome, dose] + [c for c in (period, sequence, carryover) if c]
    numeric = [outcome, dose] + ([carryover] if carryover and pd.api.types.is_numeric_dtype(df[carryover]) else [])
    data = complete_rows(df, columns, numeric)
    work = pd.DataFrame(
        {"_subject": data[subject].astype(str), "_y": data[outcome].astype(float), "_dose": data[dose].astype(float)}
    )
    terms = ["_dose"]
    if period:
        work["_period"] = data[period].astype(str)
        terms.append("C(_period)")
    if sequence:
        work["_sequence"] = data[sequence].astype(str)
        terms.append("C(_sequence)")
    if carryover:
        if carryover in numeric:
            work["_carry"] = data[carryover].astype(float)
            terms.append("_carry")
        else:
            work["_carry"] = data[carryover].astype(str)
            terms.append("C(_carry)")
    return work, terms, "_y ~ " + " + ".join(terms)


def _fit_with_slope_fallback(work: pd.DataFrame, formula: str, random_slope: bool | str):
    """The REML fit of :func:`dose_response_mixed`: with a random dose slope when wanted and identified, else
    (or when that fit fails) random intercept only. Returns fit, model, messages, use_slope, fallback_reason."""
    levels_per_subject = work.groupby("_subject")["_dose"].nunique()
    identified = int((levels_per_subject >= 3).sum()) >= 3
    fallback_reason = ""
    want_slope = random_slope is True or (random_slope == "auto")
    if want_slope and not identified:
        fallback_reason = "random dose slope not identified (fewer than 3 subjects with >= 3 doses)"
    use_slope = want_slope and identified
    fit, model, messages, error = _fit_mixed(work, formula, use_slope)
    if use_slope and (error or fit is None or not np.all(np.isfinite(np.asarray(fit.cov_re)))):
        fallback_reason = f"random-slope fit failed ({error or 'non-finite random-effects covariance'})"
        use_slope = False
        fit, model, more, error = _fit_mixed(work, formula, False)
        messages += [m for m in more if m not in messages]
    if error or fit is None:
        raise RuntimeError(f"dose_response_mixed: mixed model could not be fitted: {error}")
    return fit, model, messages, use_slope, fallback_reason


def _gls_cluster_bootstrap(model, fit, codes: np.ndarray, n_subj: int, n_boot: int, seed: int):
    """GLS estimate at the REML variance components, its CR1 sandwich SE, and both in every subject-cluster
    resample. Returns beta, se, reps (NaN where a resample lacks a column) and se_b."""
    gram, moment = _gls_pieces(model, fit, codes, n_subj)
    beta = np.linalg.solve(gram.sum(axis=0), moment.sum(axis=0))
    weights = rs.cluster_weights(n_subj, n_boot, np.random.default_rng(seed))
    gram_b = np.einsum("bs,sij->bij", weights, gram)
    moment_b = np.einsum("bs,si->bi", weights, moment)
    # pinv: a resample may miss a sequence level (its column is then all zero); that coefficient's
    # replicate is set to NaN below, the others are unaffected (estimable functions).
    inverse_b = np.linalg.pinv(gram_b, hermitian=True)
    reps = np.einsum("bij,bj->bi", inverse_b, moment_b)
    absent = np.einsum("bii->bi", gram_b) <= 1e-12 * np.einsum("sii->i", gram)[None, :]
    reps[absent] = np.nan
    # Cluster-robust (CR1) sandwich SE of the GLS estimator, in the sample and in every resample:
    # subject score s_i = X_iᵀV_i⁻¹(y_i − X_iβ) = moment_i − gram_i β.
    factor = n_subj / (n_subj - 1)
    inverse = np.linalg.inv(gram.sum(axis=0))
    score = moment - np.einsum("sij,j->si", gram, beta)
    se = np.sqrt(np.diag(inverse @ np.einsum("si,sj->ij", score, score) @ inverse) * factor)
    score_b = moment[None] - np.einsum("sij,bj->bsi", gram, np.nan_to_num(reps))
    meat_b = np.einsum("bs,bsi,bsj->bij", weights, score_b, score_b)
    se_b = np.sqrt(np.clip(np.einsum("bii->bi", inverse_b @ meat_b @ inverse_b), 0, None) * factor)
    return beta, se, reps, se_b


# ------------------------------------------------------------------------------------------------
# Two-lines test
# ------------------------------------------------------------------------------------------------


def _spline_fit(centred_y, dose, period_dummies, codes, n_subj, knot, weights):
    """Slopes (low, high) of the joined two-line fit at ``knot``, with bootstrap replicates."""
    xlow, xhigh = np.minimum(dose - knot, 0.0), np.maximum(dose - knot, 0.0)
    design = np.column_stack([xlow, xhigh, period_dummies])
    block = rs.within_centre(np.column_stack([design, centred_y]), codes, n_subj)
    cross = rs.per_subject_crossproducts(block, codes, n_subj)
    p = design.shape[1]
    total = cross.sum(axis=0)
    coef = np.linalg.solve(total[:p, :p], total[:p, p])
    boot = np.einsum("bs,sij->bij", weights, cross)
    reps = np.einsum("bij,bj->bi", np.linalg.pinv(boot[:, :p, :p], hermitian=True), boot[:, :p, p])
    return coef[:2], reps[:, :2]


def two_lines_test(
    df: pd.DataFrame,
    outcome: str,
    dose: str,
    subject: str,
    period: str | None = None,
    *,
    alpha: float = 0.05,
    n_boot: int = 499,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Simonsohn's (2018) two-lines test for an inverted U (or U) over discrete within-subject doses.

    Steps (adaptation to discrete doses stated in ``convention``): (1) subject-centred dose means and
    their SEs; x_max = dose with the highest mean; flat region = doses whose mean is within 1 SE of the
    maximum. (2) First breakpoint: x_max if it is an interior dose, else the interior dose nearest to it.
    (3) Fit the two joined lines; with slope t-statistics z1, z2, "Robin Hood" moves the breakpoint to
    the |z2|/(|z1|+|z2|) quantile of the observations' doses among interior doses of the flat region
    (more data to the weaker line), and the lines are refitted. (4) Verdict "inverted U" iff slope_low > 0,
    slope_high < 0, both p < alpha; "U" for the mirror; otherwise "no U-shape shown".
    Rows: slope_low, slope_high (bootstrap CI/p), top_vs_peak_contrast (paired t over subjects, mean of
    top dose minus dose with the highest mean; NaN when that dose is the top dose). Every row carries
    verdict, breakpoint, x_max, flat_region.
    """
    columns = [subject, outcome, dose] + ([period] if period else [])
    data = complete_rows(df, columns, [outcome, dose])
    codes, n_subj = rs.subject_codes(data[subject])
    y = data[outcome].to_numpy(float)
    x = data[dose].to_numpy(float)
    n_obs = len(data)
    levels = np.unique(x)
    if len(levels) < 3:
        raise ValueError("two_lines_test needs at least 3 distinct doses")
    period_dummies = (
        pd.get_dummies(data[period].astype("category"), drop_first=True, dtype=float).to_numpy()
        if period
        else np.empty((n_obs, 0))
    )
    weights = rs.cluster_weights(n_subj, n_boot, np.random.default_rng(seed))
    x_max, flat, knot, coef, inter = _two_lines_fit(y, x, codes, n_subj, levels, period_dummies, weights, ci)
    sig = [inter[j]["p"] < alpha for j in range(2)]
    if sig[0] and sig[1] and coef[0] > 0 > coef[1]:
        verdict = "inverted U"
    elif sig[0] and sig[1] and coef[0] < 0 < coef[1]:
        verdict = "U"
    else:
        verdict = "no U-shape shown"

    convention = (
        f"Simonsohn (2018) two-lines test adapted to discrete doses: lines joined at breakpoint "
        f"{knot:g} (Robin Hood rule over interior doses within 1 SE of the highest subject-centred "
        f"mean), subject fixed intercepts{' and period terms' if period else ''}; slopes per unit "
        f"{dose}; inverted U iff low slope > 0 and high slope < 0, both significant at alpha = {alpha:g}"
    )
    common = dict(
        verdict=verdict,
        breakpoint=float(knot),
        x_max=float(x_max),
        flat_region=", ".join(f"{v:g}" for v in flat),
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
    )
    method = "two-lines regression; " + _BOOT_NOTE.format(n=n_boot, g=n_subj)
    rows = [
        make_row("two_lines_test", name, coef[j], inter[j], n_subj, n_obs, method, convention, **common)
        for j, name in enumerate(("slope_low", "slope_high"))
    ]
    rows.append(_top_vs_peak_contrast_row(y, x, codes, levels, x_max, outcome, ci, common))
    return table(rows)


def _two_lines_fit(y, x, codes, n_subj, levels, period_dummies, weights, ci):
    """Steps 1-3 of :func:`two_lines_test`: x_max, flat region, the Robin Hood breakpoint, and the two slopes
    with their bootstrap intervals at that breakpoint."""
    interior = levels[1:-1]
    centred = rs.within_centre(y, codes, n_subj)
    means = np.array([centred[x == d].mean() for d in levels])
    ses = np.array([centred[x == d].std(ddof=1) / np.sqrt((x == d).sum()) for d in levels])
    top = int(np.argmax(means))
    x_max = levels[top]
    flat = levels[means >= means[top] - ses[top]]
    knot = x_max if x_max in interior else interior[np.argmin(np.abs(interior - x_max))]

    def fit_at(k):
        coef, reps = _spline_fit(y, x, period_dummies, codes, n_subj, k, weights)
        out = [rs.interval_from_replicates(coef[j], reps[:, j], n_subj, ci, "se_t", "identity") for j in range(2)]
        return coef, out

    coef, inter = fit_at(knot)
    candidates = np.intersect1d(flat, interior)
    if len(candidates) > 1:
        z = [abs(coef[j]) / inter[j]["se_boot"] if inter[j]["se_boot"] > 0 else 0.0 for j in range(2)]
        share = z[1] / (z[0] + z[1]) if (z[0] + z[1]) > 0 else 0.5
        pool = x[np.isin(x, candidates)]
        knot = float(np.quantile(pool, share, method="inverted_cdf")) if share > 0 else float(pool.min())
        coef, inter = fit_at(knot)
    return x_max, flat, knot, coef, inter


def _top_vs_peak_contrast_row(y, x, codes, levels, x_max, outcome: str, ci: float, common: dict) -> dict:
    """The top_vs_peak_contrast row of :func:`two_lines_test`: top dose minus the dose with the highest mean,
    within subject (paired t over subjects with both)."""
    top_dose = levels[-1]
    frame = pd.DataFrame({"s": codes, "x": x, "y": y})
    wide = frame.groupby(["s", "x"])["y"].mean().unstack()
    contrast, interval, n_pair = 0.0, None, 0
    if x_max != top_dose:
        diff = (wide[top_dose] - wide[x_max]).dropna().to_numpy()
        n_pair = len(diff)
        contrast = float(diff.mean())
        if n_pair >= 2:
            se = diff.std(ddof=1) / np.sqrt(n_pair)
            half = sps.t.ppf(0.5 + ci / 2, n_pair - 1) * se
            interval = {
                "ci_low": contrast - half,
                "ci_high": contrast + half,
                "p": float(2 * sps.t.sf(abs(contrast) / se, n_pair - 1)) if se > 0 else np.nan,
            }
    return make_row(
        "two_lines_test",
        "top_vs_peak_contrast",
        contrast if x_max != top_dose else np.nan,
        interval,
        n_pair,
        len(y),
        "paired t over subjects (t with n_pairs - 1 dof)",
        f"within-subject mean of {outcome} at the top dose ({top_dose:g}) minus at the dose with the highest "
        f"subject-centred mean ({x_max:g}); pre-specified, data-selected peak (biased towards negative); "
        "NaN when the peak is the top dose",
        **common,
    )
