"""Peak experience and mood (issue 4): the planted effects of the default study recovered, the
statistics equal scipy/pingouin/statsmodels on the same rows, absent tables reported, parameters
validated, and the summary written from the numbers."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pydantic
import pytest
from scipy import stats as sps

from pipelines.analyses import peak_experience_mood as pm
from pipelines.core.errors import InputError
from pipelines.phenotype.questionnaires import RemissionThresholdWarning
from pipelines.stats import format_p
from pipelines.study.dataset import Study

REPO = Path(__file__).resolve().parents[2]
N_BOOT = 1000  # enough for a stable 95 % percentile interval, fast enough for the suite


@pytest.fixture(scope="module")
def study(default_study) -> Study:
    return default_study


@pytest.fixture(scope="module")
def truth(study) -> dict:
    return study.truth()


@pytest.fixture(scope="module")
def analysis(study):
    """The notebook's analysis on the default study, once per module."""
    params = pm.validate_parameters(study, n_boot=N_BOOT)
    scores = pm.load_scores(
        study,
        params.scales,
        params.mood_scale,
        missing_items=params.missing_items,
        max_missing_fraction=params.max_missing_fraction,
    )
    outcomes = pm.mood_change_table(
        scores,
        baseline=params.baseline,
        remission_threshold=params.remission_threshold,
        timepoint_order=study.manifest.timepoints,
    )
    data = pm.analysis_table(scores, outcomes, params.timepoints)
    correlations = pm.peak_vs_mood_correlations(
        data,
        scores.peak_scores,
        params.outcome,
        params.timepoints,
        method=params.correlation_method,
        baseline_column=f"{params.mood_score}_baseline",
        n_boot=params.n_boot,
        seed=params.seed,
        fdr_alpha=params.fdr_alpha,
        primary_scores=params.primary_scores,
    )
    return {
        "params": params,
        "scores": scores,
        "outcomes": outcomes,
        "data": data,
        "correlations": correlations,
        "study": study,
    }


