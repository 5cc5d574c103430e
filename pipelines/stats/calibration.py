"""Calibration suite: type-I error, 95 % CI coverage and power of every inference routine on simulated
crossover studies (the default design of :mod:`.simulation`), plus the naive analyses they replace
as reference rows.

    python -m pipelines.stats.calibration [--n-null 500 --n-effect 200 --n-boot 499 --seed 20261206
                                               --out reports/calibration --only NAME ...]

writes ``<out>/calibration.json`` (one row per routine: routine, quantity, type1_error, coverage,
power, n_sims, the null and effect designs, Monte-Carlo SEs, runtime) and ``<out>/calibration.md``.

Definitions. type1_error: share of null studies with p < 0.05 (two-lines test: share of studies with a
monotone Emax truth given the verdict "inverted U"). coverage: share of planted-effect studies whose 95 %
CI contains the true value (known parameter, or the estimand's population value computed once from one
study of 40 000 subjects); coverage_null likewise under the null. power: share of planted-effect studies
with p < 0.05 (two-lines: verdict "inverted U" under a true inverted U). Targets: type-I in [3 %, 7 %],
coverage ≥ 93 %.

Determinism: every study has its own ``numpy.random.default_rng([seed, stream(routine), scenario, i])``
(stream = CRC32 of the row name, so adding a routine does not move the others) and bootstrap seed i; runs
single-threaded (threadpoolctl) so results do not depend on the machine's thread count.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from .association import within_between_correlation, within_subject_partial_correlation
from .crossover import crossover_dose_model
from .crp_simulation import StrataDesign, simulate_crp_crossover
from .dose_models import dose_response_mixed, two_lines_test
from .effects import within_between_effect, within_moderation
from .groups import ancova_difference, binary_difference
from .interaction import stratum_by_treatment_interaction, welch_t
from .mediation import within_subject_mediation
from .paired import paired_contrast
from .simulation import Design, simulate_crossover

ALPHA = 0.05
TARGET_TYPE1 = (0.03, 0.07)
TARGET_COVERAGE = 0.93
POPULATION_SUBJECTS = 40_000


@dataclass(frozen=True)
class Case:
    name: str  # row name (routine[quantity])
    routine: str
    quantity: str
    reference: bool  # a naive analysis shown for comparison, not a routine of this package
    null: Design
    effect: Design | None
    null_text: str
    effect_text: str
    run: Callable  # (data, seed, n_boot) -> (estimate, ci_low, ci_high, p, flag)
    truth_null: float | None = 0.0
    truth_effect: float | str | None = None  # number, "population", or None (no coverage)
    simulate: Callable = simulate_crossover  # (design, rng) -> one study's tidy DataFrame


# ---------------------------------------------------------------------------------------------
# What each case runs on one study. ``flag`` is the decision counted as a rejection.
# ---------------------------------------------------------------------------------------------


def _quantity(result: pd.DataFrame, quantity: str) -> tuple:
    row = result.set_index("quantity").loc[quantity]
    return row["estimate"], row["ci_low"], row["ci_high"], row["p"], bool(row["p"] < ALPHA)


def _within(data, seed, n_boot):
    return _quantity(within_between_correlation(data, "peak", "mood", "subject", n_boot=n_boot, seed=seed), "within")


def _between(data, seed, n_boot):
    return _quantity(within_between_correlation(data, "peak", "mood", "subject", n_boot=n_boot, seed=seed), "between")


def _partial(data, seed, n_boot):
    return _quantity(
        within_subject_partial_correlation(
            data, "peak", "mood", "subject", ["dose"], ["period"], n_boot=n_boot, seed=seed
        ),
        "within_partial",
    )


def _mediation(data, seed, n_boot):
    return _quantity(
        within_subject_mediation(
            data, "dose", "peak", "mood", "subject", categorical=["period"], n_boot=n_boot, seed=seed
        ),
        "indirect",
    )


def _dose_mixed(data, seed, n_boot):
    return _quantity(
        dose_response_mixed(data, "mood", "dose", "subject", period="period", n_boot=n_boot, seed=seed), "dose"
    )


def _crossover_dose(data, seed, n_boot):
    # The reports' dose model: period, sequence and carry-over from the recorded order (here the period).
    return _quantity(crossover_dose_model(data, "mood", "dose", "subject", "period", n_boot=n_boot, seed=seed), "dose")


def _paired_top_vs_placebo(data, seed, n_boot):
    # Reports 01 (condition levels), 03 (per-dose paired changes) and 05 (crossover mood contrasts): the paired
    # t contrast of one condition against placebo, the subject as the unit (period left unmodelled, as there).
    row = paired_contrast(data.assign(condition=data["dose"].map(str)), "mood", "condition", "subject", "0.0", "1.0")
    return row["mean_difference"], row["ci_low"], row["ci_high"], row["p"], bool(row["p"] < 0.05)


def _two_lines(data, seed, n_boot):
    result = two_lines_test(data, "mood", "dose", "subject", period="period", n_boot=n_boot, seed=seed)
    high = result.set_index("quantity").loc["slope_high"]
    return high["estimate"], np.nan, np.nan, np.nan, bool(result["verdict"].iloc[0] == "inverted U")


def _naive_pooled_r(data, seed, n_boot):
    r, p = sps.pearsonr(data["peak"], data["mood"])
    return r, np.nan, np.nan, p, bool(p < ALPHA)


def _naive_pooled_partial(data, seed, n_boot):
    # The old analysis: partial r over all rows given dose and period, t with n - 2 - k dof.
    design = np.column_stack(
        [np.ones(len(data)), data["dose"], pd.get_dummies(data["period"], drop_first=True, dtype=float)]
    )
    resid = [
        v - design @ np.linalg.lstsq(design, v, rcond=None)[0]
        for v in (data["peak"].to_numpy(float), data["mood"].to_numpy(float))
    ]
    r = float(np.corrcoef(*resid)[0, 1])
    dof = len(data) - 2 - (design.shape[1] - 1)
    p = float(2 * sps.t.sf(abs(r) * np.sqrt(dof / (1 - r * r)), dof))
    return r, np.nan, np.nan, p, bool(p < ALPHA)


def _naive_mediation(data, seed, n_boot):
    from pipelines.stats.pooled_mediation import mediation  # the old analysis: rows resampled, pooled b path

    row = mediation(data, "dose", "peak", "mood", n_boot=n_boot, seed=seed).set_index("path").loc["indirect"]
    excludes = not (row["ci_low"] <= 0 <= row["ci_high"])
    return row["estimate"], row["ci_low"], row["ci_high"], row["p"], bool(excludes)


def _naive_random_intercept(data, seed, n_boot):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reference row only: the old analysis as it was run
        fit = smf.mixedlm("mood ~ dose + C(period)", data, groups=data["subject"]).fit(reml=True)
    low, high = fit.conf_int().loc["dose"]
    return fit.fe_params["dose"], low, high, fit.pvalues["dose"], bool(fit.pvalues["dose"] < ALPHA)


def _naive_quadratic(data, seed, n_boot):
    import statsmodels.formula.api as smf

    fit = smf.ols("mood ~ dose + I(dose ** 2) + C(period) + C(subject)", data).fit()
    term = "I(dose ** 2)"
    return (
        fit.params[term],
        np.nan,
        np.nan,
        fit.pvalues[term],
        bool(fit.params[term] < 0 and fit.pvalues[term] < ALPHA),
    )


def _strata_interaction(data, seed, n_boot):
    return _quantity(
        stratum_by_treatment_interaction(data, "ln_change", "treated", "inflamed", "subject"), "interaction"
    )


def _naive_inflamed_change(data, seed, n_boot):
    # The old reading: "CRP falls after ketamine in the inflamed stratum", strata from the baseline the change
    # is measured from (one active session per subject), one-sample t over the inflamed subjects.
    first = data[data["session"] == 1]
    change = first.loc[first["ln_baseline"] >= np.log(3.0), "ln_change"]
    if len(change) < 2:
        return np.nan, np.nan, np.nan, np.nan, False
    p = float(sps.ttest_1samp(change, 0.0).pvalue)
    return float(change.mean()), np.nan, np.nan, p, bool(p < ALPHA)


def _naive_single_baseline_contrast(data, seed, n_boot):
    # One session per subject (its first active one), strata from that session's own baseline: the stratum
    # difference of the change, Welch t.
    first = data[data["session"] == 1]
    inflamed = first["ln_baseline"] >= np.log(3.0)
    result = welch_t(first.loc[inflamed, "ln_change"], first.loc[~inflamed, "ln_change"])
    return result["estimate"], result["ci_low"], result["ci_high"], result["p"], bool(result["p"] < ALPHA)


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

DEFAULT = Design()  # 12 subjects x 4 doses, shared trait, random peak dose slopes, period effect on mood
STRATA = StrataDesign()  # 12 subjects x (placebo + 3 active), CRP near 3 mg/L, screening draw (crp_simulation)
# A strong practice/expectancy effect (2 noise SDs by period 4), as the default study's generator plants one.
STRONG_PERIOD = (0.0, 1.0, 1.5, 2.0)


# --- designs other than the crossover: parallel arms (report 05) and the plasticity window (report 06) --------


@dataclass(frozen=True)
class ParallelDesign:
    """Two arms of ``n_per_arm`` subjects, a baseline and ``weeks`` weekly scores: score = 0.5·baseline + 12 +
    subject trait (SD 4) + effect·drug + noise (SD 4); response events drawn with ``p_control`` / ``p_drug``."""

    n_per_arm: int = 12
    weeks: int = 4
    effect: float = 0.0
    p_control: float = 0.3
    p_drug: float = 0.3

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_parallel(design: ParallelDesign, rng: np.random.Generator) -> pd.DataFrame:
    n = 2 * design.n_per_arm
    arm = np.repeat(["control", "drug"], design.n_per_arm)
    baseline = rng.normal(30, 5, n)
    trait = rng.normal(0, 4, n)
    weekly = (
        (0.5 * baseline + 12 + trait)[:, None]
        + design.effect * (arm == "drug")[:, None]
        + rng.normal(0, 4, (n, design.weeks))
    )
    event = rng.random(n) < np.where(arm == "drug", design.p_drug, design.p_control)
    return pd.DataFrame(
        {
            "participant_id": np.arange(n),
            "group": arm,
            "baseline": baseline,
            "value": weekly.mean(axis=1),
            "event": event,
        }
    )


def _parallel_summary_ancova(data, seed, n_boot):
    row = ancova_difference(data, "value", "group", "participant_id", baseline="baseline", reference="control").iloc[0]
    return row["estimate"], row["ci_low"], row["ci_high"], row["p"], bool(row["p"] < ALPHA)


def _risk_difference(data, seed, n_boot):
    row = binary_difference(data, "event", "group", "participant_id", reference="control").iloc[0]
    return row["estimate"], row["ci_low"], row["ci_high"], row["p"], bool(row["p"] < ALPHA)


@dataclass(frozen=True)
class WindowDesign:
    """``n_subjects`` × ``n_infusions``; each subject's chance of integration inside the window rises with a trait
    that also raises their improvement (confounding between people); ``effect``: the within-subject timing effect."""

    n_subjects: int = 12
    n_infusions: int = 4
    effect: float = 0.0
    trait_sd: float = 4.0
    noise_sd: float = 3.0
    moderation: float = 0.0  # extra timing effect per mg/kg above the mean dose (within-subject moderation)

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_window(design: WindowDesign, rng: np.random.Generator) -> pd.DataFrame:
    trait = rng.normal(0, design.trait_sd, design.n_subjects)
    p_inside = 1 / (1 + np.exp(-trait / design.trait_sd))
    subject = np.repeat(np.arange(design.n_subjects), design.n_infusions)
    inside = (rng.random(subject.size) < p_inside[subject]).astype(float)
    dose = np.tile([0.25, 0.5, 1.0, 0.5], int(np.ceil(design.n_infusions / 4)))[: design.n_infusions]
    dose = np.tile(dose, design.n_subjects)
    y = (
        trait[subject]
        + design.effect * inside
        + design.moderation * inside * (dose - dose.mean())
        + 3 * dose
        + rng.normal(0, design.noise_sd, subject.size)
    )
    return pd.DataFrame({"subject": subject, "inside": inside, "dose": dose, "y": y})


def _period_dummies(data: pd.DataFrame, column: str = "period") -> tuple[pd.DataFrame, list[str]]:
    dummies = pd.get_dummies(data[column].astype(int), prefix="p", drop_first=True, dtype=float)
    return pd.concat([data, dummies], axis=1), list(dummies.columns)


def _peak_mood_within_effect(data, seed, n_boot):
    # Report 04's H2b: within-subject effect of the peak score on mood (points per unit), given dose and period
    # dummies, every session (placebo included), wild cluster bootstrap-t.
    data, dummies = _period_dummies(data)
    return _quantity(
        within_between_effect(data, "mood", "peak", "subject", covariates=["dose", *dummies], n_boot=n_boot, seed=seed),
        "within",
    )


def _strata_contrast(quantity: str) -> Callable:
    def run(data, seed, n_boot):  # report 04's H3a / H3b: placebo-controlled change within one stratum
        return _quantity(
            stratum_by_treatment_interaction(data, "ln_change", "treated", "inflamed", "subject"), quantity
        )

    return run


# A period effect on the ln change (the crossover terms H3d adjusts for), planted in the CRP studies below.
CRP_PERIOD_EFFECT = (0.0, 0.10, 0.15, 0.20)


def _with_crossover_periods(data: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A random session order per subject (period 1..k) and the planted period effect on the ln change."""
    rng = np.random.default_rng([seed, 4_242])
    k = int(data.groupby("subject").size().max())
    order = np.concatenate([rng.permutation(k) + 1 for _ in range(data["subject"].nunique())])
    effect = np.resize(np.asarray(CRP_PERIOD_EFFECT), k)[order - 1]
    return data.assign(period=order, ln_change=data["ln_change"] + effect, treated_f=data["treated"].astype(float))


