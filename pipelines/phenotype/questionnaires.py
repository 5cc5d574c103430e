"""Questionnaire scoring: peak experience (MEQ30, 5D-ASC, 11D-ASC) and depression (MADRS, HAM-D17,
QIDS-SR16, BDI-II).

Every scoring key lives here, once, as a module-level constant with its source. The keys follow
``shared/reference/scoring_keys.md`` (item lists checked against the primary papers it names).

Input is an item-level table (BIDS ``phenotype/`` TSV + JSON sidecar, or CSV; wide = one column per
item, or long = ``participant_id, session_id[, timepoint], item, value``) or an already-scored
scale-level table. The response scale of item-level data is declared (argument or sidecar
``"ResponseScale": {"min": 0, "max": 5}``), never guessed; a declared scale that is the key's shifted
by a constant (e.g. a 1–6 MEQ30 export) is converted by that offset. Bad input raises
:class:`pipelines.core.errors.InputError` naming file, row (1-based data row of the file), subject,
session and item. Missing answers follow an explicit rule (``missing="none"`` or ``"prorate"``) and
the result counts every score the rule touched. Scoring is vectorised over rows (numpy); the only
Python loops run over columns or scores, never over participants.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError

__all__ = [
    "ASC11D_FACTORS",
    "ASC5D_DIMENSIONS",
    "ASC5D_FACTORS",
    "BDI_SEVERITY",
    "HAMD17_ITEM_MAX",
    "HAMD17_SEVERITY",
    "MADRS_SEVERITY",
    "MEQ30_COMPLETE_MYSTICAL_PCT",
    "MEQ30_SUBSCALES",
    "QIDS_DOMAINS",
    "QIDS_SEVERITY",
    "REMISSION_ALTERNATIVES",
    "REMISSION_THRESHOLDS",
    "RESPONSE_MIN_REDUCTION",
    "RemissionThresholdWarning",
    "SCALES",
    "ScaleKey",
    "ScoringResult",
    "read_phenotype_table",
    "read_scored_table",
    "remission_threshold",
    "score_items",
]

ID_COLUMNS = ("participant_id", "session_id", "timepoint")
# BIDS writes "n/a"; spreadsheets and R write "" and "NA". Nothing else counts as missing.
MISSING_TOKENS = ("n/a", "NA", "")
MissingRule = Literal["none", "prorate"]

# ---------------------------------------------------------------------------------------------
# Scoring keys (item numbers are 1-based, in the order administered)
# ---------------------------------------------------------------------------------------------

# MEQ30: MacLean, Leoutsakos, Johnson & Griffiths 2012 (J Sci Study Relig 51:721); subscale lists
# from Barrett, Johnson & Griffiths 2015 (J Psychopharmacol 29:1182), appendix. Items rated 0–5.
MEQ30_SUBSCALES: dict[str, tuple[int, ...]] = {
    "mystical": (4, 5, 6, 9, 14, 15, 16, 18, 20, 21, 23, 24, 25, 26, 28),
    "positive_mood": (2, 8, 12, 17, 27, 30),
    "transcendence": (1, 7, 11, 13, 19, 22),
    "ineffability": (3, 10, 29),
}
# "Complete" mystical experience: >= 60 % of the maximum on every subscale (Barrett et al. 2015).
MEQ30_COMPLETE_MYSTICAL_PCT = 60.0

# 5D-ASC, 94 items, visual analogue 0–100: five dimensions (Dittrich 1998, Pharmacopsychiatry 31
# Suppl 2:80), numbered as in the 94-item questionnaire.
ASC5D_DIMENSIONS: dict[str, tuple[int, ...]] = {
    "obn": (
        1,
        3,
        9,
        12,
        16,
        18,
        26,
        34,
        35,
        36,
        40,
        41,
        42,
        45,
        50,
        52,
        57,
        62,
        63,
        69,
        71,
        73,
        81,
        86,
        87,
        91,
        94,
    ),  # oceanic boundlessness
    "ded": (6, 8, 21, 27, 32, 38, 43, 44, 46, 47, 53, 56, 60, 64, 67, 78, 79, 80, 85, 88, 89),
    # dread of ego dissolution (anxious ego dissolution, AED)
    "vrs": (7, 14, 20, 22, 23, 28, 31, 33, 39, 54, 58, 70, 72, 75, 77, 82, 83, 90),
    # visionary restructuralization
    "aua": (4, 5, 11, 13, 19, 25, 30, 48, 49, 55, 65, 66, 74, 76, 92, 93),  # auditory alterations
    "vir": (2, 10, 15, 17, 24, 29, 37, 51, 59, 61, 68, 84),  # vigilance reduction
}
# Eleven lower-order factors of the 94-item 5D-ASC (Studerus, Gamma & Vollenweider 2010, PLoS ONE
# 5:e12412, table 3). Complex imagery is 39, 72, 82: a circulating implementation uses 39, 79, 82,
# but 79 is a DED item and is not in the factor.
ASC5D_FACTORS: dict[str, tuple[int, ...]] = {
    "unity": (18, 34, 41, 42, 52),
    "spiritual": (9, 81, 94),
    "bliss": (12, 86, 91),
    "insight": (50, 69, 77),
    "disembodiment": (26, 62, 63),
    "impaired_control": (8, 27, 38, 47, 64, 67, 78),
    "anxiety": (32, 43, 44, 46, 56, 89),
    "complex_imagery": (39, 72, 82),
    "elementary_imagery": (14, 22, 33),
    "synesthesia": (20, 23, 75),
    "changed_meaning": (28, 31, 54),
}
# Stand-alone 43-item 11D-ASC (Studerus et al. 2010 factors; numbering of the 43-item version used
# by the Johns Hopkins BPRU questionnaire library). Item 43 (overall intensity) is in no factor.
ASC11D_FACTORS: dict[str, tuple[int, ...]] = {
    "unity": (5, 15, 18, 19, 25),
    "spiritual": (2, 37, 42),
    "bliss": (3, 39, 41),
    "insight": (24, 32, 35),
    "disembodiment": (9, 28, 29),
    "impaired_control": (1, 10, 16, 23, 30, 31, 36),
    "anxiety": (13, 20, 21, 22, 27, 40),
    "complex_imagery": (17, 33, 38),
    "elementary_imagery": (4, 7, 14),
    "synesthesia": (6, 8, 34),
    "changed_meaning": (11, 12, 26),
}

# Severity bands as (lowest total of the band, label). A (prorated) total falls in the highest band
# whose lower bound it reaches, so 6.5 on MADRS is still "normal".
# MADRS: Montgomery & Åsberg 1979 (Br J Psychiatry 134:382), 10 items 0–6; bands Snaith et al. 1986.
MADRS_SEVERITY: tuple[tuple[float, str], ...] = ((0, "normal"), (7, "mild"), (20, "moderate"), (35, "severe"))
# HAM-D17: Hamilton 1960 (J Neurol Neurosurg Psychiatry 23:56), item ranges and bands as in CamCOPS
# (server/camcops_server/tasks/hamd.py). Items 1,2,3,7,8,9,10,11,15 rated 0–4; 4,5,6,12,13,14,16,17
# rated 0–2; item 16 (weight loss, A by history or B measured) may be 3 = "not assessed", which is
# not scored (Guy 1976, ECDEU manual). Items 18–21 are not in the 17-item total. Maximum 52.
HAMD17_ITEM_MAX: tuple[int, ...] = (4, 4, 4, 2, 2, 2, 4, 4, 4, 4, 4, 2, 2, 2, 4, 2, 2)
HAMD17_NOT_ASSESSED: dict[int, float] = {16: 3}
HAMD17_SEVERITY: tuple[tuple[float, str], ...] = (
    (0, "none"),
    (8, "mild"),
    (14, "moderate"),
    (19, "severe"),
    (23, "very severe"),
)
# QIDS-SR16: Rush et al. 2003 (Biol Psychiatry 54:573), 16 items 0–3; total 0–27 = sum of nine
# domains, three of which are the maximum of their items.
QIDS_DOMAINS: dict[str, tuple[int, ...]] = {
    "sleep": (1, 2, 3, 4),
    "sad_mood": (5,),
    "appetite_weight": (6, 7, 8, 9),
    "concentration": (10,),
    "self_view": (11,),
    "suicidal_ideation": (12,),
    "interest": (13,),
    "energy": (14,),
    "psychomotor": (15, 16),
}
QIDS_SEVERITY: tuple[tuple[float, str], ...] = (
    (0, "none"),
    (6, "mild"),
    (11, "moderate"),
    (16, "severe"),
    (21, "very severe"),
)
# BDI-II: Beck, Steer & Brown 1996 (manual), 21 items 0–3, total 0–63.
BDI_SEVERITY: tuple[tuple[float, str], ...] = ((0, "minimal"), (14, "mild"), (20, "moderate"), (29, "severe"))

# Outcome definitions (used by pipelines.phenotype.mood): response = at least 50 % reduction from baseline
# (inclusive); remission = total AT OR BELOW the threshold (inclusive "≤"; a "< 10" definition is
# remission_threshold=9). Per-scale defaults, each the scale's own published cut-off:
# - MADRS ≤ 10: Hawley, Gale & Sivakumaran 2002 (J Affect Disord 72:177) and most ketamine trials;
#   ≤ 12 in some (scoring_keys.md), "< 10" (= ≤ 9) in others: both accepted without a warning.
# - HAM-D17 ≤ 7: Frank et al. 1991 (Arch Gen Psychiatry 48:851); scoring_keys.md. The top of the
#   "none" band (0–7).
# - QIDS-SR16 ≤ 5: Rush et al. 2003 (Biol Psychiatry 54:573); scoring_keys.md. Top of "none" (0–5).
# - BDI-II ≤ 13: not in scoring_keys.md; the workbench uses the top of the manual's "minimal" band
#   (0–13; Beck, Steer & Brown 1996), the same rule that gives HAM-D17 ≤ 7 and QIDS-SR16 ≤ 5. A
#   convention, not a validated remission cut-off: give remission_threshold to use another.
RESPONSE_MIN_REDUCTION = 0.5
REMISSION_THRESHOLDS: dict[str, float] = {"madrs_total": 10, "hamd_total": 7, "qids_total": 5, "bdi_total": 13}
# Other published cut-offs accepted without a warning (see above).
REMISSION_ALTERNATIVES: dict[str, tuple[float, ...]] = {"madrs_total": (9, 12)}


class RemissionThresholdWarning(UserWarning):
    """An explicit remission threshold that is not its scale's published cut-off."""


