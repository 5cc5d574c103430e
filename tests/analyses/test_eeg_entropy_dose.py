"""Notebook 01's issue-12 analyses: spectrum-controlled entropy, raw vs surrogate-controlled entropy, the
titration onset table (pipelines.analyses.eeg_entropy_dose)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.analyses import eeg_entropy_dose as eeg_analysis


def _changes(entropy_from_alpha_only: bool, seed: int = 0) -> pd.DataFrame:
    """Plateau-change rows for 14 subjects x 4 doses: alpha and the aperiodic exponent fall with dose (with
    subject noise); entropy = -0.02 x alpha change (+ 0.05 x dose unless ``entropy_from_alpha_only``) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(14):
        sens = rng.uniform(0.5, 1.5)
        for dose in (0.0, 0.25, 0.5, 1.0):
            alpha = -10 * sens * dose + rng.normal(0, 1.0)
            aper = -0.3 * dose + rng.normal(0, 0.05)
            entropy = -0.02 * alpha + (0 if entropy_from_alpha_only else 0.05 * dose) + rng.normal(0, 0.005)
            for measure, region, change in (
                ("lzc_median", "global", entropy),
                ("occipital_alpha_db", "summary", alpha),
                ("aperiodic_exponent", "summary", aper),
            ):
                rows.append(
                    {
                        "participant_id": f"sub-{s:02d}",
                        "session": f"d{dose}",
                        "dose_mg_per_kg": dose,
                        "measure": measure,
                        "region": region,
                        "change": change,
                        "baseline": 1.0,
                    }
                )
    return pd.DataFrame(rows)


def test_spectrum_controlled_entropy_removes_a_purely_spectral_dose_effect():
    out = eeg_analysis.spectrum_controlled_entropy(_changes(entropy_from_alpha_only=True), "lzc_median")
    top = out["comparison"][out["comparison"]["dose_mg_per_kg"] == 1.0].set_index("model")
    raw, controlled = top.iloc[0], top.iloc[1]
    assert raw["ci_low"] > 0  # entropy rises with dose ...
    assert controlled["ci_low"] < 0 < controlled["ci_high"]  # ... entirely through alpha
    alpha = out["controlled"].set_index("term").loc["alpha_change_db"]
    assert alpha["estimate"] == pytest.approx(-0.02, abs=0.003)
    # The spectrum-controlled change is the entropy change minus the fitted spectral part.
    rows = eeg_analysis.spectrum_controlled_rows(out, "lzc_median")
    assert rows["measure"].unique().tolist() == ["lzc_median_spectrum_controlled"] and len(rows) == 56


def test_spectrum_controlled_entropy_keeps_an_effect_beyond_the_spectrum():
    out = eeg_analysis.spectrum_controlled_entropy(_changes(entropy_from_alpha_only=False, seed=1), "lzc_median")
    top = out["comparison"][out["comparison"]["dose_mg_per_kg"] == 1.0]
    controlled = top[top["model"].str.startswith("controlled")].iloc[0]
    assert controlled["ci_low"] > 0 and controlled["effect_vs_lowest_dose"] == pytest.approx(0.05, abs=0.02)


def test_raw_and_surrogate_table_puts_the_two_variants_side_by_side():
    base = _changes(True)
    ratio = base[base["measure"] == "lzc_median"].assign(measure="lzc_median_surr_ratio", change=0.0)
    table = eeg_analysis.raw_and_surrogate_entropy(pd.concat([base, ratio]), ["lzc_median"])
    assert set(table["variant"]) == {"raw", "surrogate-controlled"}
    wide = table.pivot(index="dose_mg_per_kg", columns="variant", values="mean_change_pct_of_baseline")
    assert (wide.loc[1.0, "raw"] > 5) and wide["surrogate-controlled"].abs().max() == 0


