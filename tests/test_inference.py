"""Subject-level inference (pipelines.inference, issue 11): equal to independent references
(pingouin, statsmodels, scipy) on the same data, planted effects recovered, a between-subject trait
not mistaken for a within-subject effect, and small calibration runs (type-I error in wide bounds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from threadpoolctl import threadpool_limits

from pipelines.inference import within_between_correlation, within_subject_partial_correlation
from pipelines.inference._rows import ROW_COLUMNS
from pipelines.inference.simulation import Design, simulate_crossover


def study(seed: int, **design) -> pd.DataFrame:
    return simulate_crossover(Design(**design), np.random.default_rng(seed))


def assert_contract(result: pd.DataFrame) -> None:
    assert list(result.columns[:len(ROW_COLUMNS)]) == ROW_COLUMNS
    assert result["convention"].str.len().min() > 20
    assert result["method"].str.len().min() > 10


# ------------------------------------------------------------------------------------------------
# Association: references
# ------------------------------------------------------------------------------------------------

def unbalanced(seed: int = 3) -> pd.DataFrame:
    """A study with missing sessions (unequal numbers of rows per subject) and a NaN."""
    data = study(seed, within_b=0.4)
    data = data.drop(index=[1, 6, 7, 20]).reset_index(drop=True)
    data.loc[3, "mood"] = np.nan
    return data


def test_within_equals_pingouin_rm_corr():
    data = unbalanced()
    result = within_between_correlation(data, "peak", "mood", "subject", n_boot=99)
    assert_contract(result)
    within = result.set_index("quantity").loc["within"]
    reference = pg.rm_corr(data=data.dropna(), x="peak", y="mood", subject="subject")
    assert within["estimate"] == pytest.approx(reference["r"].iloc[0], abs=1e-12)
    assert within["p_parametric"] == pytest.approx(reference["pval"].iloc[0], rel=1e-9)
    assert within["dof"] == reference["dof"].iloc[0]
    assert within["n_obs"] == len(data.dropna()) and within["n_subjects"] == 12


def test_between_is_pearson_of_subject_means_and_pooled_is_description_only():
    data = unbalanced()
    result = within_between_correlation(data, "peak", "mood", "subject", n_boot=99).set_index("quantity")
    means = data.dropna().groupby("subject")[["peak", "mood"]].mean()
    r, p = sps.pearsonr(means["peak"], means["mood"])
    assert result.loc["between", "estimate"] == pytest.approx(r, abs=1e-12)
    assert result.loc["between", "p_parametric"] == pytest.approx(p, rel=1e-9)
    clean = data.dropna()
    assert result.loc["pooled", "estimate"] == pytest.approx(np.corrcoef(clean.peak, clean.mood)[0, 1])
    assert np.isnan(result.loc["pooled", ["ci_low", "ci_high", "p"]].astype(float)).all()
    assert "DESCRIPTION ONLY" in result.loc["pooled", "method"]


def test_partial_equals_statsmodels_ols_with_subject_fixed_effects():
    data = unbalanced().dropna()
    result = within_subject_partial_correlation(data, "peak", "mood", "subject", ["dose"], ["period"],
                                                n_boot=99).iloc[0]
    assert_contract(result.to_frame().T)
    fit = smf.ols("mood ~ peak + dose + C(period) + C(subject)", data).fit()
    t, dof = fit.tvalues["peak"], fit.df_resid
    assert result["dof"] == dof
    assert result["estimate"] == pytest.approx(t / np.sqrt(t * t + dof), abs=1e-10)
    assert result["p_parametric"] == pytest.approx(fit.pvalues["peak"], rel=1e-8)
    assert result["covariates_used"] == "dose, period_2, period_3, period_4"


def test_partial_without_covariates_is_rm_corr_and_subject_level_covariate_is_dropped():
    data = unbalanced().dropna()
    data["age"] = data["subject"].str[-2:].astype(float) * 3 + 20      # constant within subject
    result = within_subject_partial_correlation(data, "peak", "mood", "subject", ["age"], n_boot=99)
    reference = pg.rm_corr(data=data, x="peak", y="mood", subject="subject")
    assert result["estimate"].iloc[0] == pytest.approx(reference["r"].iloc[0], abs=1e-10)
    assert result["covariates_dropped"].iloc[0] == "age"
    assert result["covariates_used"].iloc[0] == "none"


# ------------------------------------------------------------------------------------------------
# Association: planted effects, determinism
# ------------------------------------------------------------------------------------------------

def test_between_subject_trait_not_mistaken_for_within_effect():
    # Strong shared trait, no within-subject effect: pooled r is large, within r is not.
    data = study(11, n_subjects=60, trait_sd=3.0, within_b=0.0)
    result = within_between_correlation(data, "peak", "mood", "subject", seed=1).set_index("quantity")
    assert result.loc["pooled", "estimate"] > 0.5
    assert result.loc["between", "ci_low"] > 0.5
    assert abs(result.loc["within", "estimate"]) < 0.15
    assert result.loc["within", "ci_low"] < 0 < result.loc["within", "ci_high"]


def test_planted_within_effect_recovered_without_trait():
    # Within-subject effect, traits independent: the within CI excludes 0 and covers the population value.
    design = dict(trait_corr=0.0, within_b=0.5)
    population = within_between_correlation(study(99, n_subjects=4000, **design), "peak", "mood",
                                            "subject", n_boot=20).set_index("quantity")
    truth = population.loc["within", "estimate"]
    result = within_between_correlation(study(12, n_subjects=40, **design), "peak", "mood", "subject",
                                        seed=2).set_index("quantity")
    assert result.loc["within", "ci_low"] > 0
    assert result.loc["within", "ci_low"] < truth < result.loc["within", "ci_high"]


def test_seeded_and_independent_of_thread_count():
    data = unbalanced()
    run = lambda: pd.concat([  # noqa: E731
        within_between_correlation(data, "peak", "mood", "subject", seed=5),
        within_subject_partial_correlation(data, "peak", "mood", "subject", ["dose"], ["period"], seed=5)])
    with threadpool_limits(limits=1):
        one = run()
    with threadpool_limits(limits=2):
        two = run()
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    other = within_between_correlation(data, "peak", "mood", "subject", seed=6)
    assert other["ci_low"].iloc[0] != one["ci_low"].iloc[0]