def _strata_interaction_period(data, seed, n_boot):
    # Report 04's H3d: the placebo-controlled interaction with the crossover period's effects removed first.
    data = _with_crossover_periods(data, seed)
    return _quantity(
        stratum_by_treatment_interaction(data, "ln_change", "treated", "inflamed", "subject", period="period"),
        "interaction",
    )


def _strata_interaction_ignoring_period(data, seed, n_boot):
    # The same studies (period effect planted) analysed without the period: what H3c does.
    return _strata_interaction(_with_crossover_periods(data, seed), seed, n_boot)


def _window_moderation(data, seed, n_boot):
    # Report 06's moderation: timing effect × a session-level moderator (here dose), within subjects.
    row = within_moderation(data, "y", "inside", "dose", "subject", n_boot=n_boot, seed=seed).iloc[0]
    return row["estimate"], row["ci_low"], row["ci_high"], row["p"], bool(row["p"] < ALPHA)


def _window_within(data, seed, n_boot):
    return _quantity(
        within_between_effect(data, "y", "inside", "subject", covariates=["dose"], n_boot=n_boot, seed=seed), "within"
    )


def _association_cases() -> list[Case]:
    """Within/between correlation, partial correlation and mediation on the crossover."""
    d = DEFAULT
    return [
        Case(
            "within_between_correlation[within]",
            "within_between_correlation",
            "within",
            False,
            d,
            replace(d, within_b=0.3),
            "one subject trait drives peak and mood; no within-subject association",
            "within-subject effect of peak on mood b = 0.3",
            _within,
            0.0,
            "population",
        ),
        Case(
            "within_between_correlation[between]",
            "within_between_correlation",
            "between",
            False,
            replace(d, trait_corr=0.0),
            replace(d, trait_corr=0.8),
            "independent subject traits; no association",
            "subject traits correlated 0.8",
            _between,
            0.0,
            "population",
        ),
        Case(
            "within_subject_partial_correlation",
            "within_subject_partial_correlation",
            "within_partial",
            False,
            replace(d, mood_dose_mean=-1.0),
            replace(d, mood_dose_mean=-1.0, within_b=0.3),
            "shared trait; dose drives peak (random slopes) and mood; none of peak to mood given dose, period",
            "plus within-subject b = 0.3",
            _partial,
            0.0,
            "population",
        ),
        Case(
            "within_subject_mediation",
            "within_subject_mediation",
            "indirect",
            False,
            d,
            replace(d, within_b=0.3),
            "dose -> peak a = 2 (random slopes SD 1), b = 0: indirect 0; one trait drives peak and mood",
            "b = 0.3 (indirect a*b = 0.6)",
            _mediation,
            0.0,
            0.6,
        ),
    ]


