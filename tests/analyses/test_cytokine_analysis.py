"""Study-level cytokine analysis (pipelines.analyses.cytokines) on the default synthetic study: the planted
subgroup effect of truth.json is recovered, censoring is counted from the raw table, the text states the
numbers; plus parameter validation, loader errors and the figure builders."""

from __future__ import annotations

import math
import re
import types

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sstats

from pipelines.analyses import cytokines as ca
from pipelines.core.errors import InputError
from pipelines.core.paths import REPO_ROOT
from pipelines.phenotype import cytokines as cy
from pipelines.stats import fdr_bh, format_p

MANIFEST = REPO_ROOT / "data_manifests" / "default.yml"


@pytest.fixture(scope="module")
def run(default_study):
    study = default_study
    params = ca.validate_parameters(study, n_boot=200)
    parsed = ca.load_study_cytokines(study, timepoints=[params.baseline_timepoint, params.post_timepoint])
    analytes = ca.resolve_analytes(parsed, None)
    sessions = study.sessions
    # The planted-effect tests use the true (set-point) strata of truth.json, so that they test the estimators, not
    # the luck of one screening draw; the strata the report uses (screening CRP, acute rule) are tested separately.
    screening_strata = ca.study_strata(parsed, params)
    truth_cyto = study.truth()["cytokines"]
    strata = cy.define_strata(parsed, acute_threshold=None)
    strata["stratum"] = np.where(
        strata["participant_id"].isin(truth_cyto["inflamed_subjects"]), "inflamed", "non-inflamed"
    )
    strata.attrs.update(screening_strata.attrs, source="truth (set point)", warning="")
    sensitivity = ca.sensitivity_table(parsed, sessions, strata, params, analytes)
    changes = sensitivity[sensitivity["strategy"] == params.censoring_strategy].reset_index(drop=True)
    mood = ca.mood_changes(study, params)
    out = types.SimpleNamespace(
        study=study,
        params=params,
        parsed=parsed,
        analytes=analytes,
        sessions=sessions,
        strata=strata,
        subjects=ca.subject_strata(strata, sessions),
        censoring=ca.censoring_table(parsed, analytes),
        sensitivity=sensitivity,
        changes=changes,
        mixed=ca.mixed_models(parsed, sessions, strata, params, analytes),
        mood=mood,
        correlations=ca.change_vs_mood_table(parsed, sessions, strata, mood, params, analytes),
        subject_level=ca.change_vs_mood_subject_level(
            ca.change_table(parsed, sessions, strata, params, analytes), mood, params, analytes
        ),
        truth=truth_cyto,
        planted=ca.planted_effects(study.truth()),
        screening_strata=screening_strata,
        screening_subjects=ca.subject_strata(screening_strata, sessions),
    )
    out.spread = ca.sensitivity_spread(sensitivity)
    return out


def rows(table, group, stratum):
    return table[(table["group"] == group) & (table["stratum"] == stratum)].set_index("analyte")


def planted_active(run, sign):
    planted = run.planted[(run.planted["stratum"] == "inflamed") & (run.planted["arm"] == "active")]
    return planted.loc[np.sign(planted["planted"]) == sign, "analyte"].tolist()


# ----------------------------------------------------------------------------------------- strata
def test_strata_equal_the_screening_classification_with_the_acute_session_left_out(run):
    truth = run.truth
    assert run.screening_strata.attrs["source"] == "screening" and run.screening_strata.attrs["warning"] == ""
    screened_in = set(truth["screening_inflamed_subjects"])
    acute_screening = {p for p, v in truth["screening_crp_mg_per_l"].items() if v >= 10}
    by_label = run.screening_subjects.groupby("stratum")["participant_id"].apply(sorted).to_dict()
    assert by_label.get("excluded", []) == sorted(acute_screening)
    assert by_label["inflamed"] == sorted(screened_in - acute_screening)
    everyone = set(truth["non_inflamed_subjects"]) | set(truth["inflamed_subjects"])
    assert by_label["non-inflamed"] == sorted(everyone - screened_in - acute_screening)
    excluded = set(
        zip(
            *run.screening_strata.loc[
                run.screening_strata["stratum"] == "excluded", ["participant_id", "session_id"]
            ].T.values
        )
    )
    for case in truth["acute_infection"]:  # the planted intercurrent infection (CRP >= 10 at baseline)
        assert case["crp_baseline_mg_per_l"] >= 10 and (case["participant_id"], case["session_id"]) in excluded
    assert run.params.crp_threshold_mg_per_l == truth["crp_threshold_mg_per_l"]
    # CRP sits near the threshold: the screening draw misclassifies some subjects relative to their set point.
    set_points = truth["crp_set_point_mg_per_l"]
    assert any(1.5 < v < 6 for v in set_points.values())


