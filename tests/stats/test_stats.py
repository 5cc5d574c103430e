"""Shared statistics checked against scipy, pingouin and statsmodels on the same data, and planted
effects on small simulated data recovered inside the CI."""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from pipelines.stats import correlation_table, fdr_bh, format_p, mixed_model, rm_correlation
from pipelines.stats.pooled_mediation import mediation


def correlated(n: int, rho: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cov = [[1, rho, 0.3], [rho, 1, 0.2], [0.3, 0.2, 1]]
    data = pd.DataFrame(rng.multivariate_normal([0, 0, 0], cov, size=n), columns=["a", "b", "c"])
    data["d"] = rng.normal(size=n)
    data["dose"] = rng.choice([0.0, 0.5, 1.0], size=n)
    return data


# --- FDR ---------------------------------------------------------------------------------------------


def test_fdr_bh_equals_statsmodels_and_is_nan_safe():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 0.01, size=10), [0.02, 0.02, 1.0]])
    np.testing.assert_allclose(fdr_bh(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    with_nan = p.copy()
    with_nan[[3, 17]] = np.nan
    adjusted = fdr_bh(with_nan)
    assert np.isnan(adjusted[[3, 17]]).all()
    finite = ~np.isnan(with_nan)
    np.testing.assert_allclose(adjusted[finite], multipletests(with_nan[finite], method="fdr_bh")[1], rtol=1e-12)
    assert fdr_bh(p.reshape(53, 1)).shape == (53, 1)
    assert fdr_bh([]).size == 0 and np.isnan(fdr_bh([np.nan])).all()
    with pytest.raises(ValueError):
        fdr_bh([0.5, 1.2])


# --- correlations --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlation_equals_scipy(method):
    data = correlated(40, 0.5, seed=1)
    data.loc[[2, 5], "b"] = np.nan
    table = correlation_table(data, ["a", "c"], ["b", "d"], method=method, n_boot=200)
    for _, row in table.iterrows():
        pair = data[[row.x, row.y]].dropna()
        ref = (sps.pearsonr if method == "pearson" else sps.spearmanr)(pair[row.x], pair[row.y])
        assert row.n == len(pair)
        assert row.estimate == pytest.approx(ref.statistic, abs=1e-12)
        assert row.p == pytest.approx(ref.pvalue, rel=1e-8)
        assert row.ci_low <= row.estimate <= row.ci_high
    assert list(table.columns) == [
        "x",
        "y",
        "method",
        "n",
        "estimate",
        "ci_low",
        "ci_high",
        "p",
        "p_fdr",
        "significant_fdr",
        "covariates",
        "n_boot",
        "seed",
    ]
    np.testing.assert_allclose(table["p_fdr"], multipletests(table["p"], method="fdr_bh")[1])
    assert (table["significant_fdr"] == multipletests(table["p"], method="fdr_bh")[0]).all()


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("covariates", [["c"], ["c", "dose"]])
def test_partial_correlation_equals_pingouin(method, covariates):
    data = correlated(50, 0.4, seed=2)
    row = correlation_table(data, ["a"], ["b"], method=method, covariates=covariates, n_boot=200).iloc[0]
    ref = pg.partial_corr(data, x="a", y="b", covar=covariates, method=method)
    assert row.estimate == pytest.approx(ref["r"].iloc[0], abs=1e-10)
    assert row.p == pytest.approx(ref["p_val"].iloc[0], rel=1e-7)
    assert row.covariates == ", ".join(covariates)
    # and differs from the plain correlation (the covariate carries shared variance)
    plain = correlation_table(data, ["a"], ["b"], method=method, n_boot=0).iloc[0]
    assert abs(plain.estimate - row.estimate) > 1e-3


def test_bootstrap_ci_is_seeded_and_matches_a_naive_loop():
    data = correlated(30, 0.5, seed=3)
    first = correlation_table(data, ["a"], ["b"], method="spearman", n_boot=300, seed=7)
    again = correlation_table(data, ["a"], ["b"], method="spearman", n_boot=300, seed=7)
    other = correlation_table(data, ["a"], ["b"], method="spearman", n_boot=300, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert first.ci_low.iloc[0] != other.ci_low.iloc[0]
    # Naive reference: the same resampling indices, scipy's spearmanr per replicate.
    values = data[["a", "b"]].to_numpy()
    index = np.random.default_rng(7).integers(0, len(values), size=(300, len(values)))
    boot = [sps.spearmanr(values[i, 0], values[i, 1]).statistic for i in index]
    low, high = np.percentile(boot, [2.5, 97.5])
    assert first.ci_low.iloc[0] == pytest.approx(low, abs=1e-12)
    assert first.ci_high.iloc[0] == pytest.approx(high, abs=1e-12)


def test_partial_bootstrap_matches_pingouin_per_replicate():
    data = correlated(25, 0.5, seed=4)
    table = correlation_table(data, ["a"], ["b"], method="pearson", covariates=["c"], n_boot=60, seed=1, ci=0.9)
    index = np.random.default_rng(1).integers(0, len(data), size=(60, len(data)))
    boot = [pg.partial_corr(data.iloc[i].reset_index(drop=True), x="a", y="b", covar="c")["r"].iloc[0] for i in index]
    low, high = np.percentile(boot, [5, 95])
    assert table.ci_low.iloc[0] == pytest.approx(low, abs=1e-10)
    assert table.ci_high.iloc[0] == pytest.approx(high, abs=1e-10)


def test_planted_correlations_recovered_inside_ci():
    hits = 0
    for seed in range(5):
        data = correlated(150, 0.6, seed=10 + seed)
        row = correlation_table(data, ["a"], ["b"], method="pearson", n_boot=1000, seed=seed).iloc[0]
        hits += row.ci_low <= 0.6 <= row.ci_high
        assert row.significant_fdr
    assert hits >= 4  # 95 % intervals: at most one miss in five is plausible
    null = correlation_table(correlated(150, 0.0, seed=30), ["a"], ["d"], n_boot=1000).iloc[0]
    assert null.ci_low <= 0 <= null.ci_high


def test_grouped_family_and_degenerate_groups():
    data = correlated(60, 0.5, seed=5)
    data["timepoint"] = np.repeat(["24h", "7d", "tiny"], [28, 30, 2])
    table = correlation_table(data, ["a", "c"], ["b"], group="timepoint", n_boot=100)
    assert list(table.columns[:3]) == ["x", "y", "group"]
    assert len(table) == 6 and set(table["group"]) == {"24h", "7d", "tiny"}
    tiny = table[table["group"] == "tiny"]
    assert tiny["estimate"].isna().all() and (tiny["n"] == 2).all()
    valid = table["p"].notna()
    np.testing.assert_allclose(table.loc[valid, "p_fdr"], multipletests(table.loc[valid, "p"], method="fdr_bh")[1])
    seven = data[data["timepoint"] == "7d"]
    ref = sps.spearmanr(seven["c"], seven["b"]).statistic
    got = table[(table["group"] == "7d") & (table["x"] == "c")]["estimate"].iloc[0]
    assert got == pytest.approx(ref, abs=1e-12)


# --- repeated measures, mixed model ------------------------------------------------------------


def repeated(n_subjects=20, per_subject=4, slope=0.5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), per_subject)
    offset = rng.normal(0, 3, n_subjects)[subject]  # big between-subject differences
    x = rng.normal(size=subject.size) + offset
    y = slope * (x - offset) - 2 * offset + rng.normal(0, 0.5, subject.size)
    return pd.DataFrame(
        {
            "subject": [f"sub-{s:02d}" for s in subject],
            "x": x,
            "y": y,
            "dose": np.tile([0.0, 0.25, 0.5, 1.0], n_subjects)[: subject.size],
        }
    )


def test_rm_correlation_equals_pingouin_and_recovers_within_subject_sign():
    data = repeated()
    row = rm_correlation(data, "x", "y", "subject").iloc[0]
    ref = pg.rm_corr(data, x="x", y="y", subject="subject")
    assert row.estimate == pytest.approx(ref["r"].iloc[0])
    assert row.p == pytest.approx(ref["pval"].iloc[0])
    assert row.n == 80 and row.n_subjects == 20 and row.dof == ref["dof"].iloc[0]
    assert row.ci_low > 0  # within-subject: positive
    assert sps.pearsonr(data["x"], data["y"]).statistic < 0  # pooled: the opposite sign


def test_rm_correlation_with_one_observation_per_subject_says_why_instead_of_failing():
    """A parallel design has one active session per subject: no within-subject slope exists (pingouin raises
    deep inside statsmodels); the row is NaN, says why, and stays out of the FDR family."""
    data = repeated().groupby("subject", as_index=False).first()
    table = rm_correlation(data, "x", ["y", "dose"], "subject")
    assert table["estimate"].isna().all() and table["p_fdr"].isna().all() and (table["dof"] == 0).all()
    assert table["note"].str.startswith("not estimable: 0 subject(s) with 2+ observations").all()
    # Repeated data keep an empty note and a finite estimate.
    assert rm_correlation(repeated(), "x", "y", "subject")["note"].eq("").all()


def simulated_mood(seed: int, n_subjects: int = 30) -> pd.DataFrame:
    """MADRS falling by 3 points per time step per unit dose, random intercept per subject."""
    rng = np.random.default_rng(seed)
    times = np.array([0.0, 1.0, 2.0, 3.0])
    subject = np.repeat(np.arange(n_subjects), len(times))
    time = np.tile(times, n_subjects)
    dose = np.repeat(rng.choice([0.5, 1.0], n_subjects), len(times))
    intercept = rng.normal(30, 4, n_subjects)[subject]
    madrs = intercept - 3.0 * time * dose + rng.normal(0, 1.5, subject.size)
    return pd.DataFrame(
        {"participant_id": [f"sub-{s:02d}" for s in subject], "time": time, "dose": dose, "madrs": madrs}
    )


def test_mixed_model_equals_statsmodels():
    data = simulated_mood(seed=1)
    data.loc[5, "madrs"] = np.nan
    table = mixed_model(data, "madrs ~ time * dose", groups="participant_id")
    clean = data.dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("madrs ~ time * dose", clean, groups=clean["participant_id"]).fit()
    terms = table.set_index("term")
    np.testing.assert_allclose(terms["estimate"], ref.fe_params.loc[terms.index], rtol=1e-6)
    np.testing.assert_allclose(terms["se"], ref.bse_fe.loc[terms.index], rtol=1e-5)
    np.testing.assert_allclose(terms["p"], ref.pvalues.loc[terms.index], rtol=1e-5, atol=1e-12)
    assert (terms["n"] == len(clean)).all() and (terms["n_groups"] == 30).all()
    assert "REML" in terms.loc["time:dose", "method"]
    ml = mixed_model(data, "madrs ~ time * dose", groups="participant_id", reml=False)
    assert "ML" in ml["method"].iloc[0] and "REML" not in ml["method"].iloc[0]


def test_mixed_model_recovers_planted_effect():
    # Ten independent studies: a 95 % Wald interval should hold -3 in nearly all (P(< 8) ~ 1 %).
    hits = 0
    for seed in range(10):
        terms = mixed_model(simulated_mood(seed=200 + seed), "madrs ~ time * dose", groups="participant_id").set_index(
            "term"
        )
        hits += terms.loc["time:dose", "ci_low"] <= -3.0 <= terms.loc["time:dose", "ci_high"]
        assert terms.loc["time:dose", "ci_high"] < 0
    assert hits >= 8


# --- mediation ------------------------------------------------------------------------------------


def mediated(n=80, a=0.5, b=0.6, direct=0.2, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dose = rng.choice([0.0, 0.25, 0.5, 1.0], size=n) * 2
    baseline = rng.normal(30, 5, n)
    peak = a * dose + rng.normal(0, 0.5, n)
    change = b * peak + direct * dose + 0.05 * baseline + rng.normal(0, 0.5, n)
    return pd.DataFrame({"dose": dose, "peak": peak, "change": change, "baseline": baseline})


@pytest.mark.parametrize("covariates", [None, ["baseline"]])
def test_mediation_equals_pingouin_and_statsmodels(covariates):
    data = mediated()
    ours = mediation(
        data, "dose", "peak", "change", covariates=covariates, n_boot=400, seed=3, ci_method="bias_corrected"
    ).set_index("path")
    ref, dist = pg.mediation_analysis(
        data, x="dose", m="peak", y="change", covar=covariates, n_boot=400, seed=3, return_dist=True
    )
    ref = ref.set_index("path")
    for path, ref_path in (("a", "peak ~ X"), ("c", "Total"), ("c_prime", "Direct"), ("indirect", "Indirect")):
        for col, ref_col in (
            ("estimate", "coef"),
            ("se", "se"),
            ("p", "pval"),
            ("ci_low", "CI2.5"),
            ("ci_high", "CI97.5"),
        ):
            assert ours.loc[path, col] == pytest.approx(ref.loc[ref_path, ref_col], rel=1e-8, abs=1e-12), (path, col)
    # b adjusts for x (pingouin's "Y ~ M" row does not): check against statsmodels OLS.
    formula = "change ~ dose + peak" + ("".join(f" + {c}" for c in covariates or []))
    ols = smf.ols(formula, data).fit()
    assert ours.loc["b", "estimate"] == pytest.approx(ols.params["peak"], rel=1e-10)
    assert ours.loc["b", "se"] == pytest.approx(ols.bse["peak"], rel=1e-10)
    assert ours.loc["b", "p"] == pytest.approx(ols.pvalues["peak"], rel=1e-8)
    low, high = ols.conf_int().loc["peak"]
    assert (ours.loc["b", "ci_low"], ours.loc["b", "ci_high"]) == pytest.approx((low, high))
    assert ours.loc["indirect", "estimate"] == pytest.approx(ours.loc["a", "estimate"] * ours.loc["b", "estimate"])
    assert ours.loc["indirect", "se"] == pytest.approx(np.std(dist, ddof=1))


def test_mediation_planted_indirect_effect_inside_percentile_ci():
    data = mediated(n=200, a=0.5, b=0.6, seed=11)
    table = mediation(data, "dose", "peak", "change", covariates=["baseline"], n_boot=1000, seed=0).set_index("path")
    assert table.loc["indirect", "ci_low"] <= 0.3 <= table.loc["indirect", "ci_high"]
    assert table.loc["indirect", "ci_low"] > 0
    assert table.loc["c_prime", "ci_low"] <= 0.2 <= table.loc["c_prime", "ci_high"]
    assert table.loc["indirect", "ci_method"] == "bootstrap percentile"
    # total = direct + indirect holds exactly for OLS with the same covariates
    assert table.loc["c", "estimate"] == pytest.approx(
        table.loc["c_prime", "estimate"] + table.loc["indirect", "estimate"]
    )


# --- p-value text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, text",
    [
        (3e-172, "p < 0.001"),  # what eeg_analysis printed as "p = 3e-172"
        (0.0, "p < 0.001"),  # what a report printed as "p = 0.0" from 48 observations
        (0.000999, "p < 0.001"),
        (0.001, "p = 0.001"),  # the floor itself is written as a number
        (0.0032, "p = 0.003"),
        (0.0095, "p = 0.010"),  # range chosen before rounding: three decimals below 0.1
        (0.032, "p = 0.032"),
        (0.0455, "p = 0.046"),  # half up on the shortest decimal, not banker's rounding
        (0.0625, "p = 0.063"),
        (0.054, "p = 0.054"),  # stays distinguishable from 0.05
        (0.1, "p = 0.10"),
        (0.41, "p = 0.41"),
        (0.996, "p = 1.00"),
        (1.0, "p = 1.00"),
        (np.float64(0.5), "p = 0.50"),
        (float("nan"), "p = n/a"),
        (None, "p = n/a"),
        (pd.NA, "p = n/a"),
        (float("inf"), "p = n/a"),
    ],
)
def test_format_p_convention(p, text):
    assert format_p(p) == text


def test_format_p_label_and_bad_values():
    assert format_p(0.2, "p_FDR") == "p_FDR = 0.20"
    assert format_p(1e-9, "FDR-adjusted p") == "FDR-adjusted p < 0.001"
    assert format_p(np.nan, "p_FDR") == "p_FDR = n/a"
    for bad in (-0.01, 1.5):
        with pytest.raises(ValueError, match="outside"):
            format_p(bad)
    with pytest.raises(ValueError, match="not a number"):
        format_p("0.05")


def test_format_p_agrees_with_an_independent_rounding():
    """Over many p-values: the written number is within half a unit of the last place of the value and
    has the stated number of decimals (2 from 0.1, 3 from 0.001, else '< 0.001')."""
    rng = np.random.default_rng(1)
    ps = np.concatenate([10 ** rng.uniform(-12, 0, 4000), [0.001, 0.01, 0.1, 0.05, 1.0]])
    for p in ps:
        text = format_p(p)
        if p < 0.001:
            assert text == "p < 0.001"
            continue
        number = text.removeprefix("p = ")
        decimals = 2 if p >= 0.1 else 3
        assert len(number.split(".")[1]) == decimals, (p, text)
        assert abs(float(number) - p) <= 0.5 * 10**-decimals + 1e-12, (p, text)
        assert "e" not in number


# Names that hold a p-value in the library's code (p, p_fdr, p_mle, pval, pvalue, p_value, ...).
_P_NAME = re.compile(r"^(p|p_[a-z]+|\w*pval\w*|\w*p_value\w*|\w+_p)$", re.IGNORECASE)


def _names_a_p_value(node) -> bool:
    if isinstance(node, ast.Name):
        return bool(_P_NAME.match(node.id))
    if isinstance(node, ast.Attribute):
        return bool(_P_NAME.match(node.attr))
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return isinstance(node.slice.value, str) and bool(_P_NAME.match(node.slice.value))
    if isinstance(node, ast.Call):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        return func != "format_p" and bool(_P_NAME.match(func))
    return False


def _raw_p_placeholders(source: str, where: str) -> list[str]:
    """f-string placeholders that write a p-value without :func:`format_p`, and any private p formatter."""
    found = []
    tree = ast.parse(source)
    exempt = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "format_p" for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.FunctionDef) and re.search(r"fmt_p|format_p", node.name) and node.name != "format_p":
            found.append(f"{where}:{node.lineno}: own p formatter {node.name}()")
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for i, part in enumerate(parts):
            if not isinstance(part, ast.FormattedValue):
                continue
            before = parts[i - 1].value if i and isinstance(parts[i - 1], ast.Constant) else ""
            # "{r['p']:.3f}", "{q.p:.2g}", "{row.p}" or a literal "p = " right before any placeholder
            if _names_a_p_value(part.value) or re.search(r"\bp(_FDR|_fdr)?\s*[=<]\s*$", str(before)):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


def test_no_report_text_formats_a_p_value_by_hand():
    """Every p written into report or summary text goes through stats.format_p: scans the f-strings of
    every module of the library and the code cells of the notebooks. (The planted bad cases
    in the self-check below prove the scan can fail.)"""
    repo = Path(__file__).resolve().parents[2]
    modules = sorted((repo / "pipelines").rglob("*.py"))  # every module, dashboards and figures too
    assert {"peak_experience_mood", "integrative_summary", "cytokines", "eeg_entropy_dose"} <= {m.stem for m in modules}
    found = []
    for path in modules:
        found += _raw_p_placeholders(path.read_text(encoding="utf-8"), str(path.relative_to(repo / "pipelines")))
    for nb in sorted((repo / "notebooks").glob("*.ipynb")):
        for k, cell in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "code":
                continue
            # IPython magics and shell lines are not Python.
            code = "\n".join(
                line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))
            )
            found += _raw_p_placeholders(code, f"{nb.name} cell {k}")
    assert not found, "p-values formatted without stats.format_p:\n" + "\n".join(found)


