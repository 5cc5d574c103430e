"""The plasticity-window analysis (issue 17): the therapy table's validation, the within/between effect routines
against statsmodels, their calibration by simulation, and the planted window effect on the default study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.analyses.plasticity_window import infusion_timing
from pipelines.core.errors import InputError
from pipelines.phenotype.therapy import hours_of, read_therapy
from pipelines.stats.effects import within_between_effect, within_moderation

PARTICIPANTS = pd.DataFrame({"participant_id": ["sub-01", "sub-02"]})
SESSIONS = pd.DataFrame(
    {
        "participant_id": ["sub-01", "sub-01", "sub-02", "sub-02"],
        "session_id": ["ses-a", "ses-b", "ses-a", "ses-b"],
        "dose_mg_per_kg": [0.5, 0.0, 0.5, 0.0],
    }
)
GOOD = (
    "participant_id\tsession_id\tsession_type\tstart_h\tduration_min\n"
    "sub-01\tses-a\tpreparation\t-24\t60\n"
    "sub-01\tses-a\tintegration\t30\t90\n"
    "sub-02\tses-a\tintegration\t70\t90\n"
)


def _write(tmp_path, text):
    path = tmp_path / "therapy.tsv"
    path.write_text(text)
    return path


def test_a_valid_table_reads_and_times_are_classified(tmp_path):
    table = read_therapy(_write(tmp_path, GOOD), PARTICIPANTS, SESSIONS)
    timing = infusion_timing(table, SESSIONS, (24, 48)).set_index(["participant_id", "session_id"])
    assert timing.loc[("sub-01", "ses-a"), "status"] == "inside"
    assert timing.loc[("sub-02", "ses-a"), "status"] == "after"
    assert len(timing) == 2  # placebo sessions are not active infusions
    assert infusion_timing(table, SESSIONS, (48, 96)).set_index("participant_id").loc["sub-01", "status"] == "before"


@pytest.mark.parametrize(
    "row, message",
    [
        ("sub-01\tses-b\tintegration\t-3\t60\n", "starts 3 h before the infusion"),
        ("sub-01\tses-b\tpreparation\t5\t60\n", "after the infusion ended"),
        ("sub-01\tses-a\tintegration\t30\t90\n", "duplicate row"),
        ("sub-09\tses-a\tintegration\t30\t90\n", "not in participants.tsv"),
        ("sub-01\tses-c\tintegration\t30\t90\n", "has no infusion session ses-c"),
        ("sub-01\tses-b\tintegraton\t30\t90\n", "did you mean 'integration'"),
        ("sub-01\tses-b\tintegration\tsoon\t90\n", "start_h must be a number"),
    ],
)
def test_bad_rows_name_the_file_row_subject_and_field(tmp_path, row, message):
    path = _write(tmp_path, GOOD + row)
    with pytest.raises(InputError, match=message) as caught:
        read_therapy(path, PARTICIPANTS, SESSIONS)
    assert caught.value.file == str(path) and caught.value.row == 4 and caught.value.subject


def test_time_point_labels_read_as_hours():
    assert [hours_of(t) for t in ["baseline", "4h", "24h", "7d", "2w", "week3", "14 d"]] == [
        None,
        4.0,
        24.0,
        168.0,
        336.0,
        504.0,
        336.0,
    ]


def _sessions(rng, n_subjects=12, n_sessions=4, effect=0.0, confounded=True):
    rows = []
    for s in range(n_subjects):
        trait = rng.normal(0, 4)
        # Participants who improve more anyway are also booked inside more often: confounding between people.
        p_inside = 1 / (1 + np.exp(-(trait / 4 if confounded else 0.0)))
        for j in range(n_sessions):
            inside = float(rng.random() < p_inside)
            dose = [0.25, 0.5, 1.0, 0.5][j % 4]
            rows.append(
                {
                    "subject": f"s{s:02d}",
                    "inside": inside,
                    "dose": dose,
                    "m": rng.normal(),
                    "y": trait + effect * inside + 3 * dose + rng.normal(0, 3),
                }
            )
    return pd.DataFrame(rows)


def test_within_and_between_equal_statsmodels():
    import statsmodels.formula.api as smf

    data = _sessions(np.random.default_rng(5), effect=2.0)
    rows = within_between_effect(data, "y", "inside", "subject", covariates=["dose"], n_boot=199).set_index("quantity")
    fixed = smf.ols("y ~ inside + dose + C(subject)", data).fit()
    assert rows.loc["within", "estimate"] == pytest.approx(fixed.params["inside"], rel=1e-9)
    means = data.groupby("subject")[["y", "inside", "dose"]].mean()
    between = smf.ols("y ~ inside", means).fit()  # every participant has the same doses: dose drops out
    assert rows.loc["between", "estimate"] == pytest.approx(between.params["inside"], rel=1e-9)
    assert rows.loc["between", "p"] == pytest.approx(between.pvalues["inside"], rel=1e-7)
    data["im"] = data["inside"] * (data["m"] - data["m"].mean())
    moderation = within_moderation(data, "y", "inside", "m", "subject", covariates=["dose"], n_boot=199).iloc[0]
    fixed = smf.ols("y ~ im + inside + m + dose + C(subject)", data).fit()
    assert moderation["estimate"] == pytest.approx(fixed.params["im"], rel=1e-9)


def test_the_within_effect_is_calibrated_where_the_between_association_is_confounded():
    """Null trials (12 participants × 4 infusions) where people who improve more are booked inside more often:
    the within test keeps its level, the between association does not; a planted effect is covered."""
    rng = np.random.default_rng(20261217)
    n_sims = 300
    within_reject, between_reject, covered = 0, 0, 0
    for _ in range(n_sims):
        rows = within_between_effect(
            _sessions(rng), "y", "inside", "subject", covariates=["dose"], n_boot=299, seed=int(rng.integers(1 << 30))
        ).set_index("quantity")
        within_reject += rows.loc["within", "p"] < 0.05
        between_reject += rows.loc["between", "p"] < 0.05
        planted = within_between_effect(
            _sessions(rng, effect=3.0),
            "y",
            "inside",
            "subject",
            covariates=["dose"],
            n_boot=299,
            seed=int(rng.integers(1 << 30)),
        ).set_index("quantity")
        covered += planted.loc["within", "ci_low"] <= 3.0 <= planted.loc["within", "ci_high"]
    assert 0.02 <= within_reject / n_sims <= 0.08
    assert between_reject / n_sims > 0.3  # the trait-level association is not the timing effect
    assert covered / n_sims >= 0.92


def test_the_planted_window_effect_is_recovered_on_the_default_study(default_study, default_truth):
    from pipelines.analyses import plasticity_window

    truth = default_truth["therapy"]
    result = plasticity_window.run(default_study, {"n_boot": 999})
    assert result.outcome_timepoint == "7d" and result.window_h == tuple(truth["window_h"])
    inside = {k for k, v in truth["inside_by_session"].items() if v}
    found = {f"{r.participant_id}_{r.session_id}" for r in result.infusions.itertuples() if r.status == "inside"}
    assert found == {k for k in inside if "placebo" not in k}  # the timing read back is the timing planted
    within = result.effects.set_index("quantity").loc["within"]
    assert within["n_subjects"] == 12 and within["ci_low"] < truth["window_effect_points"] < within["ci_high"]
    assert abs(within["estimate"] - truth["window_effect_points"]) < 3.0
    assert set(result.sensitivity["window_h"]) == {"12–36", "24–48", "24–72"}
    assert "not randomised" in plasticity_window.summary_text(result)


def test_a_study_without_therapy_sessions_says_why(tiny_manifest):
    from pipelines.make.build import notebook_not_applicable
    from pipelines.study.manifest import load_manifest

    reason = notebook_not_applicable(load_manifest(tiny_manifest), "06_plasticity_window")
    assert reason and "therapy" in reason
