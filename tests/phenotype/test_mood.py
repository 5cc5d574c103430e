"""Mood outcomes: change from baseline, response (inclusive 50 %), remission, rates with Wilson CIs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import InputError
from pipelines.phenotype.mood import mood_outcomes, outcome_rates
from pipelines.phenotype.questionnaires import RemissionThresholdWarning


def madrs_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["participant_id", "session_id", "timepoint", "madrs_total", "dose_mg_per_kg"])


@pytest.fixture
def table() -> pd.DataFrame:
    return madrs_table(
        [
            ("sub-01", "ses-ket05", "baseline", 20, 0.5),
            ("sub-01", "ses-ket05", "24h", 10, 0.5),  # exactly 50 % reduction: response
            ("sub-01", "ses-ket05", "7d", 11, 0.5),  # 45 %: no response; 11 > 10: no remission
            ("sub-02", "ses-ket05", "baseline", 30, 0.5),
            ("sub-02", "ses-ket05", "24h", 15, 0.5),  # exactly 50 %
            ("sub-02", "ses-ket05", "7d", 16, 0.5),
            ("sub-01", "ses-placebo", "baseline", 25, 0.0),  # same subject, own baseline per session
            ("sub-01", "ses-placebo", "24h", 24, 0.0),
            ("sub-01", "ses-placebo", "7d", 12, 0.0),  # 52 % reduction, 12 > 10
        ]
    )


def test_change_and_percent_change_per_subject_session(table):
    out = mood_outcomes(table, "madrs_total")
    by = out.set_index(["participant_id", "session_id", "timepoint"])
    assert by.loc[("sub-01", "ses-ket05", "24h"), "madrs_total_change"] == -10
    assert by.loc[("sub-01", "ses-ket05", "7d"), "madrs_total_pct_change"] == pytest.approx(-45)
    assert by.loc[("sub-01", "ses-placebo", "24h"), "madrs_total_baseline"] == 25
    assert by.loc[("sub-01", "ses-placebo", "24h"), "madrs_total_pct_change"] == pytest.approx(-4)
    assert by.loc[("sub-02", "ses-ket05", "baseline"), "madrs_total_change"] == 0


def test_response_is_inclusive_at_exactly_50_percent(table):
    out = mood_outcomes(table, "madrs_total").set_index(["participant_id", "session_id", "timepoint"])
    assert out.loc[("sub-01", "ses-ket05", "24h"), "madrs_total_response"]
    assert out.loc[("sub-02", "ses-ket05", "24h"), "madrs_total_response"]
    assert not out.loc[("sub-01", "ses-ket05", "7d"), "madrs_total_response"]
    assert not out.loc[("sub-02", "ses-ket05", "7d"), "madrs_total_response"]  # 46.7 %
    assert out.loc[("sub-01", "ses-placebo", "7d"), "madrs_total_response"]


def test_remission_threshold_default_and_parameter(table):
    default = mood_outcomes(table, "madrs_total").set_index("timepoint")
    remitted = default.loc[default["madrs_total_remission"].fillna(False).astype(bool), "madrs_total"]
    assert sorted(remitted) == [10]  # MADRS <= 10 (inclusive)
    lenient = mood_outcomes(table, "madrs_total", remission_threshold=12)
    assert sorted(lenient.loc[lenient["madrs_total_remission"].astype(bool), "madrs_total"]) == [10, 11, 12]


def test_remission_defaults_per_scale_and_required_otherwise():
    hamd = pd.DataFrame(
        {
            "participant_id": ["s1", "s1", "s1"],
            "session_id": ["a"] * 3,
            "timepoint": ["baseline", "24h", "7d"],
            "hamd_total": [20, 7, 8],
        }
    )
    out = mood_outcomes(hamd, "hamd_total")
    assert out["hamd_total_remission"].tolist() == [False, True, False]  # HAM-D17 <= 7
    qids = hamd.rename(columns={"hamd_total": "qids_total"}).assign(qids_total=[15, 5, 6])
    assert mood_outcomes(qids, "qids_total")["qids_total_remission"].tolist() == [False, True, False]
    bdi = hamd.rename(columns={"hamd_total": "bdi_total"}).assign(bdi_total=[30, 13, 14])
    assert mood_outcomes(bdi, "bdi_total")["bdi_total_remission"].tolist() == [False, True, False]
    with pytest.warns(RemissionThresholdWarning, match="published cut-off is ≤ 13"):
        out = mood_outcomes(bdi, "bdi_total", remission_threshold=12)
    assert out["bdi_total_remission"].tolist() == [False, False, False]
    other = hamd.rename(columns={"hamd_total": "other_total"})
    with pytest.raises(ValueError, match="remission_threshold"):
        mood_outcomes(other, "other_total")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a score without a published cut-off: no warning
        assert mood_outcomes(other, "other_total", remission_threshold=8)["other_total_remission"].tolist() == [
            False,
            True,
            True,
        ]


def test_explicit_threshold_meant_for_another_scale_warns():
    """Issue 11: notebook 02 forced remission ≤ 10 (MADRS) on every scale. With HAM-D17 that calls a
    total of 8–10 (the 'mild' band) remission; it must at least warn and name the MADRS cut-off."""
    hamd = pd.DataFrame(
        {
            "participant_id": ["s1"] * 4,
            "session_id": ["a"] * 4,
            "timepoint": ["baseline", "4h", "24h", "7d"],
            "hamd_total": [20, 7, 8, 10],
        }
    )
    with pytest.warns(RemissionThresholdWarning, match=r"≤ 7; 10 is the madrs_total cut-off"):
        forced = mood_outcomes(hamd, "hamd_total", remission_threshold=10)
    assert forced["hamd_total_remission"].tolist() == [False, True, True, True]
    default = mood_outcomes(hamd, "hamd_total")
    assert default["hamd_total_remission"].tolist() == [False, True, False, False]
    assert default.attrs["outcome_definitions"]["remission_threshold"] == 7
    with pytest.warns(RemissionThresholdWarning, match="'moderate' severity band"):
        mood_outcomes(hamd.rename(columns={"hamd_total": "madrs_total"}), "madrs_total", remission_threshold=25)
    with pytest.raises(ValueError, match="outside the hamd17 total range 0–52"):
        mood_outcomes(hamd, "hamd_total", remission_threshold=52)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published MADRS alternatives do not warn
        for value in (9, 10, 12):
            mood_outcomes(hamd.rename(columns={"hamd_total": "madrs_total"}), "madrs_total", remission_threshold=value)


def test_remission_cut_offs_are_the_published_ones():
    """Typed in from scoring_keys.md / the primary sources, not read from the module."""
    from pipelines.phenotype.questionnaires import REMISSION_THRESHOLDS, remission_threshold

    assert REMISSION_THRESHOLDS == {"madrs_total": 10, "hamd_total": 7, "qids_total": 5, "bdi_total": 13}
    assert [remission_threshold(s) for s in ("madrs_total", "hamd_total", "qids_total", "bdi_total")] == [10, 7, 5, 13]


def test_missing_or_zero_baseline_is_undefined_not_guessed():
    t = madrs_table(
        [
            ("sub-01", "ses-a", "24h", 10, 0.5),  # no baseline row
            ("sub-02", "ses-a", "baseline", 0, 0.5),  # baseline 0: % change undefined
            ("sub-02", "ses-a", "24h", 3, 0.5),
            ("sub-03", "ses-a", "baseline", 20, 0.5),
            ("sub-03", "ses-a", "24h", np.nan, 0.5),
        ]
    )
    out = mood_outcomes(t, "madrs_total").set_index("participant_id")
    assert out.attrs["n_without_baseline"] == 1
    assert pd.isna(out.loc["sub-01", "madrs_total_response"])
    assert out.loc["sub-01", "madrs_total_remission"]  # remission needs no baseline
    row = out[out["timepoint"] == "24h"].loc["sub-02"]
    assert np.isnan(row["madrs_total_pct_change"]) and pd.isna(row["madrs_total_response"])
    assert row["madrs_total_change"] == 3
    row = out[out["timepoint"] == "24h"].loc["sub-03"]
    assert pd.isna(row["madrs_total_response"]) and pd.isna(row["madrs_total_remission"])


def test_bad_input(table):
    with pytest.raises(InputError, match="baseline time point 'Baseline'"):
        mood_outcomes(table, "madrs_total", baseline="Baseline")
    doubled = pd.concat([table, table.iloc[[4]]], ignore_index=True)
    with pytest.raises(InputError, match="duplicate") as err:
        mood_outcomes(doubled, "madrs_total")
    assert err.value.subject == "sub-02" and err.value.session == "ses-ket05"
    assert "row 5" in str(err.value) and "timepoint 24h" in str(err.value)
    with pytest.raises(InputError, match="no madrs_total column"):
        mood_outcomes(table.drop(columns="madrs_total"), "madrs_total")


def wilson(events: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval written out (Wilson 1927), independent of statsmodels."""
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_rates_per_dose_with_wilson_ci():
    rng = np.random.default_rng(0)
    rows = []
    for dose, n, k in ((0.0, 12, 2), (0.5, 10, 5), (1.0, 8, 8)):
        flags = np.array([True] * k + [False] * (n - k))
        rng.shuffle(flags)
        for i, flag in enumerate(flags):
            rows.append((f"sub-{i:02d}", f"ses-{dose}", "24h", dose, flag))
    rows.append(("sub-99", "ses-0.5", "24h", 0.5, pd.NA))  # undefined: not in n
    t = pd.DataFrame(
        rows, columns=["participant_id", "session_id", "timepoint", "dose_mg_per_kg", "madrs_total_response"]
    )
    t["madrs_total_response"] = t["madrs_total_response"].astype("boolean")
    rates = outcome_rates(t, "madrs_total_response").set_index("dose_mg_per_kg")
    assert rates["n"].tolist() == [12, 10, 8] and rates["n_events"].tolist() == [2, 5, 8]
    for dose, (n, k) in {0.0: (12, 2), 0.5: (10, 5), 1.0: (8, 8)}.items():
        low, high = wilson(k, n)
        assert rates.loc[dose, "rate"] == pytest.approx(k / n)
        assert rates.loc[dose, "ci_low"] == pytest.approx(low, abs=1e-12)
        assert rates.loc[dose, "ci_high"] == pytest.approx(high, abs=1e-12)
    assert rates.loc[0.5, "ci_low"] == pytest.approx(0.2366, abs=1e-4)  # textbook 5/10