def test_the_p_scan_catches_the_old_forms():
    bad = [
        'f"p = {q.p:.2g}"',  # eeg_analysis before: "p = 3e-172"
        'f"p{_fmt_p(r.p)}"',
        "f\"{r['p_fdr']:.3f}\"",
        'f"FDR-adjusted p = {pooled:.3f}"',
        'f"smallest p {_smallest_wilcoxon_p(n):.4g}"',
        'def _fmt_p(p):\n    return f"{p}"',
    ]
    for code in bad:
        assert _raw_p_placeholders(code, "planted"), code
    good = ["f\"{format_p(r.p)}, {stats.format_p(r['p_fdr'], 'p_FDR')}\"", 'f"n = {n}, r = {r:.2f}"']
    for code in good:
        assert not _raw_p_placeholders(code, "planted"), code


@pytest.mark.parametrize(
    "p, shown", [(3e-172, "p < 0.001"), (0.0, "p < 0.001"), (0.0213, "p = 0.021"), (float("nan"), "p = n/a")]
)
def test_eeg_summary_writes_p_through_format_p(p, shown):
    """eeg_analysis.summary_text printed the quadratic term's p as "p = 3e-172"; planted p-values now come
    out in the one convention."""
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis

    params = eeg_analysis.EEGParameters(
        measures=["lzc_median"],
        regions=["global"],
        threshold_db=-3.0,
        hold_s=20.0,
        smooth_windows=3,
        plateau_s=60.0,
        entropy_measure="lzc_median",
        window_s=2.0,
        step_s=1.0,
    )
    markers = pd.DataFrame(
        {"participant_id": ["s1", "s2"], "dose_mg_per_kg": [0.5, 0.5], "alpha_suppression_onset_s": [30.0, np.nan]}
    )
    per_dose = pd.DataFrame(
        {
            "measure": ["occipital_alpha_db"],
            "dose_mg_per_kg": [0.5],
            "mean": [-4.0],
            "ci_low": [-5.0],
            "ci_high": [-3.0],
        }
    )
    peaks = pd.DataFrame(
        {
            "measure": ["lzc_median"],
            "region": ["global"],
            "dose_of_max_mean_change": [0.5],
            "parabola_vertex_mg_per_kg": [0.6],
        }
    )
    models = pd.DataFrame(
        {
            "measure": ["lzc_median"],
            "region": ["global"],
            "term": ["dose_sq"],
            "estimate": [-0.1],
            "ci_low": [-0.2],
            "ci_high": [-0.05],
            "p": [p],
        }
    )
    text = eeg_analysis.summary_text(markers, per_dose, peaks, models, params)
    assert f"to -0.050, {shown}), which does not by itself show an inverted U" in text
    assert "e-" not in text and "p = 0.0)" not in text