# ---------------------------------------------------------------------------------------------
# Scale definitions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemScore:
    """One score computed from items: ``rule`` is "mean", "sum" or "max" of ``items`` (1-based)."""

    items: tuple[int, ...]
    rule: Literal["mean", "sum", "max"]


@dataclass(frozen=True)
class ScaleKey:
    """Everything needed to validate and score one questionnaire.

    ``item_max`` is per item (key coordinates, minimum ``item_min``). ``not_scored`` maps an item to
    a valid answer that contributes 0 (HAM-D item 16 = 3). ``ignored_items`` may be present in a
    table and are neither validated nor scored. ``domain_total`` (QIDS) makes the total the sum of
    those item scores instead of an item score of its own. ``severity`` bands apply to ``total``.
    """

    name: str
    item_prefix: str
    n_items: int
    item_min: float
    item_max: tuple[float, ...]
    integer_items: bool
    item_scores: Mapping[str, ItemScore]
    domain_total: tuple[str, ...] | None = None
    not_scored: Mapping[int, float] = field(default_factory=dict)
    ignored_items: tuple[int, ...] = ()
    severity: tuple[tuple[float, str], ...] | None = None

    @property
    def item_columns(self) -> list[str]:
        return [self.item_column(i) for i in range(1, self.n_items + 1)]

    def item_column(self, number: int) -> str:
        return f"{self.item_prefix}{number:02d}"

    def score_column(self, score: str) -> str:
        return f"{self.item_prefix}{score}"

    @property
    def score_columns(self) -> list[str]:
        names = list(self.item_scores)
        if self.domain_total is not None:
            names.append("total")
        return [self.score_column(s) for s in names]

    def score_range(self, score: str) -> tuple[float, float]:
        """Smallest and largest possible value of a score (for checking scale-level tables)."""
        if score == "total" and self.domain_total is not None:
            lows, highs = zip(*(self.score_range(d) for d in self.domain_total))
            return float(sum(lows)), float(sum(highs))
        spec = self.item_scores[score]
        highs = [self.item_max[i - 1] for i in spec.items]
        if spec.rule == "sum":
            return self.item_min * len(spec.items), float(sum(highs))
        return float(self.item_min), float(max(highs))


def _sum_scale(name, prefix, n_items, item_max, severity, **kwargs) -> ScaleKey:
    return ScaleKey(
        name=name,
        item_prefix=prefix,
        n_items=n_items,
        item_min=0,
        item_max=tuple(float(m) for m in item_max),
        integer_items=True,
        item_scores={"total": ItemScore(tuple(range(1, n_items + 1)), "sum")},
        severity=severity,
        **kwargs,
    )