def test_inclusive_rule_changes_rates_versus_strict(table):
    out = mood_outcomes(table, "madrs_total")
    rates = outcome_rates(out[out["timepoint"] == "24h"], "madrs_total_response", by=["dose_mg_per_kg"]).set_index(
        "dose_mg_per_kg"
    )
    assert rates.loc[0.5, "rate"] == 1.0  # both exactly-50 % cases count
    strict = ((out["madrs_total_baseline"] - out["madrs_total"]) / out["madrs_total_baseline"] > 0.5)[
        (out["timepoint"] == "24h") & (out["dose_mg_per_kg"] == 0.5)
    ]
    assert strict.mean() == 0.0


def test_default_study_generator_planted_correlation_recovered(tmp_path):
    """End to end on the synthetic study's phenotype files: score, outcomes, correlation; the
    generator's population correlation (truth) lies inside the bootstrap CI."""
    from pipelines.phenotype.questionnaires import score_items
    from pipelines.stats import correlation_table
    from pipelines.synth import phenotype as synth

    ids = [f"sub-{i:02d}" for i in range(1, 21)]
    participants = pd.DataFrame({"participant_id": ids, "age": 30, "sex": "F"})
    sessions = pd.DataFrame(
        [
            (p, s, d)
            for p in ids
            for s, d in (("ses-placebo", 0.0), ("ses-ket025", 0.25), ("ses-ket050", 0.5), ("ses-ket100", 1.0))
        ],
        columns=["participant_id", "session_id", "dose_mg_per_kg"],
    )
    tables, sidecars, truth = synth.generate_phenotype(participants, sessions, seed=20240)
    synth.write_phenotype(tmp_path, tables, sidecars)
    participants.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    meq = score_items(tmp_path / "phenotype" / "meq30.tsv", "meq30", participants=tmp_path / "participants.tsv")
    madrs = score_items(tmp_path / "phenotype" / "madrs.tsv", "madrs").scores
    out = mood_outcomes(madrs, "madrs_total")
    improvement = (
        -out[out["timepoint"] == "24h"].set_index(["participant_id", "session_id"])["madrs_total_change"]
    ).rename("improvement_24h")
    data = meq.scores.join(improvement, on=["participant_id", "session_id"])
    row = correlation_table(data, ["meq30_total"], ["improvement_24h"], method="pearson").iloc[0]
    expected = truth["mood"]["expected_correlation_with_improvement"]["meq30_total"]["24h"]
    assert row.ci_low <= expected["pearson_r"] <= row.ci_high
    # Rows with planted missing items have no total under missing="none"; no other row loses one.
    planted = {(m["participant_id"], m["session_id"]) for m in truth["missing_items"] if m["table"] == "meq30"}
    no_total = meq.scores[meq.scores["meq30_total"].isna()]
    assert set(zip(no_total["participant_id"], no_total["session_id"])) == planted
