"""The crossover is modelled: the generator records a balanced session order and plants a period effect;
the Study reads the order; the dose model fits period, sequence and carry-over where the order identifies
them, and says in one line when it does not; with a period effect and no dose effect the dose test keeps
its type-I error (small calibration; the full one is `make calibrate`)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipelines.stats.crossover import (
    CROSSOVER_NOT_MODELLED,
    crossover_dose_model,
    crossover_terms,
    identified_terms,
    williams_sequences,
)
from pipelines.study.dataset import Study
from pipelines.study.manifest import DesignConfig, ManifestError


# ------------------------------------------------------------------------------ Williams sequences
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_williams_sequences_are_balanced_for_period_and_first_order_carryover(k):
    rows = williams_sequences(k)
    assert len(rows) == (k if k % 2 == 0 else 2 * k)
    assert all(sorted(r) == list(range(k)) for r in rows)
    for period in range(k):  # every treatment equally often in each period
        assert len(set(Counter(r[period] for r in rows).values())) == 1
    pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(k - 1))
    assert set(pairs) == {p for p in itertools.permutations(range(k), 2)}
    assert len(set(pairs.values())) == 1  # every ordered pair of successive doses equally often


# ------------------------------------------------------------------------------ terms and identification
def test_crossover_terms_from_order_numbers_or_times():
    df = pd.DataFrame(
        {
            "s": ["a"] * 3 + ["b"] * 3,
            "dose": [0, 0.5, 1] * 2,
            "order": [2, 3, 1, 1, 2, 3],
            "acq_time": [
                "1910-07-17T09:00:00Z",
                "1910-07-31T09:00:00Z",
                "1910-07-03T09:00:00Z",
                "1910-07-03T09:00:00Z",
                "1910-07-17T09:00:00Z",
                "1910-07-31T09:00:00Z",
            ],
        }
    )
    by_number = crossover_terms(df, "s", "order", "dose")
    by_time = crossover_terms(df, "s", "acq_time", "dose")
    assert list(by_number["period"]) == [2, 3, 1, 1, 2, 3] == list(by_time["period"])
    assert list(by_number["sequence"]) == ["1/0/0.5"] * 3 + ["0/0.5/1"] * 3
    assert list(by_number["carryover_dose"]) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.5]


def test_crossover_terms_refuse_ties_and_missing_orders():
    df = pd.DataFrame({"s": ["a", "a", "b", "b"], "dose": [0, 1, 0, 1], "order": [1, 1, 1, 2]})
    with pytest.raises(ValueError, match=r"ties within subject\(s\) \['a'\]"):
        crossover_terms(df, "s", "order", "dose")
    with pytest.raises(ValueError, match=r"missing or unreadable for subject\(s\) \['b'\]"):
        crossover_terms(df.assign(order=[1, 2, 1, np.nan]), "s", "order", "dose")


def test_identification_of_each_term_and_its_one_line_reason():
    ab_ba = crossover_terms(
        pd.DataFrame({"s": np.repeat(range(6), 2), "d": [0, 1, 1, 0] * 3, "o": [1, 2] * 6}), "s", "o", "d"
    )
    status = identified_terms(ab_ba, "s", "d")
    assert status["period"][0] and status["sequence"][0]
    assert not status["carryover"][0] and "aliased" in status["carryover"][1]  # AB/BA: carry-over = sequence x period
    same = crossover_terms(
        pd.DataFrame({"s": np.repeat(range(4), 3), "d": [0, 0.5, 1] * 4, "o": [1, 2, 3] * 4}), "s", "o", "d"
    )
    status = identified_terms(same, "s", "d")
    assert not status["period"][0] and "aliased with dose" in status["period"][1]
    assert not status["sequence"][0] and "same sequence" in status["sequence"][1]
    williams = pd.DataFrame(
        [
            {"s": i, "d": [0, 0.25, 0.5, 1][t], "o": p + 1}
            for i in range(8)
            for p, t in enumerate(williams_sequences(4)[i % 4])
        ]
    )
    assert all(ok for ok, _ in identified_terms(crossover_terms(williams, "s", "o", "d"), "s", "d").values())


def test_without_an_order_the_model_says_so_in_one_line():
    from pipelines.stats.simulation import Design, simulate_crossover

    data = simulate_crossover(Design(), np.random.default_rng(0))
    rows = crossover_dose_model(data, "mood", "dose", "subject", None, n_boot=49)
    assert list(rows["quantity"]) == ["dose"]
    assert (rows["crossover_note"] == CROSSOVER_NOT_MODELLED).all() and "\n" not in CROSSOVER_NOT_MODELLED


def test_planted_period_effect_is_recovered_by_the_dose_model():
    from pipelines.stats.simulation import Design, simulate_crossover

    period = (0.0, 1.0, 1.5, 2.0)
    data = simulate_crossover(
        replace(Design(), n_subjects=48, period_effect=period, mood_dose_mean=1.0, mood_dose_sd=0.5),
        np.random.default_rng(11),
    )
    rows = crossover_dose_model(data, "mood", "dose", "subject", "period", n_boot=299, seed=1).set_index("quantity")
    assert rows["crossover_terms"].iloc[0] == "period, sequence, carryover"
    # Each estimate within 3 cluster-robust SEs of its planted value (unbiased over seeds: checked by
    # simulation when this test was written), and the period effect clearly present.
    for term, planted in [
        ("dose", 1.0),
        ("carryover_dose", 0.0),
        *((f"C(period)[T.{p}]", period[p - 1]) for p in (2, 3, 4)),
    ]:
        assert abs(rows.loc[term, "estimate"] - planted) < 3 * rows.loc[term, "se_cr1"], (
            term,
            rows.loc[term].to_dict(),
        )
    assert rows.loc["C(period)[T.4]", "ci_low"] > 0 and rows.loc["C(period)[T.4]", "p"] < 0.01


def test_small_calibration_period_effect_without_dose_effect_keeps_type1():
    from pipelines.stats import calibration

    report = calibration.run_calibration(n_null=60, n_effect=0, n_boot=199, only=["crossover_dose_model"])
    row = report["rows"][0]
    print(f"crossover_dose_model: type-I {row['type1_error']:.3f}, coverage(null) {row['coverage_null']:.3f}")
    assert (
        row["null_design"]["period_effect"] == list(calibration.STRONG_PERIOD)
        or tuple(row["null_design"]["period_effect"]) == calibration.STRONG_PERIOD
    )
    assert row["type1_error"] <= 0.12 and row["coverage_null"] >= 0.88


# ------------------------------------------------------------------------------ the generator
def _phenotype_study(n_subjects: int, seed: int):
    from pipelines.synth.phenotype import generate_phenotype
    from pipelines.synth.study import session_label, session_orders

    doses = (0.0, 0.25, 0.5, 1.0)
    sequences, assigned = session_orders(n_subjects, len(doses), np.random.default_rng(seed))
    participants = pd.DataFrame({"participant_id": [f"sub-{i + 1:03d}" for i in range(n_subjects)]})
    sessions = pd.DataFrame(
        [
            {
                "participant_id": pid,
                "session_id": f"ses-{session_label(d)}",
                "dose_mg_per_kg": d,
                "session_order": sequences[assigned[i]].index(j) + 1,
            }
            for i, pid in enumerate(participants["participant_id"])
            for j, d in enumerate(doses)
        ]
    )
    return sessions, generate_phenotype(participants, sessions, seed)


def test_generator_plants_the_period_effect_it_records():
    import statsmodels.formula.api as smf

    sessions, (tables, _, truth) = _phenotype_study(160, seed=5)
    planted = truth["mood"]["period_effect"]["by_period"]
    assert planted == {"1": 0.0, "2": 2.0, "3": 3.0, "4": 3.5}
    madrs = tables["madrs"]
    total = madrs.filter(like="madrs_").astype(float).sum(axis=1)
    wide = madrs.assign(total=total).pivot_table(
        index=["participant_id", "session_id"], columns="timepoint", values="total"
    )
    data = (
        sessions.set_index(["participant_id", "session_id"])
        .join((wide["baseline"] - wide["24h"]).rename("improvement"))
        .reset_index()
    )
    fit = smf.ols("improvement ~ C(session_order) + C(dose_mg_per_kg) + C(participant_id)", data).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(data["participant_id"])[0]}
    )
    for p in (2, 3, 4):
        low, high = fit.conf_int().loc[f"C(session_order)[T.{p}]"]
        assert low < planted[str(p)] < high, (p, low, high)
    assert fit.pvalues["C(session_order)[T.4]"] < 0.001


def test_generator_without_an_order_plants_no_period_effect():
    from pipelines.synth.phenotype import generate_phenotype

    sessions, (tables, _, truth) = _phenotype_study(4, seed=5)
    participants = pd.DataFrame({"participant_id": sessions["participant_id"].unique()})
    plain, _, plain_truth = generate_phenotype(participants, sessions.drop(columns="session_order"), 5)
    assert plain_truth["mood"]["period_effect"] == {"definition": "not planted: the sessions carry no order"}
    # Only the mood table moves; the questionnaires and cytokines draw from their own streams.
    for name in ("meq30", "asc5d", "cytokines"):
        pd.testing.assert_frame_equal(plain[name], tables[name])


# ------------------------------------------------------------------------------ the default study
def test_default_study_records_a_balanced_order_consistent_with_acq_time(default_study, default_truth):
    order = default_study.session_order
    assert order is not None and len(order) == 48
    assert (order.groupby("participant_id")["period"].apply(sorted) == pd.Series([[1, 2, 3, 4]] * 12).values).all()
    # Each dose once per period (12 subjects = 3 per Williams sequence): 3 subjects per dose and period.
    assert (order.groupby(["period", "dose_mg_per_kg"]).size() == 3).all()
    labels = {0.0: "placebo", 0.25: "ket025", 0.5: "ket050", 1.0: "ket100"}
    for pid, group in order.groupby("participant_id"):
        seq = "/".join(labels[d] for d in group.sort_values("period")["dose_mg_per_kg"])
        assert default_truth["crossover"]["subject_sequence"][pid] == seq
    for path in sorted(default_study.root.glob("sub-*/sub-*_sessions.tsv")):
        table = pd.read_csv(path, sep="\t")
        assert table.sort_values("session_order")["acq_time"].is_monotonic_increasing
        for row in table.itertuples():
            scans = path.parent / row.session_id / f"{path.parent.name}_{row.session_id}_scans.tsv"
            assert pd.read_csv(scans, sep="\t")["acq_time"].iloc[0] == row.acq_time


def test_a_misspelt_order_column_is_a_clear_error(default_study):
    manifest = default_study.manifest.model_copy(update={"design": DesignConfig(session_order_column="sesion_order")})
    with pytest.raises(ManifestError, match="did you mean 'session_order'"):
        _ = Study(manifest).session_order
    assert Study(default_study.manifest.model_copy(update={"design": DesignConfig()})).session_order is None


def test_default_study_dose_models_include_period(default_study):
    from pipelines.analyses import peak_experience_mood as peak_mood

    periods = peak_mood.session_periods(default_study)
    assert set(periods.columns) == {"participant_id", "session_id", "period"} and len(periods) == 48
