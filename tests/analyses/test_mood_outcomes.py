"""Mood outcomes for every design (notebook 05) and the group statistics behind them.

Planted effects are recovered on the generated parallel and open-label studies; the group routines equal
independent references (statsmodels) and keep their type-I error and coverage in simulated parallel trials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.analyses import mood_outcomes
from pipelines.analyses import peak_experience_mood as peak_mood
from pipelines.stats import groups
from pipelines.study.dataset import Study
from pipelines.study.manifest import freeze, load_manifest
from tests.conftest import REPO


def _generated(tmp_path, manifest_name: str, bids_root: str) -> Study:
    from pipelines.synth.__main__ import main as synth_main

    text = (REPO / "data_manifests" / manifest_name).read_text().split("\n# sha256")[0]
    path = tmp_path / manifest_name
    path.write_text(text.replace(f"bids_root: {bids_root}", "bids_root: bids"))
    assert synth_main(["--manifest", str(path), "--no-progress"]) == 0
    freeze(load_manifest(path))
    return Study.load(path)


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> Study:
    return _generated(tmp_path_factory.mktemp("parallel"), "mood_parallel.yml", "../data/mood-parallel/bids")


@pytest.fixture(scope="module")
def open_label(tmp_path_factory) -> Study:
    return _generated(tmp_path_factory.mktemp("open"), "open_label.yml", "../data/open-label/bids")


# --- designs -------------------------------------------------------------------------------------------------


def test_parallel_trial_compares_arms_against_the_control_and_recovers_the_planted_difference(parallel):
    result = mood_outcomes.run(parallel)
    assert result.grouping == "arm" and result.reference == "midazolam"  # a control-named arm is the reference
    truth = parallel.truth()["improvement_fraction_of_max"]
    # Planted: severity falls by improvement[arm] × responsiveness × (1, 1.1, 1.2, 1.3) over weeks 1–4, so the
    # expected difference of the mean follow-up MADRS (max 60) is −(0.25 − 0.08) × 60 × 1.15.
    expected = -(truth["ketamine"] - truth["midazolam"]) * 60 * 1.15
    summary = result.comparisons[
        (result.comparisons["scale"] == "madrs") & result.comparisons["analysis"].str.startswith("summary-measure")
    ].iloc[0]
    assert summary["quantity"] == "ketamine − midazolam" and summary["n_subjects"] == 24
    assert summary["ci_low"] < expected < summary["ci_high"] and summary["p"] < 0.001
    response = result.comparisons[
        (result.comparisons["analysis"] == "response")
        & (result.comparisons["timepoint"] == "week4")
        & result.comparisons["quantity"].str.startswith("risk")
    ]
    assert (response["estimate"] > 0).all()  # more responders on ketamine, on every scale
    # One row per subject and time point per scale: the unit is never duplicated.
    assert not result.outcomes.duplicated(["scale", "participant_id", "timepoint"]).any()
    model = result.trajectory_model
    assert set(model["timepoint"]) == {"week1", "week2", "week3", "week4", "average over time points"}
    assert model["converged"].all()
    text = mood_outcomes.summary_text(result)
    assert "parallel" in text and "ketamine − midazolam" in text


def test_open_label_mood_per_subject_counts_each_subject_once(open_label):
    result = mood_outcomes.run(open_label)
    assert result.grouping == "one group" and result.reference is None
    assert result.outcomes.groupby(["participant_id", "timepoint"]).size().max() == 1
    row = result.comparisons[result.comparisons["timepoint"] == "24h"].iloc[0]
    assert row["n_subjects"] == 12 and row["estimate"] < 0 and row["p"] < 0.05
    truth = open_label.truth()["expected_madrs_change_24h"]
    assert row["ci_low"] < truth < row["ci_high"]
    assert "uncontrolled" in mood_outcomes.summary_text(result)


def test_open_label_peak_vs_mood_is_one_row_per_subject_and_the_between_row_is_the_test(open_label):
    """The open-label mood table has no sessions: peak scores are averaged per subject, never duplicated."""
    params = peak_mood.validate_parameters(open_label, **open_label.manifest.notebook_params("02_peak_experience_mood"))
    scores = peak_mood.load_scores(open_label, params.scales, params.mood_scale)
    assert scores.mood_unit == "subject"
    outcomes = peak_mood.mood_change_table(
        scores, baseline=params.baseline, timepoint_order=open_label.manifest.timepoints
    )
    data = peak_mood.analysis_table(scores, outcomes, params.timepoints)
    assert data.groupby(["timepoint", "participant_id"]).size().max() == 1 and len(data) == 12 * 3
    reasons = peak_mood.not_applicable(scores, data)
    assert {"dose_effect", "within", "mediation"} <= set(reasons)
    table = peak_mood.subject_level_correlations(
        data,
        scores.peak_scores,
        params.outcome,
        params.timepoints,
        covariates=[peak_mood.DOSE],
        n_boot=199,
        seed=0,
        primary_scores=params.primary_scores,
    )
    between = table[
        (table["quantity"] == "between") & (table["score"] == "asc11d_unity") & (table["timepoint"] == "24h")
    ].iloc[0]
    assert between["n_subjects"] == 12 and between["estimate"] > 0  # planted: stronger experience, more improvement
    assert table.loc[table["quantity"] == "within", "p"].isna().all()
    assert peak_mood.dose_effect_on_peak(scores).empty


def test_crossover_mood_per_session_gives_paired_contrasts_against_placebo(default_study):
    result = mood_outcomes.run(default_study, {"primary_timepoint": "24h"})
    assert result.grouping == "condition" and result.groups[0] == "0.00 mg/kg" and result.reference == "0.00 mg/kg"
    contrasts = result.comparisons
    assert set(contrasts["routine"]) == {"paired_contrast"} and (contrasts["n_subjects"] == 12).all()
    at_24h = contrasts[contrasts["timepoint"] == "24h"]
    assert (at_24h["estimate"] < 0).all() and (at_24h["p"] < 0.05).all()  # planted: every dose beats placebo at 24 h
    assert result.trajectory_model.empty


def test_parameters_are_typed_and_a_misspelt_scale_names_the_likely_one(parallel):
    with pytest.raises(ValueError, match="did you mean 'madrs'"):
        mood_outcomes.run(parallel, {"scales": ["madr"]})
    with pytest.raises(ValueError, match="extra"):
        mood_outcomes.MoodOutcomeParameters.model_validate({"scale": ["madrs"]})
    result = mood_outcomes.run(parallel, {"scales": ["hamd17"], "reference": "ketamine"})
    assert result.scales == ["hamd17"] and result.reference == "ketamine"


# --- group statistics against independent references --------------------------------------------------------


def _trial(rng, n_per_arm=12, effect=0.0, weeks=4):
    subjects = np.arange(2 * n_per_arm)
    arm = np.array(["control"] * n_per_arm + ["drug"] * n_per_arm)
    baseline = rng.normal(30, 5, subjects.size)
    trait = rng.normal(0, 4, subjects.size)
    rows = []
    for w in range(1, weeks + 1):
        score = 0.5 * baseline + 12 + trait + effect * (arm == "drug") + rng.normal(0, 4, subjects.size)
        rows.append(
            pd.DataFrame(
                {
                    "participant_id": subjects,
                    "group": arm,
                    "timepoint": f"week{w}",
                    "value": score,
                    "baseline": baseline,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_ancova_equals_statsmodels_ols():
    import statsmodels.formula.api as smf

    data = _trial(np.random.default_rng(1), effect=-3.0)
    at = data[data["timepoint"] == "week2"]
    row = groups.ancova_difference(at, "value", "group", "participant_id", baseline="baseline").iloc[0]
    fit = smf.ols("value ~ C(group) + baseline", at).fit()
    term = "C(group)[T.drug]"
    assert row["estimate"] == pytest.approx(fit.params[term], rel=1e-10)
    assert row["p"] == pytest.approx(fit.pvalues[term], rel=1e-8)
    low, high = fit.conf_int().loc[term]
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))


def test_newcombe_interval_equals_statsmodels_and_the_odds_ratio_is_scipys():
    from scipy.stats import fisher_exact
    from scipy.stats.contingency import odds_ratio
    from statsmodels.stats.proportion import confint_proportions_2indep

    for ea, na, eb, nb in [(3, 12, 9, 12), (0, 10, 4, 10), (5, 20, 5, 20), (12, 12, 1, 12)]:
        low, high = groups.newcombe_interval(ea, na, eb, nb)
        ref = confint_proportions_2indep(eb, nb, ea, na, method="newcomb", compare="diff")
        assert (low, high) == (pytest.approx(ref[0], abs=1e-12), pytest.approx(ref[1], abs=1e-12))
        frame = pd.DataFrame(
            {
                "participant_id": range(na + nb),
                "group": ["a"] * na + ["b"] * nb,
                "event": [True] * ea + [False] * (na - ea) + [True] * eb + [False] * (nb - eb),
            }
        )
        table = groups.binary_difference(frame, "event", "group", "participant_id").set_index("routine", append=True)
        odds = table.iloc[1]
        expected = odds_ratio([[eb, nb - eb], [ea, na - ea]], kind="conditional")
        assert odds["estimate"] == pytest.approx(expected.statistic)
        assert odds["p"] == pytest.approx(fisher_exact([[eb, nb - eb], [ea, na - ea]]).pvalue)


def test_one_row_per_subject_is_enforced():
    data = _trial(np.random.default_rng(2))
    with pytest.raises(ValueError, match="more than one row"):
        groups.ancova_difference(data, "value", "group", "participant_id", baseline="baseline")


def test_simulated_parallel_trials_keep_type_one_error_and_coverage():
    """Null trials (12 per arm, subject traits, 4 weeks): the ANCOVA tests hold their level; the Newcombe
    interval covers the true risk difference; under a planted effect the summary-measure ANCOVA has power."""
    rng = np.random.default_rng(20261206)
    n_sims = 400
    reject_week, reject_summary, reject_mixed, covered, power = 0, 0, 0, 0, 0
    for i in range(n_sims):
        data = _trial(rng)
        week = groups.ancova_difference(
            data[data["timepoint"] == "week4"], "value", "group", "participant_id", baseline="baseline"
        ).iloc[0]
        reject_week += week["p"] < 0.05
        mean = data.groupby(["participant_id", "group"], as_index=False).agg(
            value=("value", "mean"), baseline=("baseline", "first")
        )
        reject_summary += (
            groups.ancova_difference(mean, "value", "group", "participant_id", baseline="baseline").iloc[0]["p"] < 0.05
        )
        if i < 100:  # the mixed model is slower; its level is measured on fewer trials
            mixed = groups.trajectory_mixed_model(
                data, "value", "group", "timepoint", "participant_id", "baseline", [f"week{w}" for w in range(1, 5)]
            )
            reject_mixed += mixed.iloc[-1]["p"] < 0.05
        events = pd.DataFrame(
            {
                "participant_id": range(24),
                "group": ["a"] * 12 + ["b"] * 12,
                "event": np.r_[rng.random(12) < 0.3, rng.random(12) < 0.5],
            }
        )
        rd = groups.binary_difference(events, "event", "group", "participant_id").iloc[0]
        covered += rd["ci_low"] <= 0.2 <= rd["ci_high"]
        effect = _trial(rng, effect=-6.0)
        mean = effect.groupby(["participant_id", "group"], as_index=False).agg(
            value=("value", "mean"), baseline=("baseline", "first")
        )
        power += (
            groups.ancova_difference(mean, "value", "group", "participant_id", baseline="baseline").iloc[0]["p"] < 0.05
        )
    assert 0.025 <= reject_week / n_sims <= 0.08
    assert 0.025 <= reject_summary / n_sims <= 0.08
    assert reject_mixed / 100 <= 0.12  # model-based Wald z: labelled as description, bounded loosely
    assert covered / n_sims >= 0.93
    assert power / n_sims >= 0.8


def _pre_post_study(root) -> Study:
    """A third-party-style pre/post dataset: resting EEG before and after one infusion (sessions ``pre`` and
    ``post``, no infusion events), MADRS rated at baseline and 24 h of the ``post`` session only."""
    import mne
    import mne_bids

    rng = np.random.default_rng(3)
    bids = root / "bids"
    names = ["F3", "F4", "O1", "O2"]
    for subject in range(1, 6):
        for session in ("pre", "post"):
            info = mne.create_info(names, 128.0, "eeg")
            raw = mne.io.RawArray(rng.standard_normal((4, 128 * 20)) * 1e-5, info, verbose="error")
            path = mne_bids.BIDSPath(subject=f"{subject:02d}", session=session, task="rest", root=bids, datatype="eeg")
            mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True, verbose="error")
    rows = []
    for subject in range(1, 6):
        for timepoint, level in (("baseline", 3.0), ("24h", 2.0)):
            items = np.clip(np.round(level + rng.normal(0, 0.7, 10)), 0, 6).astype(int)
            rows.append(
                {"participant_id": f"sub-{subject:02d}", "session_id": "ses-post", "timepoint": timepoint}
                | {f"madrs_{i:02d}": int(v) for i, v in enumerate(items, 1)}
            )
    (bids / "phenotype").mkdir()
    pd.DataFrame(rows).to_csv(bids / "phenotype" / "madrs.tsv", sep="\t", index=False)
    manifest = root / "prepost.yml"
    manifest.write_text(
        "study: prepost\nbids_root: bids\neeg:\n  task: rest\n  conditions:\n    source: labels\n"
        "    entity: session\n    labels: {pre: null, post: 0.5}\n  infusion_start_s: 0\n"
        "  rois: {occipital: [O1, O2], frontal_left: [F3], frontal_right: [F4]}\n"
        "phenotype:\n  madrs: {path: phenotype/madrs.tsv, response_scale: [0, 6]}\ntimepoints: [baseline, 24h]\n"
    )
    freeze(load_manifest(manifest))
    return Study.load(manifest)


def test_pre_post_study_with_mood_in_one_condition_is_one_group_not_a_contrast(tmp_path):
    """Two EEG sessions make the study a within-subject design, but mood was rated in the ``post`` condition
    only: there is no condition to contrast with, so the report shows the uncontrolled change from baseline
    and says why (it used to build an empty contrast table and the notebook crashed on it)."""
    study = _pre_post_study(tmp_path)
    # The drug-free condition is the reference: contrasts read post − pre.
    assert [label for label, _ in study.design.conditions] == ["pre", "post"]
    # A drug-free and one active condition, no placebo: a before/after design, not a crossover
    assert study.design.kind == "pre_post"
    assert study.design.supports("paired_contrast") == (True, "")
    result = mood_outcomes.run(study)
    assert result.grouping == "one group" and result.reference is None
    assert (
        result.notes[0].startswith("pre/post, single arm")
        and "mood is measured in one condition only" in result.notes[0]
    )
    row = result.comparisons.set_index("timepoint").loc["24h"]
    scores = result.outcomes[result.outcomes["timepoint"] == "24h"]
    assert row["n_subjects"] == 5 and row["estimate"] == pytest.approx(scores["change"].mean())
    assert "uncontrolled" in mood_outcomes.summary_text(result)


@pytest.mark.parametrize(
    ("doses", "kind"),
    [
        ([None, 0.5], "pre_post"),  # before / after one infusion
        ([None, None, 0.5], "pre_post"),  # two drug-free recordings (eyes open, eyes closed) and one dose
        ([float("nan"), 0.5], "pre_post"),
        ([0.0, 0.5], "crossover"),  # placebo-controlled
        ([None, 0.5, 1.0], "crossover"),  # two active doses within subjects
        ([0.0, 0.25, 0.5], "crossover"),
        ([None, None], "crossover"),  # drug-free conditions only (eyes open vs closed): no active dose
        ([0.5, 1.0], "crossover"),
    ],
)
def test_within_subject_design_is_pre_post_only_without_a_control_or_a_second_dose(doses, kind):
    from pipelines.study.dataset import _within_subject_kind

    assert _within_subject_kind(doses) == kind
