"""Tests for pipelines.phenotype.cytokines: lab strings, units, censoring, strata, paired change (planted truths)."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import InputError
from pipelines.phenotype import cytokines as cy

requires_stats = pytest.mark.skipif(
    importlib.util.find_spec("pipelines.stats") is None, reason="pipelines/stats/basic.py not written yet"
)

SIDECAR = {
    "participant_id": {"Description": "subject"},
    "analytes": {
        "IL6": {"unit": "pg/mL", "LLOQ": 0.7, "ULOQ": 5000},
        "CRP": {"unit": "mg/L", "LLOQ": 0.2, "ULOQ": 200},
        "KYN": {"unit": "µmol/L", "LLOQ": 0.1},
        "TRP": {"unit": "µmol/L", "LLOQ": 1},
    },
}


def write_table(tmp_path, rows, name="cytokines.tsv", sidecar=SIDECAR, columns=None):
    columns = columns or ["participant_id", "session_id", "timepoint", "analyte", "value", "unit"]
    frame = pd.DataFrame(rows, columns=columns)
    path = tmp_path / name
    frame.to_csv(path, sep="\t" if name.endswith(".tsv") else ",", index=False)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ lab strings
@pytest.mark.parametrize(
    ("text", "value", "censoring", "limit"),
    [
        ("3.2", 3.2, "observed", math.nan),
        ("  3.2 ", 3.2, "observed", math.nan),
        ("1e3", 1000.0, "observed", math.nan),
        ("<0.7", math.nan, "below", 0.7),
        ("< 0.5", math.nan, "below", 0.5),
        ("<LLOQ", math.nan, "below", 0.7),
        ("< LLOQ", math.nan, "below", 0.7),
        ("<lloq", math.nan, "below", 0.7),
        (">5000", math.nan, "above", 5000.0),
        ("> ULOQ", math.nan, "above", 5000.0),
        (">ULOQ", math.nan, "above", 5000.0),
        ("ND", math.nan, "below", 0.7),
        ("nd", math.nan, "below", 0.7),
        ("n.d.", math.nan, "below", 0.7),
        ("0.5", math.nan, "below", 0.7),  # numeric reading below the LLOQ is censored, not used
        ("0", math.nan, "below", 0.7),  # never a silent zero
        ("6000", math.nan, "above", 5000.0),
        ("NA", math.nan, "missing", math.nan),
        ("n/a", math.nan, "missing", math.nan),
        ("N/A", math.nan, "missing", math.nan),
        ("", math.nan, "missing", math.nan),
        ("   ", math.nan, "missing", math.nan),
        ("nan", math.nan, "missing", math.nan),
        (None, math.nan, "missing", math.nan),
        (float("nan"), math.nan, "missing", math.nan),
    ],
)
def test_parse_every_string_form(text, value, censoring, limit):
    got = cy.parse_lab_value(text, lloq=0.7, uloq=5000)
    assert got.censoring == censoring
    np.testing.assert_equal(got.value, value)
    np.testing.assert_allclose(got.limit, limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1.2", "negative"),
        ("abc", "not a number"),
        ("3.2 pg/mL", "not a number"),
        ("<-1", "positive"),
        ("<0", "positive"),
        ("<=0.7", "<="),
        ("inf", "not a number"),
        ("1_000", "not a number"),
        (">LLOQ", "contradictory"),
        ("3,2", "comma"),
        ("5,000", "comma"),
    ],
)
def test_parse_rejects_garbage(text, message):
    with pytest.raises(ValueError, match=message):
        cy.parse_lab_value(text, lloq=0.7, uloq=5000)


def test_parse_needs_declared_limits_and_never_makes_zero():
    with pytest.raises(ValueError, match="LLOQ"):
        cy.parse_lab_value("ND")
    with pytest.raises(ValueError, match="LLOQ"):
        cy.parse_lab_value("<LLOQ")
    with pytest.raises(ValueError, match="ULOQ"):
        cy.parse_lab_value(">ULOQ")
    with pytest.raises(ValueError, match="zero"):
        cy.parse_lab_value("0")


def test_decimal_comma_is_opt_in():
    assert cy.parse_lab_value("3,2", decimal=",").value == pytest.approx(3.2)
    assert cy.parse_lab_value("<0,7", decimal=",").limit == pytest.approx(0.7)
    with pytest.raises(ValueError, match="period"):
        cy.parse_lab_value("3.2", decimal=",")


def test_parse_factor_converts_before_comparing_limits():
    # 0.0005 ng/mL = 0.5 pg/mL < LLOQ 0.7 pg/mL
    assert cy.parse_lab_value("0.0005", lloq=0.7, factor=1000).censoring == "below"
    assert cy.parse_lab_value("0.002", lloq=0.7, factor=1000).value == pytest.approx(2.0)
    assert cy.parse_lab_value("<0.001", lloq=0.7, factor=1000).limit == pytest.approx(1.0)


# ------------------------------------------------------------------------------ units
@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("µmol/L", "umol/L"),
        ("μmol/L", "umol/L"),
        ("umol/l", "umol/L"),
        ("µM", "uM"),
        ("uM", "uM"),
        ("pg/ml", "pg/mL"),
        ("mg/dl", "mg/dL"),
        ("mcg/mL", "ug/mL"),
        ("µg/mL", "ug/mL"),
    ],
)
def test_unit_spellings(spelling, canonical):
    assert cy.canonical_unit(spelling) == canonical


@pytest.mark.parametrize(
    ("src", "dst", "factor"),
    [
        ("ng/mL", "pg/mL", 1000),
        ("pg/mL", "ng/mL", 1e-3),
        ("mg/dL", "mg/L", 10),
        ("mg/L", "mg/dL", 0.1),
        ("µg/mL", "mg/L", 1),
        ("µg/mL", "mg/dL", 0.1),
        ("µmol/L", "µM", 1),
        ("nmol/mL", "µmol/L", 1),
        ("nM", "µmol/L", 1e-3),
        ("umol/L", "umol/L", 1),
    ],
)
def test_unit_conversion_table(src, dst, factor):
    assert cy.unit_conversion_factor(src, dst) == pytest.approx(factor, rel=1e-12)


def test_unit_mass_to_amount_is_refused():
    with pytest.raises(ValueError, match="molar mass"):
        cy.unit_conversion_factor("mg/L", "µmol/L")
    with pytest.raises(ValueError, match="unknown unit"):
        cy.unit_conversion_factor("pg/mL", "IU/mL")


def test_load_long_tsv_converts_units(tmp_path):
    path = write_table(
        tmp_path,
        [
            ["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"],
            ["sub-01", "ses-1", "24h", "IL6", "0.004", "ng/mL"],
            ["sub-01", "ses-1", "baseline", "CRP", "0.5", "mg/dL"],
            ["sub-01", "ses-1", "baseline", "KYN", "2.1", "nmol/mL"],
            ["sub-01", "ses-1", "24h", "KYN", "2.0", "uM"],
            ["sub-01", "ses-1", "baseline", "TRP", "60", "μmol/L"],
            ["sub-01", "ses-1", "24h", "TRP", "<LLOQ", "µmol/L"],
            ["sub-01", "ses-1", "24h", "CRP", "n/a", "n/a"],
        ],
    )
    out = cy.load_cytokines(path).set_index(["timepoint", "analyte"])
    assert out.loc[("24h", "IL6"), "value"] == pytest.approx(4.0)
    assert out.loc[("baseline", "CRP"), "value"] == pytest.approx(5.0)
    assert out.loc[("baseline", "CRP"), "unit"] == "mg/L"
    assert out.loc[("baseline", "KYN"), "value"] == pytest.approx(2.1)
    assert out.loc[("24h", "TRP"), "censoring"] == "below"
    assert out.loc[("24h", "TRP"), "limit"] == pytest.approx(1.0)
    assert math.isnan(out.loc[("24h", "TRP"), "value"])
    assert out.loc[("24h", "CRP"), "censoring"] == "missing"
    assert out.loc[("24h", "IL6"), "value_raw"] == "0.004"
    assert out.loc[("24h", "IL6"), "unit_raw"] == "ng/mL"


def test_unit_mismatch_error_names_file_row_subject_analyte(tmp_path):
    path = write_table(
        tmp_path,
        [
            ["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"],
            ["sub-02", "ses-1", "baseline", "IL6", "2.5", "µmol/L"],
        ],
    )
    with pytest.raises(InputError) as err:
        cy.load_cytokines(path)
    msg = str(err.value)
    for part in ("cytokines.tsv", "row 2", "line 3", "sub-02", "ses-1", "IL6", "unit", "molar mass"):
        assert part in msg


def test_unknown_unit_and_missing_unit_and_undeclared_analyte(tmp_path):
    path = write_table(tmp_path, [["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/uL"]])
    with pytest.raises(InputError, match="unknown unit"):
        cy.load_cytokines(path)
    path = write_table(tmp_path, [["sub-01", "ses-1", "baseline", "IL6", "2.5", ""]])
    with pytest.raises(InputError, match="no unit"):
        cy.load_cytokines(path)
    path = write_table(tmp_path, [["sub-01", "ses-1", "baseline", "IL10", "2.5", "pg/mL"]])
    with pytest.raises(InputError, match="IL10"):
        cy.load_cytokines(path)


def test_wide_csv_with_units_argument(tmp_path):
    frame = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "session_id": ["ses-1"] * 2,
            "timepoint": ["baseline"] * 2,
            "IL6": ["1.5", "<0.7"],
            "CRP": ["4.2", "NA"],
            "age": ["30", "40"],
        }
    )
    path = tmp_path / "assay.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(UserWarning, match="age"):
        out = cy.load_cytokines(path, units={"IL6": "pg/mL", "CRP": "mg/L"}, limits={"IL6": {"LLOQ": 0.7}})
    assert len(out) == 4
    row = out[(out["participant_id"] == "sub-02") & (out["analyte"] == "IL6")].iloc[0]
    assert (row["censoring"], row["limit"], row["unit"]) == ("below", 0.7, "pg/mL")


def test_negative_concentration_and_garbage_name_the_cell(tmp_path):
    path = write_table(
        tmp_path,
        [["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"], ["sub-01", "ses-1", "24h", "IL6", "-3", "pg/mL"]],
    )
    with pytest.raises(InputError) as err:
        cy.load_cytokines(path)
    for part in ("cytokines.tsv", "row 2", "sub-01", "ses-1", "24h", "IL6", "negative"):
        assert part in str(err.value)
    path = write_table(tmp_path, [["sub-03", "ses-1", "24h", "CRP", "high", "mg/L"]])
    with pytest.raises(InputError, match=r"row 1 .*sub-03.*CRP.*'high'"):
        cy.load_cytokines(path)


def test_unknown_subject(tmp_path):
    path = write_table(
        tmp_path,
        [["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"], ["sub-99", "ses-1", "baseline", "IL6", "2", "pg/mL"]],
    )
    participants = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [30, 40]}).to_csv(participants, sep="\t", index=False)
    with pytest.raises(InputError, match=r"cytokines.tsv, row 2 .*subject sub-99.*IL6.*unknown subject"):
        cy.load_cytokines(path, participants=participants)
    assert len(cy.load_cytokines(path, participants=["sub-01", "sub-99"])) == 2


def test_conflicting_duplicates_are_errors_identical_ones_collapse(tmp_path):
    rows = [
        ["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"],
        ["sub-01", "ses-1", "baseline", "IL6", "3.5", "pg/mL"],
    ]
    path = write_table(tmp_path, rows)
    with pytest.raises(InputError) as err:
        cy.load_cytokines(path)
    for part in ("cytokines.tsv", "rows 1;2", "sub-01", "ses-1", "IL6", "conflicting"):
        assert part in str(err.value)
    path = write_table(tmp_path, [rows[0], ["sub-01", "ses-1", "baseline", "IL6", "0.0025", "ng/mL"]])
    with pytest.warns(UserWarning, match="identical duplicate"):
        out = cy.load_cytokines(path)
    assert len(out) == 1 and out["value"].iloc[0] == pytest.approx(2.5)


def test_replicate_wells_average_and_cv(tmp_path):
    rows = [
        ["sub-01", "ses-1", "baseline", "IL6", "2.0", "pg/mL", "A1"],
        ["sub-01", "ses-1", "baseline", "IL6", "4.0", "pg/mL", "A2"],
        ["sub-01", "ses-1", "24h", "IL6", "<0.7", "pg/mL", "A1"],
        ["sub-01", "ses-1", "24h", "IL6", "ND", "pg/mL", "A2"],
        ["sub-02", "ses-1", "24h", "IL6", "<0.7", "pg/mL", "A1"],
        ["sub-02", "ses-1", "24h", "IL6", "1.5", "pg/mL", "A2"],
    ]
    columns = ["participant_id", "session_id", "timepoint", "analyte", "value", "unit", "replicate"]
    out = cy.load_cytokines(write_table(tmp_path, rows, columns=columns)).set_index(["participant_id", "timepoint"])
    first = out.loc[("sub-01", "baseline")]
    assert first["value"] == pytest.approx(3.0)
    assert first["replicate_cv_pct"] == pytest.approx(100 * np.std([2.0, 4.0], ddof=1) / 3.0)
    assert first["n_replicates"] == 2 and first["source_rows"] == "1;2"
    both_censored = out.loc[("sub-01", "24h")]
    assert both_censored["censoring"] == "below" and both_censored["limit"] == pytest.approx(0.7)
    mixed = out.loc[("sub-02", "24h")]
    assert mixed["value"] == pytest.approx(1.5) and mixed["n_replicates_censored"] == 1
    # replicates=True without a replicate column does the same
    path = write_table(tmp_path, [r[:6] for r in rows[:2]], name="dup.tsv")
    assert cy.load_cytokines(path, replicates=True)["value"].iloc[0] == pytest.approx(3.0)
    # the same well twice with different values is still a conflict
    path = write_table(tmp_path, [rows[0], rows[1][:6] + ["A1"]], name="well.tsv", columns=columns)
    with pytest.raises(InputError, match="conflicting"):
        cy.load_cytokines(path)


def test_censoring_summary(tmp_path):
    path = write_table(
        tmp_path,
        [
            ["sub-01", "ses-1", "baseline", "IL6", "2.5", "pg/mL"],
            ["sub-02", "ses-1", "baseline", "IL6", "<0.7", "pg/mL"],
            ["sub-03", "ses-1", "baseline", "IL6", ">5000", "pg/mL"],
            ["sub-04", "ses-1", "baseline", "IL6", "NA", ""],
            ["sub-01", "ses-1", "24h", "IL6", "ND", "pg/mL"],
        ],
    )
    summary = cy.censoring_summary(cy.load_cytokines(path)).set_index(["analyte", "timepoint"])
    base = summary.loc[("IL6", "baseline")]
    assert (base["n"], base["n_observed"], base["n_below"], base["n_above"], base["n_missing"]) == (4, 1, 1, 1, 1)
    assert base["pct_censored"] == pytest.approx(50)
    assert summary.loc[("IL6", "24h"), "n_below"] == 1


# ------------------------------------------------------------------------------ censoring strategies
def _censored_frame():
    return pd.DataFrame(
        {
            "participant_id": ["s1", "s2", "s3", "s4"],
            "session_id": "x",
            "timepoint": "t",
            "analyte": "IL6",
            "value": [2.0, np.nan, np.nan, np.nan],
            "censoring": ["observed", "below", "above", "missing"],
            "limit": [np.nan, 0.7, 5000, np.nan],
            "unit": "pg/mL",
            "source": "test",
        }
    )


def test_substitution_values():
    half = cy.substitute_censored(_censored_frame(), "lloq_half")["value_substituted"].to_numpy()
    np.testing.assert_allclose(half, [2.0, 0.35, 5000, np.nan])
    sqrt2 = cy.substitute_censored(_censored_frame(), "lloq_sqrt2")["value_substituted"].to_numpy()
    np.testing.assert_allclose(sqrt2, [2.0, 0.7 / math.sqrt(2), 5000, np.nan])
    assert not np.any(half == 0)
    logged = cy.ln_transform(cy.substitute_censored(_censored_frame(), "lloq_half"))
    np.testing.assert_allclose(logged["ln_value"], np.log([2.0, 0.35, 5000, np.nan]))
    with pytest.raises(ValueError, match="not a substitution"):
        cy.substitute_censored(_censored_frame(), "censored_mle")
    with pytest.raises(ValueError, match="not a substitution"):
        cy.substitute_censored(_censored_frame(), "zero")


def test_mle_without_censoring_is_the_normal_mle():
    x = np.random.default_rng(1).normal(2, 0.5, 50)
    fit = cy.censored_normal_mle(x, x)
    assert fit["mean"] == pytest.approx(x.mean(), abs=1e-5)
    assert fit["sd"] == pytest.approx(x.std(ddof=0), rel=1e-4)
    assert fit["se_mean"] == pytest.approx(x.std(ddof=0) / math.sqrt(50), rel=1e-3)


@pytest.mark.parametrize("sigma", [0.25, 2.0])
def test_mle_recovers_mean_of_left_censored_lognormal_better_than_substitution(sigma):
    # Planted truth: ln-concentration ~ N(1, sigma), LLOQ at the 40th percentile, 100 samples of n = 200.
    # Substitution is biased downwards for small sigma and upwards for large sigma; it is unbiased only
    # by coincidence (LLOQ/sqrt2 near sigma = 0.5, LLOQ/2 near sigma = 1), so both sides are tested.
    rng = np.random.default_rng(20240501)
    mu, n_rep, n = 1.0, 100, 200
    lloq = math.exp(mu + sigma * -0.2533)  # Phi(-0.2533) = 0.40
    errors = {s: [] for s in cy.STRATEGIES}
    for _ in range(n_rep):
        conc = np.exp(rng.normal(mu, sigma, n))
        below = conc < lloq
        frame = pd.DataFrame(
            {
                "value": np.where(below, np.nan, conc),
                "censoring": np.where(below, "below", "observed"),
                "limit": np.where(below, lloq, np.nan),
            }
        )
        errors["censored_mle"].append(cy.censored_normal_mle(*cy.ln_bounds(frame))["mean"] - mu)
        for strategy in cy.SUBSTITUTION_STRATEGIES:
            errors[strategy].append(np.log(cy.substitute_censored(frame, strategy)["value_substituted"]).mean() - mu)
    rmse = {s: float(np.sqrt(np.mean(np.square(e)))) for s, e in errors.items()}
    assert abs(np.mean(errors["censored_mle"])) < 0.05 * sigma  # ~unbiased
    assert rmse["censored_mle"] < rmse["lloq_half"] and rmse["censored_mle"] < rmse["lloq_sqrt2"], rmse


def test_mle_single_sample_interval_and_counts():
    rng = np.random.default_rng(8)
    conc = np.exp(rng.normal(1.0, 1.0, 400))
    lloq = math.exp(0.75)
    below = conc < lloq
    frame = pd.DataFrame(
        {
            "value": np.where(below, np.nan, conc),
            "censoring": np.where(below, "below", "observed"),
            "limit": np.where(below, lloq, np.nan),
        }
    )
    fit = cy.censored_normal_mle(*cy.ln_bounds(frame))
    assert fit["ci_low"] < 1.0 < fit["ci_high"]
    assert fit["sd"] == pytest.approx(1.0, abs=0.12)
    assert fit["n_censored"] == below.sum() and fit["n"] == 400


def test_mle_right_and_interval_censoring_and_degenerate_input():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 300)
    lower = np.where(x > 1, 1.0, x)
    upper = np.where(x > 1, np.inf, x)
    lower = np.where(x < -1, -1.5, lower)  # interval-censored in (-1.5, -1)
    upper = np.where(x < -1, -1.0, upper)
    fit = cy.censored_normal_mle(np.where(x < -1.5, -np.inf, lower), np.where(x < -1.5, -1.0, upper))
    assert fit["mean"] == pytest.approx(0, abs=0.15) and fit["sd"] == pytest.approx(1, abs=0.15)
    empty = cy.censored_normal_mle([-np.inf, 1.0], [0.0, 1.0])
    assert math.isnan(empty["mean"]) and not empty["converged"]
    with pytest.raises(ValueError):
        cy.censored_normal_mle([1.0], [0.0])


# ------------------------------------------------------------------------------ derived
def test_kyn_trp_ratio_units_and_censoring(tmp_path):
    path = write_table(
        tmp_path,
        [
            ["sub-01", "ses-1", "baseline", "KYN", "2.0", "µmol/L"],
            ["sub-01", "ses-1", "baseline", "TRP", "50", "µmol/L"],
            ["sub-02", "ses-1", "baseline", "KYN", "<0.1", "µmol/L"],
            ["sub-02", "ses-1", "baseline", "TRP", "50", "µM"],
            ["sub-03", "ses-1", "baseline", "KYN", "1500", "nmol/L"],
            ["sub-03", "ses-1", "baseline", "TRP", "<1", "µmol/L"],
            ["sub-04", "ses-1", "baseline", "KYN", "<0.1", "µmol/L"],
            ["sub-04", "ses-1", "baseline", "TRP", "<1", "µmol/L"],
        ],
    )
    parsed = cy.load_cytokines(path)
    out = cy.add_kyn_trp_ratio(parsed)
    ratio = out[out["analyte"] == "KYN_TRP"].set_index("participant_id")
    assert len(out) == len(parsed) + 4
    assert (ratio["unit"] == "µmol/mmol").all()
    assert ratio.loc["sub-01", "value"] == pytest.approx(40.0)
    assert (ratio.loc["sub-02", "censoring"], ratio.loc["sub-02", "limit"]) == ("below", pytest.approx(2.0))
    assert (ratio.loc["sub-03", "censoring"], ratio.loc["sub-03", "limit"]) == ("above", pytest.approx(1500.0))
    assert ratio.loc["sub-04", "censoring"] == "missing"
    mass = parsed.assign(unit=np.where(parsed["analyte"] == "KYN", "mg/L", parsed["unit"]))
    with pytest.raises(InputError, match="KYN.*molar mass"):
        cy.add_kyn_trp_ratio(mass)


def test_outliers_are_flagged_with_reason_never_deleted():
    rng = np.random.default_rng(5)
    ln = rng.normal(1, 0.3, 30)
    ln[7] = 6.0
    frame = pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(30)],
            "session_id": "x",
            "timepoint": "t",
            "analyte": "IL6",
            "censoring": "observed",
            "ln_value": ln,
        }
    )
    flagged = cy.flag_outliers(frame)
    assert len(flagged) == 30
    assert flagged["outlier"].tolist() == [i == 7 for i in range(30)]
    assert "median + 3.5*MAD" in flagged.loc[7, "outlier_reason"] and "IL6" in flagged.loc[7, "outlier_reason"]
    assert (flagged.loc[flagged["outlier"] == False, "outlier_reason"] == "").all()  # noqa: E712


# ------------------------------------------------------------------------------ effect sizes
def test_rank_biserial_matches_pingouin_and_g_av_formula():
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(7)
    pre, post = rng.normal(0, 1, 15), rng.normal(0.5, 1, 15)
    post[3] = pre[3]  # a zero difference is dropped as in Wilcoxon
    expected = pg.wilcoxon(post, pre)["RBC"].iloc[0]
    assert cy.rank_biserial(post - pre)[0] == pytest.approx(expected)
    d_av = (post - pre).mean() / ((pre.std(ddof=1) + post.std(ddof=1)) / 2)
    assert cy.hedges_g_av(pre, post)[0] == pytest.approx(d_av * (1 - 3 / (8 * 15 - 9)))


# ------------------------------------------------------------------------------ planted subgroup effect
def simulate_study(n_per_stratum=12, effect_per_mg_per_kg=-1.4, seed=11):
    """Two sessions (placebo 0, ketamine 0.5 mg/kg). IL6 falls by exp(effect*dose) from baseline to 24h
    only in subjects with baseline CRP >= 3 mg/L; TNFA never changes. Some IL6 values are below the LLOQ."""
    rng = np.random.default_rng(seed)
    rows, sessions = [], []
    doses = {"ses-placebo": 0.0, "ses-ket05": 0.5}
    for i in range(2 * n_per_stratum):
        sub = f"sub-{i + 1:02d}"
        inflamed = i < n_per_stratum
        level_il6 = rng.normal(math.log(8.0) if inflamed else math.log(1.2), 0.4)
        for ses, dose in doses.items():
            sessions.append({"participant_id": sub, "session_id": ses, "dose_mg_per_kg": dose})
            crp = math.exp(rng.normal(math.log(8.0) if inflamed else math.log(0.8), 0.3))
            change = effect_per_mg_per_kg * dose if inflamed else 0.0
            base = level_il6 + rng.normal(0, 0.15)
            after = base + change + rng.normal(0, 0.2)
            for tp, ln in (("baseline", base), ("24h", after)):
                il6 = math.exp(ln)
                rows.append([sub, ses, tp, "IL6", "<0.7" if il6 < 0.7 else f"{il6:.4g}", "pg/mL"])
                rows.append([sub, ses, tp, "TNFA", f"{math.exp(rng.normal(1.5, 0.3)):.4g}", "pg/mL"])
            rows.append([sub, ses, "baseline", "CRP", "<0.2" if crp < 0.2 else f"{crp:.3g}", "mg/L"])
    columns = ["participant_id", "session_id", "timepoint", "analyte", "value", "unit"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["source"] = "simulated"
    sidecar = {
        "analytes": {
            "IL6": {"unit": "pg/mL", "LLOQ": 0.7},
            "TNFA": {"unit": "pg/mL", "LLOQ": 0.1},
            "CRP": {"unit": "mg/L", "LLOQ": 0.2},
        }
    }
    return cy.load_cytokines(table, sidecar), pd.DataFrame(sessions)


def test_inflammation_strata_from_crp():
    parsed, _ = simulate_study()
    strata = cy.inflammation_strata(parsed)
    truth = np.where(strata["participant_id"].str[-2:].astype(int) <= 12, "inflamed", "non-inflamed")
    assert (strata["stratum"].to_numpy() == truth).all()
    per_subject = cy.inflammation_strata(parsed, level="subject")
    assert len(per_subject) == 24 and set(per_subject["stratum"]) == {"inflamed", "non-inflamed"}


def test_strata_respect_censoring_and_threshold_units():
    frame = pd.DataFrame(
        {
            "participant_id": ["a", "b", "c", "d", "e", "f"],
            "session_id": "x",
            "timepoint": "baseline",
            "analyte": "CRP",
            "value": [0.35, np.nan, np.nan, np.nan, np.nan, 0.25],
            "censoring": ["observed", "below", "below", "above", "missing", "observed"],
            "limit": [np.nan, 0.1, 0.5, 0.5, np.nan, np.nan],
            "unit": "mg/dL",
            "source": "t",
        }
    )
    strata = cy.inflammation_strata(frame, threshold=3.0, threshold_unit="mg/L").set_index("participant_id")["stratum"]
    assert strata.to_dict() == {
        "a": "inflamed",
        "b": "non-inflamed",
        "c": "undetermined",
        "d": "inflamed",
        "e": "undetermined",
        "f": "non-inflamed",
    }


# The same concentrations, 3 mg/L and just below it, written in every unit a lab may use.
AT_3_MG_PER_L = [
    ("3", "mg/L"),
    ("3.0", "mg/L"),
    ("0.3", "mg/dL"),
    ("3000", "µg/L"),
    ("3000", "ug/L"),
    ("3000", "ng/mL"),
    ("3", "µg/mL"),
    ("0.003", "g/L"),
    ("3000000", "pg/mL"),
]
BELOW_3_MG_PER_L = [("2.99", "mg/L"), ("0.299", "mg/dL"), ("2999", "µg/L"), ("2999", "ng/mL"), ("2.999999", "µg/mL")]


@pytest.mark.parametrize("declared", ["mg/L", "mg/dL", "µg/L", "ng/mL"])
@pytest.mark.parametrize(
    "threshold, threshold_unit", [(3, "mg/L"), (3.0, "mg/L"), (0.3, "mg/dL"), (3000, "µg/L"), (3000, "ng/mL")]
)
def test_crp_exactly_at_threshold_is_inflamed_in_every_unit(tmp_path, declared, threshold, threshold_unit):
    """Issue 11: 0.3 mg/dL and 3000 µg/L were classed non-inflamed against 3 mg/L (3 × 0.1 =
    0.30000000000000004 in floating point). Every spelling of 3 mg/L, whatever CRP's declared unit and
    whatever unit the threshold is given in, is at the threshold (CRP ≥ threshold: inflamed); every
    spelling of a value just below it is not."""
    rows = [
        [f"sub-{i:02d}", "ses-1", "baseline", "CRP", text, unit]
        for i, (text, unit) in enumerate(AT_3_MG_PER_L + BELOW_3_MG_PER_L)
    ]
    sidecar = {"analytes": {"CRP": {"unit": declared}}}
    parsed = cy.load_cytokines(write_table(tmp_path, rows, sidecar=sidecar))
    strata = cy.inflammation_strata(parsed, threshold=threshold, threshold_unit=threshold_unit)
    by_subject = strata.set_index("participant_id")["stratum"]
    n_at = len(AT_3_MG_PER_L)
    assert by_subject.iloc[:n_at].eq("inflamed").all(), by_subject.iloc[:n_at].to_dict()
    assert by_subject.iloc[n_at:].eq("non-inflamed").all(), by_subject.iloc[n_at:].to_dict()
    # The converted values of 3 mg/L are one and the same float, equal to the converted threshold.
    at = parsed.set_index("participant_id").loc[by_subject.index[:n_at], "value"]
    assert at.nunique() == 1 and at.iloc[0] == strata["crp_threshold"].iloc[0]


def test_crp_threshold_boundary_with_hand_converted_values():
    """Values converted by float arithmetic outside the loader (0.3 × 10, 3000 × 0.001 … done by hand) are
    within 1e-9 relative of the threshold and count as at it; a real difference (2.9999 mg/L) does not."""
    hand = [0.3 * 10, 3000 * 0.001, 3 * 0.1 * 10, 0.3 / 0.1, 2.9999]  # 0.3 / 0.1 = 2.9999999999999996
    assert 3 * 0.1 != 0.3 and 0.3 / 0.1 < 3  # the floating-point trap itself
    frame = pd.DataFrame(
        {
            "participant_id": [f"s{i}" for i in range(len(hand))],
            "session_id": "x",
            "timepoint": "baseline",
            "analyte": "CRP",
            "value": hand,
            "censoring": "observed",
            "limit": np.nan,
            "unit": "mg/L",
            "source": "t",
        }
    )
    strata = cy.inflammation_strata(frame, threshold=0.3, threshold_unit="mg/dL")["stratum"].tolist()
    assert strata == ["inflamed"] * 4 + ["non-inflamed"]
    strict = cy.inflammation_strata(frame, threshold=0.3, threshold_unit="mg/dL", rel_tol=0)["stratum"]
    assert strict.iloc[3] == "non-inflamed"  # the tolerance is what rescues the hand value
    with pytest.raises(ValueError, match="rel_tol"):
        cy.inflammation_strata(frame, rel_tol=0.01)


def test_exact_conversion_of_written_decimals():
    """convert_exact multiplies the decimal as written by the exact unit ratio and rounds once: the result
    is the float of the exact product (checked with Decimal arithmetic, an independent exact method)."""
    from decimal import Decimal

    assert cy.unit_conversion_ratio("mg/dL", "mg/L") == 10
    assert cy.unit_conversion_ratio("mg/L", "mg/dL") * 10 == 1  # exactly 1/10
    assert cy.unit_conversion_factor("mg/L", "mg/dL") == 0.1
    assert 3 * cy.unit_conversion_factor("mg/L", "mg/dL") != 0.3  # why plain floats failed
    assert cy.convert_exact(3, cy.unit_conversion_ratio("mg/L", "mg/dL")) == 0.3
    assert cy.convert_exact(3000, cy.unit_conversion_ratio("µg/L", "mg/L")) == 3.0
    rng = np.random.default_rng(3)
    units = list(cy.UNIT_TABLE)
    for _ in range(500):
        text = f"{rng.uniform(0, 1000):.{rng.integers(0, 6)}f}"
        src, dst = rng.choice(units, 2)
        if cy.UNIT_TABLE[src][0] != cy.UNIT_TABLE[dst][0]:
            continue
        ratio = cy.unit_conversion_ratio(src, dst)
        exact = Decimal(text) * Decimal(ratio.numerator) / Decimal(ratio.denominator)
        assert cy.parse_lab_value(text, factor=ratio).value == float(exact) or float(text) == 0
    assert math.isnan(cy.convert_exact(math.nan, 10))
    with pytest.raises(ValueError, match="too large"):
        cy.parse_lab_value("1e400", factor=1)


@requires_stats
def test_planted_decrease_only_in_inflamed_stratum():
    parsed, _ = simulate_study()
    strata = cy.inflammation_strata(parsed)
    table = cy.paired_change(parsed, "baseline", "24h", strata=strata, n_boot=500).set_index(
        ["session_id", "stratum", "analyte"]
    )
    inflamed = table.loc[("ses-ket05", "inflamed", "IL6")]
    truth = -1.4 * 0.5
    assert inflamed["ci_low"] < truth < inflamed["ci_high"]
    assert inflamed["significant_fdr"] and inflamed["fold_change"] < 0.7
    assert inflamed["g_ci_high"] < 0 and inflamed["rb_ci_high"] < 0
    for key in [
        ("ses-ket05", "non-inflamed", "IL6"),
        ("ses-placebo", "inflamed", "IL6"),
        ("ses-ket05", "inflamed", "TNFA"),
    ]:
        row = table.loc[key]
        assert row["ci_low"] < 0 < row["ci_high"] or not row["significant_fdr"], key
    assert abs(table.loc[("ses-ket05", "non-inflamed", "IL6"), "estimate"]) < 0.2
    assert set(table.index.get_level_values("stratum")) == {"inflamed", "non-inflamed", "all"}


@requires_stats
def test_planted_interaction_in_mixed_model():
    parsed, sessions = simulate_study()
    strata = cy.inflammation_strata(parsed)
    fit = cy.stratum_mixed_model(parsed, sessions, strata, analytes=["IL6"]).set_index("term")
    three_way = fit.loc["time_24h:inflamed:dose_mg_per_kg"]
    assert three_way["ci_low"] < -1.4 < three_way["ci_high"]
    assert three_way["p"] < 0.001
    assert fit.loc["time_24h", "ci_low"] < 0 < fit.loc["time_24h", "ci_high"]


@requires_stats
def test_sensitivity_comparison_one_tidy_table():
    parsed, _ = simulate_study()
    table = cy.sensitivity_comparison(parsed, "baseline", "24h", n_boot=200)
    assert set(table["strategy"]) == set(cy.STRATEGIES)
    assert {
        "analyte",
        "stratum",
        "n",
        "estimate",
        "ci_low",
        "ci_high",
        "p_wilcoxon",
        "p_ttest",
        "p",
        "p_fdr",
        "method",
        "strategy",
    } <= set(table.columns)
    ket = table[(table["session_id"] == "ses-ket05") & (table["analyte"] == "IL6")].set_index("strategy")
    assert ket["estimate"].max() - ket["estimate"].min() < 0.15  # strategies agree when censoring is rare
    assert (
        np.isnan(ket.loc["censored_mle", "p_wilcoxon"])
        and ket.loc["censored_mle", "p"] == ket.loc["censored_mle", "p_mle"]
    )


def test_paired_censored_mle_recovers_planted_change():
    rng = np.random.default_rng(17)
    n, mu_change = 200, -0.5
    base = rng.normal(0.3, 0.8, n)
    post = base + rng.normal(mu_change, 0.4, n)
    lloq = 1.0
    rows = []
    for i in range(n):
        for tp, ln in (("baseline", base[i]), ("24h", post[i])):
            below = math.exp(ln) < lloq
            rows.append(
                {
                    "participant_id": f"s{i}",
                    "session_id": "x",
                    "timepoint": tp,
                    "analyte": "IL6",
                    "value": np.nan if below else math.exp(ln),
                    "censoring": "below" if below else "observed",
                    "limit": lloq if below else np.nan,
                    "unit": "pg/mL",
                    "source": "t",
                }
            )
    frame = pd.DataFrame(rows)
    pairs = cy._pairs(frame, "baseline", "24h", None)
    fit = cy._mle_stats(pairs, ci=0.95)
    assert fit["n_uninformative"] > 0 and fit["n_censored"] > 0
    assert fit["ci_low"] < mu_change < fit["ci_high"]
    assert abs(fit["estimate"] - mu_change) < 0.1


@requires_stats
def test_fdr_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    parsed, _ = simulate_study()
    table = cy.paired_change(parsed, strata=cy.inflammation_strata(parsed), n_boot=0)
    for _, family in table.groupby(["session_id", "stratum"]):
        expected = multipletests(family["p"], method="fdr_bh")[1]
        np.testing.assert_allclose(family["p_fdr"], expected)


@requires_stats
def test_bootstrap_is_seeded():
    parsed, _ = simulate_study()
    a = cy.paired_change(parsed, n_boot=300, seed=4)
    b = cy.paired_change(parsed, n_boot=300, seed=4)
    pd.testing.assert_frame_equal(a, b)


@requires_stats
def test_change_vs_mood_uses_shared_correlation_table():
    parsed, _ = simulate_study()
    change = cy.log_change_table(parsed, "baseline", "24h", analytes=["IL6"])
    rng = np.random.default_rng(2)
    mood = change[["participant_id", "session_id"]].assign(
        madrs_change=3 * change["ln_change"].to_numpy() + rng.normal(0, 0.3, len(change))
    )
    table = cy.change_vs_mood(parsed, mood, ["madrs_change"], analytes=["IL6", "TNFA"], n_boot=200)
    rows = table.set_index("x")
    assert set(rows.index) == {"IL6_ln_change", "TNFA_ln_change"}
    assert rows.loc["IL6_ln_change", "estimate"] > 0.6 and rows.loc["IL6_ln_change", "n"] == 48
    assert abs(rows.loc["TNFA_ln_change", "estimate"]) < 0.4
    with pytest.raises(InputError, match="duplicate"):
        cy.change_vs_mood(parsed, pd.concat([mood, mood.iloc[:1]]), ["madrs_change"])


def test_load_is_quiet_on_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate_study()


def test_a_row_in_another_unit_is_converted_with_a_warning_and_an_outlier_flag(tmp_path):
    """A pg/mL value mislabelled ng/mL is converted x1000: it is said, and flagged when it stands out."""
    rows = [[f"sub-{i:02d}", "ses-1", "baseline", "IL6", f"{2.0 + 0.1 * i:.1f}", "pg/mL"] for i in range(1, 9)]
    rows.append(["sub-09", "ses-1", "baseline", "IL6", "2.4", "ng/mL"])  # mislabelled: 2400 pg/mL
    rows.append(["sub-10", "ses-1", "baseline", "IL6", "0.0031", "ng/mL"])  # genuinely ng/mL: 3.1 pg/mL
    path = write_table(tmp_path, rows)
    with pytest.warns(
        cy.UnitConversionWarning,
        match=r"2 IL6 value\(s\) .* written in ng/mL were converted .* "
        r"1 of them lie ≥ 30× from the median",
    ):
        out = cy.load_cytokines(path)
    by_subject = out.set_index("participant_id")
    assert by_subject.loc["sub-09", "value"] == pytest.approx(2400.0)
    assert bool(by_subject.loc["sub-09", "unit_converted"]) and bool(by_subject.loc["sub-09", "unit_outlier"])
    assert bool(by_subject.loc["sub-10", "unit_converted"]) and not bool(by_subject.loc["sub-10", "unit_outlier"])
    assert not by_subject.loc["sub-01", ["unit_converted", "unit_outlier"]].any()