SCALES: dict[str, ScaleKey] = {
    "meq30": ScaleKey(
        name="meq30",
        item_prefix="meq30_",
        n_items=30,
        item_min=0,
        item_max=(5.0,) * 30,
        integer_items=True,
        item_scores={
            **{k: ItemScore(v, "mean") for k, v in MEQ30_SUBSCALES.items()},
            "total": ItemScore(tuple(range(1, 31)), "mean"),
        },
    ),
    "asc5d": ScaleKey(
        name="asc5d",
        item_prefix="asc5d_",
        n_items=94,
        item_min=0,
        item_max=(100.0,) * 94,
        integer_items=False,
        item_scores={k: ItemScore(v, "mean") for k, v in {**ASC5D_DIMENSIONS, **ASC5D_FACTORS}.items()},
    ),
    "asc11d": ScaleKey(
        name="asc11d",
        item_prefix="asc11d_",
        n_items=43,
        item_min=0,
        item_max=(100.0,) * 43,
        integer_items=False,
        item_scores={k: ItemScore(v, "mean") for k, v in ASC11D_FACTORS.items()},
    ),
    "madrs": _sum_scale("madrs", "madrs_", 10, (6,) * 10, MADRS_SEVERITY),
    "hamd17": _sum_scale(
        "hamd17",
        "hamd_",
        17,
        HAMD17_ITEM_MAX,
        HAMD17_SEVERITY,
        not_scored=HAMD17_NOT_ASSESSED,
        ignored_items=(18, 19, 20, 21),
    ),
    "qids_sr16": ScaleKey(
        name="qids_sr16",
        item_prefix="qids_",
        n_items=16,
        item_min=0,
        item_max=(3.0,) * 16,
        integer_items=True,
        item_scores={k: ItemScore(v, "max") for k, v in QIDS_DOMAINS.items()},
        domain_total=tuple(QIDS_DOMAINS),
        severity=QIDS_SEVERITY,
    ),
    "bdi_ii": _sum_scale("bdi_ii", "bdi_", 21, (3,) * 21, BDI_SEVERITY),
}


def remission_threshold(score: str, threshold: float | None = None) -> float:
    """The remission cut-off to use for the total ``score`` (e.g. ``"hamd_total"``): remission is
    total ≤ this value (inclusive).

    ``None`` = the scale's own published cut-off (:data:`REMISSION_THRESHOLDS`: MADRS 10, HAM-D17 7,
    QIDS-SR16 5, BDI-II 13; sources above); a score without one needs an explicit value (ValueError).
    An explicit value must be a finite number inside the scale's total range [min, max) (ValueError
    otherwise). An explicit value that is neither the scale's cut-off nor a listed alternative
    (:data:`REMISSION_ALTERNATIVES`) is used but raises a :class:`RemissionThresholdWarning` saying
    the published cut-off, whose cut-off the value is (10 given with HAM-D17 is the MADRS cut-off) and
    the severity band it falls in.
    """
    key = next((k for k in SCALES.values() if k.score_column("total") == score), None)
    if threshold is None:
        if score not in REMISSION_THRESHOLDS:
            raise ValueError(f"no default remission threshold for {score!r}; pass remission_threshold")
        return float(REMISSION_THRESHOLDS[score])
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"remission_threshold must be a number, got {threshold!r}")
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"remission_threshold must be finite, got {threshold!r}")
    if key is not None:
        low, high = key.score_range("total")
        if not low <= value < high:
            raise ValueError(f"remission_threshold={value:g} is outside the {key.name} total range {low:g}–{high:g}")
    default = REMISSION_THRESHOLDS.get(score)
    if default is not None and value != default and value not in REMISSION_ALTERNATIVES.get(score, ()):
        message = f"remission_threshold={value:g} for {score}: the scale's published cut-off is ≤ {default:g}"
        others = [s for s, v in REMISSION_THRESHOLDS.items() if v == value and s != score]
        if others:
            message += f"; {value:g} is the {' and '.join(others)} cut-off — meant for another scale?"
        if key is not None and key.severity is not None:
            band = str(_severity(np.array([value]), key.severity)[0])
            message += f" ({value:g} is in the {key.name} '{band}' severity band)"
        warnings.warn(message, RemissionThresholdWarning, stacklevel=2)
    return value


# ---------------------------------------------------------------------------------------------
# Reading tables
# ---------------------------------------------------------------------------------------------