def _dose_response_cases() -> list[Case]:
    """Dose-response models on the crossover: mixed model, crossover model, two-lines test."""
    d = DEFAULT
    return [
        Case(
            "dose_response_mixed",
            "dose_response_mixed",
            "dose",
            False,
            replace(d, mood_dose_sd=1.0),
            replace(d, mood_dose_mean=1.0, mood_dose_sd=1.0),
            "mean dose slope on mood 0, subject slopes SD 1, period effect",
            "mean dose slope 1.0 per mg/kg",
            _dose_mixed,
            0.0,
            1.0,
        ),
        Case(
            "crossover_dose_model",
            "crossover_dose_model",
            "dose",
            False,
            replace(d, mood_dose_sd=1.0, period_effect=STRONG_PERIOD),
            replace(d, mood_dose_mean=1.0, mood_dose_sd=1.0, period_effect=STRONG_PERIOD),
            "strong period effect (0, 1, 1.5, 2 SD), no mean dose effect, subject slopes SD 1; period, sequence "
            "and carry-over fitted from the recorded order",
            "mean dose slope 1.0 per mg/kg",
            _crossover_dose,
            0.0,
            1.0,
        ),
        Case(
            "two_lines_test",
            "two_lines_test",
            "verdict 'inverted U'",
            False,
            replace(d, mood_dose_mean=3.0, mood_dose_sd=0.5, mood_shape="emax"),
            replace(d, mood_dose_mean=1.5, mood_dose_sd=0.5, mood_shape="inverted_u"),
            "monotone saturating Emax truth (ED50 0.1, Emax 3)",
            "inverted U 1.5*4d(1-d)",
            _two_lines,
            None,
            None,
        ),
        Case(
            "paired_contrast[1.0 vs 0 mg/kg]",
            "paired_contrast",
            "mean difference",
            False,
            replace(d, mood_dose_sd=1.0),
            replace(d, mood_dose_mean=1.0, mood_dose_sd=1.0),
            "no mean dose effect on mood, subject slopes SD 1, period effect (balanced by the Williams sequences)",
            "mean dose slope 1.0 per mg/kg: top dose - placebo = 1.0",
            _paired_top_vs_placebo,
            0.0,
            1.0,
        ),
    ]


