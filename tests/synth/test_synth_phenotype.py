"""The synthetic phenotype generator: deterministic, in the documented formats, with its planted effects visible
in the tables by simple computations that do not reuse the generator's code."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.synth.phenotype import (
    ASC5D_DIMENSIONS,
    MEQ30_SUBSCALES,
    CytokineParameters,
    PhenotypeParameters,
    draw_subject_traits,
    generate_phenotype,
    write_phenotype,
)

SEED = 20240
SESSIONS = [("ses-placebo", 0.0), ("ses-ket025", 0.25), ("ses-ket050", 0.5), ("ses-ket100", 1.0)]
N_SUBJECTS = 12


def make_design(n_subjects: int = N_SUBJECTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"sub-{i:02d}" for i in range(1, n_subjects + 1)]
    participants = pd.DataFrame(
        {
            "participant_id": ids,
            "age": np.arange(n_subjects) + 30,
            "sex": ["F", "M"] * (n_subjects // 2) + ["F"] * (n_subjects % 2),
        }
    )
    sessions = pd.DataFrame(
        [(pid, sid, dose) for pid in ids for sid, dose in SESSIONS],
        columns=["participant_id", "session_id", "dose_mg_per_kg"],
    )
    return participants, sessions


@pytest.fixture(scope="module")
def design():
    return make_design()


@pytest.fixture(scope="module")
def generated(design):
    return generate_phenotype(*design, seed=SEED)


def _digests(paths) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _doses(design) -> pd.Series:
    sessions = design[1]
    return sessions.set_index(["participant_id", "session_id"])["dose_mg_per_kg"]


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(design, tmp_path):
    first = write_phenotype(tmp_path / "a", *generate_phenotype(*design, seed=SEED)[:2])
    second = write_phenotype(tmp_path / "b", *generate_phenotype(*design, seed=SEED)[:2])
    assert sorted(p.name for p in first) == sorted(
        f"{name}.{ext}" for name in ("meq30", "asc5d", "madrs", "cytokines", "therapy") for ext in ("tsv", "json")
    )
    assert _digests(first) == _digests(second)
    other = write_phenotype(tmp_path / "c", *generate_phenotype(*design, seed=SEED + 1)[:2])
    changed = {name for name, digest in _digests(other).items() if digest != _digests(first)[name]}
    assert {"meq30.tsv", "asc5d.tsv", "madrs.tsv", "cytokines.tsv"} <= changed
    assert not list((tmp_path / "a" / "phenotype").glob("*.tmp"))


def test_truth_is_deterministic_and_json_serialisable(design, generated):
    truth = generated[2]
    text = json.dumps(truth, sort_keys=True)
    assert json.loads(text) == truth
    assert text == json.dumps(generate_phenotype(*design, seed=SEED)[2], sort_keys=True)
    assert {"generator", "parameters", "subjects", "peak_experience", "mood", "cytokines", "missing_items"} <= set(
        truth
    )
    assert truth["generator"]["seed"] == SEED


def test_streams_are_independent(design, generated):
    """Changing the cytokine panel leaves the questionnaires, mood and the other analytes untouched."""
    tables = generated[0]
    fewer = CytokineParameters(analytes=tuple(a for a in CytokineParameters().analytes if a.name != "IL1B"))
    other, _, _ = generate_phenotype(*design, seed=SEED, params=replace(PhenotypeParameters(), cytokines=fewer))
    for name in ("meq30", "asc5d", "madrs"):
        pd.testing.assert_frame_equal(tables[name], other[name])
    kept = tables["cytokines"][tables["cytokines"]["analyte"] != "IL1B"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, other["cytokines"])


def test_given_traits_are_used_and_drive_intensity(design):
    participants, sessions = design
    traits = draw_subject_traits(participants, SEED)
    _, _, base = generate_phenotype(participants, sessions, SEED, subject_traits=traits)
    _, _, drawn = generate_phenotype(participants, sessions, SEED)
    assert base["peak_experience"]["subject_sessions"] == drawn["peak_experience"]["subject_sessions"]
    bumped = traits.copy()
    bumped.loc[bumped["participant_id"] == "sub-03", "ketamine_sensitivity"] += 1.0
    _, _, more = generate_phenotype(participants, sessions, SEED, subject_traits=bumped)
    assert more["subjects"]["ketamine_sensitivity"]["sub-03"] == pytest.approx(
        base["subjects"]["ketamine_sensitivity"]["sub-03"] + 1.0, abs=1e-5
    )
    for before, after in zip(base["peak_experience"]["subject_sessions"], more["peak_experience"]["subject_sessions"]):
        if before["participant_id"] == "sub-03":
            assert after["peak_intensity"] > before["peak_intensity"]
        else:
            assert after == before


# --- formats ------------------------------------------------------------------------------------------------


def test_table_formats(design, generated):
    tables = generated[0]
    n_sessions = N_SUBJECTS * 4  # the peak questionnaires follow every session, placebo included
    meq, asc, madrs, cyto = (tables[k] for k in ("meq30", "asc5d", "madrs", "cytokines"))

    assert list(meq.columns) == ["participant_id", "session_id"] + [f"meq30_{i:02d}" for i in range(1, 31)]
    assert list(asc.columns) == ["participant_id", "session_id"] + [f"asc5d_{i:02d}" for i in range(1, 95)]
    assert list(madrs.columns) == ["participant_id", "session_id", "timepoint"] + [
        f"madrs_{i:02d}" for i in range(1, 11)
    ]
    assert list(cyto.columns) == ["participant_id", "session_id", "timepoint", "analyte", "value", "unit"]

    assert len(meq) == len(asc) == n_sessions and "ses-placebo" in set(meq["session_id"])
    assert len(madrs) == N_SUBJECTS * 4 * 5
    assert len(cyto) == N_SUBJECTS * 4 * 2 * 6 + N_SUBJECTS  # + one screening CRP per subject
    assert not madrs.duplicated(["participant_id", "session_id", "timepoint"]).any()
    assert not cyto.duplicated(["participant_id", "session_id", "timepoint", "analyte"]).any()
    assert set(madrs["timepoint"]) == {"baseline", "4h", "24h", "7d", "14d"}
    assert set(cyto["timepoint"]) == {"screening", "baseline", "24h"}
    screening = cyto[cyto["timepoint"] == "screening"]
    assert set(screening["analyte"]) == {"CRP"} and set(screening["session_id"]) == {"n/a"}
    assert screening["participant_id"].is_unique and len(screening) == N_SUBJECTS
    # each subject's screening row comes before its first session's rows
    assert (cyto.groupby("participant_id", sort=False)["timepoint"].first() == "screening").all()
    assert set(cyto["analyte"]) == {"IL6", "IL1B", "TNFA", "CRP", "KYN", "TRP"}

    meq_items = meq.iloc[:, 2:].astype("float64").to_numpy()
    asc_items = asc.iloc[:, 2:].to_numpy(dtype=float)
    madrs_items = madrs.iloc[:, 3:].astype("float64").to_numpy()
    for values, top in ((meq_items, 5), (asc_items, 100), (madrs_items, 6)):
        present = values[~np.isnan(values)]
        assert present.min() >= 0 and present.max() <= top
    assert np.all(meq_items[~np.isnan(meq_items)] % 1 == 0)
    assert np.all(madrs_items % 1 == 0)
    assert np.allclose(asc_items[~np.isnan(asc_items)] * 10, np.round(asc_items[~np.isnan(asc_items)] * 10))
    assert not np.isnan(madrs_items).any()

    assert cyto["value"].map(type).eq(str).all()
    number = re.compile(r"^\d+(\.\d+)?$|^<LLOQ$|^<\d+(\.\d+)?$|^>\d+(\.\d+)?$")
    assert cyto["value"].str.match(number).all()
    units = dict(zip(cyto["analyte"], cyto["unit"]))
    assert units == {"IL6": "pg/mL", "IL1B": "pg/mL", "TNFA": "pg/mL", "CRP": "mg/L", "KYN": "µmol/L", "TRP": "µmol/L"}


def test_written_tsv_reads_back(generated, tmp_path):
    tables, sidecars, _ = generated
    write_phenotype(tmp_path, tables, sidecars)
    root = tmp_path / "phenotype"
    meq = pd.read_csv(root / "meq30.tsv", sep="\t", na_values="n/a", keep_default_na=False)
    assert list(meq.columns) == list(tables["meq30"].columns)
    assert meq.iloc[:, 2:].isna().sum().sum() == tables["meq30"].iloc[:, 2:].isna().sum().sum() > 0
    asc_text = (root / "asc5d.tsv").read_text(encoding="utf-8")
    assert "n/a" in asc_text and not re.search(r"\d\.\d\d", asc_text)  # fixed, one decimal
    cyto = pd.read_csv(root / "cytokines.tsv", sep="\t", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(cyto, tables["cytokines"].astype(str), check_dtype=False)
    madrs_lines = (root / "madrs.tsv").read_text(encoding="utf-8").splitlines()
    assert len(madrs_lines) == len(tables["madrs"]) + 1 and "." not in "".join(madrs_lines[1:]).replace("\t", "")
    assert json.loads((root / "cytokines.json").read_text(encoding="utf-8")) == sidecars["cytokines"]


def test_sidecars_describe_every_column(generated):
    tables, sidecars, _ = generated
    for name, table in tables.items():
        sidecar = sidecars[name]
        for column in table.columns:
            assert sidecar[column]["Description"], (name, column)
        tool = sidecar["MeasurementToolMetadata"]
        # Instruments and assays cite their source; the therapy-session log is a schedule, not an instrument.
        assert tool["Description"] and (name == "therapy" or tool["Citation"])
    assert sidecars["meq30"]["ResponseScale"] == {"min": 0, "max": 5}
    assert sidecars["asc5d"]["ResponseScale"] == {"min": 0, "max": 100}
    assert sidecars["madrs"]["ResponseScale"] == {"min": 0, "max": 6}
    assert set(sidecars["meq30"]["meq30_01"]["Levels"]) == {str(i) for i in range(6)}
    analytes = sidecars["cytokines"]["analytes"]
    assert analytes["IL6"]["unit"] == "pg/mL" and analytes["IL6"]["LLOQ"] == 0.7 and analytes["IL6"]["ULOQ"] == 5000
    assert all({"unit", "LLOQ", "ULOQ"} <= set(spec) for spec in analytes.values())
    assert "transcendence" in sidecars["meq30"]["meq30_01"]["Description"]
    assert "OBN" in sidecars["asc5d"]["asc5d_01"]["Description"]


def test_missing_items_match_truth(generated):
    tables, _, truth = generated
    planted = truth["missing_items"]
    assert {p["table"] for p in planted} == {"meq30", "asc5d"}
    expected = {(p["table"], p["participant_id"], p["session_id"], c) for p in planted for c in p["items"]}
    found = set()
    for name in ("meq30", "asc5d"):
        table = tables[name]
        for _, row in table.iterrows():
            for column in table.columns[2:]:
                if pd.isna(row[column]):
                    found.add((name, row["participant_id"], row["session_id"], column))
    assert found == expected
    ineffable = {f"meq30_{i:02d}" for i in MEQ30_SUBSCALES["ineffability"]}
    assert any(len(ineffable & set(p["items"])) == 2 for p in planted if p["table"] == "meq30")


# --- planted effects ----------------------------------------------------------------------------------------


def _meq_mean(tables) -> pd.Series:
    meq = tables["meq30"].set_index(["participant_id", "session_id"])
    return meq.astype("float64").mean(axis=1, skipna=True)


def _madrs_improvement(tables, timepoint: str) -> pd.Series:
    madrs = tables["madrs"]
    total = madrs.set_index(["participant_id", "session_id", "timepoint"]).astype("float64").sum(axis=1)
    return total.xs("baseline", level="timepoint") - total.xs(timepoint, level="timepoint")


def test_peak_experience_rises_with_dose(design, generated):
    tables = generated[0]
    doses = _doses(design)
    meq_by_dose = _meq_mean(tables).groupby(doses.reindex(_meq_mean(tables).index).to_numpy()).mean()
    assert meq_by_dose.is_monotonic_increasing and meq_by_dose.iloc[-1] - meq_by_dose.iloc[0] > 0.8
    asc = tables["asc5d"].set_index(["participant_id", "session_id"]).astype("float64")
    dose_of_row = doses.reindex(asc.index).to_numpy()
    obn = asc[[f"asc5d_{i:02d}" for i in ASC5D_DIMENSIONS["OBN"]]].mean(axis=1).groupby(dose_of_row).mean()
    ded = asc[[f"asc5d_{i:02d}" for i in ASC5D_DIMENSIONS["DED"]]].mean(axis=1).groupby(dose_of_row).mean()
    assert obn.iloc[-1] > obn.iloc[0] + 10
    assert (ded < obn).all()  # anxious ego dissolution loads more weakly than oceanic boundlessness


def test_madrs_baseline_is_trd_severity(generated):
    madrs = generated[0]["madrs"]
    baseline = madrs[madrs["timepoint"] == "baseline"].iloc[:, 3:].astype("float64").sum(axis=1)
    assert 28 <= baseline.mean() <= 34 and baseline.min() >= 20


def test_mood_improvement_tracks_peak_experience(design, generated):
    tables, _, truth = generated
    meq = _meq_mean(tables)
    rho = {}
    for timepoint in ("24h", "14d"):
        improvement = _madrs_improvement(tables, timepoint).reindex(meq.index)
        rho[timepoint] = stats.spearmanr(meq.to_numpy(), improvement.to_numpy())[0]
    assert rho["24h"] > 0.35  # planted: more intense experience, larger improvement
    assert rho["14d"] < rho["24h"] - 0.2  # fading by 14 days

    mood = truth["mood"]
    expected = mood["expected_correlation_with_improvement"]["meq30_total"]
    # over every rated session, placebo included (the dose contrast adds to the spread of both)
    assert mood["correlation_population"].startswith("every subject-session with peak questionnaires")
    assert 0.6 <= expected["24h"]["pearson_r"] <= 0.72 and expected["14d"]["pearson_r"] < 0.15
    realised = mood["realised_correlation_with_improvement"]["meq30_total"]["24h"]
    improvement = _madrs_improvement(tables, "24h").reindex(meq.index)
    assert realised["pearson_r"] == pytest.approx(stats.pearsonr(meq, improvement)[0], abs=1e-5)
    assert realised["spearman_rho"] == pytest.approx(rho["24h"], abs=1e-5)
    assert mood["peak_slope_per_unit_intensity"]["24h"] > mood["peak_slope_per_unit_intensity"]["14d"] > 0

    doses = _doses(design)
    by_dose = _madrs_improvement(tables, "24h").groupby(doses.to_numpy()).mean()
    assert by_dose.loc[1.0] > by_dose.loc[0.0] + 5


def _parse_value(value: str, lloq: float) -> float:
    if value.startswith("<"):
        return lloq / 2
    if value.startswith(">"):
        return float(value[1:])
    return float(value)


def test_cytokines_fall_only_in_inflamed_after_ketamine(design, generated):
    tables, sidecars, truth = generated
    cyto = tables["cytokines"].copy()
    lloq = {name: spec["LLOQ"] for name, spec in sidecars["cytokines"]["analytes"].items()}
    cyto["number"] = [_parse_value(v, lloq[a]) for v, a in zip(cyto["value"], cyto["analyte"])]
    wide = cyto.pivot_table(index=["participant_id", "session_id", "analyte"], columns="timepoint", values="number")

    # CRP set points sit on both sides of 3 mg/L; single draws scatter around them (day state + draw noise), so
    # a baseline can fall on the other side of the threshold than the subject's set point.
    inflamed_subjects = truth["cytokines"]["inflamed_subjects"]
    set_points = truth["cytokines"]["crp_set_point_mg_per_l"]
    assert all((set_points[p] >= 3.0) == (p in inflamed_subjects) for p in set_points)
    assert all(1.0 <= v <= 7.0 for v in set_points.values())
    crp = wide.drop(index="n/a", level="session_id").xs("CRP", level="analyte")["baseline"]
    acute = {(c["participant_id"], c["session_id"]) for c in truth["cytokines"]["acute_infection"]}
    assert len(acute) == 1 and all(crp[key] >= 10 for key in acute)
    crp = crp.drop(index=list(acute))
    log_dev = np.log(crp) - np.log(crp.index.get_level_values("participant_id").map(set_points).to_numpy(float))
    assert 0.2 < log_dev.std() < 0.5  # within-subject SD of a draw ~0.32
    on_other_side = (crp >= 3.0) != crp.index.get_level_values("participant_id").isin(inflamed_subjects)
    assert on_other_side.any()  # the regression-to-the-mean material
    screening = wide.xs("n/a", level="session_id").xs("CRP", level="analyte")["screening"]
    assert sorted(screening.index[screening >= 3.0]) == truth["cytokines"]["screening_inflamed_subjects"]
    assert len(inflamed_subjects) >= 4 and N_SUBJECTS - len(inflamed_subjects) >= 4

    il6 = wide.xs("IL6", level="analyte")
    change = np.log(il6["24h"] / il6["baseline"])
    active = _doses(design).reindex(change.index).to_numpy() > 0
    inflamed = np.isin(change.index.get_level_values("participant_id"), inflamed_subjects)
    assert change[inflamed & active].mean() < -0.3
    assert abs(change[inflamed & ~active].mean()) < 0.2
    assert abs(change[~inflamed & active].mean()) < 0.2
    planted = truth["cytokines"]["log_fold_change_24h"]
    assert planted["inflamed"]["active"]["IL6"] < 0 and planted["inflamed"]["placebo"]["IL6"] == 0
    assert planted["non_inflamed"]["active"]["CRP"] == 0
    assert planted["inflamed"]["active"]["KYN_TRP_ratio"] < 0


def test_censored_values_in_both_forms(generated):
    cyto = generated[0]["cytokines"]
    assert (cyto["value"] == "<LLOQ").any()
    assert cyto["value"].str.match(r"^<\d").any()
    il1b = cyto[cyto["analyte"] == "IL1B"]["value"]
    assert il1b.str.startswith("<").mean() > 0.05  # IL-1beta is often below the LLOQ


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_inflamed_subgroup_size(seed):
    _, _, truth = generate_phenotype(*make_design(), seed=seed)
    n_inflamed = len(truth["cytokines"]["inflamed_subjects"])
    assert 4 <= n_inflamed <= N_SUBJECTS - 4


def test_rejects_bad_design(design):
    participants, sessions = design
    with pytest.raises(ValueError, match="dose_mg_per_kg"):
        generate_phenotype(participants, sessions.drop(columns="dose_mg_per_kg"), seed=1)
    stray = pd.concat([sessions, pd.DataFrame([("sub-99", "ses-placebo", 0.0)], columns=sessions.columns)])
    with pytest.raises(ValueError, match="sub-99"):
        generate_phenotype(participants, stray, seed=1)
    with pytest.raises(ValueError, match="sub-12"):
        generate_phenotype(
            participants, sessions, seed=1, subject_traits=draw_subject_traits(participants, 1).iloc[:-1]
        )


def test_placebo_sessions_are_rated_low_with_floor_effects_and_the_old_design_remains(design, generated):
    """Real trials give the peak questionnaires after placebo too: low but non-zero scores, many items at 0 (a
    floor). ``questionnaires_after_placebo=False`` gives the active-only design, whose expectations are over
    active sessions, with every other table unchanged."""
    import dataclasses

    tables, _, truth = generated
    meq = _meq_mean(tables)
    dose = _doses(design).reindex(meq.index).to_numpy()
    items = tables["meq30"].set_index(["participant_id", "session_id"]).astype("float64")
    assert 0 < meq[dose == 0].mean() < 1.0 < meq[dose == 0.25].mean()
    assert (items[dose == 0] == 0).mean(axis=1).mean() > 0.3 > (items[dose == 1.0] == 0).mean(axis=1).mean()
    assert truth["peak_experience"]["questionnaires_collected"] == "every session, placebo included"
    assert truth["peak_experience"]["realised_mean_scores_by_dose"]["meq30_total"]["0"] == pytest.approx(
        meq[dose == 0].mean(), abs=1e-5
    )

    base = PhenotypeParameters()
    active_only = dataclasses.replace(base, peak=dataclasses.replace(base.peak, questionnaires_after_placebo=False))
    old, _, old_truth = generate_phenotype(*design, seed=SEED, params=active_only)
    assert len(old["meq30"]) == len(old["asc5d"]) == N_SUBJECTS * 3
    assert "ses-placebo" not in set(old["meq30"]["session_id"])
    assert old_truth["peak_experience"]["questionnaires_collected"] == "active sessions only (dose > 0)"
    assert old_truth["mood"]["correlation_population"].startswith("active subject-sessions")
    expected = old_truth["mood"]["expected_correlation_with_improvement"]["meq30_total"]
    assert 0.5 <= expected["24h"]["pearson_r"] <= 0.62
    for name in ("madrs", "cytokines", "therapy"):  # own random streams: unchanged by the questionnaire rows
        pd.testing.assert_frame_equal(old[name], tables[name])