def read_phenotype_table(path: str | Path, *, sidecar: str | Path | None | Literal["auto"] = "auto") -> pd.DataFrame:
    """Read a BIDS phenotype TSV (or a CSV) and its JSON sidecar.

    ``n/a``, ``NA`` and empty cells are missing; nothing else is. ``participant_id``, ``session_id``
    and ``timepoint`` stay text (``"01"`` is not the number 1). Any other column becomes numeric only
    when every non-missing cell parses as a number; otherwise it stays text, so a stray ``"x"`` in an
    item column reaches the validator and is reported with its row. The index is the 1-based data
    row of the file (named ``row``); ``attrs["source"]`` is the path and ``attrs["sidecar"]`` the
    sidecar (``{}`` when none: ``sidecar="auto"`` looks for the same name with ``.json``).
    """
    path = Path(path)
    separators = {".tsv": "\t", ".csv": ","}
    if path.suffix.lower() not in separators:
        raise InputError("unsupported table format: expected .tsv or .csv", file=str(path))
    if not path.exists():
        raise InputError("table not found", file=str(path))
    table = pd.read_csv(
        path, sep=separators[path.suffix.lower()], dtype=str, keep_default_na=False, na_values=list(MISSING_TOKENS)
    )
    for column in table.columns:
        if column in ID_COLUMNS:
            continue
        numeric = pd.to_numeric(table[column], errors="coerce")
        if numeric.notna().sum() == table[column].notna().sum():
            table[column] = numeric
    table.index = pd.RangeIndex(1, len(table) + 1, name="row")

    sidecar_path = path.with_suffix(".json") if sidecar == "auto" else sidecar
    metadata: dict = {}
    if sidecar_path is not None and Path(sidecar_path).exists():
        try:
            metadata = json.loads(Path(sidecar_path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"sidecar is not valid JSON: {err}", file=str(sidecar_path)) from err
    elif sidecar not in (None, "auto"):
        raise InputError("sidecar not found", file=str(sidecar_path))
    table.attrs["source"] = str(path)
    table.attrs["sidecar"] = metadata
    return table


def normalise_participant_ids(table: pd.DataFrame, participants=None) -> pd.DataFrame:
    """Numeric participant IDs (``7``, ``"07"``, ``7.0`` from a spreadsheet) become BIDS labels (``sub-07``).

    The zero padding follows ``participants`` when it lists the subject (``sub-007`` stays ``sub-007``), else two
    digits, as mne-bids writes them.  Anything that is not a whole number is left for the key checks to judge."""
    if "participant_id" not in table.columns:
        return table
    raw = table["participant_id"]
    text = raw.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    digits = text.str.fullmatch(r"\d+") & raw.notna()
    if not digits.any():
        return table
    known = _read_participant_ids(participants)[0] if participants is not None else set()
    by_number = {int(k[4:]): k for k in known if k.startswith("sub-") and k[4:].isdigit()}
    labels = text.where(~digits, text[digits].map(lambda v: by_number.get(int(v), f"sub-{int(v):02d}")))
    out = table.copy()
    out["participant_id"] = labels.where(raw.notna(), None)
    return out


def _read_participant_ids(participants) -> tuple[set[str], str]:
    """Participant ids from participants.tsv (path), a table with participant_id, or an iterable."""
    if isinstance(participants, (str, Path)):
        participants = read_phenotype_table(participants, sidecar=None)
    if isinstance(participants, pd.DataFrame):
        source = participants.attrs.get("source", "participants table")
        if "participant_id" not in participants.columns:
            raise InputError("participants table has no participant_id column", file=source, field="participant_id")
        return set(participants["participant_id"].dropna().astype(str)), source
    return {str(p) for p in participants}, "participants list"


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoringResult:
    """Scores of one questionnaire table and what the missing-item rule did.

    ``scores``: one row per subject-session(-timepoint) with the key columns and score columns.
    ``n_scores``: score values computed from items (rows × item-based scores); ``n_prorated``: of
    these, values computed from incomplete items; ``n_missing_scores``: values left NaN because of
    missing items. ``missing_by_score`` breaks the counts down by score. Derived columns (percent of
    maximum, complete mystical experience, severity) follow their score and are not counted again.
    """

    scores: pd.DataFrame
    scale: str
    source: str
    missing: str
    max_missing_fraction: float | None
    response_scale: tuple[float, float] | None
    n_scores: int
    n_prorated: int
    n_missing_scores: int
    missing_by_score: pd.DataFrame

    def summary(self) -> dict:
        """The counts and rule as a plain dict (also stored in ``scores.attrs``)."""
        return {
            "scale": self.scale,
            "source": self.source,
            "missing": self.missing,
            "max_missing_fraction": self.max_missing_fraction,
            "response_scale": self.response_scale,
            "n_rows": len(self.scores),
            "n_scores": self.n_scores,
            "n_prorated": self.n_prorated,
            "n_missing_scores": self.n_missing_scores,
        }


# ---------------------------------------------------------------------------------------------
# Validation helpers (each raises InputError on the first offending place, listing a few more)
# ---------------------------------------------------------------------------------------------


class ResponseScaleWarning(UserWarning):
    """Answers that never reach an end of the declared response scale: perhaps coded on another scale."""


# Below this many answered rows a missing end of the scale is unremarkable.
RANGE_CHECK_MIN_ROWS = 10


def _warn_unused_range_ends(
    values, answered, item_min: float, item_max, low: float, high: float, source: str, scale: str
) -> None:
    """Warn when no answer of the table reaches the declared minimum, or none reaches any item's maximum.

    A 1–6-coded table declared 0–5 passes every range check if nobody answered 6, and every score is then
    shifted by one: this is the only trace such a mistake leaves."""
    if answered.any(axis=1).sum() < RANGE_CHECK_MIN_ROWS:
        return
    observed = values[answered]
    at_max = answered & (values == np.broadcast_to(item_max, values.shape))
    problems = []
    if observed.min() > item_min:
        problems.append(f"no answer is ever {item_min:g}, the declared minimum")
    if not at_max.any():
        problems.append("no answer ever reaches an item's declared maximum")
    if problems:
        warnings.warn(
            f"{source}: {scale} answers span {observed.min():g}–{observed.max():g} on the declared {low:g}–{high:g} "
            f"scale: {' and '.join(problems)}. If the table is coded on another scale (e.g. {low + 1:g}–{high + 1:g}), "
            "declare it as response_scale in the manifest; otherwise scores are shifted.",
            ResponseScaleWarning,
            stacklevel=4,  # through _checked_answers and score_items: the line that called score_items
        )


@dataclass
class _Located:
    """A wide item table plus where each cell came from in the file."""

    keys: pd.DataFrame  # participant_id, session_id[, timepoint] as text
    raw: pd.DataFrame  # item columns, values as read
    rows: np.ndarray  # (n,) file row per wide row, or (n, k) per cell (long input)
    source: str

    def row_of(self, i: int, j: int | None = None) -> int:
        return int(self.rows[i] if self.rows.ndim == 1 else self.rows[i, j if j is not None else 0])


def _file_rows(table: pd.DataFrame) -> np.ndarray:
    if table.index.name == "row" and pd.api.types.is_integer_dtype(table.index):
        return table.index.to_numpy(dtype=np.int64)
    return np.arange(1, len(table) + 1, dtype=np.int64)


def _key_columns(table: pd.DataFrame, source: str) -> list[str]:
    # session_id is optional: a parallel trial has no sessions, and a per-participant table (mood at baseline
    # and follow-ups in an open-label study) is keyed by participant and time point only.
    if "participant_id" not in table.columns:
        raise InputError("table has no participant_id column", file=source, field="participant_id")
    return [c for c in ID_COLUMNS if c in table.columns]


def _session(frame: pd.DataFrame, i: int) -> str | None:
    """The session of row ``i`` for error messages (None in tables without sessions)."""
    return str(frame["session_id"].iloc[i]) if "session_id" in frame.columns else None


def _check_keys(table: pd.DataFrame, key_cols: list[str], rows: np.ndarray, source: str) -> None:
    for column in key_cols:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            raise InputError(
                f"{column} must be text labels (e.g. 'sub-01'), found numbers; read files with "
                "read_phenotype_table so that '01' stays '01'",
                file=source,
                field=column,
            )
        absent = values.isna().to_numpy()
        if absent.any():
            i = int(np.flatnonzero(absent)[0])
            raise InputError(
                f"missing {column}",
                file=source,
                row=int(rows[i]),
                subject=_text(table["participant_id"].iloc[i]),
                session=_text(table["session_id"].iloc[i]) if "session_id" in table else None,
                field=column,
            )


def _text(value) -> str | None:
    return None if pd.isna(value) else str(value)


def _key_codes(keys: pd.DataFrame) -> np.ndarray:
    """One int64 code per distinct key combination (factorize per column, then combine)."""
    code = np.zeros(len(keys), dtype=np.int64)
    for column in keys.columns:
        codes, uniques = pd.factorize(keys[column])
        # Re-factorize the running code so it stays below len(keys) and cannot overflow.
        code = pd.factorize(code * (len(uniques) + 1) + codes)[0].astype(np.int64)
    return code


def _check_duplicates(keys: pd.DataFrame, rows: np.ndarray, source: str, what: str) -> None:
    codes = _key_codes(keys)
    duplicated = pd.Series(codes).duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return
    first = int(np.flatnonzero(duplicated)[0])
    same = np.flatnonzero(codes == codes[first])
    n_groups = len(np.unique(codes[duplicated]))
    context = {"timepoint": keys["timepoint"].iloc[first]} if "timepoint" in keys else {}
    raise InputError(
        f"duplicate {what}: rows {', '.join(str(int(rows[i])) for i in same)} share the same "
        f"{'-'.join(keys.columns)} ({n_groups} duplicated combination(s) in the table)",
        file=source,
        row=int(rows[same[1]]),
        subject=str(keys["participant_id"].iloc[first]),
        session=_session(keys, first),
        **context,
    )


def _check_participants(keys: pd.DataFrame, rows: np.ndarray, source: str, participants) -> None:
    if participants is None:
        return
    known, known_source = _read_participant_ids(participants)
    absent = ~keys["participant_id"].isin(known).to_numpy()
    if absent.any():
        i = int(np.flatnonzero(absent)[0])
        missing_ids = sorted(set(keys["participant_id"].to_numpy()[absent]))
        raise InputError(
            f"subject not in {known_source} ({len(missing_ids)} unknown: "
            f"{', '.join(missing_ids[:5])}{' …' if len(missing_ids) > 5 else ''})",
            file=source,
            row=int(rows[i]),
            subject=str(keys["participant_id"].iloc[i]),
            session=_session(keys, i),
            field="participant_id",
        )


def _raise_cells(problem: str, bad: np.ndarray, located: _Located, describe) -> None:
    """Raise for the first True cell of ``bad`` (row-major), listing up to five more."""
    rows_idx, cols_idx = np.nonzero(bad)
    if len(rows_idx) == 0:
        return
    # Report in file order, which for long input is not the wide order.
    file_rows = np.array([located.row_of(i, j) for i, j in zip(rows_idx[:200], cols_idx[:200])])
    order = np.argsort(file_rows, kind="stable")
    cells = [(int(rows_idx[o]), int(cols_idx[o])) for o in order]
    lines = []
    for i, j in cells[1:6]:
        lines.append(
            f"  row {located.row_of(i, j)}, subject {located.keys['participant_id'].iloc[i]}"
            f", session {_session(located.keys, i)}, item "
            f"{located.raw.columns[j]}: {describe(i, j)}"
        )
    more = len(rows_idx) - 1 - len(lines)
    if more > 0:
        lines.append(f"  … and {more} more")
    i, j = cells[0]
    context = {"timepoint": located.keys["timepoint"].iloc[i]} if "timepoint" in located.keys else {}
    raise InputError(
        f"{problem}: {describe(i, j)} ({len(rows_idx)} cell(s) in the table)",
        file=located.source,
        row=located.row_of(i, j),
        subject=str(located.keys["participant_id"].iloc[i]),
        session=_session(located.keys, i),
        item=str(located.raw.columns[j]),
        details="\n".join(lines) or None,
        **context,
    )


def _item_like_columns(columns: Iterable[str], key: ScaleKey) -> list[str]:
    pattern = re.compile(rf"^{re.escape(key.item_prefix)}\d+$")
    return [c for c in columns if isinstance(c, str) and pattern.match(c)]


def _locate_wide(table: pd.DataFrame, key: ScaleKey, source: str) -> _Located:
    present = _item_like_columns(table.columns, key)
    expected = key.item_columns
    ignored = {key.item_column(i) for i in key.ignored_items}
    missing_cols = [c for c in expected if c not in table.columns]
    unexpected = [c for c in present if c not in expected and c not in ignored]
    if missing_cols or unexpected:
        parts = []
        if missing_cols:
            parts.append(f"missing {', '.join(missing_cols)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        found = len([c for c in present if c in expected])
        raise InputError(
            f"wrong item count for {key.name}: expected {key.n_items} items {expected[0]}…"
            f"{expected[-1]}, found {found} ({'; '.join(parts)})",
            file=source,
            item=(missing_cols or unexpected)[0],
        )
    rows = _file_rows(table)
    key_cols = _key_columns(table, source)
    _check_keys(table, key_cols, rows, source)
    # A column the reader does not use (a precomputed total, a rater, a date) is said, never dropped silently.
    unused = [str(c) for c in table.columns if c not in expected and c not in ignored and c not in key_cols]
    if unused:
        warnings.warn(
            f"{source}: {key.name} columns not used by the scoring: {unused} (scores are computed from "
            "the items; a precomputed score in the file is not compared)",
            UnusedColumnWarning,
            stacklevel=4,
        )
    keys = table[key_cols].astype(str).reset_index(drop=True)
    return _Located(keys=keys, raw=table[expected].reset_index(drop=True), rows=rows, source=source)


class UnusedColumnWarning(UserWarning):
    """A questionnaire table has columns the scoring does not read."""


def _locate_long(table: pd.DataFrame, key: ScaleKey, source: str) -> _Located:
    """Pivot long rows (keys, item, value) to wide without losing each cell's file row."""
    rows = _file_rows(table)
    key_cols = _key_columns(table, source)
    _check_keys(table, key_cols, rows, source)
    item_labels = table["item"]
    ignored = {key.item_column(i) for i in key.ignored_items}
    if pd.api.types.is_numeric_dtype(item_labels):
        # Item numbers (1, 2, …) are accepted as well as item column names.
        numbers = pd.Series(item_labels.to_numpy(dtype=float, na_value=np.nan))
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        names = pd.Series(
            np.where(
                whole,
                key.item_prefix + numbers.where(whole, 0).astype(np.int64).astype(str).str.zfill(2),
                numbers.astype(str),
            ),
            dtype=object,
        )
    else:
        names = item_labels.astype(object)
    keep = ~names.isin(ignored).to_numpy()
    column_of = {c: j for j, c in enumerate(key.item_columns)}
    item_index = names.map(column_of)
    unknown = item_index.isna().to_numpy() & keep
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(
            f"unknown item for {key.name} (expected {key.item_columns[0]}…{key.item_columns[-1]})",
            file=source,
            row=int(rows[i]),
            subject=str(table["participant_id"].iloc[i]),
            session=_session(table, i),
            item=str(names.iloc[i]),
        )
    table, rows = table[keep], rows[keep]
    item_index = item_index[keep].to_numpy(dtype=np.int64)
    long_keys = table[key_cols].astype(str).reset_index(drop=True)
    _check_duplicates(long_keys.assign(item=names[keep].to_numpy()), rows, source, "answers to one item")
    codes = _key_codes(long_keys)
    wide_index, first = np.unique(codes, return_index=True)
    order = np.argsort(first, kind="stable")  # wide rows in order of first appearance
    wide_of_code = np.empty(len(wide_index), dtype=np.int64)
    wide_of_code[order] = np.arange(len(order))
    wide_row = wide_of_code[np.searchsorted(wide_index, codes)]
    n, k = len(order), key.n_items
    raw = np.full((n, k), np.nan, dtype=object)
    raw[wide_row, item_index] = table["value"].to_numpy(dtype=object)
    cell_rows = np.zeros((n, k), dtype=np.int64)
    first_row_of_wide = rows[first[order]]
    cell_rows[:] = first_row_of_wide[:, None]  # absent cells point at the subject's first row
    cell_rows[wide_row, item_index] = rows
    raw_df = pd.DataFrame(raw, columns=key.item_columns)
    if pd.api.types.is_numeric_dtype(table["value"]):
        raw_df = raw_df.astype(float)
    keys = long_keys.iloc[first[order]].reset_index(drop=True)
    return _Located(keys=keys, raw=raw_df, rows=cell_rows, source=source)


# BDI-II items 16 (changes in sleeping pattern) and 18 (changes in appetite) offer the options 0, 1a, 1b,
# 2a, 2b, 3a, 3b; the letter says the direction (more/less) and the digit is the score (Beck, Steer &
# Brown 1996, manual).  Exports keep the letter, so the digit is read and the letter dropped — for these
# two items only; a letter anywhere else is still an error.
LETTERED_OPTION_ITEMS = {"bdi_ii": ("bdi_16", "bdi_18")}
_LETTERED_OPTION = r"^\s*([0-3])\s*[abAB]\s*$"


def _numeric_items(located: _Located, lettered: tuple[str, ...] = ()) -> np.ndarray:
    """Item answers as float (NaN = missing); any non-numeric answer raises InputError.

    ``lettered`` columns accept answers like '2a' (scored 2), see LETTERED_OPTION_ITEMS."""
    raw = located.raw
    if lettered:
        raw = raw.copy()
        for column in lettered:
            if column in raw.columns and not pd.api.types.is_numeric_dtype(raw[column]):
                text = raw[column].astype("string")
                raw[column] = text.str.replace(_LETTERED_OPTION, r"\1", regex=True).where(text.notna(), None)
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in raw.dtypes):
        return raw.to_numpy(dtype=float, na_value=np.nan)
    values = np.empty(raw.shape, dtype=float)
    non_numeric = np.zeros(raw.shape, dtype=bool)
    for j, column in enumerate(raw.columns):  # a loop over columns, never over rows
        series = raw[column]
        if pd.api.types.is_bool_dtype(series):
            non_numeric[:, j] = series.notna().to_numpy()
            values[:, j] = np.nan
            continue
        numeric = pd.to_numeric(series, errors="coerce")
        values[:, j] = numeric.to_numpy(dtype=float, na_value=np.nan)
        non_numeric[:, j] = series.notna().to_numpy() & numeric.isna().to_numpy()
    _raise_cells("non-numeric answer", non_numeric, located, lambda i, j: f"value {raw.iat[i, j]!r} is not a number")
    return values


def _declared_scale(response_scale, located: _Located, sidecar: Mapping, key: ScaleKey) -> tuple[float, float]:
    declared_in_sidecar = sidecar.get("ResponseScale") if sidecar else None
    candidates = []
    for origin, value in (("argument", response_scale), ("sidecar", declared_in_sidecar)):
        if value is None:
            continue
        if isinstance(value, Mapping):
            if not {"min", "max"} <= set(value):
                raise InputError(
                    f"ResponseScale ({origin}) needs 'min' and 'max'", file=located.source, field="ResponseScale"
                )
            value = (value["min"], value["max"])
        low, high = (float(v) for v in value)
        candidates.append((origin, (low, high)))
    if not candidates:
        raise InputError(
            f"response scale of {key.name} items not declared: pass response_scale=(min, max) or "
            'put "ResponseScale": {"min": …, "max": …} in the sidecar (it is never guessed)',
            file=located.source,
            field="ResponseScale",
        )
    if len(candidates) == 2 and candidates[0][1] != candidates[1][1]:
        raise InputError(
            f"response scale argument {candidates[0][1]} contradicts the sidecar's {candidates[1][1]}",
            file=located.source,
            field="ResponseScale",
        )
    low, high = candidates[0][1]
    key_high = max(key.item_max)
    if not np.isclose(high - low, key_high - key.item_min):
        raise InputError(
            f"declared response scale {low:g}–{high:g} is not the {key.name} key's "
            f"{key.item_min:g}–{key_high:g} shifted by a constant; refusing to rescale",
            file=located.source,
            field="ResponseScale",
        )
    return low, high


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def _aggregate(
    values: np.ndarray, rule: str, missing: MissingRule, max_missing_fraction: float, item_max: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score rows of ``values`` (n × k, NaN = missing) by ``rule``.

    Prorating (only when an item is missing; a complete row is the plain mean, sum or maximum):

    - a mean is the mean of the answered items;
    - a sum is the observed sum × (maximum possible sum of all k items / maximum possible sum of the
      answered items), ``item_max`` giving each item's maximum (minimum 0). This is the answered
      items' percentage of their maximum possible score (POMP, Cohen, Cohen, Aiken & West 1999,
      Multivariate Behav Res 34:315) carried over to the whole scale. With equal item ranges (MADRS,
      BDI-II, the QIDS-SR16 domains) it is the usual mean of the answered items × k. With unequal
      ranges (HAM-D17: items 0–4 and 0–2) mean × k is wrong: every answer at its maximum with the
      0–2 items 4, 5 and 6 missing gave 46 × 17/14 = 55.86 > 52. The ratio of maxima gives 52, and a
      prorated total always lies in [0, sum of item maxima] (also enforced by clipping against
      floating point). A mean of item proportions × scale maximum was not chosen: it weighs a 0–2
      item like a 0–4 item, so even a complete row would not score its plain sum.
    - a maximum is the maximum of the answered items.

    Returns (score, prorated, missing).
    """
    answered = ~np.isnan(values)
    n_answered = answered.sum(axis=1)
    k = values.shape[1]
    complete = n_answered == k
    if missing == "none":
        allowed = complete
    else:
        # The small tolerance keeps e.g. 1 of 3 missing inside a limit of 1/3.
        allowed = (n_answered > 0) & ((k - n_answered) <= max_missing_fraction * k + 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "max":
            score = np.where(answered, values, -np.inf).max(axis=1)
        elif rule == "mean":
            score = np.where(answered, values, 0.0).sum(axis=1) / n_answered
        else:
            observed = np.where(answered, values, 0.0).sum(axis=1)
            maxima = np.full(k, 1.0) if item_max is None else np.asarray(item_max, dtype=float)
            full = maxima.sum()
            answered_max = np.where(answered, maxima, 0.0).sum(axis=1)
            prorated_sum = np.clip(observed * full / answered_max, 0.0, full)
            score = np.where(complete, observed, prorated_sum)
    score = np.where(allowed, score, np.nan)
    return score, allowed & ~complete, ~allowed


def _severity(total: np.ndarray, bands: tuple[tuple[float, str], ...]) -> pd.Categorical:
    lower = np.array([b for b, _ in bands], dtype=float)
    labels = [label for _, label in bands]
    position = np.searchsorted(lower, total, side="right") - 1
    codes = np.where(np.isnan(total) | (position < 0), -1, position)
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def _add_derived(scores: pd.DataFrame, key: ScaleKey) -> None:
    """Columns defined from scores: MEQ30 % of maximum and complete mystical; severity bands."""
    if key.name == "meq30":
        pct = {}
        for sub in [*MEQ30_SUBSCALES, "total"]:
            column = key.score_column(sub)
            if column in scores:
                # % of maximum = mean / 5 (MacLean et al. 2012; Barrett et al. 2015)
                pct[sub] = 100.0 * scores[column].to_numpy(dtype=float) / max(key.item_max)
                scores[f"{column}_pct_max"] = pct[sub]
        if all(sub in pct for sub in MEQ30_SUBSCALES):
            stacked = np.column_stack([pct[s] for s in MEQ30_SUBSCALES])
            complete = (stacked >= MEQ30_COMPLETE_MYSTICAL_PCT).all(axis=1)
            scores[key.score_column("complete_mystical")] = pd.array(
                np.where(np.isnan(stacked).any(axis=1), None, complete), dtype="boolean"
            )
    if key.severity is not None and key.score_column("total") in scores:
        scores[key.score_column("severity")] = _severity(
            scores[key.score_column("total")].to_numpy(dtype=float), key.severity
        )


def _resolve_scale(scale: str | ScaleKey) -> ScaleKey:
    if isinstance(scale, ScaleKey):
        return scale
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return SCALES[scale]


def _as_table(table, sidecar) -> tuple[pd.DataFrame, str, Mapping]:
    if isinstance(table, (str, Path)):
        # A sidecar given as a dict replaces the file's; a path is read instead of the default.
        file_sidecar = "auto" if sidecar is None else (None if isinstance(sidecar, Mapping) else sidecar)
        table = read_phenotype_table(table, sidecar=file_sidecar)
    elif not isinstance(table, pd.DataFrame):
        raise TypeError("table must be a path or a pandas DataFrame")
    elif isinstance(sidecar, (str, Path)):
        try:
            sidecar = json.loads(Path(sidecar).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read sidecar: {err}", file=str(sidecar)) from err
    source = table.attrs.get("source", "<DataFrame>")
    metadata = sidecar if isinstance(sidecar, Mapping) else table.attrs.get("sidecar", {})
    return table, source, metadata


def score_items(
    table: pd.DataFrame | str | Path,
    scale: str | ScaleKey,
    *,
    response_scale: tuple[float, float] | Mapping | None = None,
    missing: MissingRule = "none",
    max_missing_fraction: float | None = None,
    participants=None,
    sidecar: Mapping | str | Path | None = None,
) -> ScoringResult:
    """Score an item-level table of one questionnaire.

    Parameters
    ----------
    table : a DataFrame (e.g. from :func:`read_phenotype_table`) or a path to a TSV/CSV. Wide (item
        columns ``<prefix>01`` …) or long (``item``, ``value`` columns; items named as the wide
        columns or numbered 1…n; an item absent for a subject-session is a missing answer). Keys:
        ``participant_id``, ``session_id`` and, if present, ``timepoint`` — one row per key
        combination.
    scale : one of :data:`SCALES` ("meq30", "asc5d", "asc11d", "madrs", "hamd17", "qids_sr16",
        "bdi_ii").
    response_scale : (min, max) of the answers as coded in the table; or taken from the sidecar's
        ``ResponseScale``. Must be the key's range shifted by a constant (e.g. (1, 6) for a 1–6 MEQ30
        export, converted by subtracting 1). For HAM-D17, whose items have different ranges,
        declare the widest (0, 4); each item is checked against its own range.
    missing : "none" — a score with any missing item is NaN; "prorate" — a score is computed from the
        answered items when at most ``max_missing_fraction`` of its items are missing (means of the
        answered items; sums scaled by the ratio of the maximum possible sum of all items to that of
        the answered items, which respects HAM-D17's unequal item ranges and never exceeds the scale
        maximum; QIDS domain maxima over answered items). See ``_aggregate`` for the rule and source.
    participants : participants.tsv path, a table with participant_id, or ids; every subject of the
        table must be in it.

    Returns a :class:`ScoringResult`. Raises :class:`InputError` for bad input.
    """
    key = _resolve_scale(scale)
    max_missing_fraction = _missing_rule(missing, max_missing_fraction)
    table, source, metadata = _as_table(table, sidecar)
    table = normalise_participant_ids(table, participants)

    # Located here, not in a step: _locate_wide's warning (stacklevel=4) names the frame above score_items' caller.
    if _item_like_columns(table.columns, key) or not {"item", "value"} <= set(table.columns):
        located = _locate_wide(table, key, source)
    else:
        located = _locate_long(table, key, source)
    rows_1d = located.rows if located.rows.ndim == 1 else located.rows[:, 0]
    _check_duplicates(located.keys, rows_1d, source, "subject-session rows")
    _check_participants(located.keys, rows_1d, source, participants)

    low, high = _declared_scale(response_scale, located, metadata, key)
    values, answered = _checked_answers(located, key, low, high, source)
    scores, counts = _item_scores(located.keys, values, answered, key, missing, max_missing_fraction)
    _add_derived(scores, key)

    missing_by_score = pd.DataFrame(counts, columns=["score", "n_prorated", "n_missing"])
    missing_by_score.insert(1, "n_rows", len(scores))
    result = ScoringResult(
        scores=scores,
        scale=key.name,
        source=source,
        missing=missing,
        max_missing_fraction=max_missing_fraction,
        response_scale=(low, high),
        n_scores=len(scores) * len(counts),
        n_prorated=int(missing_by_score["n_prorated"].sum()),
        n_missing_scores=int(missing_by_score["n_missing"].sum()),
        missing_by_score=missing_by_score,
    )
    scores.attrs.update(result.summary())
    return result


def _missing_rule(missing: MissingRule, max_missing_fraction: float | None) -> float | None:
    """The missing-item rule checked: the fraction that may be missing under "prorate", None under "none"."""
    if missing not in ("none", "prorate"):
        raise ValueError("missing must be 'none' or 'prorate'")
    if missing == "prorate":
        if max_missing_fraction is None or not 0 <= max_missing_fraction < 1:
            raise ValueError("missing='prorate' needs max_missing_fraction in [0, 1)")
        return max_missing_fraction
    return None


def _checked_answers(
    located: _Located, key: ScaleKey, low: float, high: float, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Item answers on the key's own range (every answer checked: whole numbers, within its item's range) and
    which were answered; a "not assessed" code counts as answered and scores 0."""
    offset = low - key.item_min
    values = _numeric_items(located, LETTERED_OPTION_ITEMS.get(key.name, ()))
    answered = ~np.isnan(values)
    if key.integer_items:
        fractional = answered & (values != np.round(values))
        _raise_cells(
            "answer is not a whole number",
            fractional,
            located,
            lambda i, j: f"value {values[i, j]:g} on a {low:g}–{high:g} scale",
        )
    item_max = np.asarray(key.item_max) + offset
    in_range = (values >= key.item_min + offset) & (values <= item_max)
    not_scored = np.zeros_like(answered)
    for item, code in key.not_scored.items():
        not_scored[:, item - 1] = values[:, item - 1] == code + offset
    _raise_cells(
        "answer out of range",
        answered & ~in_range & ~not_scored,
        located,
        lambda i, j: f"value {values[i, j]:g} outside {key.item_min + offset:g}–{item_max[j]:g}",
    )
    _warn_unused_range_ends(
        values, answered & ~not_scored, key.item_min + offset, item_max, low, high, source, key.name
    )
    values = values - offset
    values[not_scored] = 0.0  # valid answer that does not count (HAM-D 16 = 3, "not assessed")
    return values, answered


