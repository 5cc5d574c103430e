"""Inflammation strata without regression to the mean (issue 11) and the cytokine items of issue 10: strata from
a screening CRP / the mean of repeated baselines / a single baseline (with its warning), the acute-infection rule,
the placebo-controlled interaction (against scipy/statsmodels, and by simulation: baseline-defined strata show the
regression-to-the-mean bias, screening strata and the interaction do not), its calibration row, units declared in
the manifest, unknown columns reported, and the change as ln-ratio or absolute difference."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pipelines.core.errors import InputError
from pipelines.phenotype import cytokines as cy
from pipelines.stats import stratum_by_treatment_interaction
from pipelines.stats.crp_simulation import StrataDesign, simulate_crp_crossover

SIDECAR = {"analytes": {"CRP": {"unit": "mg/L", "LLOQ": 0.2, "ULOQ": 200}, "IL6": {"unit": "pg/mL", "LLOQ": 0.7}}}


def crp_table(values: dict, screening: dict | None = None) -> pd.DataFrame:
    """A parsed-like long table from {(subject, session): (baseline, post)} CRP values (mg/L)."""
    rows = []
    for subject, value in (screening or {}).items():
        rows.append((subject, cy.NO_SESSION, "screening", "CRP", str(value), "mg/L"))
    for (subject, session), (base, post) in values.items():
        rows += [
            (subject, session, "baseline", "CRP", str(base), "mg/L"),
            (subject, session, "24h", "CRP", str(post), "mg/L"),
        ]
    frame = pd.DataFrame(rows, columns=["participant_id", "session_id", "timepoint", "analyte", "value", "unit"])
    frame.attrs["source"] = "crp.tsv"
    return cy.load_cytokines(frame, SIDECAR)


# ------------------------------------------------------------------------------------- strata sources
def test_screening_is_the_source_when_present_and_classifies_on_it():
    parsed = crp_table(
        {
            ("sub-01", "ses-a"): (5.0, 4.0),
            ("sub-01", "ses-b"): (5.0, 4.0),
            ("sub-02", "ses-a"): (1.0, 1.0),
            ("sub-02", "ses-b"): (1.0, 1.0),
        },
        screening={"sub-01": 2.0, "sub-02": "0.3"},
    )
    strata = cy.define_strata(parsed)
    assert strata.attrs["source"] == "screening" and strata.attrs["warning"] == ""
    # sub-01's baselines are high, but its screening CRP (2.0) decides: not inflamed.
    assert set(strata.loc[strata["participant_id"] == "sub-01", "stratum"]) == {"non-inflamed"}
    assert "screening" in strata.attrs["definition"]


def test_exactly_at_the_threshold_is_inflamed_for_screening_and_mean_of_baselines():
    parsed = crp_table({("sub-01", "ses-a"): ("0.3", 1), ("sub-01", "ses-b"): ("30", 1)}, screening={"sub-01": "3"})
    assert set(cy.define_strata(parsed, acute_threshold=None)["stratum"]) == {"inflamed"}
    # geometric mean of 0.3 and 30 is exactly 3 mg/L
    by_mean = cy.define_strata(parsed, source="mean_baselines", acute_threshold=None)
    assert set(by_mean["stratum"]) == {"inflamed"} and by_mean["crp_stratifying"].iloc[0] == pytest.approx(3.0)


def test_fallbacks_mean_of_baselines_then_single_baseline_with_the_warning():
    repeated = crp_table(
        {
            ("sub-01", "ses-a"): (2.0, 2.0),
            ("sub-01", "ses-b"): (8.0, 2.0),
            ("sub-02", "ses-a"): (1.0, 1.0),
            ("sub-02", "ses-b"): (1.0, 1.0),
        }
    )
    strata = cy.define_strata(repeated)
    assert strata.attrs["source"] == "mean_baselines" and strata.attrs["warning"] == ""
    assert set(strata.loc[strata["participant_id"] == "sub-01", "stratum"]) == {"inflamed"}  # sqrt(16) = 4
    single = crp_table({("sub-01", "ses-a"): (4.0, 2.0), ("sub-02", "ses-a"): (1.0, 1.0)})
    strata = cy.define_strata(single)
    assert strata.attrs["source"] == "single_baseline"
    assert strata.attrs["warning"].startswith("⚠") and "regression to the mean" in strata.attrs["warning"]
    assert "\n" not in strata.attrs["warning"]
    with pytest.raises(InputError, match="screening"):
        cy.define_strata(single, source="screening")
    with pytest.raises(InputError, match="fewer than 2 baselines"):
        cy.define_strata(single, source="mean_baselines")


def test_acute_infection_rule_session_and_subject():
    values = {
        ("sub-01", "ses-a"): (2.0, 2.0),
        ("sub-01", "ses-b"): (12.0, 11.0),
        ("sub-01", "ses-c"): (2.5, 2.0),
        ("sub-02", "ses-a"): (5.0, 5.0),
        ("sub-02", "ses-b"): (5.0, 5.0),
        ("sub-02", "ses-c"): (5.0, 12.0),
        ("sub-03", "ses-a"): (1.0, 1.0),
        ("sub-03", "ses-b"): (1.0, 1.0),
        ("sub-03", "ses-c"): (1.0, 1.0),
    }
    parsed = crp_table(values, screening={"sub-01": 2.0, "sub-02": 5.0, "sub-03": 10.0})
    by_session = cy.define_strata(parsed, acute_rule="session").set_index(["participant_id", "session_id"])["stratum"]
    assert by_session[("sub-01", "ses-b")] == "excluded" and by_session[("sub-01", "ses-a")] == "non-inflamed"
    assert (by_session.loc["sub-03"] == "excluded").all()  # screening exactly at 10 mg/L: acute
    assert (by_session.loc["sub-02"] == "inflamed").all()  # a post value of 12 is flagged, never excluded
    by_subject = cy.define_strata(parsed, acute_rule="subject")
    assert (by_subject.loc[by_subject["participant_id"] == "sub-01", "stratum"] == "excluded").all()
    flags = by_subject.attrs["flags"]
    assert {("sub-01", "baseline"), ("sub-01", "24h"), ("sub-02", "24h"), ("sub-03", "screening")} == set(
        zip(flags["participant_id"], flags["timepoint"])
    )
    assert "10 mg/L" in by_subject.attrs["acute_rule"] and "'subject'" in by_subject.attrs["acute_rule"]
    off = cy.define_strata(parsed, acute_threshold=None)
    assert "excluded" not in set(off["stratum"]) and "off" in off.attrs["acute_rule"]


# ------------------------------------------------------------------------- the interaction routine
def test_interaction_equals_welch_on_per_subject_contrasts_and_ols_between_subjects():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(10):
        for session in range(3):
            rows.append((f"s{i}", session > 0, float(i < 4), rng.normal()))
    df = pd.DataFrame(rows, columns=["subject", "treated", "stratum", "y"])
    out = stratum_by_treatment_interaction(df, "y", "treated", "stratum", "subject").set_index("quantity")
    per = df.groupby(["subject", "treated"])["y"].mean().unstack()
    d = per[True] - per[False]
    s = df.groupby("subject")["stratum"].first()
    ref = sps.ttest_ind(d[s == 1], d[s == 0], equal_var=False)
    assert out.loc["interaction", "estimate"] == pytest.approx(d[s == 1].mean() - d[s == 0].mean())
    assert out.loc["interaction", "p"] == pytest.approx(ref.pvalue, rel=1e-10)
    low, high = ref.confidence_interval(0.95)
    assert (out.loc["interaction", "ci_low"], out.loc["interaction", "ci_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    assert out.loc["contrast_in_stratum_1", "p"] == pytest.approx(sps.ttest_1samp(d[s == 1], 0).pvalue)
    # Parallel design: each subject one arm -> OLS y ~ treated * stratum over subjects.
    import statsmodels.formula.api as smf

    par = pd.DataFrame(
        {
            "subject": [f"p{i}" for i in range(16)],
            "treated": np.arange(16) % 2 == 0,
            "stratum": (np.arange(16) // 2) % 2,
            "y": rng.normal(size=16),
        }
    )
    out = stratum_by_treatment_interaction(par, "y", "treated", "stratum", "subject").set_index("quantity")
    fit = smf.ols("y ~ treated * stratum", par.assign(treated=par["treated"].astype(float))).fit()
    assert out.loc["interaction", "estimate"] == pytest.approx(fit.params["treated:stratum"])
    assert out.loc["interaction", "p"] == pytest.approx(fit.pvalues["treated:stratum"])
    with pytest.raises(ValueError, match="subject-level"):
        stratum_by_treatment_interaction(
            df.assign(stratum=np.arange(len(df)) % 2), "y", "treated", "stratum", "subject"
        )


def _crossover_with_period_effect(seed: int, interaction: float) -> pd.DataFrame:
    """12 subjects × (placebo + 3 active); the inflamed subjects mostly had placebo first and the others mostly
    last (an unbalanced order, yet every placebo period occurs in both strata, so the period terms are identified),
    and a strong period effect on the change (0, 0.3, 0.6, 0.9)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(12):
        inflamed = float(i < 6)
        placebo_period = [1, 1, 1, 2, 3, 4][i] if inflamed else [4, 4, 4, 3, 2, 1][i - 6]
        others = [p for p in (1, 2, 3, 4) if p != placebo_period]
        trait = rng.normal(0, 0.3)
        for session in range(4):
            period = placebo_period if session == 0 else others[session - 1]
            y = trait + 0.3 * (period - 1) + interaction * inflamed * (session > 0) + rng.normal(0, 0.1)
            rows.append((f"s{i:02d}", session > 0, inflamed, period, y))
    return pd.DataFrame(rows, columns=["subject", "treated", "stratum", "period", "y"])