def _row(table: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


# --- planted effects -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_planted_peak_mood_correlation_recovered_at_24h_and_fades_by_14d(study, truth, analysis, method):
    params, scores, data = analysis["params"], analysis["scores"], analysis["data"]
    table = pm.peak_vs_mood_correlations(
        data,
        scores.peak_scores,
        params.outcome,
        params.timepoints,
        method=method,
        n_boot=N_BOOT,
        seed=0,
        primary_scores=params.primary_scores,
        analyses=["bivariate"],
    )
    key = "spearman_rho" if method == "spearman" else "pearson_r"
    mood_truth = truth["mood"]
    for score in ("meq30_mystical", "meq30_total"):
        planted = mood_truth["expected_correlation_with_improvement"][score]
        realised = mood_truth["realised_correlation_with_improvement"][score]
        at_24h = _row(table, analysis="bivariate", score=score, timepoint="24h")
        assert at_24h["n"] == 48 and at_24h["family"] == "primary"  # every session rated, placebo included
        assert at_24h["estimate"] > 0  # sign: more = better
        assert at_24h["ci_low"] <= planted["24h"][key] <= at_24h["ci_high"]  # population value in CI
        assert at_24h["ci_low"] > 0
        # The generator's own in-sample value, from nan-means of the items: the same rows and scores.
        assert at_24h["estimate"] == pytest.approx(realised["24h"][key], abs=0.01)
        # Session-level and not period-adjusted: the planted period effect (truth["mood"]["period_effect"])
        # widens the spread, so only the unadjusted p is asserted; the subject-level rows are the tests.
        assert at_24h["p"] < 0.05

        at_14d = _row(table, analysis="bivariate", score=score, timepoint="14d")
        assert at_14d["ci_low"] <= planted["14d"][key] <= at_14d["ci_high"]
        # fades: under half the 24 h value (population 0.09 vs 0.66 over every rated session, placebo included)
        assert abs(at_14d["estimate"]) < 0.5 * at_24h["estimate"] and at_24h["estimate"] > 0.5

    comparison = pm.truth_comparison(table, truth, method)
    assert len(comparison) == 12 and comparison["in_ci"].all()


def test_dose_effect_on_peak_experience_recovered(analysis, truth):
    scores = analysis["scores"]
    by_dose = pm.peak_by_dose(scores)
    planted = truth["peak_experience"]["realised_mean_scores_by_dose"]
    checked = 0
    for score, means in planted.items():
        for dose, value in means.items():
            row = _row(by_dose, score=score, dose_mg_per_kg=float(dose))
            if row["n"] == 12:  # a session with too many missing items is NaN here, not nan-meaned
                assert row["mean"] == pytest.approx(value, abs=1e-5), (score, dose)
                checked += 1
    assert checked >= 28
    for score in ("meq30_total", "meq30_mystical", "asc5d_obn"):
        means = by_dose[by_dose["score"] == score].sort_values("dose_mg_per_kg")["mean"].to_numpy()
        assert (np.diff(means) > 0).all(), score

    periods = pm.session_periods(analysis["study"])
    effects = pm.dose_effect_on_peak(scores, periods=periods, n_boot=199).set_index("score")
    # The reports' calibrated dose model: random dose slopes, crossover terms, subject-cluster bootstrap-t.
    from pipelines.stats.crossover import crossover_dose_model

    data = scores.peak.merge(periods, on=pm.KEYS)
    reference = crossover_dose_model(data, "meq30_total", pm.DOSE, "participant_id", "period", n_boot=199)
    row = reference.set_index("term").loc[pm.DOSE]
    assert effects.loc["meq30_total", "estimate"] == pytest.approx(row["estimate"], rel=1e-12)
    assert effects.loc["meq30_total", "p"] == pytest.approx(row["p"], rel=1e-12)
    assert "period" in effects["crossover_note"].iloc[0] and "random dose slope" in effects["method"].iloc[0]
    assert effects["significant_fdr"].all()
    assert (effects["ci_low"] > 0).all() and (effects["n_groups"] == 12).all()
    # the planted latent intensity rises with dose, and so does every analysed score
    intensity = truth["peak_experience"]["realised_mean_intensity_by_dose"]
    assert intensity["0.25"] < intensity["0.5"] < intensity["1"]


def test_mood_outcomes_and_rates_follow_planted_improvement(analysis, truth):
    outcomes, params = analysis["outcomes"], analysis["params"]
    improvement = outcomes[outcomes["timepoint"] == "24h"].groupby("dose_mg_per_kg")["madrs_total_improvement"].mean()
    for dose, value in truth["mood"]["realised_mean_improvement_by_dose"]["24h"].items():
        assert improvement.loc[float(dose)] == pytest.approx(value, abs=1e-6)
    assert (outcomes["madrs_total_improvement"] == -outcomes["madrs_total_change"]).all()
    rates = pm.outcome_rate_table(outcomes, params.mood_score, params.timepoints)
    response = rates[(rates["measure"] == "response") & (rates["timepoint"] == "24h")].set_index("dose_mg_per_kg")
    assert response.loc[0.0, "rate"] < response.loc[1.0, "rate"]
    assert list(rates["measure"].unique()) == ["response", "remission"]


# --- statistics equal the reference libraries on the same rows --------------------------------


def test_correlations_equal_scipy_and_pingouin(analysis):
    data, table, params = analysis["data"], analysis["correlations"], analysis["params"]
    at = data[data["timepoint"] == "24h"]
    outcome, baseline = params.outcome, f"{params.mood_score}_baseline"

    biv = _row(table, analysis="bivariate", score="meq30_mystical", timepoint="24h")
    ref = sps.spearmanr(at["meq30_mystical"], at[outcome])
    assert biv["estimate"] == pytest.approx(ref.statistic, abs=1e-12)
    assert biv["p"] == pytest.approx(ref.pvalue, rel=1e-8)

    partial = _row(table, analysis="partial", score="meq30_mystical", timepoint="24h")
    ref = pg.partial_corr(at, x="meq30_mystical", y=outcome, covar=["dose_mg_per_kg", baseline], method="spearman")
    assert partial["estimate"] == pytest.approx(ref["r"].iloc[0], abs=1e-10)
    assert partial["p"] == pytest.approx(ref["p_val"].iloc[0], rel=1e-6)

    rm = _row(table, analysis="repeated_measures", score="meq30_mystical", timepoint="24h")
    ref = pg.rm_corr(at, x="meq30_mystical", y=outcome, subject="participant_id")
    assert rm["estimate"] == pytest.approx(ref["r"].iloc[0], abs=1e-10)
    assert rm["p"] == pytest.approx(ref["pval"].iloc[0], rel=1e-8)
    low, high = ref["CI95"].iloc[0]  # pingouin rounds to 2 decimals; ours is the same interval unrounded
    assert rm["ci_low"] == pytest.approx(low, abs=0.005) and rm["ci_high"] == pytest.approx(high, abs=0.005)

    # BH within each analysis and family, over score × time point
    from statsmodels.stats.multitest import multipletests

    for _, part in table.groupby(["analysis", "family"]):
        assert len(part) == part["score"].nunique() * 4
        np.testing.assert_allclose(part["p_fdr"], multipletests(part["p"], method="fdr_bh")[1])


def test_longitudinal_model_equals_treatment_coded_statsmodels_fit(analysis):
    import statsmodels.formula.api as smf

    data, params = analysis["data"], analysis["params"]
    model = pm.longitudinal_model(data, "meq30_mystical", params.outcome, params.timepoints)
    assert len(model) == 16 and model["converged"].all() and (model["n"] == 192).all()  # 48 sessions x 4 time points
    assert set(model["effect"]) == {"intercept", "dose", "peak", "dose × peak"}

    used = data.dropna(subset=["meq30_mystical", params.outcome]).copy()
    used["dose_c"] = used["dose_mg_per_kg"] - used["dose_mg_per_kg"].mean()
    used["peak_z"] = (used["meq30_mystical"] - used["meq30_mystical"].mean()) / used["meq30_mystical"].std()
    used["tp"] = pd.Categorical(used["timepoint"], categories=list(params.timepoints))
    # With placebo rated the subject variance is near 0 and BFGS stalls there; stats.mixed_model falls back to
    # Nelder-Mead (a higher likelihood, converged) and says so in ``method``: the reference uses the same optimiser.
    assert model["method"].str.contains("optimizer nm").all()
    reference = smf.mixedlm(f"{params.outcome} ~ tp * dose_c * peak_z", used, groups=used["participant_id"])
    fit = reference.fit(method="nm")
    assert fit.converged and fit.llf > reference.fit().llf
    # reference level 4h: the main effects of the full model are the 4h cell-means coefficients
    for effect, term in (("peak", "peak_z"), ("dose", "dose_c"), ("dose × peak", "dose_c:peak_z")):
        ours = _row(model, effect=effect, timepoint="4h")["estimate"]
        assert ours == pytest.approx(fit.fe_params[term], rel=1e-4, abs=1e-6)
    peak_24h = _row(model, effect="peak", timepoint="24h")
    assert peak_24h["estimate"] == pytest.approx(fit.fe_params["peak_z"] + fit.fe_params["tp[T.24h]:peak_z"], rel=1e-4)
    # The planted peak effect at 24 h, in its direction: this random-intercept model (fitted over every time point, so
    # the planted window effect at 7 d and 14 d widens its 24 h interval) is description; the tests are subject-level.
    assert peak_24h["estimate"] > 0 and peak_24h["ci_high"] > 0


def test_mediation_is_within_subject_with_a_subject_bootstrap(analysis):
    data, params = analysis["data"], analysis["params"]
    study = analysis["study"]
    periods = pm.session_periods(study)  # the crossover period, as notebook 02 passes it
    table = pm.mediation_dose_peak_mood(
        data,
        "meq30_mystical",
        params.outcome,
        "24h",
        covariates=["madrs_total_baseline"],
        periods=periods,
        n_boot=N_BOOT,
        seed=1,
    )
    paths = table.set_index("path")
    assert list(table["path"]) == ["a", "b", "c", "c_prime", "indirect"]
    assert "period" in table["covariates_used"].iloc[0]
    assert paths.loc["a", "ci_low"] > 0  # dose raises the peak experience (within subjects)
    # The planted b (peak -> improvement) is positive; with 12 subjects, 4 sessions each and the
    # period adjusted, its interval is wide, so the sign of the estimates is asserted, not significance.
    assert paths.loc["b", "estimate"] > 0 and paths.loc["indirect", "estimate"] > 0
    assert paths.loc["indirect", "estimate"] == pytest.approx(paths.loc["a", "estimate"] * paths.loc["b", "estimate"])
    assert paths.loc["indirect", "proportion_mediated"] == pytest.approx(
        paths.loc["indirect", "estimate"] / paths.loc["c", "estimate"]
    )
    # The unit is the subject: 12 subjects resampled, 48 sessions used (placebo included, every path and the total
    # effect on the same rows: c = c' + a*b exactly); rows come from pipelines.stats.
    assert (table["n_subjects"] == 12).all() and (table["n"] == 48).all() and (table["timepoint"] == "24h").all()
    assert (table["n_placebo_sessions"] == 12).all()
    assert paths.loc["c", "estimate"] == pytest.approx(
        paths.loc["c_prime", "estimate"] + paths.loc["indirect", "estimate"], abs=1e-9
    )
    assert (table["routine"] == "within_subject_mediation").all()
    assert table["ci_method"].str.contains("subject-cluster bootstrap").all()
    # a path equals OLS with subject fixed effects on the same rows (person-mean centring).
    import statsmodels.formula.api as smf

    rows = data[data["timepoint"] == "24h"].rename(columns={pm.DOSE: "dose"})
    rows = rows.merge(periods, on=["participant_id", "session_id"])
    fit = smf.ols("meq30_mystical ~ dose + madrs_total_baseline + C(period) + C(participant_id)", rows).fit()
    assert paths.loc["a", "estimate"] == pytest.approx(fit.params["dose"], rel=1e-8)


def test_subject_level_rows_on_the_default_study(analysis):
    params, scores, data = analysis["params"], analysis["scores"], analysis["data"]
    table = pm.subject_level_correlations(
        data,
        scores.peak_scores,
        params.outcome,
        params.timepoints,
        covariates=[pm.DOSE, "madrs_total_baseline"],
        n_boot=N_BOOT,
        seed=0,
        primary_scores=params.primary_scores,
    )
    assert set(table["quantity"]) == {"within", "within_partial", "between", "pooled"}
    assert len(table) == 4 * len(scores.peak_scores) * len(params.timepoints)
    at = {
        q: _row(table, quantity=q, score="meq30_mystical", timepoint="24h")
        for q in ("within", "within_partial", "between", "pooled")
    }
    # The subject is the unit: 12 subjects, not 48 sessions (placebo included).
    for row in at.values():
        assert row["n_subjects"] == 12 and row["n_obs"] == 48
    part = data[data["timepoint"] == "24h"]
    rm = pg.rm_corr(part, x="meq30_mystical", y=params.outcome, subject="participant_id")
    assert at["within"]["estimate"] == pytest.approx(rm["r"].iloc[0], abs=1e-10)
    means = part.groupby("participant_id")[["meq30_mystical", params.outcome]].mean()
    assert at["between"]["estimate"] == pytest.approx(
        sps.pearsonr(means["meq30_mystical"], means[params.outcome])[0], abs=1e-10
    )
    assert at["pooled"]["estimate"] == pytest.approx(
        sps.pearsonr(part["meq30_mystical"], part[params.outcome])[0], abs=1e-10
    )
    assert np.isnan(at["pooled"]["p"]) and np.isnan(at["pooled"]["p_fdr"])  # description only
    assert at["within"]["ci_low"] < at["within"]["estimate"] < at["within"]["ci_high"]
    assert "dose_mg_per_kg" in at["within_partial"]["covariates"]
    assert "madrs_total_baseline" in at["within_partial"]["covariates"]
    # The confirmatory FDR family = within-subject rows of the primary scores × time points.
    family = table[(table["quantity"] == "within") & (table["family"] == "primary")]
    assert len(family) == 3 * len(params.timepoints)
    np.testing.assert_allclose(family["p_fdr"], pm.stats.fdr_bh(family["p"].to_numpy(float)))
    assert at["within"]["p_fdr"] >= at["within"]["p"]


def _simulated_study(design, seed: int) -> pd.DataFrame:
    from pipelines.stats.simulation import simulate_crossover

    sim = simulate_crossover(design, np.random.default_rng(seed))
    return pd.DataFrame(
        {
            "participant_id": sim["subject"],
            "session_id": "ses-" + sim["period"].astype(str),
            "timepoint": "24h",
            pm.DOSE: sim["dose"],
            "meq30_mystical": sim["peak"],
            "madrs_total_improvement": sim["mood"],
            "period": sim["period"],
        }
    )


def test_a_subject_trait_driving_both_makes_the_pooled_row_significant_but_not_the_within_row():
    from pipelines.stats.simulation import Design

    # One trait shifts a subject's peak score and mood improvement alike; within a subject, peak does
    # not change mood (within_b = 0).
    design = Design(trait_sd=2.0, trait_corr=1.0, within_b=0.0, period_effect=(0, 0, 0, 0))
    data = _simulated_study(design, seed=3)
    table = pm.subject_level_correlations(
        data, ["meq30_mystical"], "madrs_total_improvement", ["24h"], n_boot=499, seed=0
    )
    rows = table.set_index("quantity")
    pooled_r, pooled_p = sps.pearsonr(data["meq30_mystical"], data["madrs_total_improvement"])
    assert rows.loc["pooled", "estimate"] == pytest.approx(pooled_r)
    assert pooled_p < 0.001 and pooled_r > 0.4  # the naive session-level test is "significant"
    assert rows.loc["within", "p"] > 0.05  # the subject-level test is not
    assert rows.loc["within", "ci_low"] < 0 < rows.loc["within", "ci_high"]
    assert rows.loc["within", "n_subjects"] == 12 and rows.loc["within", "n_obs"] == 48
    assert not rows.loc["within", "significant_fdr"]
    assert rows.loc["between", "estimate"] > 0.5  # the trait shows up where it belongs


def test_a_planted_within_subject_effect_is_found_and_period_is_adjusted_for():
    from pipelines.stats.simulation import Design

    design = Design(within_b=0.8, trait_corr=0.0)
    data = _simulated_study(design, seed=5)
    periods = data[["participant_id", "session_id", "period"]]
    table = pm.subject_level_correlations(
        data.drop(columns="period"),
        ["meq30_mystical"],
        "madrs_total_improvement",
        ["24h"],
        periods=periods,
        n_boot=499,
        seed=0,
    )
    rows = table.set_index("quantity")
    assert rows.loc["within", "p"] < 0.05 and rows.loc["within", "ci_low"] > 0
    assert "period" in rows.loc["within_partial", "covariates"]
    assert table.attrs["period_adjusted"]
    mediation = pm.mediation_dose_peak_mood(
        data.drop(columns="period"),
        "meq30_mystical",
        "madrs_total_improvement",
        "24h",
        periods=periods,
        n_boot=499,
        seed=0,
    )
    assert "period" in mediation["covariates_used"].iloc[0]
    indirect = mediation.set_index("path").loc["indirect"]
    assert indirect["ci_low"] > 0  # a = 2 (dose -> peak) times b = 0.8


# --- absent tables, scale-level tables, parameters ------------------------------------------


def _manifest(folder: Path, study: Study, phenotype: str) -> Path:
    text = textwrap.dedent(f"""\
        study: variant
        bids_root: {study.root}
        timepoints: [baseline, 4h, 24h, 7d, 14d]
        phenotype:
        """) + textwrap.indent(textwrap.dedent(phenotype), "  ")
    path = folder / "variant.yml"
    path.write_text(text)
    return path


def test_missing_table_is_reported_with_a_clear_message(tmp_path, study):
    path = _manifest(
        tmp_path,
        study,
        """\
        meq30: {path: phenotype/meq30_missing.tsv, response_scale: [0, 5]}
        asc5d: {path: phenotype/asc5d.tsv, response_scale: [0, 100]}
        """,
    )
    variant = Study.load(path)
    scores = pm.load_scores(variant, ["meq30", "asc5d", "asc11d"], "madrs")
    report = scores.report.set_index("table")
    assert not report.loc["meq30", "present"]
    assert "file not found" in report.loc["meq30", "message"]
    assert "meq30_missing.tsv" in report.loc["meq30", "message"]
    assert "not declared in the manifest (phenotype.asc11d)" in report.loc["asc11d", "message"]
    assert "not declared in the manifest (phenotype.madrs)" in report.loc["madrs", "message"]
    assert report.loc["asc5d", "present"]
    assert scores.peak_scores == [f"asc5d_{d}" for d in ("obn", "ded", "vrs", "aua", "vir")]
    assert scores.absent == ["meq30", "asc11d", "madrs"]
    with pytest.raises(InputError, match=r"no mood table to analyse: .*madrs: not declared"):
        pm.mood_change_table(scores)

    none_left = pm.load_scores(variant, ["meq30"], "madrs")
    with pytest.raises(InputError, match="no peak-experience scores to analyse: meq30: file not found"):
        pm.peak_by_dose(none_left)


def test_scale_level_table_accepted_when_manifest_marks_it_scored(tmp_path, study, analysis):
    scored = analysis["scores"].peak[["participant_id", "session_id", "meq30_mystical", "meq30_total"]]
    scored.to_csv(tmp_path / "meq30_scores.tsv", sep="\t", index=False, na_rep="n/a")
    path = _manifest(
        tmp_path,
        study,
        f"""\
        meq30: {{path: {tmp_path / "meq30_scores.tsv"}, scored: true}}
        madrs: {{path: phenotype/madrs.tsv, response_scale: [0, 6]}}
        """,
    )
    scores = pm.load_scores(Study.load(path), ["meq30"], "madrs")
    report = scores.report.set_index("table")
    assert report.loc["meq30", "input"] == "scale-level (scored: true)"
    assert scores.peak_scores == ["meq30_total", "meq30_mystical"]
    np.testing.assert_allclose(scores.peak["meq30_mystical"], scored["meq30_mystical"])


def test_parameters_are_validated_with_clear_messages(study):
    params = pm.validate_parameters(study)
    assert params.timepoints == ("4h", "24h", "7d", "14d") and params.baseline == "baseline"
    assert params.primary_scores == ("meq30_total", "meq30_mystical", "asc5d_obn")
    assert params.primary_timepoint == "24h" and params.outcome == "madrs_total_improvement"
    assert pm.validate_parameters(study, timepoints=["24h", "baseline"]).timepoints == ("24h",)
    assert pm.validate_parameters(study, mood_scale="madrs", remission_threshold=None).remission_threshold == 10
    # The default is each scale's own published cut-off, not MADRS' 10 for every scale (issue 11).
    assert [
        pm.validate_parameters(study, mood_scale=m).remission_threshold
        for m in ("madrs", "hamd17", "qids_sr16", "bdi_ii")
    ] == [10, 7, 5, 13]
    with pytest.warns(RemissionThresholdWarning, match="10 is the madrs_total cut-off"):
        assert pm.validate_parameters(study, mood_scale="hamd17", remission_threshold=10).remission_threshold == 10
    with pytest.warns(RemissionThresholdWarning, match="published cut-off is ≤ 5"):
        pm.validate_parameters(study, mood_scale="qids_sr16", remission_threshold=10)
    bad = [
        (dict(scales=["meq3"]), r"scales='meq3' .*did you mean 'meq30'"),
        (dict(timepoints=["24hr"]), r"timepoints='24hr' .*did you mean '24h'"),
        (dict(correlation_method="kendall"), r"correlation_method='kendall' is not one of"),
        (dict(fdr_alpha=1.5), r"fdr_alpha must be in \(0, 1\)"),
        (dict(fdr_alpha="0.05"), r"fdr_alpha must be a number"),
        (dict(n_boot=True), r"n_boot must be a number"),
        (dict(n_boot=10), r"n_boot must be at least 100"),
        (dict(n_boot=100.5), r"n_boot must be a whole number"),
        (dict(remission_threshold=70), r"outside the madrs total range 0–60"),
        (dict(mood_scale="hamd17", remission_threshold=52), r"outside the hamd17 total range 0–52"),
        (dict(remission_threshold="10"), r"remission_threshold must be a number"),
        (dict(primary_score="asc5d_obn", scales=["meq30"]), r"primary_score='asc5d_obn'"),
        (dict(missing_items="prorate", max_missing_fraction=1.0), r"max_missing_fraction must be in"),
        (dict(timepoints=["baseline"]), r"no post-baseline time point"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            pm.validate_parameters(study, **kwargs)


def test_notebook_declares_the_parameters_the_library_validates():
    import inspect

    import papermill

    declared = papermill.inspect_notebook(str(REPO / "notebooks" / "02_peak_experience_mood.ipynb"))
    accepted = set(inspect.signature(pm.validate_parameters).parameters) - {"study"}
    assert set(declared) == accepted | {"manifest_path"}
    assert declared["n_boot"]["default"] == "2000" and declared["seed"]["default"] == "0"
    # None = the mood scale's own cut-off; neither the notebook nor the default manifest forces 10.
    assert declared["remission_threshold"]["default"] == "None"
    assert inspect.signature(pm.validate_parameters).parameters["remission_threshold"].default is None
    manifest = Study.load(REPO / "data_manifests" / "default.yml").manifest
    assert manifest.notebook_params("02_peak_experience_mood").get("remission_threshold") is None


# --- summary ---------------------------------------------------------------------------------


def test_summary_text_is_written_from_the_subject_level_numbers(analysis):
    params, scores, data, correlations, outcomes = (
        analysis[k] for k in ("params", "scores", "data", "correlations", "outcomes")
    )
    rates = pm.outcome_rate_table(outcomes, params.mood_score, params.timepoints)
    dose_effects, by_dose = pm.dose_effect_on_peak(scores, n_boot=199), pm.peak_by_dose(scores)
    longitudinal = pm.longitudinal_model(data, params.primary_score, params.outcome, params.timepoints)
    mediation = pm.mediation_dose_peak_mood(data, params.primary_score, params.outcome, "24h", n_boot=200, seed=0)
    subject_level = pm.subject_level_correlations(
        data,
        scores.peak_scores,
        params.outcome,
        params.timepoints,
        covariates=[pm.DOSE, "madrs_total_baseline"],
        n_boot=200,
        seed=0,
        primary_scores=params.primary_scores,
    )
    text = pm.summary_text(
        scores,
        correlations,
        params,
        dose_effects=dose_effects,
        by_dose=by_dose,
        rates=rates,
        longitudinal=longitudinal,
        mediation_table=mediation,
        subject_level=subject_level,
    )

    within = _row(subject_level, quantity="within", score="meq30_mystical", timepoint="24h")
    assert (
        f"within-subject r_rm = {within['estimate']:.2f} (95 % CI {within['ci_low']:.2f} to "
        f"{within['ci_high']:.2f}, {format_p(within['p'])}, "
        f"{format_p(within['p_fdr'], 'FDR-adjusted p')} in the primary family; 12 subjects, 48 sessions"
    ) in text
    between = _row(subject_level, quantity="between", score="meq30_mystical", timepoint="24h")
    assert f"r = {between['estimate']:.2f} (95 % CI {between['ci_low']:.2f} to {between['ci_high']:.2f}" in text
    pooled = _row(subject_level, quantity="pooled", score="meq30_mystical", timepoint="24h")
    assert f"r = {pooled['estimate']:.2f} (description only" in text
    fam = subject_level[(subject_level["quantity"] == "within") & (subject_level["family"] == "primary")]
    assert (
        f"In the primary (confirmatory) family of within-subject tests (3 scores × 4 time points), "
        f"{int(fam['significant_fdr'].sum())} of 12 were significant at FDR 0.05"
    ) in text
    # The session-level table is description: its estimate is quoted, its p-values are not.
    main = _row(correlations, analysis="bivariate", score="meq30_mystical", timepoint="24h")
    assert (
        f"Spearman ρ = {main['estimate']:.2f}, 95 % CI {main['ci_low']:.2f} to {main['ci_high']:.2f}, n = 48 sessions"
        in text
    )
    assert format_p(main["p_fdr"], "FDR-adjusted p") + " in the primary family, n = 48" not in text
    slope = dose_effects.set_index("score").loc["meq30_mystical"]
    assert f"mixed-model slope {slope['estimate']:.2f} per mg/kg" in text
    response = _row(rates, measure="response", timepoint="24h", dose_mg_per_kg=1.0)
    assert f"{int(response['n_events'])}/{int(response['n'])} at 1 mg/kg" in text
    indirect = mediation.set_index("path").loc["indirect"]
    assert f"indirect effect {indirect['estimate']:.1f} points per mg/kg (subject-bootstrap 95 % CI" in text
    # a proportion outside 0-100 % (direct effect of the other sign) is not called a share
    total = mediation.set_index("path").loc["c"]
    if total["ci_low"] > 0 or total["ci_high"] < 0:
        share = indirect["proportion_mediated"]
        assert ("not a share" in text) == (not 0 <= share <= 1) and ("was mediated" in text) == (0 <= share <= 1)
    assert "12 participants, 36 active dose sessions and 12 placebo sessions" in text
    assert re.search(r"\d+ score\(s\) prorated, \d+ left missing", text)
    # p-values only as stats.format_p writes them: never "p = 0.0", "p = 0.000" or "3e-172"
    assert not re.search(r"p(_FDR)? ?[=<] ?(0\.0+\b|[0-9.]+e-)", text), text
    assert not re.search(r"\d(\.\d+)?e-\d", text)


def test_placebo_sessions_are_rated_low_and_enter_every_peak_analysis(analysis, truth):
    """The generator gives the peak questionnaires after placebo too (low scores, floor effects), and the analyses
    use them: the dose effect and the mediation's dose contrast start at 0 mg/kg."""
    scores, data = analysis["scores"], analysis["data"]
    placebo = scores.peak[scores.peak[pm.DOSE] == 0]
    active = scores.peak[scores.peak[pm.DOSE] > 0]
    assert len(placebo) == 12 and len(active) == 36
    assert truth["peak_experience"]["questionnaires_collected"] == "every session, placebo included"
    # low but not zero, below every active dose, with floor effects (many items at 0 after placebo)
    assert 0 < placebo["meq30_total"].mean() < active.groupby(pm.DOSE)["meq30_total"].mean().min()
    assert (placebo["meq30_total"] > 0).all()
    items = pd.read_csv(analysis["study"].root / "phenotype" / "meq30.tsv", sep="\t", na_values="n/a")
    is_placebo = items["session_id"].isin(placebo["session_id"].unique())
    zero_share = (items.filter(like="meq30_") == 0).mean(axis=1)
    assert zero_share[is_placebo].mean() > 0.3 > zero_share[~is_placebo].mean()
    assert set(data[pm.DOSE]) == {0.0, 0.25, 0.5, 1.0}
    note = pm.placebo_note(scores, pm.session_doses(analysis["study"]))
    assert note.startswith("Placebo included: 12 placebo session(s)")
    effects = pm.dose_effect_on_peak(scores, ["meq30_total", "asc5d_obn"], n_boot=199).set_index("score")
    assert (effects["n"] == scores.peak[list(effects.index)].notna().sum()).all()  # every rated session
    assert (effects["n"] >= 47).all() and effects.loc["meq30_total", "n"] == 48


def test_a_design_with_peak_questionnaires_after_active_doses_only_still_runs(analysis):
    """Real data may have no placebo questionnaires: every analysis runs on the active sessions and one line says
    that placebo is missing."""
    import dataclasses

    scores = analysis["scores"]
    active_only = dataclasses.replace(scores, peak=scores.peak[scores.peak[pm.DOSE] > 0].reset_index(drop=True))
    params, outcomes = analysis["params"], analysis["outcomes"]
    data = pm.analysis_table(active_only, outcomes, params.timepoints)
    assert len(data[data["timepoint"] == "24h"]) == 36 and (data[pm.DOSE] > 0).all()
    note = pm.placebo_note(active_only, pm.session_doses(analysis["study"]))
    assert note.startswith("Placebo missing: the peak questionnaires exist only after active doses (12 placebo")
    assert "\n" not in note
    assert pm.not_applicable(active_only, data) == {}
    table = pm.mediation_dose_peak_mood(data, "meq30_mystical", params.outcome, "24h", n_boot=99, seed=0)
    assert (table["n"] == 36).all() and (table["n_placebo_sessions"] == 0).all()
    paths = table.set_index("path")
    assert paths.loc["c", "estimate"] == pytest.approx(
        paths.loc["c_prime", "estimate"] + paths.loc["indirect", "estimate"], abs=1e-9
    )
    effects = pm.dose_effect_on_peak(active_only, ["meq30_total", "asc5d_obn"], n_boot=199).set_index("score")
    assert (effects["n"] >= 35).all() and effects.loc["meq30_total", "n"] == 36


def test_mediation_total_and_indirect_effects_come_from_the_same_rows():
    """A planted within-subject indirect effect with a null direct path: the total effect equals direct + indirect
    on the same rows, even when the mediator is missing in some sessions (those rows leave every path)."""
    from pipelines.stats.simulation import Design, simulate_crossover

    data = simulate_crossover(Design(within_b=1.0, peak_dose_mean=4.0), np.random.default_rng(3))
    data = data.rename(columns={"subject": "participant_id", "dose": pm.DOSE, "peak": "peak_score", "mood": "y"})
    data["session_id"] = "ses-" + data["period"].astype(str)
    data["timepoint"] = "24h"
    data.loc[[1, 6, 11], "peak_score"] = np.nan  # three sessions without a questionnaire
    table = pm.mediation_dose_peak_mood(data, "peak_score", "y", "24h", n_boot=499, seed=0).set_index("path")
    assert (table["n"] == 45).all()
    assert table.loc["c", "estimate"] == pytest.approx(
        table.loc["c_prime", "estimate"] + table.loc["indirect", "estimate"], abs=1e-9
    )
    # planted: a = 4 per mg/kg, b = 1, c' = 0, so indirect ≈ total ≈ 4
    assert table.loc["indirect", "ci_low"] > 0 and table.loc["c", "ci_low"] > 0
    assert table.loc["c_prime", "ci_low"] < 0 < table.loc["c_prime", "ci_high"]


def test_run_is_the_notebooks_analysis(study):
    """run() — what notebook 02 calls — gives the pieces the notebook used to assemble."""
    result = pm.run(study, {"n_boot": 200})
    params = pm.validate_parameters(study, n_boot=200)
    assert result.params == params
    scores = pm.load_scores(
        study, params.scales, params.mood_scale, missing_items=params.missing_items,
        max_missing_fraction=params.max_missing_fraction,
    )  # fmt: skip
    pd.testing.assert_frame_equal(result.scores.peak, scores.peak)
    outcomes = pm.mood_change_table(
        scores, baseline=params.baseline, remission_threshold=params.remission_threshold,
        timepoint_order=study.manifest.timepoints,
    )  # fmt: skip
    pd.testing.assert_frame_equal(result.outcomes, outcomes)
    data = pm.analysis_table(scores, outcomes, params.timepoints)
    pd.testing.assert_frame_equal(result.data, data)
    correlations = pm.peak_vs_mood_correlations(
        data, scores.peak_scores, params.outcome, params.timepoints, method=params.correlation_method,
        baseline_column=f"{params.mood_score}_baseline", n_boot=200, seed=params.seed, fdr_alpha=params.fdr_alpha,
        primary_scores=params.primary_scores,
    )  # fmt: skip
    pd.testing.assert_frame_equal(result.correlations, correlations)
    assert result.mediation is not None and "mediation" not in result.not_applicable
    assert set(result.derived_tables()) == {"peak_scores", "mood_changes"}
    assert result.summary.strip()
    with pytest.raises(pydantic.ValidationError, match="n_bot"):
        pm.run(study, {"n_bot": 200})  # a misspelt parameter is refused