def _item_scores(
    keys: pd.DataFrame,
    values: np.ndarray,
    answered: np.ndarray,
    key: ScaleKey,
    missing: MissingRule,
    max_missing_fraction: float | None,
) -> tuple[pd.DataFrame, list[tuple[str, int, int]]]:
    """Every score of the key per row (subscales, then the total over domains), and per score how many were
    prorated and how many are missing."""
    scores = keys.copy()
    counts = []
    score_arrays: dict[str, np.ndarray] = {}
    for name, spec in key.item_scores.items():
        columns = np.asarray(spec.items) - 1
        score, prorated, missing_mask = _aggregate(
            values[:, columns],
            spec.rule,
            missing,
            max_missing_fraction or 0.0,
            item_max=np.asarray(key.item_max, dtype=float)[columns],
        )
        score_arrays[name] = score
        scores[key.score_column(name)] = score
        counts.append((key.score_column(name), int(prorated.sum()), int(missing_mask.sum())))
    if key.domain_total is not None:
        domains = np.column_stack([score_arrays[d] for d in key.domain_total])
        total, _, missing_mask = _aggregate(
            domains,
            "sum",
            missing,
            max_missing_fraction or 0.0,
            item_max=np.array([key.score_range(d)[1] for d in key.domain_total]),
        )
        # A total is prorated when any of its items was missing yet it was computed.
        prorated = ~np.isnan(total) & ~answered.all(axis=1)
        scores[key.score_column("total")] = total
        counts.append((key.score_column("total"), int(prorated.sum()), int(missing_mask.sum())))
    return scores, counts