def test_period_option_removes_a_period_effect_an_unbalanced_order_turns_into_an_interaction():
    # No interaction planted: ignoring the period "finds" one (the inflamed subjects' placebo sat in early periods,
    # so their active sessions carry more of the period effect); the period-adjusted interaction does not.
    null = _crossover_with_period_effect(1, 0.0)
    plain = stratum_by_treatment_interaction(null, "y", "treated", "stratum", "subject")
    adjusted = stratum_by_treatment_interaction(null, "y", "treated", "stratum", "subject", period="period")
    adjusted = adjusted.set_index("quantity")
    # expected bias of the plain contrast: the inflamed subjects' active sessions sit ~0.5 period later on average
    plain = plain.set_index("quantity")
    assert plain.loc["interaction", "estimate"] > 0.25
    assert abs(adjusted.loc["interaction", "estimate"]) < 0.1
    assert adjusted.loc["interaction", "ci_low"] <= 0 <= adjusted.loc["interaction", "ci_high"]
    width = (adjusted["ci_high"] - adjusted["ci_low"]) / (plain["ci_high"] - plain["ci_low"])
    assert width.loc["interaction"] < 0.5  # the period no longer inflates the spread of the contrasts
    assert (adjusted["period_terms"] == 3).all() and "period composition" in adjusted.loc["interaction", "method"]
    assert adjusted.loc["contrast_in_stratum_1", "ci_low"] <= 0 <= adjusted.loc["contrast_in_stratum_1", "ci_high"]
    # A planted interaction of -0.5 is recovered.
    planted = stratum_by_treatment_interaction(
        _crossover_with_period_effect(2, -0.5), "y", "treated", "stratum", "subject", period="period"
    ).set_index("quantity")
    row = planted.loc["interaction"]
    assert row["ci_low"] <= -0.5 <= row["ci_high"] and row["ci_high"] < 0
    # The point estimate is OLS over subjects of the contrasts on stratum and the placebo's period (which spans
    # the same space as the period composition when each subject has one placebo session).
    per = null.groupby(["subject", "treated"])["y"].mean().unstack()
    d = per[True] - per[False]
    first = null[~null["treated"]].set_index("subject")["period"]
    x = pd.get_dummies(first.reindex(d.index), prefix="p", dtype=float).iloc[:, 1:]
    s = null.groupby("subject")["stratum"].first().reindex(d.index)
    import statsmodels.api as sm

    ols = sm.OLS(d.to_numpy(), np.column_stack([s, 1 - s, x - x.mean()])).fit()
    assert adjusted.loc["interaction", "estimate"] == pytest.approx(ols.params[0] - ols.params[1], abs=1e-12)
    assert adjusted.loc["contrast_in_stratum_1", "estimate"] == pytest.approx(ols.params[0], abs=1e-12)