def test_titration_onset_table_counts_misses_false_alerts_and_errors():
    markers = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02", "sub-01", "sub-02"],
            "session": ["a", "a", "b", "b"],
            "dose_mg_per_kg": [0.5, 0.5, 1.0, 1.0],
            "alpha_suppression_onset_s": [61.0, np.nan, 30.0, 40.0],
            "alpha_threshold_db": -10.0,
            "entropy_plateau_time_s": [90.0, 80.0, 60.0, np.nan],
        }
    )
    rec = lambda onset: {"occipital_alpha_onset_s_by_threshold_db": {"-10": onset}}
    truth = {
        "eeg": {
            "recordings": {
                "sub-01_ses-a": rec(60.0),
                "sub-02_ses-a": rec(70.0),
                "sub-01_ses-b": rec(None),
                "sub-02_ses-b": rec(37.0),
            }
        }
    }
    table = eeg_analysis.titration_onset_table(markers, 2.0, truth).set_index("dose_mg_per_kg")
    assert table.loc[0.5, "misses"] == 1 and table.loc[0.5, "median_abs_error_s"] == 1.0
    assert table.loc[1.0, "false_alerts"] == 1 and table.loc[1.0, "median_error_s"] == 3.0
    assert table.loc[1.0, "n_reached"] == 2 and table.loc[0.5, "median_entropy_plateau_s"] == 85.0


# ---------------------------------------------------------------------------- run(study, params) and its model
def test_run_is_the_whole_report_on_the_default_study(default_study, default_truth):
    """One call gives every table notebook 01 shows and writes; the planted inverted U and onsets come back."""
    result = eeg_analysis.run(default_study, {"measures": ["lzc_median"], "regions": ["occipital"]})
    assert result.timing_ok and result.trend_ok and result.timing_reason == result.trend_reason == ""
    assert result.params.threshold_db == default_study.manifest.eeg.dynamics.alpha_threshold_db  # None: manifest's
    assert set(result.derived_tables()) == {
        "eeg_condition_levels",
        "eeg_condition_contrasts",
        "eeg_markers",
        "eeg_plateau_changes",
        "eeg_dose_models",
        "eeg_dose_means",
        "eeg_dose_shape_tests",
    }
    verdict = result.shape_tests.groupby("measure")["verdict"].first()
    assert verdict["lzc_median"] == "inverted U" and verdict["occipital_alpha_db"] != "inverted U"
    # The plateau changes carry the spectrum-controlled rows (H4c in report 04) and the surrogate ratios.
    measures = set(result.changes["measure"])
    assert "lzc_median_spectrum_controlled" in measures and "lzc_median_surr_ratio" in measures
    assert result.onset_truth and result.onsets["n_planted"].sum() > 0
    assert result.planted_entropy_peak_dose == default_truth["eeg"]["expected_entropy_peak_dose_mg_per_kg"]
    assert {"o1", "o2"} <= {c.lower() for c in result.positions}
    assert result.summary.startswith("Occipital alpha on the infusion plateau")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"measures": ["lzc_mediun"]},
            "measure 'lzc_mediun' was not computed for this study — did you mean 'lzc_median'",
        ),
        ({"regions": ["occiptal"]}, "region 'occiptal' is not in eeg.rois"),
        ({"window_s": 3.0}, "window_s=3.0 differs from the computed features"),
        ({"threshold_db": 3}, "threshold_db must be negative"),
        ({"entropy_measure": "lzc"}, "entropy_measure 'lzc' was not computed"),
    ],
)
def test_parameters_are_checked_against_the_computed_features(default_study, params, message):
    with pytest.raises(ValueError, match=message):
        eeg_analysis.EEGParameters(**params).resolve(default_study)


def test_threshold_in_percent_of_baseline_power_is_stored_in_db():
    assert eeg_analysis.EEGParameters(threshold_db="10%").threshold_db == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="give dB"):
        eeg_analysis.EEGParameters(threshold_db="ten")
    with pytest.raises(ValueError, match="Extra inputs"):
        eeg_analysis.EEGParameters(threshold=-10)