def test_paired_contrast_equals_scipy_and_pingouin_and_counts_unpaired():
    import pingouin as pg
    from scipy import stats as sps

    from pipelines.stats import paired_contrast

    rng = np.random.default_rng(4)
    subjects = [f"sub-{i:02d}" for i in range(14)]
    a = rng.normal(10, 2, 14)
    b = a + 1.5 + rng.normal(0, 1, 14)  # planted within-subject shift of +1.5
    rows = [{"s": s, "c": "open", "v": x} for s, x in zip(subjects, a)]
    rows += [{"s": s, "c": "closed", "v": y} for s, y in zip(subjects[:-1], b[:-1])]  # the last has one condition
    row = paired_contrast(pd.DataFrame(rows), "v", "c", "s", "open", "closed")
    x, y = a[:-1], b[:-1]
    assert row["n_subjects"] == 13 and row["n_unpaired"] == 1
    assert row["mean_difference"] == pytest.approx((y - x).mean(), rel=1e-12)
    assert row["p"] == pytest.approx(sps.ttest_rel(y, x).pvalue, rel=1e-10)
    assert row["p_wilcoxon"] == pytest.approx(sps.wilcoxon(y, x).pvalue, rel=1e-10)
    ref = pg.ttest(y, x, paired=True)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref["CI95"].iloc[0]), abs=5e-3)
    g_av = pg.compute_effsize(y, x, paired=True, eftype="hedges")  # pingouin's paired Hedges: the g_av family
    assert row["hedges_g_av"] == pytest.approx(g_av, rel=0.05)
    assert row["ci_low"] > 0  # the planted shift is found