def read_scored_table(
    table: pd.DataFrame | str | Path,
    scale: str | ScaleKey,
    *,
    participants=None,
) -> ScoringResult:
    """Validate an already-scored (scale-level) table and add what follows from its scores.

    Score columns use the workbench names (``meq30_mystical``, ``asc5d_obn``, ``madrs_total`` …, see
    ``SCALES[scale].score_columns``); at least one must be present. Each present score is checked to
    be numeric and within its possible range; keys, duplicates and participants are checked as for
    item-level tables. Adds MEQ30 % of maximum and complete mystical experience (when all four
    subscales are present) and severity bands (when the total is present). No missing-item rule
    applies (``n_prorated`` = 0; ``n_missing_scores`` counts empty score cells).
    """
    key = _resolve_scale(scale)
    table, source, _ = _as_table(table, None)
    present = [c for c in key.score_columns if c in table.columns]
    if not present:
        raise InputError(
            f"no {key.name} score columns found; expected any of {', '.join(key.score_columns)}", file=source
        )
    rows = _file_rows(table)
    key_cols = _key_columns(table, source)
    _check_keys(table, key_cols, rows, source)
    keys = table[key_cols].astype(str).reset_index(drop=True)
    _check_duplicates(keys, rows, source, "subject-session rows")
    _check_participants(keys, rows, source, participants)
    located = _Located(keys=keys, raw=table[present].reset_index(drop=True), rows=rows, source=source)
    values = _numeric_items(located)
    ranges = np.array([key.score_range(c[len(key.item_prefix) :]) for c in present])
    bad = ~np.isnan(values) & ((values < ranges[:, 0]) | (values > ranges[:, 1]))
    _raise_cells(
        "score out of range",
        bad,
        located,
        lambda i, j: f"value {values[i, j]:g} outside {ranges[j, 0]:g}–{ranges[j, 1]:g}",
    )
    scores = keys.copy()
    for j, column in enumerate(present):
        scores[column] = values[:, j]
    _add_derived(scores, key)
    n_missing = int(np.isnan(values).sum())
    missing_by_score = pd.DataFrame(
        {"score": present, "n_rows": len(scores), "n_prorated": 0, "n_missing": np.isnan(values).sum(axis=0)}
    )
    result = ScoringResult(
        scores=scores,
        scale=key.name,
        source=source,
        missing="scale-level input",
        max_missing_fraction=None,
        response_scale=None,
        n_scores=values.size,
        n_prorated=0,
        n_missing_scores=n_missing,
        missing_by_score=missing_by_score,
    )
    scores.attrs.update(result.summary())
    return result