def test_the_primary_interaction_leads_and_recovers_the_planted_change_with_true_strata(run):
    """With the true (set-point) strata the placebo-controlled interaction finds the planted IL-6 fall; with the
    screening strata the report leads with it whatever it shows."""
    per_pair = ca.change_table(run.parsed, run.sessions, run.screening_strata, run.params, run.analytes)
    inter = ca.strata_interaction(per_pair, run.params, run.analytes)
    row = inter[(inter["analyte"] == "IL6") & (inter["quantity"] == "interaction")].iloc[0]
    assert row["n_subjects"] == 11 and np.isfinite(row["ci_low"])
    inflamed = set(run.truth["inflamed_subjects"])
    assert set(run.strata.loc[run.strata["stratum"] == "inflamed", "participant_id"]) == inflamed
    true_pairs = ca.change_table(run.parsed, run.sessions, run.strata, run.params, ["IL6", "CRP"])
    true_inter = ca.strata_interaction(true_pairs, run.params, ["IL6", "CRP"]).set_index(["analyte", "quantity"])
    il6 = true_inter.loc[("IL6", "interaction")]
    assert il6["ci_high"] < 0 and il6["ci_low"] < -0.5 < il6["ci_high"]
    text = ca.summary_text(
        params=run.params,
        subjects=run.screening_subjects,
        censoring=run.censoring,
        changes=run.changes,
        mixed=run.mixed,
        spread=run.spread,
        mood=run.correlations,
        interaction=inter,
        strata=run.screening_strata,
    )
    first = text.split("\n\n")[0]
    assert first.startswith("**Primary test: placebo-controlled interaction**")
    assert (
        f"IL6 {row['estimate']:+.2f} ln units" in first
        and f"95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}" in first
    )
    assert "screening CRP" in text and "Acute-infection rule 'session'" in text


def test_censoring_counts_equal_the_strings_in_the_raw_table(run):
    raw = pd.read_csv(run.study.table_path("cytokines"), sep="\t", dtype=str, keep_default_na=False)
    below = raw[raw["value"].str.strip().str.startswith("<")]
    above = raw[raw["value"].str.strip().str.startswith(">")]
    counted = run.censoring.set_index(["analyte", "timepoint"])
    expected = below.groupby(["analyte", "timepoint"]).size()
    assert counted["n_below"].sum() == len(below) == sum(run.truth["n_below_lloq"].values())
    assert counted["n_above"].sum() == len(above)
    for key, n in counted["n_below"].items():
        assert n == expected.get(key, 0), key
    assert counted["n"].sum() == len(raw)  # ratio rows are derived, not counted again
    assert set(counted.index.get_level_values("analyte")) == set(raw["analyte"])