def _crp_strata_cases() -> list[Case]:
    """Stratum x treatment interaction on the CRP crossover, strata by screening or by mean baseline."""
    return [
        Case(
            "stratum_by_treatment_interaction[screening]",
            "stratum_by_treatment_interaction",
            "interaction",
            False,
            STRATA,
            replace(STRATA, effect_log=-0.35),
            "no treatment effect; CRP set points near 3 mg/L with day and draw noise; strata from a screening CRP",
            "ln change -0.35 after active doses in truly inflamed subjects (set point >= 3 mg/L)",
            _strata_interaction,
            0.0,
            "population",
            simulate_crp_crossover,
        ),
        Case(
            "stratum_by_treatment_interaction[mean_baselines]",
            "stratum_by_treatment_interaction",
            "interaction",
            False,
            replace(STRATA, strata_rule="mean_baselines"),
            replace(STRATA, strata_rule="mean_baselines", effect_log=-0.35),
            "as [screening], strata from the mean of the subject's 4 session baselines",
            "as [screening]",
            _strata_interaction,
            0.0,
            "population",
            simulate_crp_crossover,
        ),
    ]


def _parallel_arm_cases() -> list[Case]:
    """Two-arm parallel designs: ANCOVA of a summary measure, risk difference."""
    return [
        Case(
            "ancova_difference[summary measure]",
            "ancova_difference",
            "drug − control",
            False,
            ParallelDesign(),
            ParallelDesign(effect=-4.0),
            "two arms of 12, subject traits, no arm difference; mean of 4 weekly scores adjusted for baseline",
            "arm difference −4 points",
            _parallel_summary_ancova,
            0.0,
            -4.0,
            simulate_parallel,
        ),
        Case(
            "binary_difference[risk difference]",
            "binary_difference",
            "risk difference",
            False,
            ParallelDesign(),
            ParallelDesign(p_drug=0.7),
            "response 30 % in both arms of 12",
            "response 70 % vs 30 %",
            _risk_difference,
            0.0,
            0.4,
            simulate_parallel,
        ),
    ]