def test_period_option_without_identified_period_terms_keeps_the_welch_rows_and_says_so():
    # Every subject had placebo in period 1: the period composition is the same for all, nothing to adjust.
    rng = np.random.default_rng(4)
    rows = [(f"s{i}", k > 0, float(i < 5), k + 1, rng.normal() + 0.2 * k) for i in range(10) for k in range(4)]
    df = pd.DataFrame(rows, columns=["subject", "treated", "stratum", "period", "y"])
    plain = stratum_by_treatment_interaction(df, "y", "treated", "stratum", "subject")
    same = stratum_by_treatment_interaction(df, "y", "treated", "stratum", "subject", period="period")
    pd.testing.assert_frame_equal(
        plain.drop(columns=["period_terms", "method"]), same.drop(columns=["period_terms", "method"])
    )
    assert (same["period_terms"] == 0).all()
    assert "period composition not identified" in same.set_index("quantity").loc["interaction", "method"]


# --------------------------------------------------------------- regression to the mean, by simulation
def _null_studies(design: StrataDesign, n: int, seed: int):
    for i in range(n):
        yield simulate_crp_crossover(design, np.random.default_rng([seed, i]))


def test_baseline_strata_show_regression_to_the_mean_screening_strata_and_the_interaction_do_not():
    """No treatment effect anywhere. One active session per subject, strata from its own baseline: the inflamed
    stratum's CRP 'falls' and the stratum contrast is biased. Strata from the screening draw: no bias. The
    placebo-controlled interaction: type-I error near 5 % under screening and mean-of-baselines strata."""
    design = StrataDesign(n_subjects=30)
    n = 300
    baseline_change, screening_change, baseline_reject, screening_reject = [], [], [], []
    for data in _null_studies(design, n, 11):
        first = data[data["session"] == 1]
        for by, changes, rejects in (
            (first["ln_baseline"], baseline_change, baseline_reject),
            (first["ln_screening"], screening_change, screening_reject),
        ):
            inflamed = by >= np.log(3.0)
            changes.append(first.loc[inflamed, "ln_change"].mean())
            rejects.append(
                sps.ttest_ind(
                    first.loc[inflamed, "ln_change"], first.loc[~inflamed, "ln_change"], equal_var=False
                ).pvalue
                < 0.05
            )
    mc_se = np.std(baseline_change) / np.sqrt(n)
    assert np.mean(baseline_change) < -0.05 and np.mean(baseline_change) < -8 * mc_se  # about -10 %
    assert abs(np.mean(screening_change)) < 3 * np.std(screening_change) / np.sqrt(n)
    assert np.mean(baseline_reject) > 0.20  # biased contrast
    assert 0.02 <= np.mean(screening_reject) <= 0.09
    small = StrataDesign()  # the default 12 subjects x 4 sessions
    for rule in ("screening", "mean_baselines"):
        rejects = [
            stratum_by_treatment_interaction(d, "ln_change", "treated", "inflamed", "subject")
            .set_index("quantity")
            .loc["interaction", "p"]
            < 0.05
            for d in _null_studies(replace(small, strata_rule=rule), 300, 12)
        ]
        assert 0.02 <= np.mean(rejects) <= 0.09, (rule, np.mean(rejects))