# ------------------------------------------------------------------------ planted subgroup effect
def test_planted_decrease_after_active_doses_only_in_the_inflamed_stratum(run):
    decreasing = planted_active(run, -1)
    assert {"IL6", "TNFA", "CRP", "KYN", "KYN_TRP"} <= set(decreasing)
    inflamed = rows(run.changes, ca.ACTIVE_POOLED, "inflamed")
    realised = run.truth["realised_mean_log_fold_change_24h"]["inflamed"]["active"]
    for analyte in decreasing:
        row = inflamed.loc[analyte]
        assert row["ci_high"] < 0, analyte
        truth_value = realised["KYN_TRP_ratio" if analyte == "KYN_TRP" else analyte]
        assert row["ci_low"] <= truth_value <= row["ci_high"], analyte
        assert row["n"] == len(run.truth["inflamed_subjects"])
    for analyte in set(run.analytes) - set(decreasing):  # IL1B, TRP: nothing planted downwards
        assert inflamed.loc[analyte, "ci_high"] > 0, analyte
    # the same in every active dose for IL6, the headline marker
    for dose in (0.25, 0.5, 1.0):
        assert rows(run.changes, ca.dose_group_label(dose), "inflamed").loc["IL6", "ci_high"] < 0
    non = rows(run.changes, ca.ACTIVE_POOLED, "non-inflamed")
    assert (non["ci_low"] < 0).all() and (non["ci_high"] > 0).all()
    assert (non["n"] == len(run.truth["non_inflamed_subjects"])).all()
    for stratum in ("inflamed", "non-inflamed"):
        placebo = rows(run.changes, ca.dose_group_label(0.0), stratum).loc[decreasing]
        assert (placebo["ci_low"] < 0).all() and (placebo["ci_high"] > 0).all(), stratum


def test_pooled_group_is_the_mean_of_subject_means(run):
    changes = ca.change_table(run.parsed, run.sessions, run.strata, run.params, ["IL6"])
    active = changes[changes["dose_mg_per_kg"] > 0]
    per_subject = active.groupby("participant_id")["ln_change"].mean()
    inflamed = per_subject[per_subject.index.isin(run.truth["inflamed_subjects"])]
    row = rows(run.changes, ca.ACTIVE_POOLED, "inflamed").loc["IL6"]
    assert row["estimate"] == pytest.approx(inflamed.mean())
    assert row["p_ttest"] == pytest.approx(sstats.ttest_1samp(inflamed, 0).pvalue)
    assert row["p_wilcoxon"] == pytest.approx(sstats.wilcoxon(inflamed).pvalue)


def test_mixed_model_interaction_recovers_the_planted_change(run):
    term = ca.interaction_term(run.params, "active")
    fit = run.mixed[(run.mixed["dose_coding"] == "active") & (run.mixed["term"] == term)].set_index("analyte")
    assert fit.loc["IL6", "ci_high"] < 0 and fit.loc["IL6", "p_fdr"] < 0.05
    assert fit.loc["IL6", "ci_low"] < -0.5 < fit.loc["IL6", "ci_high"]
    assert fit.loc["IL1B", "ci_low"] < 0 < fit.loc["IL1B", "ci_high"]
    assert set(run.mixed["dose_coding"]) == {"mg_per_kg", "active"}
    assert fit["converged"].all()


# ------------------------------------------------------------------------------------ sensitivity
def test_sensitivity_comparison_covers_every_strategy(run):
    assert set(run.sensitivity["strategy"]) == set(cy.STRATEGIES)
    spread = run.spread.set_index(["analyte", "stratum"])
    uncensored = spread[spread["n_censored"] == 0]
    assert len(uncensored) and (uncensored["spread"] < 1e-5).all()  # MLE equals substitution without censoring
    assert spread.loc[("IL6", "inflamed"), "spread"] > 0.01  # one censored subject moves it
    il6 = run.sensitivity[
        (run.sensitivity["group"] == ca.ACTIVE_POOLED)
        & (run.sensitivity["stratum"] == "inflamed")
        & (run.sensitivity["analyte"] == "IL6")
    ]
    assert len(il6) == 3 and (il6["ci_high"] < 0).all()


