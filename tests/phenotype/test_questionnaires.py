"""Questionnaire scoring against the published keys (shared/reference/scoring_keys.md), hand-worked
examples, and every bad-input case.

The keys below are typed in again from the reference page on purpose: the tests must not read the
module's own constants to decide what is right.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.core.errors import InputError
from pipelines.phenotype.questionnaires import (
    ASC5D_FACTORS,
    MEQ30_SUBSCALES,
    read_phenotype_table,
    read_scored_table,
    score_items,
)

# --- the published keys, from scoring_keys.md --------------------------------------------------
REF_MEQ30 = {
    "mystical": [4, 5, 6, 9, 14, 15, 16, 18, 20, 21, 23, 24, 25, 26, 28],
    "positive_mood": [2, 8, 12, 17, 27, 30],
    "transcendence": [1, 7, 11, 13, 19, 22],
    "ineffability": [3, 10, 29],
}
REF_ASC5D_DIMENSIONS = {
    "obn": [1, 3, 9, 12, 16, 18, 26, 34, 35, 36, 40, 41, 42, 45, 50, 52, 57, 62, 63, 69, 71, 73, 81, 86, 87, 91, 94],
    "ded": [6, 8, 21, 27, 32, 38, 43, 44, 46, 47, 53, 56, 60, 64, 67, 78, 79, 80, 85, 88, 89],
    "vrs": [7, 14, 20, 22, 23, 28, 31, 33, 39, 54, 58, 70, 72, 75, 77, 82, 83, 90],
    "aua": [4, 5, 11, 13, 19, 25, 30, 48, 49, 55, 65, 66, 74, 76, 92, 93],
    "vir": [2, 10, 15, 17, 24, 29, 37, 51, 59, 61, 68, 84],
}
REF_ASC5D_FACTORS = {
    "unity": [18, 34, 41, 42, 52],
    "spiritual": [9, 81, 94],
    "bliss": [12, 86, 91],
    "insight": [50, 69, 77],
    "disembodiment": [26, 62, 63],
    "impaired_control": [8, 27, 38, 47, 64, 67, 78],
    "anxiety": [32, 43, 44, 46, 56, 89],
    "complex_imagery": [39, 72, 82],
    "elementary_imagery": [14, 22, 33],
    "synesthesia": [20, 23, 75],
    "changed_meaning": [28, 31, 54],
}
REF_ASC11D = {
    "unity": [5, 15, 18, 19, 25],
    "spiritual": [2, 37, 42],
    "bliss": [3, 39, 41],
    "insight": [24, 32, 35],
    "disembodiment": [9, 28, 29],
    "impaired_control": [1, 10, 16, 23, 30, 31, 36],
    "anxiety": [13, 20, 21, 22, 27, 40],
    "complex_imagery": [17, 33, 38],
    "elementary_imagery": [4, 7, 14],
    "synesthesia": [6, 8, 34],
    "changed_meaning": [11, 12, 26],
}


def cols(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(1, n + 1)]


def wide(prefix: str, answers, subjects=None, sessions=None, timepoints=None) -> pd.DataFrame:
    answers = np.atleast_2d(np.asarray(answers, dtype=float))
    n = len(answers)
    table = pd.DataFrame(answers, columns=cols(prefix, answers.shape[1]))
    table.insert(0, "session_id", sessions or [f"ses-{i}" for i in range(n)])
    table.insert(0, "participant_id", subjects or [f"sub-{i:02d}" for i in range(n)])
    if timepoints is not None:
        table.insert(2, "timepoint", timepoints)
    return table


def assert_located(err: InputError, *, file=None, row=None, subject=None, session=None, item=None) -> None:
    """The exception names each given location, as attribute and in its message."""
    message = str(err)
    for label, expected in (("file", file), ("row", row), ("subject", subject), ("session", session), ("item", item)):
        if expected is None:
            continue
        assert getattr(err, label) == expected, (label, getattr(err, label), message)
        assert f"{label} {expected}" in message, (label, message)


# --- keys ----------------------------------------------------------------------------------------


def test_meq30_key_is_the_published_partition():
    assert {k: list(v) for k, v in MEQ30_SUBSCALES.items()} == REF_MEQ30
    items = sorted(i for v in REF_MEQ30.values() for i in v)
    assert items == list(range(1, 31))
    # Circulating wrong keys: item 2 under mystical, item 5 under transcendence.
    assert 2 not in MEQ30_SUBSCALES["mystical"] and 5 not in MEQ30_SUBSCALES["transcendence"]


def test_asc_keys_partition_and_complex_imagery_is_39_72_82():
    dims = sorted(i for v in REF_ASC5D_DIMENSIONS.values() for i in v)
    assert dims == list(range(1, 95))
    assert sorted(i for v in REF_ASC11D.values() for i in v) == list(range(1, 43))
    assert ASC5D_FACTORS["complex_imagery"] == (39, 72, 82)
    assert 79 not in ASC5D_FACTORS["complex_imagery"]


@pytest.mark.parametrize(
    "scale,prefix,n_items,dims",
    [
        ("asc5d", "asc5d_", 94, {**REF_ASC5D_DIMENSIONS, **REF_ASC5D_FACTORS}),
        ("asc11d", "asc11d_", 43, REF_ASC11D),
    ],
)
def test_asc_each_item_moves_exactly_its_scores(scale, prefix, n_items, dims):
    # Row i answers 100 on item i+1 and 0 elsewhere: a score moves by 100/len(items) exactly when
    # the item belongs to it.
    table = wide(prefix, 100 * np.eye(n_items))
    scores = score_items(table, scale, response_scale=(0, 100)).scores
    for name, items in dims.items():
        expected = np.array([100 / len(items) if i in items else 0.0 for i in range(1, n_items + 1)])
        np.testing.assert_allclose(scores[f"{prefix}{name}"], expected, err_msg=name)
    if scale == "asc5d":
        # The wrong key (39, 79, 82) would let item 79 move complex imagery.
        assert scores["asc5d_complex_imagery"].iloc[78] == 0
        assert scores["asc5d_complex_imagery"].iloc[71] == pytest.approx(100 / 3)
    else:
        # Item 43 (overall intensity) belongs to no factor.
        assert (scores.iloc[42][[f"asc11d_{k}" for k in REF_ASC11D]] == 0).all()


# --- MEQ30 hand-worked ------------------------------------------------------------------------------


def meq_pattern(levels: dict[str, list[int]]) -> np.ndarray:
    answers = np.zeros(30)
    for name, items in REF_MEQ30.items():
        answers[np.asarray(items) - 1] = levels[name]
    return answers


def test_meq30_hand_worked_scores_and_complete_mystical_boundary():
    a = meq_pattern({"mystical": 4, "positive_mood": 3, "transcendence": 2, "ineffability": 5})
    b = meq_pattern({"mystical": 3, "positive_mood": 3, "transcendence": 3, "ineffability": 3})
    c = b.copy()
    c[28] = 2  # item 29 (ineffability): 3, 3, 2 -> 8/3 = 53.3 % of maximum
    scores = score_items(wide("meq30_", [a, b, c]), "meq30", response_scale=(0, 5)).scores
    # a: means 4, 3, 2, 5; total = (15*4 + 6*3 + 6*2 + 3*5) / 30 = 105/30 = 3.5
    assert scores.loc[
        0, ["meq30_mystical", "meq30_positive_mood", "meq30_transcendence", "meq30_ineffability", "meq30_total"]
    ].tolist() == [4, 3, 2, 5, 3.5]
    assert scores.loc[0, "meq30_mystical_pct_max"] == pytest.approx(80)
    assert scores.loc[0, "meq30_total_pct_max"] == pytest.approx(70)
    # b: exactly 60 % on all four is complete (>= 60 %); c misses by one item.
    assert scores["meq30_complete_mystical"].tolist() == [False, True, False]
    assert scores.loc[2, "meq30_ineffability"] == pytest.approx(8 / 3)


def test_meq30_only_item_2_high_is_positive_mood_not_mystical():
    answers = np.zeros(30)
    answers[1] = 5
    scores = score_items(wide("meq30_", [answers]), "meq30", response_scale=(0, 5)).scores
    assert scores.loc[0, "meq30_positive_mood"] == pytest.approx(5 / 6)
    assert scores.loc[0, "meq30_mystical"] == 0


def test_meq30_one_to_six_export_is_converted_by_declared_offset(tmp_path):
    rng = np.random.default_rng(3)
    answers = rng.integers(0, 6, size=(5, 30))
    reference = score_items(wide("meq30_", answers), "meq30", response_scale=(0, 5)).scores
    shifted = wide("meq30_", answers + 1)
    by_argument = score_items(shifted, "meq30", response_scale=(1, 6)).scores
    path = tmp_path / "meq30.tsv"
    shifted.to_csv(path, sep="\t", index=False)
    path.with_suffix(".json").write_text(json.dumps({"ResponseScale": {"min": 1, "max": 6}}))
    by_sidecar = score_items(path, "meq30")
    score_cols = [c for c in reference if c.startswith("meq30_")]
    pd.testing.assert_frame_equal(by_argument[score_cols], reference[score_cols])
    pd.testing.assert_frame_equal(by_sidecar.scores[score_cols], reference[score_cols])
    assert by_sidecar.response_scale == (1, 6)
    # Read as 0-5 the same export is out of range (a 6), not silently accepted.
    with pytest.raises(InputError, match="out of range"):
        score_items(shifted.assign(meq30_01=6), "meq30", response_scale=(0, 5))
    # And a 0 in a declared 1-6 export is out of range too.
    with pytest.raises(InputError, match="out of range"):
        score_items(shifted.assign(meq30_01=0), "meq30", response_scale=(1, 6))


def test_response_scale_must_be_declared_and_compatible(tmp_path):
    table = wide("meq30_", np.zeros((1, 30)))
    with pytest.raises(InputError, match="not declared") as err:
        score_items(table, "meq30")
    assert "ResponseScale" in str(err.value)
    with pytest.raises(InputError, match="refusing to rescale"):
        score_items(table, "meq30", response_scale=(0, 4))
    path = tmp_path / "meq30.tsv"
    table.to_csv(path, sep="\t", index=False)
    path.with_suffix(".json").write_text(json.dumps({"ResponseScale": {"min": 1, "max": 6}}))
    with pytest.raises(InputError, match="contradicts") as err:
        score_items(path, "meq30", response_scale=(0, 5))
    assert_located(err.value, file=str(path))


# --- depression scales -----------------------------------------------------------------------------


def test_madrs_total_and_snaith_bands_at_boundaries():
    totals = [0, 6, 7, 19, 20, 34, 35, 60]
    answers = np.zeros((len(totals), 10))
    for row, total in enumerate(totals):  # spread the total over items, each <= 6
        answers[row, : total // 6] = 6
        if total % 6:
            answers[row, total // 6] = total % 6
    scores = score_items(wide("madrs_", answers), "madrs", response_scale=(0, 6)).scores
    assert scores["madrs_total"].tolist() == totals
    assert scores["madrs_severity"].astype(str).tolist() == [
        "normal",
        "normal",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "severe",
        "severe",
    ]


def test_hamd17_item_ranges_item16_not_assessed_and_maximum_52():
    item_max = [4, 4, 4, 2, 2, 2, 4, 4, 4, 4, 4, 2, 2, 2, 4, 2, 2]  # CamCOPS / Hamilton 1960
    at_max = np.array(item_max, dtype=float)
    not_assessed = at_max.copy()
    not_assessed[15] = 3  # item 16 = 3: valid, not scored
    table = wide("hamd_", [at_max, not_assessed])
    table["hamd_18"] = [1, 2]  # items 18-21 may be present; never in the total
    scores = score_items(table, "hamd17", response_scale=(0, 4)).scores
    assert scores["hamd_total"].tolist() == [52, 50]
    assert scores["hamd_severity"].astype(str).tolist() == ["very severe", "very severe"]
    for item, bad in ((4, 3), (17, 3), (1, 5)):
        answers = np.zeros(17)
        answers[item - 1] = bad
        with pytest.raises(InputError, match="out of range") as err:
            score_items(wide("hamd_", [answers]), "hamd17", response_scale=(0, 4))
        assert_located(err.value, row=1, subject="sub-00", session="ses-0", item=f"hamd_{item:02d}")


REF_HAMD17_ITEM_MAX = [4, 4, 4, 2, 2, 2, 4, 4, 4, 4, 4, 2, 2, 2, 4, 2, 2]  # scoring_keys.md, CamCOPS


def test_hamd17_proration_respects_item_ranges_planted_maximum():
    """Every answer at its item's maximum, the 0–2 items 4, 5, 6 missing (3 of 17 ≤ 20 %): the old rule
    (mean × 17) gave 46 × 17 / 14 = 55.86 > 52; the range-weighted rule gives 52, the scale maximum."""
    answers = np.array(REF_HAMD17_ITEM_MAX, dtype=float)
    answers[[3, 4, 5]] = np.nan
    assert np.nansum(answers) * 17 / 14 == pytest.approx(55.857, abs=1e-3)  # the reported bug
    result = score_items(
        wide("hamd_", [answers]), "hamd17", response_scale=(0, 4), missing="prorate", max_missing_fraction=0.2
    )
    assert result.scores.loc[0, "hamd_total"] == 52
    assert result.n_prorated == 1
    # Half of every answered item's range, 0-4 items 1 and 2 missing: 21 of 44 possible -> 21 × 52/44.
    half = np.array(REF_HAMD17_ITEM_MAX, dtype=float) / 2
    half[[0, 1]] = np.nan
    prorated = score_items(
        wide("hamd_", [half]), "hamd17", response_scale=(0, 4), missing="prorate", max_missing_fraction=0.2
    ).scores.loc[0, "hamd_total"]
    assert prorated == pytest.approx(26.0)  # half of 52, as it should be; mean × 17 gave 23.8
    # All zero with items missing stays 0.
    zero = np.zeros(17)
    zero[[6, 7]] = np.nan
    assert (
        score_items(
            wide("hamd_", [zero]), "hamd17", response_scale=(0, 4), missing="prorate", max_missing_fraction=0.2
        ).scores.loc[0, "hamd_total"]
        == 0
    )


def test_hamd17_proration_property_random_patterns():
    """5000 random answer patterns (each item uniform over its own range, 0–3 items missing): every
    prorated total lies in [0, 52], equals the independent formula observed × 52 / (maximum of the
    answered items), equals the plain sum when nothing is missing, and is NaN beyond the limit."""
    rng = np.random.default_rng(20261206)
    item_max = np.array(REF_HAMD17_ITEM_MAX, dtype=float)
    n = 5000
    answers = np.floor(rng.uniform(0, 1, (n, 17)) * (item_max + 1))
    # Push a third of the rows to the extremes, where the old rule overflowed.
    answers[: n // 3] = np.where(rng.uniform(size=(n // 3, 17)) < 0.8, item_max, answers[: n // 3])
    n_missing = rng.integers(0, 5, n)  # 4 missing (23.5 %) exceeds the 20 % limit
    for i, m in enumerate(n_missing):
        answers[i, rng.choice(17, m, replace=False)] = np.nan
    result = score_items(
        wide("hamd_", answers), "hamd17", response_scale=(0, 4), missing="prorate", max_missing_fraction=0.2
    )
    total = result.scores["hamd_total"].to_numpy(dtype=float)
    answered = ~np.isnan(answers)
    expected = np.nansum(answers, axis=1) * 52 / (answered * item_max).sum(axis=1)
    ok = n_missing <= 3
    assert np.isnan(total[~ok]).all()
    assert (total[ok] >= 0).all() and (total[ok] <= 52).all()
    np.testing.assert_allclose(total[ok], expected[ok], rtol=1e-12)
    complete = n_missing == 0
    np.testing.assert_array_equal(total[complete], np.nansum(answers[complete], axis=1))
    # The old rule (mean × 17) exceeded 52 on some of these rows; the new one reaches 52 exactly there.
    old = np.nanmean(answers, axis=1) * 17
    assert (old[ok] > 52).any()
    assert total[ok].max() == 52
    assert result.n_prorated == int((ok & ~complete).sum())


@pytest.mark.parametrize(
    "total,band",
    [
        (7, "none"),
        (8, "mild"),
        (13, "mild"),
        (14, "moderate"),
        (18, "moderate"),
        (19, "severe"),
        (22, "severe"),
        (23, "very severe"),
    ],
)
def test_hamd17_bands(total, band):
    answers = np.zeros(17)
    four_point = [0, 1, 2, 6, 7, 8, 9, 10, 14]  # items rated 0-4 (0-based)
    remaining = total
    for j in four_point:
        answers[j] = min(4, remaining)
        remaining -= answers[j]
    assert remaining == 0
    scores = score_items(wide("hamd_", [answers]), "hamd17", response_scale=(0, 4)).scores
    assert scores.loc[0, "hamd_total"] == total
    assert scores.loc[0, "hamd_severity"] == band


def test_qids_domain_maxima_hand_worked():
    items = {1: 1, 2: 3, 3: 0, 4: 2, 5: 2, 6: 0, 7: 2, 8: 0, 9: 1, 10: 1, 11: 0, 12: 1, 13: 2, 14: 3, 15: 1, 16: 0}
    answers = [items[i] for i in range(1, 17)]
    scores = score_items(wide("qids_", [answers, [3] * 16]), "qids_sr16", response_scale=(0, 3)).scores
    # sleep max(1,3,0,2)=3, mood 2, appetite max(0,2,0,1)=2, concentration 1, self-view 0,
    # suicide 1, interest 2, energy 3, psychomotor max(1,0)=1 -> 15 (a plain item sum gives 19).
    assert scores.loc[0, "qids_sleep"] == 3 and scores.loc[0, "qids_appetite_weight"] == 2
    assert scores.loc[0, "qids_psychomotor"] == 1
    assert scores.loc[0, "qids_total"] == 15 and sum(answers) == 19
    assert scores.loc[0, "qids_severity"] == "moderate"
    assert scores.loc[1, "qids_total"] == 27 and scores.loc[1, "qids_severity"] == "very severe"


def test_bdi_total_and_bands():
    totals = [13, 14, 19, 20, 28, 29, 63]
    answers = np.zeros((len(totals), 21))
    for row, total in enumerate(totals):
        answers[row, : total // 3] = 3
        if total % 3:
            answers[row, total // 3] = total % 3
    scores = score_items(wide("bdi_", answers), "bdi_ii", response_scale=(0, 3)).scores
    assert scores["bdi_total"].tolist() == totals
    assert scores["bdi_severity"].astype(str).tolist() == [
        "minimal",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "severe",
        "severe",
    ]


# --- long format and files ---------------------------------------------------------------------------


def to_long(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    keys = [c for c in ("participant_id", "session_id", "timepoint") if c in table]
    return table.melt(id_vars=keys, var_name="item", value_name="value").sort_values(keys)


def test_long_format_equals_wide_including_item_numbers():
    rng = np.random.default_rng(4)
    table = wide(
        "madrs_",
        rng.integers(0, 7, size=(6, 10)),
        subjects=["sub-01"] * 3 + ["sub-02"] * 3,
        sessions=["ses-a"] * 6,
        timepoints=["baseline", "24h", "7d"] * 2,
    )
    reference = score_items(table, "madrs", response_scale=(0, 6)).scores
    long = to_long(table, "madrs_")
    from_long = score_items(long, "madrs", response_scale=(0, 6)).scores
    merged = reference.merge(from_long, on=["participant_id", "session_id", "timepoint"])
    assert len(merged) == 6
    np.testing.assert_array_equal(merged["madrs_total_x"], merged["madrs_total_y"])
    numbered = long.assign(item=long["item"].str[-2:].astype(int))
    from_numbers = score_items(numbered, "madrs", response_scale=(0, 6)).scores
    assert sorted(from_numbers["madrs_total"]) == sorted(reference["madrs_total"])


def test_long_format_errors_name_the_long_row(tmp_path):
    table = wide("madrs_", np.ones((2, 10)), timepoints=["baseline", "baseline"])
    long = to_long(table, "madrs_").reset_index(drop=True)
    long.loc[13, "value"] = 9  # data row 14 of the file: sub-01, item madrs_04
    path = tmp_path / "madrs_long.tsv"
    long.to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="out of range") as err:
        score_items(path, "madrs", response_scale=(0, 6))
    assert_located(
        err.value,
        file=str(path),
        row=14,
        subject=long.loc[13, "participant_id"],
        session=long.loc[13, "session_id"],
        item=long.loc[13, "item"],
    )
    duplicated = pd.concat([long.iloc[:5], long.iloc[[2]]], ignore_index=True)
    with pytest.raises(InputError, match="duplicate") as err:
        score_items(duplicated, "madrs", response_scale=(0, 6))
    assert_located(err.value, row=6, subject=long.loc[2, "participant_id"])
    unknown = long.assign(item=long["item"].replace("madrs_10", "madrs_11"))
    with pytest.raises(InputError, match="unknown item") as err:
        score_items(unknown, "madrs", response_scale=(0, 6))
    assert err.value.item == "madrs_11"


def test_read_phenotype_table_missing_tokens_ids_as_text_and_rows(tmp_path):
    path = tmp_path / "madrs.tsv"
    header = "participant_id\tsession_id\ttimepoint\t" + "\t".join(cols("madrs_", 10))
    lines = [
        header,
        "01\tses-ket05\tbaseline\t" + "\t".join(["1"] * 9 + ["n/a"]),
        "02\tses-ket05\tbaseline\t" + "\t".join(["2"] * 9 + ["NA"]),
        "03\tses-ket05\tbaseline\t" + "\t".join(["3"] * 9 + [""]),
    ]
    path.write_text("\n".join(lines) + "\n")
    table = read_phenotype_table(path)
    assert table["participant_id"].tolist() == ["01", "02", "03"]
    assert table.index.name == "row" and table.index.tolist() == [1, 2, 3]
    assert table["madrs_10"].isna().all()
    assert pd.api.types.is_numeric_dtype(table["madrs_01"])
    assert table.attrs["source"] == str(path) and table.attrs["sidecar"] == {}
    csv = tmp_path / "madrs.csv"
    table.reset_index(drop=True).to_csv(csv, index=False, na_rep="NA")
    assert read_phenotype_table(csv)["madrs_10"].isna().all()


# --- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
def meq_file(tmp_path):
    rng = np.random.default_rng(5)
    table = wide(
        "meq30_",
        rng.integers(0, 6, size=(4, 30)),
        subjects=["sub-01", "sub-02", "sub-03", "sub-04"],
        sessions=["ses-ket05"] * 4,
    )
    path = tmp_path / "phenotype" / "meq30.tsv"
    path.parent.mkdir()
    path.with_suffix(".json").write_text(json.dumps({"ResponseScale": {"min": 0, "max": 5}}))

    def write(t: pd.DataFrame):
        t.to_csv(path, sep="\t", index=False, na_rep="n/a")
        return path

    return table, write


def test_non_numeric_answer_named(meq_file):
    table, write = meq_file
    table = table.astype({"meq30_07": object})
    table.loc[2, "meq30_07"] = "strong"
    path = write(table)
    with pytest.raises(InputError, match="non-numeric") as err:
        score_items(path, "meq30")
    assert_located(err.value, file=str(path), row=3, subject="sub-03", session="ses-ket05", item="meq30_07")
    assert "'strong'" in str(err.value)


def test_out_of_range_answer_named_with_others_listed(meq_file):
    table, write = meq_file
    table.loc[1, "meq30_12"] = 7
    table.loc[3, "meq30_01"] = -1
    path = write(table)
    with pytest.raises(InputError, match="out of range") as err:
        score_items(path, "meq30")
    assert_located(err.value, file=str(path), row=2, subject="sub-02", session="ses-ket05", item="meq30_12")
    assert "2 cell(s)" in str(err.value) and "row 4" in str(err.value)


def test_non_integer_answer_on_likert_scale(meq_file):
    table, write = meq_file
    table.loc[0, "meq30_30"] = 2.5
    with pytest.raises(InputError, match="whole number") as err:
        score_items(write(table), "meq30")
    assert_located(err.value, row=1, subject="sub-01", item="meq30_30")


def test_duplicate_subject_session_rows(meq_file):
    table, write = meq_file
    table.loc[3, "participant_id"] = "sub-02"
    path = write(table)
    with pytest.raises(InputError, match="duplicate") as err:
        score_items(path, "meq30")
    assert_located(err.value, file=str(path), row=4, subject="sub-02", session="ses-ket05")
    assert "rows 2, 4" in str(err.value)


def test_subject_absent_from_participants(meq_file, tmp_path):
    table, write = meq_file
    path = write(table)
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\nsub-01\t30\nsub-02\t41\nsub-04\t35\n")
    with pytest.raises(InputError, match="participants") as err:
        score_items(path, "meq30", participants=participants)
    assert_located(err.value, file=str(path), row=3, subject="sub-03", session="ses-ket05")
    ok = score_items(path, "meq30", participants=["sub-01", "sub-02", "sub-03", "sub-04"])
    assert len(ok.scores) == 4


def test_wrong_item_count(meq_file):
    table, write = meq_file
    path = write(table.drop(columns="meq30_17"))
    with pytest.raises(InputError, match="wrong item count") as err:
        score_items(path, "meq30")
    assert_located(err.value, file=str(path), item="meq30_17")
    assert "found 29" in str(err.value)
    with pytest.raises(InputError, match="unexpected meq30_31"):
        score_items(write(table.assign(meq30_31=1)), "meq30")


def test_missing_key_and_numeric_ids_rejected(meq_file):
    table, write = meq_file
    # No session_id: a per-participant table (parallel trials have no sessions) is keyed by participant alone,
    # so a participant appearing twice is a duplicate, not two sessions.
    per_subject = score_items(table.drop(columns="session_id"), "meq30", response_scale=(0, 5)).scores
    assert "session_id" not in per_subject and len(per_subject) == 4
    twice = table.drop(columns="session_id").assign(participant_id=["sub-01", "sub-01", "sub-02", "sub-03"])
    with pytest.raises(InputError, match="duplicate"):
        score_items(twice, "meq30", response_scale=(0, 5))
    with pytest.raises(InputError, match="participant_id"):
        score_items(table.drop(columns="participant_id"), "meq30", response_scale=(0, 5))
    # Numeric IDs from a spreadsheet become BIDS labels, padded like participants.tsv when it is given.
    numeric = score_items(table.assign(participant_id=[1, 2, 3, 4]), "meq30", response_scale=(0, 5)).scores
    assert list(numeric["participant_id"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    padded = score_items(
        table.assign(participant_id=[1.0, 2.0, 3.0, 4.0]),
        "meq30",
        response_scale=(0, 5),
        participants=["sub-001", "sub-002", "sub-003", "sub-004"],
    ).scores
    assert list(padded["participant_id"]) == ["sub-001", "sub-002", "sub-003", "sub-004"]
    table.loc[1, "session_id"] = None
    with pytest.raises(InputError, match="missing session_id") as err:
        score_items(write(table), "meq30")
    assert_located(err.value, row=2, subject="sub-02")


# --- missing-item rules ---------------------------------------------------------------------------


def test_missing_none_gives_nan_and_counts():
    answers = np.full((3, 30), 3.0)
    answers[0, 2] = np.nan  # item 3: ineffability (and total)
    answers[1, [3, 4]] = np.nan  # items 4, 5: mystical (and total)
    result = score_items(wide("meq30_", answers), "meq30", response_scale=(0, 5))
    s = result.scores
    assert np.isnan(s.loc[0, "meq30_ineffability"]) and np.isnan(s.loc[0, "meq30_total"])
    assert s.loc[0, "meq30_mystical"] == 3
    assert pd.isna(s.loc[0, "meq30_complete_mystical"]) and s.loc[2, "meq30_complete_mystical"]
    assert result.n_missing_scores == 4 and result.n_prorated == 0
    assert result.n_scores == 3 * 5
    assert s.attrs["n_missing_scores"] == 4


def test_prorate_up_to_limit_per_subscale():
    answers = np.full((2, 30), 4.0)
    answers[:, 3] = 1.0  # mystical: 14 × 4 + 1 (item 4)
    answers[0, 2] = np.nan  # 1 of 3 ineffability items missing (33 %)
    answers[1, [3, 4]] = np.nan  # 2 of 15 mystical items missing (13 %)
    strict = score_items(
        wide("meq30_", answers), "meq30", response_scale=(0, 5), missing="prorate", max_missing_fraction=0.2
    )
    s = strict.scores
    assert np.isnan(s.loc[0, "meq30_ineffability"])  # 33 % > 20 %: no score
    assert s.loc[0, "meq30_total"] == pytest.approx((28 * 4 + 1) / 29)
    assert s.loc[1, "meq30_mystical"] == 4  # mean of the 13 answered items
    # prorated: row 0 total; row 1 mystical and total. Missing: row 0 ineffability.
    assert strict.n_prorated == 3 and strict.n_missing_scores == 1
    by_score = strict.missing_by_score.set_index("score")
    assert by_score.loc["meq30_total", "n_prorated"] == 2
    lenient = score_items(
        wide("meq30_", answers), "meq30", response_scale=(0, 5), missing="prorate", max_missing_fraction=1 / 3
    )
    assert lenient.scores.loc[0, "meq30_ineffability"] == 4 and lenient.n_prorated == 4
    with pytest.raises(ValueError, match="max_missing_fraction"):
        score_items(wide("meq30_", answers), "meq30", response_scale=(0, 5), missing="prorate")


def test_prorated_sum_and_qids_total():
    madrs = np.full((1, 10), 2.0)
    madrs[0, 9] = np.nan
    result = score_items(
        wide("madrs_", madrs), "madrs", response_scale=(0, 6), missing="prorate", max_missing_fraction=0.1
    )
    assert result.scores.loc[0, "madrs_total"] == pytest.approx(20.0)  # 18 × 10/9
    qids = np.full((1, 16), 1.0)
    qids[0, 0] = np.nan  # one sleep item: the domain is the max of the others
    strict = score_items(wide("qids_", qids), "qids_sr16", response_scale=(0, 3))
    assert np.isnan(strict.scores.loc[0, "qids_total"]) and strict.n_missing_scores == 2
    prorated = score_items(
        wide("qids_", qids), "qids_sr16", response_scale=(0, 3), missing="prorate", max_missing_fraction=0.25
    )
    assert prorated.scores.loc[0, "qids_sleep"] == 1 and prorated.scores.loc[0, "qids_total"] == 9
    assert prorated.n_prorated == 2  # the sleep domain and the total


# --- scale-level input -------------------------------------------------------------------------


def test_scored_table_is_validated_and_completed(tmp_path):
    table = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "session_id": ["ses-a", "ses-a"],
            "meq30_mystical": [3.0, 4.5],
            "meq30_positive_mood": [3.0, 2.0],
            "meq30_transcendence": [3.5, 4.0],
            "meq30_ineffability": [4.0, 5.0],
        }
    )
    result = read_scored_table(table, "meq30")
    assert result.scores["meq30_complete_mystical"].tolist() == [True, False]
    assert result.scores.loc[1, "meq30_mystical_pct_max"] == pytest.approx(90)
    path = tmp_path / "meq30_scored.tsv"
    table.assign(meq30_mystical=[3.0, 5.5]).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="score out of range") as err:
        read_scored_table(path, "meq30")
    assert_located(err.value, file=str(path), row=2, subject="sub-02", session="ses-a", item="meq30_mystical")
    madrs = pd.DataFrame(
        {"participant_id": ["sub-01"], "session_id": ["ses-a"], "timepoint": ["24h"], "madrs_total": [19]}
    )
    assert read_scored_table(madrs, "madrs").scores.loc[0, "madrs_severity"] == "mild"
    with pytest.raises(InputError, match="no madrs score columns"):
        read_scored_table(madrs.rename(columns={"madrs_total": "MADRS"}), "madrs")


REF_QIDS_DOMAINS = {
    "sleep": [1, 2, 3, 4],
    "sad_mood": [5],
    "appetite_weight": [6, 7, 8, 9],
    "concentration": [10],
    "self_view": [11],
    "suicidal_ideation": [12],
    "interest": [13],
    "energy": [14],
    "psychomotor": [15, 16],
}


def test_qids_each_item_feeds_its_domain_maximum():
    # Row i: item i+1 = 3, every other item 1. Its domain becomes 3 (a maximum), the others 1.
    answers = np.ones((16, 16)) + 2 * np.eye(16)
    scores = score_items(wide("qids_", answers), "qids_sr16", response_scale=(0, 3)).scores
    for domain, items in REF_QIDS_DOMAINS.items():
        expected = [3.0 if i in items else 1.0 for i in range(1, 17)]
        assert scores[f"qids_{domain}"].tolist() == expected, domain
    assert (scores["qids_total"] == 11).all()  # eight domains at 1 and one at 3


def test_bdi_items_16_and_18_accept_lettered_options():
    """BDI-II items 16 and 18 are answered 0, 1a, 1b, 2a, 2b, 3a, 3b (Beck 1996): the digit is the score."""
    import pandas as pd

    from pipelines.core.errors import InputError
    from pipelines.phenotype.questionnaires import score_items

    items = {f"bdi_{i:02d}": 1 for i in range(1, 22)}
    row = {"participant_id": "sub-01", "session_id": "ses-a", **items, "bdi_16": "2b", "bdi_18": "3a"}
    result = score_items(pd.DataFrame([row]), "bdi_ii", response_scale=(0, 3))
    total = [c for c in result.scores.columns if c.endswith("total")][0]
    assert result.scores[total].iloc[0] == 19 + 2 + 3
    bad = {**row, "bdi_05": "2a"}  # only items 16 and 18 have lettered options
    with pytest.raises(InputError, match="non-numeric"):
        score_items(pd.DataFrame([bad]), "bdi_ii", response_scale=(0, 3))


def test_a_table_coded_one_higher_than_declared_is_flagged():
    """1-6 coded MEQ30 read as 0-5 where nobody answered 6: every range check passes, scores shift by +1."""
    import warnings as _warnings

    from pipelines.phenotype.questionnaires import ResponseScaleWarning

    rng = np.random.default_rng(11)
    coded_0_5 = rng.integers(0, 5, size=(12, 30))  # answers 0-4: nobody used the top answer
    subjects = [f"sub-{i:02d}" for i in range(1, 13)]
    shifted = wide("meq30_", coded_0_5 + 1, subjects=subjects, sessions=["ses-ket05"] * 12)
    with pytest.warns(ResponseScaleWarning, match="no answer is ever 0, the declared minimum"):
        score_items(shifted, "meq30", response_scale=(0, 5))
    full = wide(
        "meq30_",
        np.vstack([coded_0_5, np.full((1, 30), 5), np.zeros((1, 30))]),
        subjects=subjects + ["sub-13", "sub-14"],
        sessions=["ses-ket05"] * 14,
    )
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", ResponseScaleWarning)
        score_items(full, "meq30", response_scale=(0, 5))  # both ends used: no warning
    with pytest.warns(ResponseScaleWarning, match="no answer ever reaches an item's declared maximum"):
        score_items(
            wide("meq30_", coded_0_5, subjects=subjects, sessions=["ses-ket05"] * 12), "meq30", response_scale=(0, 5)
        )


def test_unused_columns_are_reported_not_dropped_silently():
    from pipelines.phenotype.questionnaires import UnusedColumnWarning

    table = wide("meq30_", np.full((3, 30), 2), subjects=["sub-01", "sub-02", "sub-03"], sessions=["ses-a"] * 3)
    with pytest.warns(UnusedColumnWarning, match=r"\['meq30_mean_precomputed'\]"):
        score_items(table.assign(meq30_mean_precomputed=2.0), "meq30", response_scale=(0, 5))