def _parallel_levels(seed: int, n_per_arm: int = 7, shift: float = 0.0) -> pd.DataFrame:
    """Absolute levels as condition_levels returns them, one recording per subject (parallel arms)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(2 * n_per_arm):
        arm = "ketamine" if i % 2 else "midazolam"
        for measure, scale in (("lzc_median", 0.05), ("occipital_alpha_power_uv2", 20.0)):
            level = rng.normal(0.6 if measure == "lzc_median" else 100.0, scale) + (shift * scale if i % 2 else 0.0)
            rows.append({"participant_id": f"sub-{i:02d}", "session": arm, "dose_mg_per_kg": 0.5 * (i % 2),
                         "measure": measure, "region": "all", "level": level})  # fmt: skip
    return pd.DataFrame(rows)


def test_between_arm_contrasts_equal_student_t_and_pingouin_hedges_g():
    import pingouin as pg
    from scipy import stats as sps

    levels = _parallel_levels(1, shift=1.0)
    table = eeg_analysis.between_arm_contrasts(levels, ["midazolam", "ketamine"]).set_index("measure")
    for measure, row in table.iterrows():
        part = levels[levels["measure"] == measure]
        a = part.loc[part["session"] == "midazolam", "level"].to_numpy()
        b = part.loc[part["session"] == "ketamine", "level"].to_numpy()
        ref = sps.ttest_ind(b, a, equal_var=True)
        interval = ref.confidence_interval()
        assert row["mean_difference"] == pytest.approx(b.mean() - a.mean(), rel=1e-12)
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-9)
        assert row["hedges_g"] == pytest.approx(pg.compute_effsize(b, a, eftype="hedges"), rel=1e-9)
        assert row["n_a"] == row["n_b"] == 7 and row["n_subjects"] == 14 and row["a"] == "midazolam"


def test_between_arm_contrasts_keep_type_one_error_under_the_null():
    """No arm difference, 7 subjects per arm: the pooled t rejects at about the nominal 5 %."""
    rejections = [
        eeg_analysis.between_arm_contrasts(_parallel_levels(seed), ["midazolam", "ketamine"])["p"].iloc[0] < 0.05
        for seed in range(400)
    ]
    assert 0.025 <= np.mean(rejections) <= 0.08


def test_levels_of_a_parallel_design_are_compared_between_arms_and_the_summary_says_so():
    from pipelines.study.dataset import Design

    levels = _parallel_levels(2, shift=3.0)
    design = Design("parallel", (("midazolam", 0.0), ("ketamine", 0.5)), ("ketamine", "midazolam"), True, {})
    contrasts = eeg_analysis.between_arm_contrasts(levels, ["midazolam", "ketamine"])
    text = eeg_analysis.contrast_summary_text(contrasts, design)
    assert "between-arm comparison instead" in text and "compared between subjects" in text
    assert "ketamine − midazolam" in text and "g = " in text and "g_av" not in text
    # A subject with both conditions makes it a within-subject study again: paired contrasts.
    noise = np.random.default_rng(0).normal(0, 0.01, len(levels))
    crossover = pd.concat([levels, levels.assign(session="ketamine", level=levels["level"] + 1 + noise)])
    paired = eeg_analysis.condition_contrasts(crossover.drop_duplicates(["participant_id", "session", "measure"]),
                                              ["midazolam", "ketamine"])  # fmt: skip
    assert "hedges_g_av" in paired.columns


def test_a_pre_post_summary_says_the_contrast_is_uncontrolled_and_a_crossover_does_not():
    from pipelines.study.dataset import Design

    levels = _parallel_levels(4, shift=1.0)
    pre = levels.assign(session="pre")
    post = pre.assign(session="post", level=pre["level"] + 1.0 + np.random.default_rng(1).normal(0, 0.1, len(pre)))
    contrasts = eeg_analysis.condition_contrasts(pd.concat([pre, post]), ["pre", "post"])
    for kind, said in (("pre_post", True), ("crossover", False)):
        design = Design(kind, (("pre", float("nan")), ("post", 0.5)), (), True, {})
        text = eeg_analysis.contrast_summary_text(contrasts, design)
        assert ("not a drug effect alone" in text) is said
        assert "post − pre" in text


def _two_condition_changes(seed: int, within: bool, effect: float = 0.0, n: int = 10) -> pd.DataFrame:
    """Plateau-change rows of lzc_median (global) and occipital alpha (dB re baseline): placebo vs ketamine,
    every subject in both (``within``) or each subject in one arm; ketamine adds ``effect`` to the plateau."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        trait = rng.normal(0.6, 0.05)
        sessions = ["placebo", "ketamine"] if within else [["placebo", "ketamine"][s % 2]]
        for session in sessions:
            baseline = trait + rng.normal(0, 0.01)
            plateau = baseline + 0.5 * (trait - 0.6) + rng.normal(0, 0.01) + (effect if session == "ketamine" else 0)
            alpha = rng.normal(-8 * effect / 0.05 if session == "ketamine" else 0.0, 1.0)
            for measure, region, b, p in (("lzc_median", "global", baseline, plateau),
                                          ("occipital_alpha_db", "summary", 0.0, alpha)):  # fmt: skip
                rows.append({"participant_id": f"sub-{s:02d}", "session": session, "measure": measure,
                             "region": region, "baseline": b, "plateau": p,
                             "change": p if measure == "occipital_alpha_db" else p - b})  # fmt: skip
    return pd.DataFrame(rows)