def test_wilcoxon_p_equals_scipy_with_ties_and_zeros():
    rng = np.random.default_rng(3)
    for n in range(2, 14):
        d = np.round(rng.normal(-0.3, 1, n), 1)
        d[: n // 4] = 0.0
        if np.any(d != 0):
            assert cy.wilcoxon_p(d) == pytest.approx(sstats.wilcoxon(d, zero_method="wilcox").pvalue, rel=1e-12)
    d = rng.normal(size=20)
    assert cy.wilcoxon_p(d) == sstats.wilcoxon(d).pvalue


# ------------------------------------------------------------------------------------------- mood
def test_change_vs_mood_uses_the_shared_correlation(run):
    data = ca.change_vs_mood_data(
        ca.change_table(run.parsed, run.sessions, run.strata, run.params, run.analytes), run.mood
    )
    column = run.correlations["y"].iloc[0]
    assert column == "madrs_total_change"
    for stratum in ("all", "inflamed"):
        part = data if stratum == "all" else data[data["stratum"] == stratum]
        il6 = part[part["analyte"] == "IL6"]
        row = run.correlations[(run.correlations["stratum"] == stratum) & (run.correlations["analyte"] == "IL6")].iloc[
            0
        ]
        # every session, placebo included (cytokines and mood are measured after placebo too)
        assert row["n"] == len(il6) == (48 if stratum == "all" else 20)
        assert row["population"] == ca.ALL_SESSIONS
        assert row["estimate"] == pytest.approx(sstats.spearmanr(il6["ln_change"], il6[column]).statistic)


def test_change_vs_mood_subject_level_rows(run):
    sl = run.subject_level
    assert set(sl["quantity"]) == {"within", "between", "pooled"}
    assert set(sl["stratum"]) >= {"all", "inflamed", "non-inflamed"}
    data = ca.change_vs_mood_data(
        ca.change_table(run.parsed, run.sessions, run.strata, run.params, run.analytes), run.mood
    )
    il6 = data[data["analyte"] == "IL6"]
    at = sl[(sl["analyte"] == "IL6") & (sl["stratum"] == "all")].set_index("quantity")
    # The subject is the unit: 12 subjects, not 48 sessions (placebo included).
    assert (at["n_subjects"] == 12).all() and (at["n"] == 48).all() and (il6["dose_mg_per_kg"] == 0).sum() == 12
    assert (at["population"] == ca.ALL_SESSIONS).all()
    rm = pg.rm_corr(il6, x="ln_change", y="madrs_total_change", subject="participant_id")
    assert at.loc["within", "estimate"] == pytest.approx(rm["r"].iloc[0], abs=1e-10)
    means = il6.groupby("participant_id")[["ln_change", "madrs_total_change"]].mean()
    assert at.loc["between", "estimate"] == pytest.approx(means.corr().iloc[0, 1], abs=1e-10)
    assert np.isnan(at.loc["pooled", "p"]) and not at.loc["pooled", "significant_fdr"]
    within = sl[(sl["quantity"] == "within") & (sl["stratum"] == "all")]
    assert len(within) == len(run.analytes)
    np.testing.assert_allclose(within["p_fdr"], fdr_bh(within["p"].to_numpy(float)))
    assert within["ci_low"].lt(within["estimate"]).all() and within["estimate"].lt(within["ci_high"]).all()


def test_a_subject_trait_in_both_changes_is_pooled_significant_but_not_within(run):
    """A planted subject trait shifts a subject's cytokine change and mood change alike
    (pipelines.stats.simulation): the session-level Spearman table calls it significant, the
    within-subject row does not, the between-subject row carries it."""
    from pipelines.stats.simulation import Design, simulate_crossover

    sim = simulate_crossover(Design(trait_sd=2.0, within_b=0.0, period_effect=(0, 0, 0, 0)), np.random.default_rng(3))
    sim = sim[sim["dose"] > 0]
    changes = pd.DataFrame(
        {
            "participant_id": sim["subject"],
            "session_id": "ses-" + sim["period"].astype(str),
            "analyte": "IL6",
            "ln_change": sim["peak"],
            "dose_mg_per_kg": sim["dose"],
            "stratum": "all-one",
        }
    )
    mood = pd.DataFrame(
        {
            "participant_id": sim["subject"],
            "session_id": "ses-" + sim["period"].astype(str),
            "madrs_total_change": sim["mood"],
        }
    )
    sl = ca.change_vs_mood_subject_level(changes, mood, run.params, ["IL6"])
    at = sl[sl["stratum"] == "all"].set_index("quantity")
    assert sstats.spearmanr(sim["peak"], sim["mood"]).pvalue < 0.01  # the session-level test: "significant"
    assert at.loc["within", "p"] > 0.05 and not at.loc["within", "significant_fdr"]
    assert at.loc["between", "estimate"] > 0.5
    assert at.loc["within", "n_subjects"] == 12 and at.loc["within", "n"] == 36


# ---------------------------------------------------------------------------------------- summary
def test_summary_text_states_the_numbers(run):
    text = ca.summary_text(
        params=run.params,
        subjects=run.subjects,
        censoring=run.censoring,
        changes=run.changes,
        mixed=run.mixed,
        spread=run.spread,
        mood=run.correlations,
        mood_subject_level=run.subject_level,
    )
    within = run.subject_level[(run.subject_level["quantity"] == "within") & (run.subject_level["stratum"] == "all")]
    n_sig = int(within["significant_fdr"].sum())
    assert (
        f"Within subjects (across a subject's active sessions), {n_sig} of {len(within)} analytes' "
        "ln-changes correlated with the mood change after FDR"
    ) in text
    if n_sig == 0:
        best = within.loc[within["p"].idxmin()]
        assert (
            f"the strongest was {best['analyte']} r = {best['estimate']:+.2f} (95% CI {best['ci_low']:+.2f} to "
            f"{best['ci_high']:+.2f}, {format_p(best['p'])}"
        ) in text
    assert "is description only" in text
    assert f"{len(run.truth['inflamed_subjects'])} inflamed" in text
    assert ", ".join(sorted(run.truth["inflamed_subjects"])) in text
    n_censored = int(run.censoring["n_below"].sum() + run.censoring["n_above"].sum())
    assert f"{n_censored} of {int(run.censoring['n'].sum())} measured values were censored" in text
    il6 = rows(run.changes, ca.ACTIVE_POOLED, "inflamed").loc["IL6"]
    assert f"IL6 {100 * math.expm1(il6['estimate']):+.0f}%" in text
    assert f"{100 * math.expm1(il6['ci_low']):+.0f}% to {100 * math.expm1(il6['ci_high']):+.0f}%" in text
    term = ca.interaction_term(run.params, "active")
    fit = run.mixed[(run.mixed["dose_coding"] == "active") & (run.mixed["term"] == term)].set_index("analyte")
    assert f"IL6 {fit.loc['IL6', 'estimate']:+.2f}" in text
    assert f"{run.spread['spread'].max():.3f} ln units" in text
    assert (
        "After active doses, non-inflamed" in text
        and "no analyte changed" in text.split("non-inflamed** (")[1].split("\n")[0]
    )
    # p-values only as stats.format_p writes them: never "p = 0.0", "p = 0.000" or "3e-172"
    assert not re.search(r"p(_FDR)? ?[=<] ?(0\.0+\b|[0-9.]+e-)", text), text
    assert not re.search(r"\d(\.\d+)?e-\d", text)


def test_planted_effects_and_truth_comparison(run):
    planted = run.planted.set_index(["analyte", "stratum", "arm"])["planted"]
    assert planted[("IL6", "inflamed", "active")] == -0.5 and planted[("KYN_TRP", "non-inflamed", "placebo")] == 0
    comparison = ca.truth_comparison(run.changes, run.planted)
    assert len(comparison) == len(run.analytes) * 4
    assert comparison["covers_realised"].mean() >= 0.9
    assert ca.planted_effects(None).empty and ca.truth_comparison(run.changes, ca.planted_effects(None)).empty


# ------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"censoring_strategy": "lloq_halve"}, "did you mean 'lloq_half'"),
        ({"post_timepoint": "24 h"}, "did you mean '24h'"),
        ({"post_timepoint": "baseline"}, "both 'baseline'"),
        ({"crp_threshold_mg_per_l": -1}, "positive"),
        ({"crp_threshold_mg_per_l": "3"}, "must be a number"),
        ({"n_boot": True}, "whole number"),
        ({"n_boot": -5}, "at least 0"),
        ({"seed": 1.5}, "whole number"),
        ({"mood_scale": "hamd17"}, "no phenotype table 'hamd17'"),
        ({"mood_scale": "meq30"}, "not one of"),
        ({"analytes": []}, "non-empty"),
        ({"analytes": ["IL6", "IL6"]}, "twice"),
    ],
)
def test_bad_parameters_are_refused_with_a_hint(run, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ca.validate_parameters(run.study, **kwargs)


def test_parameters_normalise(run):
    params = ca.validate_parameters(run.study, analytes="IL6", n_boot=100.0, censoring_strategy="censored_mle")
    assert params.analytes == ("IL6",) and params.n_boot == 100 and params.value_strategy == "lloq_half"
    assert params.as_dict()["analytes"] == ["IL6"]
    with pytest.raises(ValueError, match="did you mean 'IL6'"):
        ca.resolve_analytes(run.parsed, ["IL-6"])
    assert ca.resolve_analytes(run.parsed, ["CRP", "IL6"]) == ["CRP", "IL6"]


# ---------------------------------------------------------------------------------------- loading
class FakeStudy:
    """Just what load_study_cytokines asks of a Study: a table path, participants and sessions."""

    def __init__(self, path, participants, sessions):
        self._path, self.participants, self.sessions = path, participants, sessions

    def table_path(self, name):
        return self._path


def write_small_table(tmp_path, rows):
    from tests.phenotype.test_cytokines import SIDECAR, write_table

    return write_table(tmp_path, rows, sidecar=SIDECAR)


def test_loader_refuses_unknown_sessions_and_missing_timepoints(tmp_path):
    path = write_small_table(
        tmp_path,
        [
            ["sub-01", "ses-a", "baseline", "IL6", "3.1", "pg/mL"],
            ["sub-01", "ses-a", "24h", "IL6", "<0.7", "pg/mL"],
            ["sub-01", "ses-b", "baseline", "IL6", "2.0", "pg/mL"],
        ],
    )
    participants = pd.DataFrame({"participant_id": ["sub-01"]})
    sessions = pd.DataFrame(
        {"participant_id": ["sub-01"], "session_id": ["ses-a"], "condition": ["a"], "dose_mg_per_kg": [0.5]}
    )
    with pytest.raises(InputError, match="no dose in the study.*subject sub-01, session ses-b"):
        ca.load_study_cytokines(FakeStudy(path, participants, sessions))
    sessions = pd.concat([sessions, sessions.assign(session_id="ses-b", dose_mg_per_kg=0.0)])
    with pytest.raises(InputError, match=r"time point\(s\) \['7d'\] not in the table"):
        ca.load_study_cytokines(FakeStudy(path, participants, sessions), timepoints=["baseline", "7d"])
    parsed = ca.load_study_cytokines(FakeStudy(path, participants, sessions))
    assert parsed["dose_mg_per_kg"].tolist() == [0.5, 0.5, 0.0]
    with pytest.raises(InputError, match="unknown subject"):
        ca.load_study_cytokines(FakeStudy(path, pd.DataFrame({"participant_id": ["sub-02"]}), sessions))


def test_sessions_are_grouped_by_dose_not_by_label(run):
    """A crossover labelled by visit: the per-dose result must not change when labels are permuted."""
    rename = {"ses-placebo": "ses-v1", "ses-ket025": "ses-v2", "ses-ket050": "ses-v3", "ses-ket100": "ses-v4"}
    shuffled = {
        s: {**rename, "ses-placebo": "ses-v4", "ses-ket100": "ses-v1"} if s in ("sub-02", "sub-05") else rename
        for s in run.sessions["participant_id"].unique()
    }
    relabel = lambda t: t.assign(
        session_id=[shuffled[p].get(s, s) for p, s in zip(t["participant_id"], t["session_id"])]
    )
    params = ca.validate_parameters(run.study, analytes=["IL6"], n_boot=0)
    base = ca.paired_changes(run.parsed, run.sessions, run.strata, params, ["IL6"])
    moved = ca.paired_changes(relabel(run.parsed), relabel(run.sessions), relabel(run.strata), params, ["IL6"])
    pd.testing.assert_frame_equal(base, moved)


# ---------------------------------------------------------------------------------------- figures
def test_figure_builders_return_holoviews_objects(run):
    import holoviews as hv
    import holoviews.plotting.bokeh

    from pipelines.figures import cytokines as cf

    few = ["IL6", "IL1B"]
    traj = ca.trajectories(run.parsed, run.sessions, run.strata, run.params, few)
    per_pair = ca.change_table(run.parsed, run.sessions, run.strata, run.params, few)
    term = ca.interaction_term(run.params, "active")
    figures = [
        cf.censoring_bars(run.censoring),
        cf.spaghetti_grid(traj, few),
        cf.paired_change_grid(per_pair, run.changes, few),
        cf.effect_forest(run.changes[run.changes["analyte"].isin(few)], planted=run.planted),
        cf.interaction_forest(run.mixed, [term]),
        cf.sensitivity_plot(run.sensitivity, ca.ACTIVE_POOLED),
        cf.mood_scatter(ca.change_vs_mood_data(per_pair, run.mood), few, "madrs_total_change"),
    ]
    for figure in figures:
        assert isinstance(figure, hv.core.dimension.ViewableElement | hv.Layout | hv.Overlay)
        hv.render(figure, backend="bokeh")


# ---------------------------------------------------------------------------- run(study, params)
def test_run_assembles_the_report_from_the_same_functions(run):
    """run() is what notebook 03 shows: its tables are the module's functions applied to the report's strata."""
    result = ca.run(run.study, {"n_boot": 200})
    assert result.params == run.params and result.analytes == run.analytes
    pd.testing.assert_frame_equal(result.censoring, run.censoring)
    pd.testing.assert_frame_equal(result.subjects, run.screening_subjects)
    expected = ca.change_table(run.parsed, run.sessions, result.strata, result.params, result.analytes)
    pd.testing.assert_frame_equal(result.per_pair, expected)
    pd.testing.assert_frame_equal(result.interaction, ca.strata_interaction(expected, result.params, result.analytes))
    assert (result.changes["strategy"] == "lloq_half").all()
    assert result.summary.startswith("**Primary test: placebo-controlled interaction**")
    assert set(result.derived_tables()) == {"cytokine_changes"}
    with pytest.raises(ValueError, match="did you mean '24h'"):
        ca.run(run.study, {"post_timepoint": "24 h"})


def test_interaction_with_one_subject_in_a_stratum_says_not_testable_instead_of_printing_nan():
    """A small study where one subject is inflamed: the Welch t has no interval; the sentence says why."""
    from pipelines.analyses import cytokines as cytokine_analysis

    params = cytokine_analysis.CytokineParameters()
    row = {"quantity": "interaction", "analyte": "IL6", "estimate": 0.6, "ci_low": np.nan, "ci_high": np.nan,
           "p": np.nan, "p_fdr": np.nan, "n_subjects_stratum_1": 1, "n_subjects_stratum_0": 9,
           "n_subjects_dropped": 0}  # fmt: skip
    text = cytokine_analysis.interaction_sentence(pd.DataFrame([row]), params)
    assert "not testable: 1 inflamed and 9 non-inflamed" in text and "nan" not in text
    testable = dict(row, n_subjects_stratum_1=4, ci_low=0.1, ci_high=1.1, p=0.02, p_fdr=0.03)
    assert "IL6 +0.60 ln units" in cytokine_analysis.interaction_sentence(pd.DataFrame([testable]), params)