def _within_effect_cases() -> list[Case]:
    """Within-subject effects: dosing-window timing (report 06) and peak -> mood (report 04 H2b)."""
    d = DEFAULT
    return [
        Case(
            "within_between_effect[within]",
            "within_between_effect",
            "within",
            False,
            WindowDesign(),
            WindowDesign(effect=3.0),
            "no timing effect; participants who improve more are booked inside the window more often",
            "within-subject timing effect 3 points",
            _window_within,
            0.0,
            3.0,
            simulate_window,
        ),
        Case(
            "within_between_effect[within, peak -> mood, crossover]",
            "within_between_effect",
            "within",
            False,
            replace(d, mood_dose_sd=1.0),
            replace(d, mood_dose_sd=1.0, within_b=0.3),
            "report 04 H2b: one trait drives peak and mood, random dose slopes on peak (SD 1) and mood (SD 1), "
            "period effect; no within-subject effect; dose and period dummies adjusted",
            "within-subject effect of peak on mood b = 0.3",
            _peak_mood_within_effect,
            0.0,
            0.3,
        ),
    ]


def _report_04_strata_cases() -> list[Case]:
    """Report 04 H3: per-stratum contrasts and the interaction with a period effect."""
    return [
        Case(
            "stratum_by_treatment_interaction[contrast in inflamed]",
            "stratum_by_treatment_interaction",
            "contrast_in_stratum_1",
            False,
            STRATA,
            replace(STRATA, effect_log=-0.35),
            "report 04 H3a: no treatment effect; strata from a screening CRP; placebo-controlled change in the "
            "inflamed stratum",
            "ln change -0.35 after active doses in truly inflamed subjects",
            _strata_contrast("contrast_in_stratum_1"),
            0.0,
            "population",
            simulate_crp_crossover,
        ),
        Case(
            "stratum_by_treatment_interaction[contrast in non-inflamed]",
            "stratum_by_treatment_interaction",
            "contrast_in_stratum_0",
            False,
            STRATA,
            replace(STRATA, effect_log=-0.35),
            "report 04 H3b: as [contrast in inflamed], the non-inflamed stratum",
            "as [contrast in inflamed] (the true value is the share of misclassified inflamed subjects' change)",
            _strata_contrast("contrast_in_stratum_0"),
            0.0,
            "population",
            simulate_crp_crossover,
        ),
        Case(
            "stratum_by_treatment_interaction[screening, period]",
            "stratum_by_treatment_interaction",
            "interaction",
            False,
            STRATA,
            replace(STRATA, effect_log=-0.35),
            "report 04 H3d: no treatment effect, screening strata, random session order with a period effect on "
            f"the ln change {CRP_PERIOD_EFFECT}; period effects (subject fixed effects) removed first",
            "ln change -0.35 after active doses in truly inflamed subjects",
            _strata_interaction_period,
            0.0,
            "population",
            simulate_crp_crossover,
        ),
    ]


