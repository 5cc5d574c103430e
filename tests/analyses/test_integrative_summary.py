"""Notebook 04's library on the default study: the subject × dose join, planted effects recovered by the
hypothesis tests, parameter validation, and the derived-table contract (pipelines.study.derived).

The derived tables come from notebooks 01–03 (``make all``). When they are absent, the fixture computes
the same tables in memory through the library calls those notebooks make, with the manifest's parameters,
so the tests never skip and never depend on a stale report run.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pydantic
import pytest

from pipelines.analyses import integrative_summary as integrative
from pipelines.stats import format_p
from pipelines.study import derived

N_BOOT = 1000  # as the notebook (the bootstrap CIs of partial correlations at n = 36 are wide)


def _tables_from_library(study) -> dict[str, pd.DataFrame]:
    """The tables notebooks 01–03 write, computed through the functions they call."""
    from pipelines.analyses import cytokines as ca
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis
    from pipelines.analyses import peak_experience_mood as peak_mood
    from pipelines.eeg import dynamics
    from pipelines.eeg.features import open_features, read_qc

    eeg = eeg_analysis.validate_parameters(study, **study.manifest.notebook_params("01_eeg_entropy_dose"))
    cfg = eeg.dynamics_config(study.manifest.eeg.dynamics)
    features = open_features(study)
    infusion_end = eeg_analysis.infusion_end_rel_s(read_qc(study))
    markers = dynamics.recording_markers(features, cfg, eeg.window_s, infusion_end)
    changes = dynamics.plateau_changes(
        features, ["occipital_alpha_db", eeg.entropy_measure], cfg, eeg.window_s, infusion_end
    )

    pm = peak_mood.validate_parameters(study, **study.manifest.notebook_params("02_peak_experience_mood"))
    scores = peak_mood.load_scores(
        study, pm.scales, pm.mood_scale, missing_items=pm.missing_items, max_missing_fraction=pm.max_missing_fraction
    )
    outcomes = peak_mood.mood_change_table(
        scores,
        baseline=pm.baseline,
        remission_threshold=pm.remission_threshold,
        timepoint_order=study.manifest.timepoints,
    )

    cp = ca.validate_parameters(study, **study.manifest.notebook_params("03_cytokines"))
    parsed = ca.load_study_cytokines(study, timepoints=[cp.baseline_timepoint, cp.post_timepoint])
    analytes = ca.resolve_analytes(parsed, cp.analytes)
    strata = ca.study_strata(parsed, cp)
    per_pair = ca.change_table(parsed, study.sessions, strata, cp, analytes)
    return {
        "eeg_markers": markers,
        "eeg_plateau_changes": changes,
        "peak_scores": scores.peak,
        "mood_changes": derived.mood_changes_table(outcomes, scores.mood_score, pm.mood_scale),
        "cytokine_changes": derived.cytokine_changes_table(per_pair, cp.baseline_timepoint, cp.post_timepoint),
    }


@pytest.fixture(scope="module")
def params(default_study):
    return integrative.validate_parameters(default_study, n_boot=N_BOOT, primary_hypothesis="H2a")


@pytest.fixture(scope="module")
def table(default_study, params):
    return integrative.join_subject_dose(_tables(default_study), params, default_study.session_order)


@pytest.fixture(scope="module")
def hypotheses(table, params):
    return integrative.hypothesis_tests(table, params).set_index("test")


def _row(hypotheses, prefix):
    rows = hypotheses[hypotheses.index.str.startswith(prefix)]
    assert len(rows) == 1, f"expected one row {prefix!r}, got {list(rows.index)}"
    return rows.iloc[0]


# ------------------------------------------------------------------------------ the joined table
def test_one_row_per_subject_and_dose(table, default_study):
    design = default_study.manifest.generator
    assert len(table) == design.n_subjects * len(design.doses_mg_per_kg)
    assert not table.duplicated(["participant_id", "session"]).any()
    assert not table["session"].str.startswith("ses-").any()  # labels normalised
    assert (table.groupby("participant_id")["dose_mg_per_kg"].nunique() == len(design.doses_mg_per_kg)).all()
    # Peak questionnaires follow every session, placebo included (low scores); every branch covers every session.
    assert table["meq30_total"].notna().all()
    assert table.loc[~table["active"], "meq30_total"].mean() < table.loc[table["active"], "meq30_total"].min() + 1
    assert integrative.placebo_note(table, "meq30_total").startswith("Placebo included: 12 placebo session(s)")
    for column in [
        "alpha_suppression_depth_db",
        "entropy_change",
        "il6_ln_change",
        "crp_ln_change",
        "mood_baseline",
        "mood_improvement_24h",
        "mood_improvement_7d",
    ]:
        assert table[column].notna().all(), column
    # 5D-ASC dimensions and the 11 factors are carried.
    assert {"asc5d_obn", "asc5d_vir", "asc5d_unity", "asc5d_changed_meaning"} <= set(table.columns)


def test_strata_match_truth(table, default_truth):
    # Notebook 03's strata come from the screening CRP draw; a subject whose screening CRP is >= 10 mg/L
    # (acute infection) is left out of them.
    cyto = default_truth["cytokines"]
    acute = {p for p, v in cyto["screening_crp_mg_per_l"].items() if v >= 10}
    strata = table.groupby("participant_id")["subject_stratum"].first()
    assert sorted(strata[strata == "inflamed"].index) == sorted(set(cyto["screening_inflamed_subjects"]) - acute)


def _tables(study) -> dict[str, pd.DataFrame]:
    if all(derived.table_path(study, name).is_file() for name in integrative.TABLES):
        return integrative.load_derived(study)
    return _tables_from_library(study)


def test_dose_disagreement_between_branches_is_refused(default_study, params):
    tables = _tables(default_study)
    peak = tables["peak_scores"].copy()
    peak.loc[0, "dose_mg_per_kg"] = 0.75
    with pytest.raises(ValueError, match="dose"):
        integrative.join_subject_dose({**tables, "peak_scores": peak}, params)


# ---------------------------------------------------------------------------- planted effects
def test_h2_peak_predicts_mood_beyond_dose_and_baseline(table, hypotheses, default_truth):
    assert default_truth["mood"]["peak_slope_per_unit_intensity"]["24h"] > 0  # what is planted
    within = _row(hypotheses, "H2a")
    # H2a is now the within-subject partial correlation: 12 subjects are the unit, not 48 sessions (placebo
    # included: its questionnaires are rated too).
    assert within["family"] == "confirmatory" and within["effect"] == "partial r_rm"
    assert within["n_subjects"] == 12 and within["n"] == 48
    # Positive as planted. With 12 subjects × 4 sessions and dose, baseline and 3 period terms removed
    # within subjects, its interval is wide (the period effect the generator plants costs those degrees of
    # freedom), so significance is not asserted: the report says what the data support.
    assert within["estimate"] > 0.2, within.to_dict()
    assert within["ci_low"] < within["estimate"] < within["ci_high"] and within["p_fdr"] >= within["p"]
    # It equals the partial r of peak in OLS improvement ~ peak + dose + baseline + subject fixed effects.
    import statsmodels.formula.api as smf

    data = table.dropna(subset=["meq30_total", "mood_improvement_24h", "mood_baseline"])
    # The crossover period (from the recorded session order) is one of the adjusters.
    assert integrative.has_order(table) and "period" in within["statement"]
    fit = smf.ols(
        "mood_improvement_24h ~ meq30_total + dose_mg_per_kg + mood_baseline + C(period) + C(participant_id)", data
    ).fit()
    t = fit.tvalues["meq30_total"]
    assert within["estimate"] == pytest.approx(t / np.sqrt(t * t + fit.df_resid), abs=1e-8)
    h2b = _row(hypotheses, "H2b")
    # H2b: the within-subject effect in MADRS points per SD of the peak score = the peak_z coefficient of OLS with
    # subject fixed effects and period (the within part of the within/between decomposition), wild cluster
    # bootstrap-t over the 12 subjects: positive as planted.
    z = (data["meq30_total"] - data["meq30_total"].mean()) / data["meq30_total"].std(ddof=1)
    fe = smf.ols(
        "mood_improvement_24h ~ z + dose_mg_per_kg + mood_baseline + C(period) + C(participant_id)", data.assign(z=z)
    ).fit()
    assert h2b["estimate"] == pytest.approx(fe.params["z"], rel=1e-8)
    assert h2b["n_subjects"] == 12 and h2b["n"] == 48 and "wild cluster bootstrap-t" in h2b["method"]
    assert "period" in h2b["method"] and h2b["estimate"] > 0
    assert "MixedLM" not in h2b["method"]  # no random-intercept Wald test left in H2
    # The verdict is BH-FDR across the confirmatory family (H1-H4), so it also depends on the other rows.
    assert h2b["verdict"] == ("supports" if h2b["p_fdr"] <= 0.05 else "not supported")
    between = _row(hypotheses, "H2c")
    assert between["family"] == "confirmatory" and between["effect"] == "r between subjects"
    pooled = _row(hypotheses, "H2d")
    assert pooled["family"] == "description" and np.isnan(pooled["p"]) and np.isnan(pooled["p_fdr"])
    assert pooled["verdict"].startswith("description only")


@pytest.mark.parametrize("analyte", ["IL6", "CRP"])
def test_h3_decrease_only_in_inflamed_stratum(table, params, hypotheses, default_truth, analyte):
    planted = default_truth["cytokines"]["log_fold_change_24h"]
    assert planted["inflamed"]["active"][analyte] < 0 and planted["non_inflamed"]["active"][analyte] == 0
    # The report's strata come from notebook 03 (a screening CRP draw), which misclassifies subjects near
    # 3 mg/L while the planted change follows the CRP set point: its inflamed rows point the planted way.
    assert _row(hypotheses, f"H3a {analyte}")["estimate"] < 0
    # With the true (set-point) strata the same H3 routine recovers the planted change.
    truly = np.where(
        table["participant_id"].isin(default_truth["cytokines"]["inflamed_subjects"]), "inflamed", "non-inflamed"
    )
    true_table = table.assign(stratum=truly, subject_stratum=truly, inflamed=(truly == "inflamed").astype(float))
    rows = integrative.h3_inflamed_stratum(true_table, params).set_index("test")
    inflamed, other, inter, within_inter = (_row(rows, f"H3{k} {analyte}") for k in "abcd")
    column = f"{analyte.lower()}_ln_change"
    change = planted["inflamed"]["active"][analyte]
    # Placebo-controlled, the subject as the unit: per subject, mean active − placebo ln change.
    assert inflamed["ci_high"] < 0 and inflamed["ci_low"] <= change <= inflamed["ci_high"]
    assert other["ci_low"] <= 0 <= other["ci_high"]
    n_inflamed = len(default_truth["cytokines"]["inflamed_subjects"])
    assert inflamed["n_subjects"] == n_inflamed and other["n_subjects"] == 12 - n_inflamed
    # H3c, the interaction, equals Welch's t over the per-subject contrasts computed here.
    from scipy import stats as sps

    per = true_table.groupby(["participant_id", "active"])[column].mean().unstack("active")
    contrast = per[True] - per[False]
    is_inflamed = contrast.index.isin(default_truth["cytokines"]["inflamed_subjects"])
    welch = sps.ttest_ind(contrast[is_inflamed], contrast[~is_inflamed], equal_var=False)
    assert inter["estimate"] == pytest.approx(contrast[is_inflamed].mean() - contrast[~is_inflamed].mean(), abs=1e-12)
    assert inter["p"] == pytest.approx(welch.pvalue, rel=1e-8)
    # The placebo-controlled interaction covers the planted change; CRP's within-subject draw noise (realistic
    # hs-CRP variation) leaves its 5-subject interaction CI wide, IL-6's excludes 0.
    assert inter["estimate"] < 0 and inter["ci_low"] <= change <= inter["ci_high"]
    assert inter["ci_high"] < 0 or analyte == "CRP"
    # H3d: the same interaction adjusted for the crossover period (each subject's period composition), from the
    # routine's period option; it covers the planted change as H3c does.
    assert "period composition" in within_inter["method"] and within_inter["n_subjects"] == 12
    reference = integrative.stratum_by_treatment_interaction(
        true_table.assign(s=(true_table["stratum"] == "inflamed").astype(float)),
        column,
        "active",
        "s",
        "participant_id",
        period="period",
    ).set_index("quantity")
    assert within_inter["estimate"] == pytest.approx(reference.loc["interaction", "estimate"], abs=1e-12)
    assert within_inter["ci_low"] <= change <= within_inter["ci_high"]
    assert within_inter["ci_high"] < 0 or analyte == "CRP"
    # Recovered within a generous band of the planted inflamed change.
    assert abs(inflamed["estimate"] - change) < 0.3
    assert "MixedLM" not in " ".join(rows["method"])  # no random-intercept Wald test left in H3


def test_h3_null_strata_with_no_planted_change_are_not_significant(params):
    """No treatment effect and strata unrelated to the change: H3a-H3d find nothing (a planted null), and a
    planted interaction is found by H3c and H3d (a planted effect)."""
    rng = np.random.default_rng(11)
    subjects = np.repeat([f"sub-{i:02d}" for i in range(1, 13)], 4)
    dose = np.tile([0.0, 0.25, 0.5, 1.0], 12)
    inflamed = np.repeat(np.arange(12) < 5, 4)
    period = np.concatenate([rng.permutation(4) + 1 for _ in range(12)])
    trait = np.repeat(rng.normal(0, 0.3, 12), 4)
    base = pd.DataFrame(
        {
            "participant_id": subjects,
            "dose_mg_per_kg": dose,
            "active": dose > 0,
            "period": period,
            "stratum": np.where(inflamed, "inflamed", "non-inflamed"),
            "subject_stratum": np.where(inflamed, "inflamed", "non-inflamed"),
        }
    )
    noise = trait + rng.normal(0, 0.1, len(base))
    null = integrative.h3_inflamed_stratum(base.assign(il6_ln_change=noise), params, ["IL6"]).set_index("test")
    for k in "abcd":
        row = _row(null, f"H3{k}")
        assert row["ci_low"] <= 0 <= row["ci_high"] and row["p"] > 0.05, row.to_dict()
    planted = base.assign(il6_ln_change=noise - 0.5 * (inflamed & (dose > 0)))
    effect = integrative.h3_inflamed_stratum(planted, params, ["IL6"]).set_index("test")
    for k in "acd":
        row = _row(effect, f"H3{k}")
        assert row["ci_low"] <= -0.5 <= row["ci_high"] and row["ci_high"] < 0, row.to_dict()


def test_h1_is_dose_adjusted_within_and_between_subjects(table, params, hypotheses, default_truth):
    """The default study plants one subject trait (ketamine_sensitivity) driving both EEG sensitivity and
    peak intensity: a positive *between-subject* association. H1 is posed dose-adjusted, so the within row
    is not the correlation of two dose curves but the partial r given dose level and period."""
    import statsmodels.formula.api as smf

    trait = pd.Series(default_truth["subjects"]["ketamine_sensitivity"])
    active = table  # every session has a peak score (placebo included)
    means = active.groupby("participant_id")[["entropy_change", "meq30_total"]].mean()
    means["trait"] = trait.reindex(means.index)
    assert means.corr(method="spearman").loc["trait", "entropy_change"] > 0.5
    assert means.corr(method="spearman").loc["trait", "meq30_total"] > 0.3
    between, within, pooled = _row(hypotheses, "H1c"), _row(hypotheses, "H1a"), _row(hypotheses, "H1b")
    assert between["estimate"] > 0 and between["ci_low"] > 0
    # The verdict is BH-FDR across the whole confirmatory family (H1-H4), so it also depends on the other rows.
    assert between["verdict"] == ("supports" if between["p_fdr"] <= params.fdr_alpha else "not supported")
    # Every subject had every dose, so subject means of dose-adjusted values give the r of raw subject means.
    assert between["estimate"] == pytest.approx(means["entropy_change"].corr(means["meq30_total"]), abs=1e-10)
    # Within: the partial r of entropy change in OLS peak ~ entropy + C(dose) + C(period) + C(subject).
    assert within["effect"] == "partial r_rm" and "dose-adjusted" in within.name
    fit = smf.ols("meq30_total ~ entropy_change + C(dose_mg_per_kg) + C(period) + C(participant_id)", active).fit()
    t = fit.tvalues["entropy_change"]
    assert within["estimate"] == pytest.approx(t / np.sqrt(t * t + fit.df_resid), abs=1e-8)
    assert within["n_subjects"] == 12 and within["n"] == 48

    # Nothing is planted within subjects at a fixed dose: the raw across-dose r_rm compares two dose curves (with
    # placebo rated, both rise from placebo: positive; over the active doses only the entropy curve turns down while
    # the peak curve saturates: negative), the dose-adjusted one is null.
    def raw(rows):
        result = integrative.within_between_correlation(
            rows, "entropy_change", "meq30_total", "participant_id", n_boot=199
        )
        return result.set_index("quantity").loc["within", "estimate"]

    assert raw(active) > 0.3 and raw(active[active["active"]]) < -0.3
    assert within["ci_low"] <= 0 <= within["ci_high"]
    assert pooled["family"] == "description" and np.isnan(pooled["p"])


def test_h4_depth_deepens_with_dose_and_entropy_peaks_at_planted_dose(table, hypotheses, default_truth):
    assert default_truth["eeg"]["alpha_suppression_increases_with_dose"]
    depth = _row(hypotheses, "H4a")
    assert depth["ci_high"] < 0 and depth["p"] < 0.001
    doses = integrative.titration_doses(table)
    assert doses["entropy_max_dose"].mode().iloc[0] == default_truth["eeg"]["expected_entropy_peak_dose_mg_per_kg"]
    assert _row(hypotheses, "H4c alpha")["ci_high"] < 0  # alpha keeps deepening past the entropy maximum
    titration = _row(hypotheses, "H4b")
    assert 0 <= titration["ci_low"] <= titration["estimate"] <= titration["ci_high"] <= 1
    # Chance comes from the marginals, not 1/n_doses.
    known = doses.dropna(subset=["alpha_endpoint_dose"])
    chance = sum(
        np.mean(known["alpha_endpoint_dose"] == d) * np.mean(known["entropy_max_dose"] == d)
        for d in set(known["alpha_endpoint_dose"]) | set(known["entropy_max_dose"])
    )
    assert f"chance agreement {chance:.2f}" in titration["method"] and "permutation" in titration["method"]
    # H4a is the reports' dose model with the crossover terms the recorded order identifies.
    assert "period" in depth["method"] and "bootstrap-t" in depth["method"]


def test_h4b_chance_level_follows_the_marginals():
    # Both labels mostly at one dose: agreement 80 % is what chance gives (0.9·0.9 + 0.1·0.1 = 0.82), though
    # a binomial test against 1/3 would call it significant.
    first = np.array([0.5] * 9 + [1.0])
    second = np.array([0.5] * 8 + [1.0, 0.5])
    observed, chance, p = integrative.agreement_permutation(first, second, 999, 0)
    assert observed == pytest.approx(0.8) and chance == pytest.approx(0.82)
    assert p > 0.5
    from scipy import stats as sps

    assert sps.binomtest(8, 10, 1 / 3, alternative="greater").pvalue < 0.01
    perfect = np.array([0.25, 0.5, 1.0] * 4)
    assert integrative.agreement_permutation(perfect, perfect, 999, 0)[2] < 0.01


def test_without_a_session_order_the_report_says_period_is_not_modelled(table, params):
    from pipelines.stats.crossover import CROSSOVER_NOT_MODELLED

    plain = table.drop(columns=["session_order", "period", "sequence", "carryover_dose"])
    assert integrative.crossover_note(plain) == CROSSOVER_NOT_MODELLED
    assert "period" in integrative.crossover_note(table)
    h4a = integrative.h4_alpha_depth_dose(plain, params).iloc[0]
    assert CROSSOVER_NOT_MODELLED in h4a["method"] and h4a["ci_high"] < 0


def test_primary_hypothesis_leads_the_table_and_the_summary(hypotheses, params):
    table = hypotheses.reset_index()
    assert params.primary_hypothesis == "H2a"
    assert table["primary"].iloc[0] and table["test"].iloc[0].startswith("H2a")
    assert table["primary"].sum() == 1
    assert list(integrative.HYPOTHESIS_COLUMNS[3:7]) == ["effect", "estimate", "ci_low", "ci_high"]
    text = integrative.primary_text(table, params)
    row = table.iloc[0]
    assert text.startswith("**Pre-registered primary hypothesis (H2a")
    assert f"{row['estimate']:.2f} (95% CI {row['ci_low']:.2f} to {row['ci_high']:.2f}" in text
    none = integrative.primary_text(
        table, integrative.IntegrativeParameters(**{**params.as_dict(), "primary_hypothesis": None})
    )
    assert "None is named" in none


def test_library_functions_are_not_collected_by_pytest():
    assert not [name for name in integrative.__all__ if name.startswith("test")]
    assert not [name for name in dir(integrative) if name.startswith("test_")]


def test_hypothesis_table_is_tidy(hypotheses):
    table = hypotheses.reset_index()[integrative.HYPOTHESIS_COLUMNS]
    assert sorted(hypotheses.reset_index().columns) == sorted(integrative.HYPOTHESIS_COLUMNS)
    assert set(table["hypothesis"]) == {"H1", "H2", "H3", "H4", "H5"}
    assert set(table["family"]) == {"confirmatory", "exploratory", "description"}
    finite = table.dropna(subset=["p", "p_fdr"])
    assert ((finite["p_fdr"] >= finite["p"] - 1e-12) & (finite["p_fdr"] <= 1)).all()
    # Description rows (pooled r, the spectrum-controlled H4c) are outside every FDR family.
    assert table.loc[table["family"] == "description", "p_fdr"].isna().all()
    assert table["statement"].str.len().gt(20).all() and table["method"].str.len().gt(5).all()


def test_h5_is_exploratory_and_outside_the_confirmatory_fdr_family(hypotheses):
    from pipelines.stats import fdr_bh

    table = hypotheses.reset_index()
    h5 = table[table["hypothesis"] == "H5"]
    assert len(h5) >= 5 and (h5["family"] == "exploratory").all()
    assert h5["verdict"].str.startswith("exploratory").all()
    confirmatory = table[table["family"] == "confirmatory"]
    assert not confirmatory["hypothesis"].eq("H5").any()
    np.testing.assert_allclose(confirmatory["p_fdr"], fdr_bh(confirmatory["p"].to_numpy(float)))
    np.testing.assert_allclose(h5["p_fdr"], fdr_bh(h5["p"].to_numpy(float)))
    assert table.loc[table["family"] == "description", "p_fdr"].isna().all()


def test_a_shared_subject_trait_is_between_not_within(params):
    """A planted subject trait drives both variables (pipelines.stats.simulation): the pooled
    session-level correlation is 'significant', the within-subject row of the matrix is not."""
    from pipelines.stats.simulation import Design, simulate_crossover

    sim = simulate_crossover(Design(trait_sd=2.0, within_b=0.0, period_effect=(0, 0, 0, 0)), np.random.default_rng(3))
    table = pd.DataFrame(
        {
            "participant_id": sim["subject"],
            "active": True,
            "dose_mg_per_kg": sim["dose"],
            "meq30_total": sim["peak"],
            "mood_improvement_24h": sim["mood"],
        }
    )
    assert params.peak_score == "meq30_total" and params.mood_timepoint == "24h"
    rows = integrative.correlation_matrix(table, params)
    pair = rows[(rows["x"] == "meq30_total") & (rows["y"] == "mood_improvement_24h")].set_index("quantity")
    from scipy import stats as sps

    assert sps.pearsonr(table["meq30_total"], table["mood_improvement_24h"])[1] < 0.001
    assert pair.loc["within", "p"] > 0.05 and pair.loc["within", "n_subjects"] == 12
    assert pair.loc["between", "p"] < 0.05 and pair.loc["between", "estimate"] > 0.5
    assert np.isnan(pair.loc["pooled", "p"])


def test_combined_model_states_its_sample_size(table, params):
    model = integrative.combined_model(table, params)
    branches = {"dose_mg_per_kg", "entropy_change", params.peak_score, "il6_ln_change", "mood_baseline"}
    assert branches <= set(model["predictor"])
    assert (model["obs_per_predictor"] == model["n"] / model["n_predictors"]).all()
    assert (model["vif"] >= 1 - 1e-9).all()


def test_correlation_matrix_each_pair_once_per_quantity_with_fdr(table, params):
    corr = integrative.correlation_matrix(table, params)
    k = len(integrative.matrix_variables(table, params))
    assert set(corr["quantity"]) == {"within", "between", "pooled"}
    from pipelines.stats import fdr_bh

    for quantity, rows in corr.groupby("quantity"):
        assert len(rows) == k * (k - 1) // 2
        assert len({frozenset(p) for p in zip(rows["x"], rows["y"])}) == len(rows)
        if quantity == "pooled":
            assert rows["p"].isna().all() and not rows["significant_fdr"].any()
        else:
            np.testing.assert_allclose(rows["p_fdr"], fdr_bh(rows["p"].to_numpy(float)))
    within = corr[corr["quantity"] == "within"]
    assert (within["n_subjects"] == 12).all()
    # every subject had every dose: the between-subject correlation with dose is undefined, not 0
    assert corr[(corr["quantity"] == "between") & (corr["x"] == "dose_mg_per_kg")]["estimate"].isna().all()


def test_summary_is_written_from_the_numbers(table, hypotheses, params):
    corr = integrative.correlation_matrix(table, params)
    text = integrative.summary_text(table, hypotheses.reset_index(), corr, params)
    h2 = _row(hypotheses, "H2a")
    assert (
        f"partial r_rm = {h2['estimate']:.2f} (95% CI {h2['ci_low']:.2f} to {h2['ci_high']:.2f}, {format_p(h2['p'])}"
    ) in text
    h1 = _row(hypotheses, "H1a")
    assert f"partial r_rm = {h1['estimate']:.2f} (95% CI {h1['ci_low']:.2f}" in text
    assert text.startswith("**Pre-registered primary hypothesis (H2a")
    assert f"mixing the dose curves) r = {_row(hypotheses, 'H1b')['estimate']:.2f} (description" in text
    assert "H5 (combined model, exploratory — outside the confirmatory FDR family)" in text
    n_conf = int((hypotheses["family"] == "confirmatory").sum())
    assert f"Benjamini–Hochberg over the {n_conf} confirmatory rows" in text
    for heading in ("H1", "H2", "H3", "H4", "H5", "Cross-branch"):
        assert heading in text
    # p-values only as stats.format_p writes them: never "p = 0.0", "p = 0.000" or "3e-172"
    assert not re.search(r"p(_FDR)? ?[=<] ?(0\.0+\b|[0-9.]+e-)", text), text
    assert not re.search(r"\d(\.\d+)?e-\d", text)


# ------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mood_timepoint": "25h"}, "did you mean '24h'"),
        ({"mood_timepoint": "baseline"}, "baseline"),
        ({"entropy_measure": "lzc_medain"}, "did you mean 'lzc_median'"),
        ({"peak_score": "meq30_totl"}, "did you mean 'meq30_total'"),
        ({"fdr_alpha": 1.5}, "fdr_alpha"),
        ({"fdr_alpha": True}, "fdr_alpha"),
        ({"n_boot": 10}, "n_boot"),
        ({"n_boot": 100.5}, "whole number"),
        ({"seed": -1}, "seed"),
        ({"primary_hypothesis": "h2a"}, "did you mean 'H2a'"),
        ({"primary_hypothesis": "H5 dose_mg_per_kg"}, "not a confirmatory test"),
        ({"primary_hypothesis": 2}, "not a confirmatory test"),
    ],
)
def test_bad_parameters_are_rejected(default_study, kwargs, message):
    with pytest.raises(ValueError, match=message):
        integrative.validate_parameters(default_study, **kwargs)


def test_notebook_parameters_match_the_library():
    import papermill

    from pipelines.core.paths import NOTEBOOKS_DIR

    notebook = NOTEBOOKS_DIR / "04_integrative_summary.ipynb"
    declared = papermill.inspect_notebook(str(notebook))
    assert set(declared) == {
        "manifest_path",
        "mood_timepoint",
        "entropy_measure",
        "peak_score",
        "fdr_alpha",
        "n_boot",
        "seed",
        "primary_hypothesis",
    }
    cells = json.loads(notebook.read_text())["cells"]
    parameters = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    for line in "".join(parameters["source"]).splitlines():
        assert "=" not in line.partition("#")[2], f"papermill drops parameters whose comment holds '=': {line}"
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code")


# ------------------------------------------------------------------------------ derived tables
def test_missing_table_names_its_notebook(default_study, params, tmp_path, monkeypatch):
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="03_cytokines"):
        derived.read_table(default_study, "cytokine_changes")
    with pytest.raises(FileNotFoundError, match="01_eeg_entropy_dose"):
        integrative.subject_dose_table(default_study, params)
    with pytest.raises(FileNotFoundError, match="no notebook is known"):
        derived.read_table(default_study, "no_such_table")


def test_write_then_read_keeps_identifiers(default_study, tmp_path, monkeypatch):
    monkeypatch.setenv("KW_WORKDIR", str(tmp_path))
    table = pd.DataFrame(
        {"participant_id": ["sub-01"], "subject": ["01"], "session": ["ket050"], "value": [np.nan], "flag": [True]}
    )
    written = derived.write_tables(default_study, {"peak_scores": table})
    assert written == ["tables/peak_scores.tsv"]
    back = derived.read_table(default_study, "peak_scores")
    assert back.loc[0, "subject"] == "01" and np.isnan(back.loc[0, "value"]) and bool(back.loc[0, "flag"])
    assert list(derived.session_label(["ses-ket050", "ket050", "placebo"])) == ["ket050", "ket050", "placebo"]


def test_eeg_analysis_still_exposes_write_tables():
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis

    assert eeg_analysis.write_tables is derived.write_tables


def test_dose_adjusted_within_figure_shows_what_h1a_reads(table):
    import holoviews as hv

    hv.extension("bokeh")
    from pipelines.figures import integrative_summary as figures

    overlay = figures.dose_adjusted_within(table, "entropy_change", "meq30_total")
    data = pd.concat([element.data for element in overlay], ignore_index=True)
    assert len(data) == len(table.dropna(subset=["entropy_change", "meq30_total"])) == 48  # placebo included
    for column in ("entropy_change_within", "meq30_total_within"):
        # dose curve and subject level removed: zero mean within every subject
        assert data.groupby("participant_id")[column].mean().abs().max() < 1e-9


def test_a_study_without_placebo_questionnaires_runs_and_says_placebo_is_missing(table, params, hypotheses):
    """Real data may have peak questionnaires after active doses only: every hypothesis still runs, on the active
    sessions for the peak tests, and one line says that placebo is missing."""
    peak_columns = [c for c in table.columns if c.startswith(integrative.PEAK_PREFIXES)]
    old = table.copy()
    old.loc[~old["active"], peak_columns] = np.nan
    note = integrative.placebo_note(old, params.peak_score)
    assert note.startswith("Placebo missing: the peak questionnaires exist only after active doses (12 placebo")
    rows = integrative.hypothesis_tests(old, params).set_index("test")
    for test in ("H1a", "H2a", "H2b"):
        assert _row(rows, test)["n"] == 36 and _row(rows, test)["n_subjects"] == 12
    # the tests without a peak score keep every session
    assert _row(rows, "H4a")["n"] == 48 and _row(rows, "H3c IL6")["n"] == _row(hypotheses, "H3c IL6")["n"]


def test_run_is_the_notebooks_analysis(default_study, monkeypatch):
    """run() — what notebook 04 calls — gives the pieces the notebook used to assemble, on the same tables."""
    tables = _tables(default_study)
    monkeypatch.setattr(integrative, "load_derived", lambda study: tables)
    result = integrative.run(default_study, {"n_boot": 200, "primary_hypothesis": "H2a"})
    params = integrative.validate_parameters(default_study, n_boot=200, primary_hypothesis="H2a")
    assert result.params == params
    table = integrative.subject_dose_table(default_study, params)
    pd.testing.assert_frame_equal(result.table, table)
    combined = integrative.combined_model(table, params)
    pd.testing.assert_frame_equal(result.hypotheses, integrative.hypothesis_tests(table, params, combined))
    pd.testing.assert_frame_equal(result.correlations, integrative.correlation_matrix(table, params))
    assert result.summary == integrative.summary_text(table, result.hypotheses, result.correlations, params)
    assert result.placebo_note == integrative.placebo_note(table, params.peak_score)
    with pytest.raises(pydantic.ValidationError, match="primary_hypotesis"):
        integrative.run(default_study, {"primary_hypotesis": "H2a"})  # a misspelt parameter is refused