def test_small_calibration_of_the_interaction_row():
    from pipelines.stats import calibration

    report = calibration.run_calibration(
        n_null=150,
        n_effect=60,
        n_boot=20,
        seed=5,
        only=["stratum_by_treatment_interaction[screening]", "REFERENCE stratum contrast"],
    )
    rows = {r["name"]: r for r in report["rows"]}
    row = rows["stratum_by_treatment_interaction[screening]"]
    assert set(row) >= {"routine", "type1_error", "coverage", "power", "n_sims"}
    assert row["n_sims"] == 210 and 0.015 <= row["type1_error"] <= 0.10
    assert row["coverage"] >= 0.85 and row["power"] > row["type1_error"]
    assert -0.35 < row["true_value_effect"] < 0  # misclassified strata dilute the planted -0.35
    assert rows["REFERENCE stratum contrast of the change, single baseline per subject"]["type1_error"] > 0.07


# ------------------------------------------------------------------------- units, columns (issue 10)
def _write(tmp_path, rows, columns, sidecar=None):
    path = tmp_path / "cytokines.tsv"
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def test_units_declared_in_the_manifest_for_unitless_files(tmp_path):
    columns = ["participant_id", "session_id", "timepoint", "analyte", "value"]
    path = _write(
        tmp_path,
        [("sub-01", "ses-a", "baseline", "IL6", "2.5"), ("sub-01", "ses-a", "baseline", "CRP", "0.3")],
        columns,
    )
    with pytest.raises(InputError, match="no unit declared"):
        cy.load_cytokines(path)
    parsed = cy.load_cytokines(path, declared_units={"*": "pg/mL", "CRP": "mg/dL"})
    assert dict(zip(parsed["analyte"], parsed["unit"])) == {"IL6": "pg/mL", "CRP": "mg/dL"}
    wide = _write(
        tmp_path,
        [("sub-01", "ses-a", "baseline", "2.5", "1.0")],
        ["participant_id", "session_id", "timepoint", "IL6", "TNFA"],
    )
    parsed = cy.load_cytokines(wide, declared_units={"*": "pg/mL"})
    assert set(parsed["analyte"]) == {"IL6", "TNFA"} and set(parsed["unit"]) == {"pg/mL"}