def _window_moderation_cases() -> list[Case]:
    """Report 06: timing x dose moderation."""
    return [
        Case(
            "within_moderation[timing x dose]",
            "within_moderation",
            "inside × dose",
            False,
            WindowDesign(effect=3.0),
            WindowDesign(effect=3.0, moderation=6.0),
            "report 06: a timing effect of 3 points that does not depend on dose; confounded booking as "
            "within_between_effect[within]",
            "timing effect larger by 6 points per mg/kg",
            _window_moderation,
            0.0,
            6.0,
            simulate_window,
        ),
    ]


def _period_ignored_cases() -> list[Case]:
    """Report 04 H3c: the period-effect design analysed without the period."""
    return [
        Case(
            "stratum_by_treatment_interaction[screening, period ignored]",
            "stratum_by_treatment_interaction",
            "interaction",
            False,
            STRATA,
            replace(STRATA, effect_log=-0.35),
            "report 04 H3c: as [screening, period], analysed without the period (random orders: unbiased, noisier)",
            "as [screening, period]",
            _strata_interaction_ignoring_period,
            0.0,
            "population",
            simulate_crp_crossover,
        ),
    ]


def _naive_association_references() -> list[Case]:
    """Reference rows (naive analyses issue 11 found uncalibrated): pooled correlations and mediation."""
    d = DEFAULT
    return [
        Case(
            "REFERENCE naive pooled r (t-test over 48 rows)",
            "naive_pooled_correlation",
            "pooled r",
            True,
            replace(d, trait_corr=0.0),
            replace(d, trait_corr=0.0, within_b=0.3),
            "independent subject traits; no association at all",
            "within-subject b = 0.3",
            _naive_pooled_r,
            None,
            None,
        ),
        Case(
            "REFERENCE naive pooled r, shared-trait null",
            "naive_pooled_correlation",
            "pooled r",
            True,
            d,
            None,
            "one trait drives both; no within-subject association",
            "",
            _naive_pooled_r,
            None,
            None,
        ),
        Case(
            "REFERENCE naive pooled partial r given dose, period",
            "naive_pooled_partial_correlation",
            "pooled partial r",
            True,
            replace(d, trait_corr=0.0, mood_dose_mean=-1.0),
            None,
            "independent traits; dose drives both; no association given dose",
            "",
            _naive_pooled_partial,
            None,
            None,
        ),
        Case(
            "REFERENCE row-bootstrap mediation (pooled b)",
            "pipelines.stats.pooled_mediation.mediation",
            "indirect",
            True,
            d,
            None,
            "as within_subject_mediation null (CI excluding 0 counted)",
            "",
            _naive_mediation,
            0.0,
            None,
        ),
    ]


