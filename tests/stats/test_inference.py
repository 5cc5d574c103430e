"""Subject-level inference (pipelines.stats, issue 11): equal to independent references
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

from pipelines.stats import (
    dose_response_mixed,
    two_lines_test,
    within_between_correlation,
    within_subject_mediation,
    within_subject_partial_correlation,
)
from pipelines.stats._rows import ROW_COLUMNS
from pipelines.stats.simulation import Design, simulate_crossover


def study(seed: int, **design) -> pd.DataFrame:
    return simulate_crossover(Design(**design), np.random.default_rng(seed))


def assert_contract(result: pd.DataFrame) -> None:
    assert list(result.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
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
    result = within_subject_partial_correlation(data, "peak", "mood", "subject", ["dose"], ["period"], n_boot=99).iloc[
        0
    ]
    assert_contract(result.to_frame().T)
    fit = smf.ols("mood ~ peak + dose + C(period) + C(subject)", data).fit()
    t, dof = fit.tvalues["peak"], fit.df_resid
    assert result["dof"] == dof
    assert result["estimate"] == pytest.approx(t / np.sqrt(t * t + dof), abs=1e-10)
    assert result["p_parametric"] == pytest.approx(fit.pvalues["peak"], rel=1e-8)
    assert result["covariates_used"] == "dose, period_2, period_3, period_4"


def test_partial_without_covariates_is_rm_corr_and_subject_level_covariate_is_dropped():
    data = unbalanced().dropna()
    data["age"] = data["subject"].str[-2:].astype(float) * 3 + 20  # constant within subject
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
    population = within_between_correlation(
        study(99, n_subjects=4000, **design), "peak", "mood", "subject", n_boot=20
    ).set_index("quantity")
    truth = population.loc["within", "estimate"]
    result = within_between_correlation(
        study(12, n_subjects=40, **design), "peak", "mood", "subject", seed=2
    ).set_index("quantity")
    assert result.loc["within", "ci_low"] > 0
    assert result.loc["within", "ci_low"] < truth < result.loc["within", "ci_high"]


def test_seeded_and_independent_of_thread_count():
    data = unbalanced()
    run = lambda: pd.concat(
        [
            within_between_correlation(data, "peak", "mood", "subject", seed=5),
            within_subject_partial_correlation(data, "peak", "mood", "subject", ["dose"], ["period"], seed=5),
            within_subject_mediation(data, "dose", "peak", "mood", "subject", categorical=["period"], seed=5),
            dose_response_mixed(data, "mood", "dose", "subject", period="period", seed=5),
            two_lines_test(data, "mood", "dose", "subject", period="period", seed=5),
        ]
    )
    with threadpool_limits(limits=1):
        one = run()
    with threadpool_limits(limits=2):
        two = run()
    pd.testing.assert_frame_equal(one.reset_index(drop=True), two.reset_index(drop=True), check_exact=True)
    other = within_between_correlation(data, "peak", "mood", "subject", seed=6)
    assert other["ci_low"].iloc[0] != one["ci_low"].iloc[0]


# ------------------------------------------------------------------------------------------------
# Dose-response mixed model
# ------------------------------------------------------------------------------------------------


def test_dose_effect_equals_statsmodels_random_slope_model_and_warnings_are_reported():
    import warnings

    data = study(21, mood_dose_mean=1.0, mood_dose_sd=1.0)
    result = dose_response_mixed(data, "mood", "dose", "subject", period="period", n_boot=99)
    assert_contract(result)
    row = result.iloc[0]
    assert row["quantity"] == "dose" and row["random_effects"] == "random intercept + random dose slope"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = smf.mixedlm("mood ~ dose + C(period)", data, groups=data["subject"], re_formula="~dose").fit()
    assert row["estimate"] == pytest.approx(fit.fe_params["dose"], rel=1e-8)
    assert row["p_wald_z"] == pytest.approx(fit.pvalues["dose"], rel=1e-6)
    assert row["converged"] == fit.converged
    for item in caught:  # every warning statsmodels gave is in the row, none swallowed
        assert str(item.message) in row["warnings"]
    assert list(result["quantity"]) == ["dose", "C(period)[T.2]", "C(period)[T.3]", "C(period)[T.4]"]


def test_random_slope_fallback_is_reported_not_silent():
    data = study(22)
    data = data[data["dose"].isin([0.0, 1.0])]  # two doses: a subject's slope is not separable
    row = dose_response_mixed(data, "mood", "dose", "subject", n_boot=99).iloc[0]
    assert row["random_effects"] == "random intercept only"
    assert "not identified" in row["fallback_reason"]
    assert "random intercept only" in row["convention"]


def test_crossover_terms_and_planted_dose_effect_recovered():
    data = study(23, n_subjects=40, mood_dose_mean=1.0, mood_dose_sd=0.5, trait_corr=0.0)
    result = dose_response_mixed(
        data, "mood", "dose", "subject", period="period", sequence="sequence", carryover="carryover", seed=3
    ).set_index("quantity")
    assert {"dose", "carryover", "C(period)[T.4]", "C(sequence)[T.2]"} <= set(result.index)
    dose = result.loc["dose"]
    assert dose["ci_low"] > 0 and dose["ci_low"] < 1.0 < dose["ci_high"]
    # Simulated period effect of period 4 vs 1 is 0.7; carry-over 0.
    assert result.loc["C(period)[T.4]", "ci_low"] < 0.7 < result.loc["C(period)[T.4]", "ci_high"]
    assert result.loc["carryover", "ci_low"] < 0 < result.loc["carryover", "ci_high"]


# ------------------------------------------------------------------------------------------------
# Two-lines test
# ------------------------------------------------------------------------------------------------


def two_lines_rate(shape: str, amplitude: float, n: int, stream: int) -> tuple[float, float]:
    """Share of studies with verdict "inverted U", and with a significant negative dose² (naive)."""
    verdicts, quadratic = [], []
    for i in range(n):
        data = study(10_000 * stream + i, mood_dose_mean=amplitude, mood_shape=shape)
        result = two_lines_test(data, "mood", "dose", "subject", period="period", n_boot=199, seed=i)
        low, high = result.iloc[0], result.iloc[1]
        inverted = result["verdict"].iloc[0] == "inverted U"
        # The verdict is exactly the two-lines rule.
        assert inverted == (low["p"] < 0.05 and high["p"] < 0.05 and low["estimate"] > 0 > high["estimate"])
        verdicts.append(inverted)
        fit = smf.ols("mood ~ dose + I(dose**2) + C(period) + C(subject)", data).fit()
        quadratic.append(fit.params.iloc[-1] < 0 and fit.pvalues.iloc[-1] < 0.05)
    return float(np.mean(verdicts)), float(np.mean(quadratic))


def test_two_lines_rarely_calls_emax_truth_an_inverted_u_but_detects_a_real_one():
    emax_rate, emax_quadratic = two_lines_rate("emax", 3.0, 60, stream=1)
    print(f"Emax truth: two-lines 'inverted U' {emax_rate:.1%}, naive dose² {emax_quadratic:.1%}")
    assert emax_rate <= 0.10
    assert emax_quadratic >= 0.8  # the naive quadratic does mistake saturation for a U
    inverted_rate, _ = two_lines_rate("inverted_u", 1.5, 30, stream=2)
    print(f"Inverted-U truth: two-lines detects {inverted_rate:.1%}")
    assert inverted_rate >= 0.7


# ------------------------------------------------------------------------------------------------
# Within-subject mediation
# ------------------------------------------------------------------------------------------------


def test_mediation_paths_equal_statsmodels_ols_with_subject_fixed_effects():
    data = unbalanced().dropna()
    raw = within_subject_mediation(data, "dose", "peak", "mood", "subject", categorical=["period"], n_boot=99)
    assert_contract(raw)
    result = raw.set_index("quantity")
    fe = " + C(period) + C(subject)"
    a = smf.ols("peak ~ dose" + fe, data).fit().params["dose"]
    full = smf.ols("mood ~ peak + dose" + fe, data).fit().params
    total = smf.ols("mood ~ dose" + fe, data).fit().params["dose"]
    assert result.loc["a", "estimate"] == pytest.approx(a, rel=1e-9)
    assert result.loc["b", "estimate"] == pytest.approx(full["peak"], rel=1e-9)
    assert result.loc["c_prime", "estimate"] == pytest.approx(full["dose"], rel=1e-9)
    assert result.loc["c_total", "estimate"] == pytest.approx(total, rel=1e-9)
    assert result.loc["indirect", "estimate"] == pytest.approx(a * full["peak"], rel=1e-9)
    assert "cov(a_j, b_j)" in result.loc["indirect", "convention"]


def test_mediation_trait_driving_mediator_and_outcome_is_not_an_indirect_effect():
    from pipelines.stats.pooled_mediation import mediation as pooled_mediation

    # One trait drives peak and mood, no within-subject b path: the pooled row-bootstrap mediation
    # (the old analysis) finds an indirect effect, the within-subject one does not.
    data = study(31, n_subjects=40, trait_sd=3.0, within_b=0.0)
    within = within_subject_mediation(
        data, "dose", "peak", "mood", "subject", categorical=["period"], seed=1
    ).set_index("quantity")
    assert within.loc["indirect", "ci_low"] < 0 < within.loc["indirect", "ci_high"]
    naive = pooled_mediation(data, "dose", "peak", "mood", n_boot=499, seed=1).set_index("path")
    assert naive.loc["indirect", "ci_low"] > 0


def test_mediation_planted_within_indirect_effect_recovered():
    # a = E[dose slope on peak] = 2, b = 0.5: indirect a*b = 1.0.
    data = study(32, n_subjects=40, within_b=0.5)
    result = within_subject_mediation(
        data, "dose", "peak", "mood", "subject", categorical=["period"], seed=2
    ).set_index("quantity")
    assert 0 < result.loc["indirect", "ci_low"] < 1.0 < result.loc["indirect", "ci_high"]
    assert result.loc["a", "ci_low"] < 2.0 < result.loc["a", "ci_high"]
    assert result.loc["c_prime", "ci_low"] < 0 < result.loc["c_prime", "ci_high"]


# ------------------------------------------------------------------------------------------------
# Calibration (small: the full suite is `python -m pipelines.stats.calibration`)
# ------------------------------------------------------------------------------------------------

from pipelines.stats import calibration  # noqa: E402


def test_small_calibration_of_the_two_cheapest_routines_and_the_naive_reference():
    report = calibration.run_calibration(
        n_null=200,
        n_effect=0,
        n_boot=499,
        only=[
            "within_between_correlation[within]",
            "within_between_correlation[between]",
            "REFERENCE naive pooled r, shared-trait null",
        ],
    )
    rows = {r["name"]: r for r in report["rows"]}
    assert len(rows) == 3
    for name in ("within_between_correlation[within]", "within_between_correlation[between]"):
        print(f"{name}: type-I {rows[name]['type1_error']:.3f}, coverage(null) {rows[name]['coverage_null']:.3f}")
        assert 0.01 <= rows[name]["type1_error"] <= 0.10
        assert rows[name]["coverage_null"] >= 0.90
    # The pooled t-test asks the wrong question: with a shared trait it "finds" the association.
    assert rows["REFERENCE naive pooled r, shared-trait null"]["type1_error"] > 0.3


def test_calibration_cli_is_deterministic_and_writes_json_and_markdown(tmp_path):
    args = ["--n-null", "8", "--n-effect", "4", "--n-boot", "49", "--quiet", "--only", "two_lines", "mediation"]
    assert calibration.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert calibration.main(args + ["--out", str(tmp_path / "b")]) == 0
    import json

    first, second = (json.loads((tmp_path / d / "calibration.json").read_text()) for d in "ab")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "runtime_s"} for r in rows]
    assert strip(first["rows"]) == strip(second["rows"])
    names = [r["name"] for r in first["rows"]]
    assert "two_lines_test" in names and "within_subject_mediation" in names
    for row in first["rows"]:
        assert {"routine", "type1_error", "coverage", "power", "n_sims", "null_design"} <= set(row)
        assert row["n_sims"] == row["n_null"] + row["n_effect"]
    text = (tmp_path / "a" / "calibration.md").read_text()
    assert "| two_lines_test |" in text and "type-I" in text


def test_studentising_standard_errors_match_the_bootstrap_spread_in_a_large_study():
    # The bootstrap-t rests on per-resample SEs (delta-method SE of r_rm on Fisher z; CR1 sandwich of
    # the GLS dose effect). With many subjects each must agree with the bootstrap SD of its estimate.
    # within_b = 1 makes r_rm about 0.8, where a wrong gradient of r shows (at r = 0.3 it would not).
    data = study(41, n_subjects=200, within_b=1.0, mood_dose_mean=1.0, mood_dose_sd=1.0)
    within = (
        within_between_correlation(data, "peak", "mood", "subject", n_boot=999, seed=4, interval="se_t")
        .set_index("quantity")
        .loc["within"]
    )
    from pipelines.stats import resampling as rs
    from pipelines.stats.association import _rm_r_and_se

    codes, g = rs.subject_codes(data["subject"])
    cross = rs.per_subject_crossproducts(rs.within_centre(data[["peak", "mood"]].to_numpy(float), codes, g), codes, g)
    _, se_z = _rm_r_and_se(None, cross)
    bootstrap_sd_z = within["se_boot"] / np.sqrt(g / (g - 1))
    assert within["estimate"] > 0.7
    assert se_z == pytest.approx(bootstrap_sd_z, rel=0.10)
    dose = dose_response_mixed(data, "mood", "dose", "subject", period="period", n_boot=999, seed=4).iloc[0]
    assert dose["se_cr1"] == pytest.approx(dose["se_boot"], rel=0.10)


def test_small_calibration_of_report_04s_h2b_and_h3d_rows():
    """The rows added for report 04 (H2b: the within-subject effect of the peak score; H3d: the placebo-controlled
    interaction adjusted for a planted period effect), few simulations and wide bounds; the full suite is
    `make calibrate`."""
    report = calibration.run_calibration(
        n_null=120,
        n_effect=40,
        n_boot=99,
        seed=7,
        only=[
            "within_between_effect[within, peak -> mood, crossover]",
            "stratum_by_treatment_interaction[screening, period]",
        ],
    )
    rows = {r["name"]: r for r in report["rows"]}
    assert len(rows) == 2
    for row in rows.values():
        assert 0.0 <= row["type1_error"] <= 0.12, row
        assert row["coverage"] >= 0.85 and row["coverage_null"] >= 0.88, row
        assert row["n_sims"] == 160
    h2b = rows["within_between_effect[within, peak -> mood, crossover]"]
    assert h2b["true_value_effect"] == 0.3 and h2b["power"] > h2b["type1_error"]
    h3d = rows["stratum_by_treatment_interaction[screening, period]"]
    assert -0.35 < h3d["true_value_effect"] < 0  # screening misclassification dilutes the planted -0.35