def test_a_unit_in_the_file_that_disagrees_with_the_manifest_is_an_error(tmp_path):
    columns = ["participant_id", "session_id", "timepoint", "analyte", "value", "unit"]
    path = _write(
        tmp_path,
        [("sub-01", "ses-a", "baseline", "IL6", "2.5", "pg/mL"), ("sub-01", "ses-a", "24h", "IL6", "0.002", "ng/mL")],
        columns,
    )
    with pytest.raises(InputError, match=r"cytokines.tsv, row 2 .*analyte IL6.*'ng/mL'.*'pg/mL'"):
        cy.load_cytokines(path, declared_units={"IL6": "pg/mL"})
    assert (
        len(cy.load_cytokines(path, declared_units={"IL6": "pg/ml"}.fromkeys(["CRP"], "mg/L"), units={"IL6": "pg/mL"}))
        == 2
    )  # the manifest names another analyte only
    sidecar = {"analytes": {"IL6": {"unit": "ng/mL"}}}
    path = _write(tmp_path, [("sub-01", "ses-a", "baseline", "IL6", "2.5")], columns[:-1], sidecar)
    with pytest.raises(InputError, match="analyte IL6: the sidecar's unit 'ng/mL' disagrees"):
        cy.load_cytokines(path, declared_units={"*": "pg/mL"})
    # µ/u spellings of the same unit agree
    path = _write(tmp_path, [("sub-01", "ses-a", "baseline", "KYN", "2.5", "umol/L")], columns)
    assert cy.load_cytokines(path, declared_units={"KYN": "µmol/L"})["unit"].iloc[0] == "µmol/L"