def test_change_contrasts_within_subjects_equal_the_paired_t_on_the_change():
    from scipy import stats as sps

    changes = _two_condition_changes(3, within=True, effect=0.02)
    table = eeg_analysis.change_contrasts(changes, ["placebo", "ketamine"]).set_index("measure")
    part = changes[changes["measure"] == "lzc_median"].pivot(index="participant_id", columns="session", values="change")
    ref = sps.ttest_rel(part["ketamine"], part["placebo"])
    row = table.loc["lzc_median"]
    assert row["estimate"] == pytest.approx((part["ketamine"] - part["placebo"]).mean(), rel=1e-12)
    assert row["p"] == pytest.approx(ref.pvalue, rel=1e-9) and row["n_subjects"] == 10
    assert "paired" in row["method"] and row["ci_low"] > 0  # the planted effect


def test_change_contrasts_between_arms_are_the_baseline_adjusted_ancova_of_statsmodels():
    import statsmodels.formula.api as smf

    changes = _two_condition_changes(4, within=False, effect=0.02, n=16)
    table = eeg_analysis.change_contrasts(changes, ["placebo", "ketamine"]).set_index("measure")
    part = changes[changes["measure"] == "lzc_median"].assign(ket=lambda d: (d["session"] == "ketamine") * 1.0)
    fit = smf.ols("plateau ~ ket + baseline", data=part).fit()
    row = table.loc["lzc_median"]
    assert row["estimate"] == pytest.approx(fit.params["ket"], rel=1e-9)
    assert row["p"] == pytest.approx(fit.pvalues["ket"], rel=1e-6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(fit.conf_int().loc["ket"]), rel=1e-9)
    assert "adjusted for the baseline" in row["method"]
    alpha = table.loc["occipital_alpha_db"]  # already relative to its baseline: compared unadjusted
    assert "already relative" in alpha["method"] and alpha["estimate"] < 0


def test_change_contrasts_keep_type_one_error_in_both_layouts():
    for within in (True, False):
        p = [eeg_analysis.change_contrasts(_two_condition_changes(seed, within, n=12), ["placebo", "ketamine"])
             .set_index("measure").loc["lzc_median", "p"] for seed in range(300)]  # fmt: skip
        assert 0.025 <= np.mean(np.array(p) < 0.05) <= 0.08, within