def _naive_model_references() -> list[Case]:
    """Reference rows: random-intercept LMM and the quadratic inverted-U claim."""
    d = DEFAULT
    return [
        Case(
            "REFERENCE random-intercept LMM, Wald z",
            "naive_random_intercept_lmm",
            "dose",
            True,
            replace(d, mood_dose_sd=1.0),
            None,
            "as dose_response_mixed null",
            "",
            _naive_random_intercept,
            0.0,
            None,
        ),
        Case(
            "REFERENCE negative dose^2 term (inverted U claim)",
            "naive_quadratic",
            "dose^2 < 0, p < .05",
            True,
            replace(d, mood_dose_mean=3.0, mood_dose_sd=0.5, mood_shape="emax"),
            None,
            "as two_lines_test null (Emax truth)",
            "",
            _naive_quadratic,
            None,
            None,
        ),
    ]


def _naive_stratum_references() -> list[Case]:
    """Reference rows: stratum change and contrast from a single baseline per subject."""
    return [
        Case(
            "REFERENCE inflamed-stratum change, single baseline per subject",
            "naive_stratum_change",
            "mean ln change, inflamed",
            True,
            STRATA,
            None,
            "as stratum_by_treatment_interaction null; strata from the baseline the change is measured from",
            "",
            _naive_inflamed_change,
            None,
            None,
            simulate_crp_crossover,
        ),
        Case(
            "REFERENCE stratum contrast of the change, single baseline per subject",
            "naive_stratum_contrast",
            "inflamed - non-inflamed ln change",
            True,
            STRATA,
            None,
            "as stratum_by_treatment_interaction null; one session per subject, strata from its own baseline",
            "",
            _naive_single_baseline_contrast,
            0.0,
            None,
            simulate_crp_crossover,
        ),
    ]


def cases() -> list[Case]:
    """Every calibration case, in report order: the routines of this package, then the naive reference rows."""
    return [
        *_association_cases(),
        *_dose_response_cases(),
        *_crp_strata_cases(),
        *_parallel_arm_cases(),
        *_within_effect_cases(),
        *_report_04_strata_cases(),
        *_window_moderation_cases(),
        *_period_ignored_cases(),
        *_naive_association_references(),
        *_naive_model_references(),
        *_naive_stratum_references(),
    ]


def _population_value(case: Case, design: Design, seed: int) -> float:
    big = replace(design, n_subjects=POPULATION_SUBJECTS)
    data = case.simulate(big, np.random.default_rng([seed, 999_999]))
    return float(case.run(data, 0, 20)[0])


def _stream(name: str) -> int:
    return zlib.crc32(name.encode())


def run_case(case: Case, n_null: int, n_effect: int, n_boot: int, seed: int) -> dict:
    start = time.perf_counter()
    out: dict = {
        "routine": case.routine,
        "quantity": case.quantity,
        "name": case.name,
        "reference": case.reference,
        "null_scenario": case.null_text,
        "effect_scenario": case.effect_text or None,
        "null_design": case.null.as_dict(),
        "effect_design": case.effect.as_dict() if case.effect else None,
    }

    def simulate(design, scenario, n, truth):
        flags, covered = [], []
        for i in range(n):
            data = case.simulate(design, np.random.default_rng([seed, _stream(case.name), scenario, i]))
            estimate, low, high, p, flag = case.run(data, i, n_boot)
            flags.append(flag)
            if truth is not None and np.isfinite(low) and np.isfinite(high):
                covered.append(low <= truth <= high)
        rate = float(np.mean(flags)) if flags else None
        cover = float(np.mean(covered)) if covered else None
        return rate, cover

    type1, coverage_null = simulate(case.null, 0, n_null, case.truth_null)
    out.update(
        type1_error=type1,
        type1_mc_se=float(np.sqrt(type1 * (1 - type1) / n_null)) if n_null else None,
        coverage_null=coverage_null,
        n_null=n_null,
    )
    power = coverage = truth = None
    n_eff = 0
    if case.effect is not None and n_effect:
        truth = case.truth_effect
        if truth == "population":
            truth = _population_value(case, case.effect, seed)
        power, coverage = simulate(case.effect, 1, n_effect, truth)
        n_eff = n_effect
    out.update(
        power=power,
        coverage=coverage,
        true_value_effect=truth,
        n_effect=n_eff,
        n_sims=n_null + n_eff,
        runtime_s=round(time.perf_counter() - start, 2),
    )
    if not case.reference:
        # The two-lines verdict is an intersection-union test (two slopes must both reject) and Fisher's exact test
        # (binary_difference) is discrete: both are conservative by construction, so only the upper bound applies.
        low = 0.0 if case.routine in ("two_lines_test", "binary_difference") else TARGET_TYPE1[0]
        out["type1_in_target"] = bool(low <= type1 <= TARGET_TYPE1[1]) if n_null else None
        out["coverage_in_target"] = None if coverage is None else bool(coverage >= TARGET_COVERAGE)
    return out