def test_manifest_units_field_is_validated(tmp_path):
    from pipelines.study.manifest import PhenotypeTable

    table = PhenotypeTable(path="phenotype/cytokines.tsv", format="long", units={"*": "pg/mL", "CRP": "mg/L"})
    assert table.units == {"*": "pg/mL", "CRP": "mg/L"} and PhenotypeTable(path="x.tsv").units == {}
    with pytest.raises(ValueError, match="unknown unit"):
        PhenotypeTable(path="x.tsv", units={"IL6": "pg per mL"})


def test_unknown_columns_are_reported_not_dropped_silently(tmp_path):
    columns = ["participant_id", "session_id", "timepoint", "analyte", "value", "unit", "plate_mean"]
    path = _write(tmp_path, [("sub-01", "ses-a", "baseline", "IL6", "2.5", "pg/mL", "2.4")], columns)
    with pytest.warns(cy.UnknownColumnWarning, match="plate_mean"):
        cy.load_cytokines(path, declared_units={"*": "pg/mL"})


# ------------------------------------------------------------------------------ change scale (issue 10)
def test_change_as_absolute_difference_or_ln_ratio():
    parsed = crp_table(
        {("sub-01", "ses-a"): (4.0, 2.0), ("sub-02", "ses-a"): (1.0, 3.0), ("sub-03", "ses-a"): (2.0, 1.5)}
    )
    diff = cy.paired_change(parsed, scale="difference", n_boot=0)
    ln = cy.paired_change(parsed, n_boot=0)
    row, lrow = diff[diff["stratum"] == "all"].iloc[0], ln[ln["stratum"] == "all"].iloc[0]
    assert row["estimate"] == pytest.approx(np.mean([-2.0, 2.0, -0.5]))
    assert lrow["estimate"] == pytest.approx(np.mean(np.log([0.5, 3.0, 0.75])))
    assert row["change_scale"] == "difference" and "post − baseline" in row["estimand"] and np.isnan(row["fold_change"])
    assert lrow["change_scale"] == "ln_ratio" and "ln(post/baseline)" in lrow["estimand"]
    table = cy.log_change_table(parsed, scale="difference")
    assert (table["change"] == table["value_post"] - table["value_baseline"]).all()
    with pytest.raises(ValueError, match="scale"):
        cy.paired_change(parsed, scale="percent")


def test_study_loader_applies_the_manifest_units_and_keeps_screening_rows(tmp_path):
    import types

    from pipelines.analyses import cytokines as ca
    from pipelines.study.manifest import PhenotypeTable

    columns = ["participant_id", "session_id", "timepoint", "analyte", "value"]
    path = _write(
        tmp_path,
        [
            ("sub-01", "n/a", "screening", "CRP", "4.1"),
            ("sub-01", "ses-a", "baseline", "CRP", "3.5"),
            ("sub-01", "ses-a", "24h", "CRP", "2.0"),
            ("sub-01", "ses-a", "baseline", "IL6", "2.0"),
            ("sub-01", "ses-a", "24h", "IL6", "1.0"),
        ],
        columns,
    )
    study = types.SimpleNamespace(
        manifest=types.SimpleNamespace(
            phenotype={"cytokines": PhenotypeTable(path=str(path), format="long", units={"*": "pg/mL", "CRP": "mg/L"})}
        ),
        table_path=lambda name: path,
        participants=pd.DataFrame({"participant_id": ["sub-01"]}),
        sessions=pd.DataFrame(
            {"participant_id": ["sub-01"], "session_id": ["ses-a"], "condition": ["active"], "dose_mg_per_kg": [0.5]}
        ),
    )
    parsed = ca.load_study_cytokines(study, timepoints=["baseline", "24h"])
    assert dict(zip(parsed["analyte"], parsed["unit"])) == {"CRP": "mg/L", "IL6": "pg/mL"}
    screening = parsed[parsed["timepoint"] == "screening"]
    assert len(screening) == 1 and np.isnan(screening["dose_mg_per_kg"].iloc[0])
    assert cy.define_strata(parsed).attrs["source"] == "screening"