def run_calibration(
    n_null: int = 500,
    n_effect: int = 200,
    n_boot: int = 499,
    seed: int = 20261206,
    only: list[str] | None = None,
    progress: bool = False,
) -> dict:
    from threadpoolctl import threadpool_limits

    selected = [c for c in cases() if not only or any(o in c.name for o in only)]
    if not selected:
        raise ValueError(f"no calibration case matches {only}; cases: {[c.name for c in cases()]}")
    start = time.perf_counter()
    rows = []
    with threadpool_limits(limits=1):
        for case in selected:
            rows.append(run_case(case, n_null, n_effect, n_boot, seed))
            if progress:
                r = rows[-1]
                print(
                    f"{case.name}: type-I {r['type1_error']}, coverage {r['coverage']}, power {r['power']} "
                    f"({r['runtime_s']} s)",
                    flush=True,
                )
    return {
        "settings": {
            "n_null": n_null,
            "n_effect": n_effect,
            "n_boot": n_boot,
            "seed": seed,
            "alpha": ALPHA,
            "target_type1": list(TARGET_TYPE1),
            "target_coverage": TARGET_COVERAGE,
            "population_subjects": POPULATION_SUBJECTS,
        },
        "default_design": DEFAULT.as_dict(),
        "rows": rows,
        "runtime_s": round(time.perf_counter() - start, 1),
    }


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{100 * value:.1f} %"


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Calibration of the inference routines (issue 11)",
        "",
        f"Simulated crossover studies: default design {report['default_design']['n_subjects']} subjects × "
        f"doses {report['default_design']['doses']} (Williams sequences), seed {s['seed']}, "
        f"{s['n_null']} null and {s['n_effect']} planted-effect studies per routine, {s['n_boot']} subject-bootstrap "
        f"resamples, nominal α = {s['alpha']}. Targets: type-I in "
        f"[{100 * s['target_type1'][0]:g} %, {100 * s['target_type1'][1]:g} %], 95 % CI coverage ≥ "
        f"{100 * s['target_coverage']:g} %. Runtime {report['runtime_s']} s.",
        "",
        "| routine | quantity | type-I (± MC SE) | coverage | coverage (null) | power | n_sims | runtime s | in target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        se = f" ± {100 * r['type1_mc_se']:.1f}" if r.get("type1_mc_se") is not None else ""
        target = (
            "reference"
            if r["reference"]
            else ("yes" if r.get("type1_in_target") and r.get("coverage_in_target") in (True, None) else "NO")
        )
        lines.append(
            f"| {r['name']} | {r['quantity']} | {_pct(r['type1_error'])}{se} | {_pct(r['coverage'])} | "
            f"{_pct(r['coverage_null'])} | {_pct(r['power'])} | {r['n_sims']} | {r['runtime_s']} | {target} |"
        )
    lines += ["", "Scenarios:", ""]
    for r in report["rows"]:
        lines.append(
            f"- **{r['name']}** — null: {r['null_scenario']}"
            + (
                f"; effect: {r['effect_scenario']} (true value {r['true_value_effect']:.4g})"
                if r["effect_scenario"] and isinstance(r["true_value_effect"], (int, float))
                else (f"; effect: {r['effect_scenario']}" if r["effect_scenario"] else "")
            )
        )
    lines += ["", "Definitions: see `pipelines/stats/calibration.py` and docs/statistics.md.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stats.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--n-null", type=int, default=500)
    parser.add_argument("--n-effect", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=499)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--out", type=Path, default=Path("reports/calibration"))
    parser.add_argument("--only", nargs="*", default=None, help="run only cases whose name contains one of these")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    report = run_calibration(args.n_null, args.n_effect, args.n_boot, args.seed, args.only, not args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (args.out / "calibration.md").write_text(markdown(report))
    print(f"Wrote {args.out / 'calibration.json'} and {args.out / 'calibration.md'} ({report['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
