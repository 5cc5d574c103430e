"""Cytokine and metabolite assay tables: parsing, units, censoring, inflammation strata, paired change.

Conventions (each decision is stated once, here, and stored with the results where it matters):

Tables
    Long (one row per subject-session-timepoint-analyte: ``analyte``, ``value``, optional ``unit``,
    optional ``replicate``/``well``) or wide (one row per subject-session-timepoint, one column per
    analyte). BIDS ``phenotype/`` TSV with a JSON sidecar, or CSV. Keys: ``participant_id``,
    ``session_id``, ``timepoint``. Rows are numbered from 1 after the header (row 1 is line 2).

Units
    Each analyte has one declared unit (sidecar ``{"analytes": {"IL6": {"unit": "pg/mL", "LLOQ": 0.7,
    "ULOQ": 5000}}}``, a BIDS column entry's ``Units`` for wide tables, or ``units=``), and every value is
    converted to it with :data:`UNIT_TABLE` (mass concentrations pg/mL, ng/mL, µg/mL, mg/L, mg/dL, ...;
    amount concentrations µmol/L, µM, nmol/mL, nM, ...). ``µ`` (micro sign or Greek mu), ``u`` and
    ``mcg`` spellings are accepted. Mass and amount concentrations are never converted into each other
    (that needs a molar mass): such a row is an :class:`~pipelines.core.errors.InputError`. LLOQ/ULOQ are in
    the declared unit. A row with a value but no unit, in a table that has a ``unit`` column, is an error.
    Conversion is exact: the decimal as written times the unit ratio as a fraction, rounded once to a
    float (:func:`convert_exact`), so "0.3" mg/dL and "3000" µg/L become the very float 3.0 mg/L, and
    thresholds (:func:`inflammation_strata`) are converted the same way.

Lab strings (:func:`parse_lab_value`)
    ``3.2`` observed; ``<0.7`` below (bound 0.7, as reported by the lab); ``<LLOQ``, ``< LLOQ``, ``ND``,
    ``n.d.``, ``not detected`` below (bound = the analyte's LLOQ, which must be declared); ``>5000``
    above; ``>ULOQ`` above (bound = ULOQ); ``NA``, ``n/a``, ``nan``, ``null``, ``none`` and empty cells
    missing. A *number* below the LLOQ (including 0) is censored below at the LLOQ, a number above the
    ULOQ is censored above at the ULOQ: extrapolated readings outside the validated range are not
    used as values. Zero without a declared LLOQ, negative numbers, ``<0``, ``<=``, inf and any other
    text are errors. Decimal commas: by default (``decimal="."``) a comma in a number is an error,
    because ``5,000`` (thousands) and ``3,2`` (decimal) cannot be told apart; pass ``decimal=","`` for
    European exports (then a period in a number is an error). A censored value is never stored as a
    number: ``value`` is NaN and ``limit`` holds the bound; only :func:`substitute_censored` produces
    numbers for it, and says how.

Replicates (duplicate wells)
    Declared by a ``replicate`` or ``well`` column, or ``replicates=True``. Wells of one
    subject-session-timepoint-analyte are combined: the mean of the observed wells (with
    ``replicate_cv_pct`` = 100·SD/mean, SD with ddof=1, when ≥ 2 wells are observed, and
    ``n_replicates_censored`` counting censored wells); if no well is observed, the result is censored at
    the loosest bound (the largest "<" or smallest ">"); wells both below and above are an error.
    Without declared replicates, identical duplicate rows are collapsed with a warning and conflicting
    ones are an error.

Censoring strategies
    ``lloq_half`` (bound/2) and ``lloq_sqrt2`` (bound/√2) substitute below-limit values; values above the
    ULOQ become the ULOQ itself (a lower bound, so increases are understated). ``censored_mle`` does not
    substitute: :func:`censored_normal_mle` maximises a normal likelihood on the natural-log scale in
    which a censored observation contributes the probability of its interval (Tobit-style). For the
    paired change it is applied to the per-pair ln-changes d = ln(post) − ln(baseline): a pair whose
    member is censored gives an interval for d bounded by the observed partner (e.g. baseline "<L",
    post y: d > ln y − ln L); a pair with both members censored on the same side carries no
    information and is dropped (counted in ``n_uninformative``). It estimates μ, the mean ln-change
    (so exp(μ) is the geometric-mean fold change), under the assumption that ln-changes are normal;
    treating the partner's observed value as fixed is exact only if the change is independent of
    that level, an approximation otherwise. CI: Wald, from the observed information; p: likelihood
    ratio test of μ = 0.

Strata and change (see :func:`define_strata`, :data:`CHANGE_SCALES`)
    Inflammation strata from a screening CRP draw (a subject-level row, ``session_id`` ``n/a``), else the
    geometric mean of repeated baselines, else the single baseline (biased by regression to the mean: warned);
    CRP ≥ 10 mg/L (probable acute infection) flagged and left out by a named rule. Changes are ln(post/baseline)
    or post − baseline. Units missing from a file can be declared per table in the manifest
    (``declared_units``); a unit in the file that disagrees is an error. Unknown columns are reported.

Derived values
    ``ln_value`` is the natural log. The kynurenine/tryptophan ratio is KYN[µmol/L] / TRP[µmol/L] × 1000,
    unit ``µmol/mmol`` (the commonly reported ×10³ scaling); censoring propagates (KYN "<L" gives the
    ratio "<L/TRP"; a ratio whose direction is undetermined is missing). Outliers: median ± k·MAD
    (MAD scaled by 1.4826) of observed ln values per analyte and time point; flagged with a reason,
    never deleted.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as sstats

from pipelines.core.errors import InputError
from pipelines.core.units import UNIT_TABLE, canonical_unit

KEYS = ("participant_id", "session_id", "timepoint")
CENSORING_LEVELS = ("observed", "below", "above", "missing")
SUBSTITUTION_STRATEGIES = ("lloq_half", "lloq_sqrt2")
STRATEGIES = (*SUBSTITUTION_STRATEGIES, "censored_mle")
STRATEGY_DESCRIPTIONS = {
    "lloq_half": "below-LLOQ values replaced by bound/2, above-ULOQ values by the ULOQ",
    "lloq_sqrt2": "below-LLOQ values replaced by bound/sqrt(2), above-ULOQ values by the ULOQ",
    "censored_mle": "left/right/interval-censored normal likelihood on ln-changes (Tobit-style MLE)",
}

#: How a change baseline → post is expressed: the natural-log ratio ln(post/baseline) (default; exp() of a
#: mean is the geometric-mean fold change) or the absolute difference post − baseline in the analyte's unit.
CHANGE_SCALES = ("ln_ratio", "difference")
CHANGE_SCALE_TEXT = {
    "ln_ratio": "ln(post/baseline) (natural log; exp(mean) = geometric-mean fold change)",
    "difference": "post − baseline in the analyte's unit (absolute difference)",
}

MISSING_STRINGS = frozenset({"", "na", "n/a", "nan", "null", "none"})
NOT_DETECTED_STRINGS = frozenset({"nd", "n.d.", "not detected"})
REPLICATE_COLUMNS = ("replicate", "well")
LONG_COLUMNS = ("analyte", "value", "unit")
#: ``session_id`` of a subject-level draw that belongs to no session (e.g. a screening visit).
NO_SESSION = "n/a"


class UnknownColumnWarning(UserWarning):
    """A table column the reader does not know was not read (reported, never dropped silently)."""


KYN_TRP_UNIT = "µmol/mmol"
#: Relative tolerance of threshold comparisons (:func:`inflammation_strata`): a value within 1e-9 of
#: the threshold, relative, is at the threshold.
THRESHOLD_REL_TOL = 1e-9
MAD_TO_SD = 1.4826
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ----------------------------------------------------------------------------------------- units
def unit_conversion_ratio(from_unit: str, to_unit: str) -> Fraction:
    """The exact factor (a :class:`fractions.Fraction`) taking a value in ``from_unit`` to ``to_unit``.

    ValueError when either unit is unknown or the two measure different things (mass vs amount
    concentration needs a molar mass, which this module never assumes).
    """
    dim_from, f_from = UNIT_TABLE[canonical_unit(from_unit)]
    dim_to, f_to = UNIT_TABLE[canonical_unit(to_unit)]
    if dim_from != dim_to:
        raise ValueError(
            f"unit {from_unit!r} ({dim_from} concentration) cannot be converted to {to_unit!r} "
            f"({dim_to} concentration) without a molar mass"
        )
    return f_from / f_to


def unit_conversion_factor(from_unit: str, to_unit: str) -> float:
    """Multiply a value in ``from_unit`` by this to express it in ``to_unit`` (the float nearest the
    exact :func:`unit_conversion_ratio`; to convert a written decimal exactly use :func:`convert_exact`).

    ValueError when either unit is unknown or the two measure different things (mass vs amount
    concentration needs a molar mass, which this module never assumes).
    """
    return float(unit_conversion_ratio(from_unit, to_unit))


def _exact(number) -> Fraction:
    """A number as the exact fraction it was written as: a float is read as its shortest decimal
    (``repr``), so 0.3 is 3/10 and 1e-06 is 1/10**6, not their binary approximations."""
    if isinstance(number, Fraction):
        return number
    if isinstance(number, (int, np.integer)):
        return Fraction(int(number))
    return Fraction(repr(float(number)))


def convert_exact(value, factor) -> float:
    """``value × factor`` computed exactly on the decimals as written, then rounded once to the nearest
    float. Thus 0.3 (mg/dL) × 10 is 3.0, 3 (mg/L) × 1/10 is 0.3 and 3000 (µg/L) × 1/1000 is 3.0,
    exactly the floats a lab would have written for the same concentration in the other unit; plain
    float arithmetic gives 0.30000000000000004 for 3 × 0.1. NaN and inf pass through unchanged."""
    value = float(value) if not isinstance(value, (str, Fraction)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return value * float(factor)
    exact = Fraction(value) if isinstance(value, str) else _exact(value)
    try:
        return float(exact * _exact(factor))
    except OverflowError:
        raise ValueError(f"{value} × {factor} is too large for a number") from None


# --------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class LabValue:
    """One parsed lab cell: ``value`` is NaN unless observed; ``limit`` bounds a censored value."""

    value: float
    censoring: str
    limit: float = math.nan


def _parse_number(text: str, decimal: str) -> Fraction:
    """The number written in ``text``, exactly (a Fraction: no binary rounding before unit conversion)."""
    if decimal == ".":
        if "," in text:
            raise ValueError(
                f"{text!r} contains a comma (decimal comma or thousands separator?); "
                "pass decimal=',' if the export uses decimal commas"
            )
    elif decimal == ",":
        if "." in text:
            raise ValueError(f"{text!r} contains a period but decimal=',' was declared")
        text = text.replace(",", ".")
    else:
        raise ValueError(f"decimal must be '.' or ',', not {decimal!r}")
    if not _NUMBER.match(text):
        raise ValueError(f"{text!r} is not a number or a recognised lab string")
    return Fraction(text)


def parse_lab_value(
    text: object,
    *,
    lloq: float | None = None,
    uloq: float | None = None,
    decimal: str = ".",
    factor: float | Fraction = 1.0,
) -> LabValue:
    """Parse one lab cell into a :class:`LabValue` (see the module docstring for every accepted form).

    Numbers written in ``text`` are multiplied by ``factor`` (the conversion into the analyte's
    declared unit) before being compared with ``lloq``/``uloq``, which are in the declared unit. The
    product is exact (:func:`convert_exact`: the decimal as written × the factor as a fraction, a
    float factor read as its shortest decimal), rounded once to a float: "0.3" mg/dL becomes exactly
    3.0 mg/L.
    Raises ValueError (without location; the loader adds it) for anything it cannot parse honestly.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return LabValue(math.nan, "missing")
    s = str(text).strip()
    low = s.lower()
    if low in MISSING_STRINGS:
        return LabValue(math.nan, "missing")
    if low in NOT_DETECTED_STRINGS:
        if lloq is None:
            raise ValueError(f"{s!r} (not detected) needs the analyte's LLOQ, which is not declared")
        return LabValue(math.nan, "below", float(lloq))
    if s[0] in "<>":
        op, rest = s[0], s[1:].strip()
        if rest.startswith("="):
            raise ValueError(f"{s!r}: '<='/'>=' is not a lab censoring form; use '<x' or '>x'")
        if rest.upper() in ("LLOQ", "ULOQ"):
            which = rest.upper()
            if (op, which) not in (("<", "LLOQ"), (">", "ULOQ")):
                raise ValueError(f"{s!r} is contradictory (only '<LLOQ' and '>ULOQ' make sense)")
            bound = lloq if which == "LLOQ" else uloq
            if bound is None:
                raise ValueError(f"{s!r} needs the analyte's {which}, which is not declared")
            return LabValue(math.nan, "below" if op == "<" else "above", float(bound))
        number = _parse_number(rest, decimal)
        if number <= 0:
            raise ValueError(f"{s!r}: a censoring bound must be a positive concentration")
        return LabValue(math.nan, "below" if op == "<" else "above", convert_exact(number, factor))
    number = _parse_number(s, decimal)
    if number < 0:
        raise ValueError(f"negative concentration {s!r}")
    number = convert_exact(number, factor)
    if lloq is not None and number < lloq:
        return LabValue(math.nan, "below", float(lloq))
    if uloq is not None and number > uloq:
        return LabValue(math.nan, "above", float(uloq))
    if number == 0:
        raise ValueError(f"zero concentration {s!r} with no LLOQ declared (would become -inf on the log scale)")
    return LabValue(number, "observed")


# --------------------------------------------------------------------------------------- loading
def _where(source, row, subject=None, session=None, timepoint=None, analyte=None, field=None) -> str:
    parts = [f"{source}"]
    if row is not None:
        parts.append(f"row {row} (line {row + 1})" if isinstance(row, int) else f"rows {row}")
    for label, value in (
        ("subject", subject),
        ("session", session),
        ("time point", timepoint),
        ("analyte", analyte),
        ("field", field),
    ):
        if value is not None:
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def _read_table(source) -> tuple[pd.DataFrame, str, Path | None]:
    if isinstance(source, pd.DataFrame):
        name = source.attrs.get("source", "<DataFrame>")
        table = source.copy()
        for column in table.columns:
            table[column] = [
                "" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in table[column]
            ]
        return table, name, None
    path = Path(source)
    seps = {".tsv": "\t", ".csv": ","}
    if path.suffix.lower() not in seps:
        raise InputError(f"{path}: expected a .tsv or .csv table")
    table = pd.read_csv(path, sep=seps[path.suffix.lower()], dtype=str, keep_default_na=False, na_filter=False)
    table.columns = [str(c).strip() for c in table.columns]
    return table, path.name, path


def _read_sidecar(sidecar, path: Path | None) -> dict:
    if sidecar is None:
        if path is not None and path.with_suffix(".json").exists():
            sidecar = path.with_suffix(".json")
        else:
            return {}
    if isinstance(sidecar, Mapping):
        return dict(sidecar)
    with open(sidecar, encoding="utf-8") as handle:
        return json.load(handle)


def _limit(value, name: str, analyte: str, source: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_STRINGS):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{source}: analyte {analyte}: {name} {value!r} is not a number") from None
    if not number > 0 or math.isinf(number):
        raise InputError(f"{source}: analyte {analyte}: {name} {value!r} must be a positive concentration")
    return number


def _same_unit(a: str, b: str) -> bool:
    try:
        return canonical_unit(a) == canonical_unit(b)
    except ValueError:
        return False


def declared_unit(declared_units: Mapping[str, str] | None, analyte: str) -> str | None:
    """The unit a manifest declares for ``analyte`` (its own key, else ``'*'``), or None."""
    declared_units = declared_units or {}
    return declared_units.get(analyte, declared_units.get("*"))


def analyte_metadata(
    sidecar: Mapping | None = None,
    units=None,
    limits=None,
    *,
    source="sidecar",
    declared_units: Mapping[str, str] | None = None,
    file_analytes: Iterable[str] = (),
) -> dict:
    """Per-analyte ``{"unit", "LLOQ", "ULOQ"}`` from a sidecar dict, overridden by ``units``/``limits``.

    Sources, lowest priority first: BIDS column entries with ``Units`` (wide tables), the sidecar's
    ``"analytes"`` block, then the ``units={analyte: unit}`` and ``limits={analyte: {"LLOQ":, "ULOQ":}}``
    arguments. Limits are in the declared unit.

    ``declared_units`` (the manifest's ``PhenotypeTable.units``: analyte name as in the file, or ``'*'``
    for every analyte) supplies the unit of each analyte in ``file_analytes`` (and each sidecar entry) that
    the sidecar leaves without one; a sidecar unit that disagrees with it is an InputError naming the analyte.
    """
    sidecar = dict(sidecar or {})
    meta: dict[str, dict] = {}
    for column, entry in sidecar.items():
        if column != "analytes" and isinstance(entry, Mapping) and "Units" in entry:
            meta[column] = {"unit": entry["Units"], "LLOQ": entry.get("LLOQ"), "ULOQ": entry.get("ULOQ")}
    for analyte, entry in (sidecar.get("analytes") or {}).items():
        meta[analyte] = {"unit": entry.get("unit"), "LLOQ": entry.get("LLOQ"), "ULOQ": entry.get("ULOQ")}
    if declared_units:
        for analyte in dict.fromkeys([*meta, *file_analytes, *(k for k in declared_units if k != "*")]):
            unit = declared_unit(declared_units, analyte)
            if unit is None:
                continue
            entry = meta.setdefault(analyte, {"unit": None, "LLOQ": None, "ULOQ": None})
            if entry.get("unit") and not _same_unit(entry["unit"], unit):
                raise InputError(
                    f"{source}: analyte {analyte}: the sidecar's unit {entry['unit']!r} disagrees with the "
                    f"unit {unit!r} declared in the manifest (phenotype table 'units')"
                )
            entry["unit"] = entry.get("unit") or unit
    for analyte, unit in (units or {}).items():
        meta.setdefault(analyte, {"LLOQ": None, "ULOQ": None})["unit"] = unit
    for analyte, entry in (limits or {}).items():
        meta.setdefault(analyte, {"unit": None, "LLOQ": None, "ULOQ": None}).update(
            {k: v for k, v in entry.items() if k in ("LLOQ", "ULOQ")}
        )
    for analyte, entry in meta.items():
        if not entry.get("unit"):
            raise InputError(f"{source}: analyte {analyte}: no unit declared")
        try:
            canonical_unit(entry["unit"])
        except ValueError as exc:
            raise InputError(f"{source}: analyte {analyte}: {exc}") from None
        entry["LLOQ"] = _limit(entry.get("LLOQ"), "LLOQ", analyte, source)
        entry["ULOQ"] = _limit(entry.get("ULOQ"), "ULOQ", analyte, source)
        if entry["LLOQ"] is not None and entry["ULOQ"] is not None and entry["LLOQ"] >= entry["ULOQ"]:
            raise InputError(f"{source}: analyte {analyte}: LLOQ {entry['LLOQ']} is not below ULOQ {entry['ULOQ']}")
    return meta


def _participant_ids(participants) -> set[str] | None:
    if participants is None:
        return None
    if isinstance(participants, (str, Path)):
        participants = pd.read_csv(participants, sep="\t", dtype=str, keep_default_na=False)
    if isinstance(participants, pd.DataFrame):
        return set(participants["participant_id"].astype(str))
    return {str(p) for p in participants}


def _cells(table: pd.DataFrame, meta: dict, source: str, analytes) -> Iterable[dict]:
    """Yield one dict per (row, analyte) cell, long or wide, with the 1-based row number."""
    long = {"analyte", "value"} <= set(table.columns)
    replicate_column = next((c for c in REPLICATE_COLUMNS if c in table.columns), None)
    if long:
        has_unit = "unit" in table.columns
        unknown = [c for c in table.columns if c not in (*KEYS, *LONG_COLUMNS, *REPLICATE_COLUMNS)]
        if unknown:
            warnings.warn(
                f"{source}: column(s) {unknown} are not part of a long assay table "
                f"({', '.join([*KEYS, *LONG_COLUMNS])}, optional replicate/well) and were not read",
                UnknownColumnWarning,
                stacklevel=3,
            )
        for i, rec in enumerate(table.to_dict("records"), start=1):
            analyte = rec["analyte"].strip()
            if analytes is not None and analyte not in analytes:
                continue
            yield {
                "row": i,
                "participant_id": rec["participant_id"].strip(),
                "session_id": rec["session_id"].strip(),
                "timepoint": rec["timepoint"].strip(),
                "analyte": analyte,
                "text": rec["value"],
                "unit_text": rec["unit"].strip() if has_unit else None,
                "replicate": rec[replicate_column].strip() if replicate_column else None,
            }
        return
    columns = [c for c in table.columns if c in meta and (analytes is None or c in analytes)]
    ignored = [c for c in table.columns if c not in meta and c not in (*KEYS, *REPLICATE_COLUMNS)]
    if not columns:
        raise InputError(f"{source}: wide table without any declared analyte column (columns: {list(table.columns)})")
    if ignored:
        warnings.warn(
            f"{source}: columns without a declared unit were not read as analytes: {ignored}",
            UnknownColumnWarning,
            stacklevel=3,
        )
    for i, rec in enumerate(table.to_dict("records"), start=1):
        for analyte in columns:
            yield {
                "row": i,
                "participant_id": rec["participant_id"].strip(),
                "session_id": rec["session_id"].strip(),
                "timepoint": rec["timepoint"].strip(),
                "analyte": analyte,
                "text": rec[analyte],
                "unit_text": None,
                "replicate": rec[replicate_column].strip() if replicate_column else None,
            }


def _combine_wells(group: list[dict], source: str) -> dict:
    first = group[0]
    rows = ";".join(str(g["row"]) for g in group)
    where = _where(
        source, rows, first["participant_id"], first["session_id"], first["timepoint"], first["analyte"], "value"
    )
    present = [g for g in group if g["censoring"] != "missing"]
    observed = [g["value"] for g in present if g["censoring"] == "observed"]
    below = [g["limit"] for g in present if g["censoring"] == "below"]
    above = [g["limit"] for g in present if g["censoring"] == "above"]
    out = dict(first)
    out.update(
        row=rows,
        text="; ".join(str(g["text"]) for g in group),
        n_replicates=len(present),
        n_replicates_censored=len(below) + len(above),
        replicate_cv_pct=math.nan,
        limit=math.nan,
        value=math.nan,
    )
    if observed:
        mean = float(np.mean(observed))
        out.update(value=mean, censoring="observed")
        if len(observed) >= 2:
            out["replicate_cv_pct"] = float(100 * np.std(observed, ddof=1) / mean)
    elif below and above:
        raise InputError(f"{where}: replicate wells are both below LLOQ and above ULOQ")
    elif below:
        out.update(censoring="below", limit=max(below))
    elif above:
        out.update(censoring="above", limit=min(above))
    else:
        out["censoring"] = "missing"
    return out


def load_cytokines(
    source,
    sidecar=None,
    *,
    units: Mapping[str, str] | None = None,
    limits: Mapping[str, Mapping[str, float]] | None = None,
    participants=None,
    replicates: bool = False,
    decimal: str = ".",
    analytes: Sequence[str] | None = None,
    declared_units: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read a long or wide assay table into one tidy row per subject-session-timepoint-analyte.

    ``declared_units``: the manifest's per-table units (:attr:`pipelines.study.manifest.PhenotypeTable.units`;
    analyte name or ``'*'`` → unit), used for analytes whose unit the file (unit column, sidecar) does not
    give; a unit written in the file that disagrees is an InputError naming the file, row and analyte.
    A subject-level draw that belongs to no session (screening) has ``session_id`` ``n/a``.

    ``source``: .tsv/.csv path (sidecar defaults to the same name with .json) or a DataFrame.
    ``participants``: participants.tsv path, DataFrame with ``participant_id`` or ids; unknown subjects
    are errors. Returns columns ``participant_id, session_id, timepoint, analyte, value, censoring, limit,
    unit, n_replicates, n_replicates_censored, replicate_cv_pct, value_raw, unit_raw, source,
    source_rows``; ``value`` and ``limit`` are in ``unit``, the analyte's declared unit.
    """
    table, name, path = _read_table(source)
    missing_keys = [k for k in KEYS if k not in table.columns]
    if missing_keys:
        raise InputError(f"{name}: missing key column(s) {missing_keys} (columns: {list(table.columns)})")
    if declared_units:
        long = {"analyte", "value"} <= set(table.columns)
        present = (
            table["analyte"].str.strip().unique()
            if long
            else [c for c in table.columns if c not in (*KEYS, *REPLICATE_COLUMNS)]
        )
        if not long and "*" not in declared_units:
            present = [c for c in present if c in declared_units]
        try:
            for unit in declared_units.values():
                canonical_unit(unit)
        except ValueError as exc:
            raise InputError(f"{name}: manifest units: {exc}") from None
    else:
        present = ()
    meta = analyte_metadata(
        _read_sidecar(sidecar, path), units, limits, source=name, declared_units=declared_units, file_analytes=present
    )
    known = _participant_ids(participants)
    wanted = set(analytes) if analytes is not None else None
    replicate_column = next((c for c in REPLICATE_COLUMNS if c in table.columns), None)

    cells = []
    for cell in _cells(table, meta, name, wanted):
        where = _where(
            name, cell["row"], cell["participant_id"], cell["session_id"], cell["timepoint"], cell["analyte"]
        )
        for key in KEYS:
            if not cell[key]:
                raise InputError(f"{where}, field {key}: empty key")
        if known is not None and cell["participant_id"] not in known:
            raise InputError(f"{where}, field participant_id: unknown subject (not in participants)")
        entry = meta.get(cell["analyte"])
        if entry is None:
            raise InputError(
                f"{where}, field analyte: no unit declared for this analyte (sidecar 'analytes' or units=)"
            )
        factor = 1.0
        unit_text = cell["unit_text"]
        text_is_missing = str(cell["text"]).strip().lower() in MISSING_STRINGS
        if unit_text is not None and unit_text.lower() not in MISSING_STRINGS:
            manifest_unit = declared_unit(declared_units, cell["analyte"])
            if manifest_unit is not None and not _same_unit(unit_text, manifest_unit):
                raise InputError(
                    f"{where}, field unit: {unit_text!r} disagrees with the unit {manifest_unit!r} "
                    "declared for this analyte in the manifest (phenotype table 'units')"
                )
            try:
                factor = unit_conversion_ratio(unit_text, entry["unit"])
            except ValueError as exc:
                raise InputError(
                    f"{where}, field unit: {exc} (declared unit of {cell['analyte']}: {entry['unit']!r})"
                ) from None
        elif unit_text is not None and not text_is_missing and declared_unit(declared_units, cell["analyte"]) is None:
            raise InputError(f"{where}, field unit: value {cell['text']!r} has no unit")
        try:
            parsed = parse_lab_value(
                cell["text"], lloq=entry["LLOQ"], uloq=entry["ULOQ"], decimal=decimal, factor=factor
            )
        except ValueError as exc:
            raise InputError(f"{where}, field value: {exc}") from None
        cell.update(value=parsed.value, censoring=parsed.censoring, limit=parsed.limit, unit=entry["unit"])
        cells.append(cell)

    grouped: dict[tuple, list[dict]] = {}
    for cell in cells:
        grouped.setdefault((cell["participant_id"], cell["session_id"], cell["timepoint"], cell["analyte"]), []).append(
            cell
        )
    declared = replicates or replicate_column is not None
    records = []
    for group in grouped.values():
        if len(group) > 1:
            group = _deduplicate(group, name, by_replicate=replicate_column is not None, declared=declared)
        if len(group) == 1:
            only = dict(group[0])
            only.update(
                row=str(only["row"]),
                n_replicates=int(only["censoring"] != "missing"),
                n_replicates_censored=int(only["censoring"] in ("below", "above")),
                replicate_cv_pct=math.nan,
            )
            records.append(only)
        else:
            records.append(_combine_wells(group, name))

    out = pd.DataFrame.from_records(records)
    if out.empty:
        raise InputError(f"{name}: no analyte values read")
    out = out.rename(columns={"text": "value_raw", "unit_text": "unit_raw", "row": "source_rows"})
    out["source"] = name
    out["value_raw"] = out["value_raw"].astype(str)
    out["unit_raw"] = out["unit_raw"].fillna("").astype(str)
    out = out[
        [
            *KEYS,
            "analyte",
            "value",
            "censoring",
            "limit",
            "unit",
            "n_replicates",
            "n_replicates_censored",
            "replicate_cv_pct",
            "value_raw",
            "unit_raw",
            "source",
            "source_rows",
        ]
    ]
    out = out.astype(
        {"value": float, "limit": float, "replicate_cv_pct": float, "n_replicates": int, "n_replicates_censored": int}
    )
    _flag_converted_units(out, name)
    out.attrs["analytes"] = meta
    out.attrs["source"] = name
    return out.reset_index(drop=True)


class UnitConversionWarning(UserWarning):
    """Values written in another unit than their analyte's declared unit were converted (maybe a mislabel)."""


# A converted value this many times away from the median of its analyte's values in the declared unit (on
# either side) is flagged: a pg/mL value labelled ng/mL is 1000x off, while cytokines rarely vary 30-fold
# between visits of one study.
UNIT_OUTLIER_FOLD = 30.0


def _flag_converted_units(out: pd.DataFrame, source: str) -> None:
    """Add ``unit_converted`` and ``unit_outlier`` and warn: a row whose unit differs from the declared one is
    converted exactly, but a wrong label (ng/mL for pg/mL) would silently scale it 1000-fold."""
    raw = out["unit_raw"].map(lambda u: _canonical_or_none(u))
    declared = out["unit"].map(lambda u: _canonical_or_none(u))
    out["unit_converted"] = raw.notna() & (raw != declared)
    out["unit_outlier"] = False
    if not out["unit_converted"].any():
        return
    for analyte, part in out.groupby("analyte"):
        converted = part["unit_converted"]
        if not converted.any():
            continue
        reference = part.loc[~converted & (part["censoring"] == "observed") & (part["value"] > 0), "value"]
        rows = ", ".join(str(r) for r in part.loc[converted, "source_rows"])
        units = ", ".join(sorted(set(part.loc[converted, "unit_raw"])))
        message = (
            f"{source}: {int(converted.sum())} {analyte} value(s) (rows {rows}) written in {units} were converted "
            f"to the declared {part['unit'].iloc[0]}"
        )
        if len(reference) >= 3:
            median = float(reference.median())
            values = part.loc[converted, "value"]
            fold = np.maximum(values / median, median / values.where(values > 0))
            outliers = values.index[(fold >= UNIT_OUTLIER_FOLD).to_numpy()]
            out.loc[outliers, "unit_outlier"] = True
            if len(outliers):
                message += (
                    f"; {len(outliers)} of them lie ≥ {UNIT_OUTLIER_FOLD:g}× from the median of the other "
                    f"{analyte} values ({median:g}): check the unit label (flagged unit_outlier)"
                )
        warnings.warn(message, UnitConversionWarning, stacklevel=4)


def _canonical_or_none(unit) -> str | None:
    text = str(unit).strip()
    if not text or text.lower() in MISSING_STRINGS:
        return None
    try:
        return canonical_unit(text)
    except ValueError:
        return None


def _same(a: dict, b: dict) -> bool:
    def eq(x, y):
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12)

    return a["censoring"] == b["censoring"] and eq(a["value"], b["value"]) and eq(a["limit"], b["limit"])


def _deduplicate(group: list[dict], source: str, *, by_replicate: bool, declared: bool) -> list[dict]:
    """Collapse identical duplicates (warning); conflicting undeclared duplicates are an error."""
    buckets: dict[object, list[dict]] = {}
    for cell in group:
        buckets.setdefault(cell["replicate"] if by_replicate else None, []).append(cell)
    kept = []
    for cells in buckets.values():
        if len(cells) > 1 and (by_replicate or not declared):
            first = cells[0]
            rows = ";".join(str(c["row"]) for c in cells)
            where = _where(
                source,
                rows,
                first["participant_id"],
                first["session_id"],
                first["timepoint"],
                first["analyte"],
                "value",
            )
            if not all(_same(first, c) for c in cells[1:]):
                values = [c["text"] for c in cells]
                raise InputError(
                    f"{where}: duplicate rows with conflicting values {values}"
                    + (
                        ""
                        if by_replicate
                        else " (declare replicates=True or add a 'replicate' column if these are wells)"
                    )
                )
            warnings.warn(f"{where}: identical duplicate rows collapsed into one", stacklevel=4)
            kept.append(first)
        else:
            kept.extend(cells)
    return kept


# ---------------------------------------------------------------------------- summaries, derived
def censoring_summary(parsed: pd.DataFrame, by: Sequence[str] = ("analyte", "timepoint")) -> pd.DataFrame:
    """Counts per analyte × time point: ``n`` rows = ``n_observed + n_below + n_above + n_missing``.

    Only rows present in the table are counted (an absent subject is not invented as missing).
    """
    by = list(by)
    counts = (
        pd.crosstab([parsed[c] for c in by], parsed["censoring"])
        .reindex(columns=list(CENSORING_LEVELS), fill_value=0)
        .rename(columns={c: f"n_{c}" for c in CENSORING_LEVELS})
    )
    counts.columns.name = None
    counts.insert(0, "n", counts.sum(axis=1))
    counts["pct_censored"] = 100 * (counts["n_below"] + counts["n_above"]) / counts["n"]
    out = counts.reset_index()
    order = {c: list(dict.fromkeys(parsed[c])) for c in by}
    return out.sort_values(by, key=lambda s: s.map({v: i for i, v in enumerate(order[s.name])})).reset_index(drop=True)


def substitute_censored(parsed: pd.DataFrame, strategy: str = "lloq_half") -> pd.DataFrame:
    """Add ``value_substituted`` (the analyte's unit) and ``strategy``: observed values unchanged, below →
    bound/2 (``lloq_half``) or bound/√2 (``lloq_sqrt2``), above → the bound (ULOQ), missing → NaN."""
    if strategy not in SUBSTITUTION_STRATEGIES:
        raise ValueError(
            f"strategy {strategy!r} is not a substitution; choose from {SUBSTITUTION_STRATEGIES} "
            "(censored_mle is an estimator: use paired_change(strategy='censored_mle') or censored_normal_mle)"
        )
    divisor = 2.0 if strategy == "lloq_half" else math.sqrt(2.0)
    out = parsed.copy()
    cens = out["censoring"]
    out["value_substituted"] = np.select(
        [cens == "observed", cens == "below", cens == "above"],
        [out["value"], out["limit"] / divisor, out["limit"]],
        default=np.nan,
    )
    out["strategy"] = strategy
    return out


def ln_transform(df: pd.DataFrame, column: str = "value_substituted", out: str = "ln_value") -> pd.DataFrame:
    """Add ``out`` = natural log of ``column``; a non-positive value is an error, never -inf or NaN."""
    values = df[column].astype(float)
    bad = values.notna() & (values <= 0)
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise InputError(
            f"{row.get('source', '<table>')}: subject {row['participant_id']}, session {row['session_id']}, "
            f"analyte {row['analyte']}: {column}={row[column]} cannot be log-transformed"
        )
    result = df.copy()
    result[out] = np.log(values)
    return result


def value_bounds(parsed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Interval (lower, upper) of each row on the concentration scale: observed x → (x, x); below L → (0, L);
    above U → (U, +inf); missing → (NaN, NaN)."""
    cens = parsed["censoring"].to_numpy()
    value = parsed["value"].to_numpy(dtype=float)
    limit = parsed["limit"].to_numpy(dtype=float)
    lower = np.select([cens == "observed", cens == "below", cens == "above"], [value, 0.0, limit], np.nan)
    upper = np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan)
    return lower, upper


def ln_bounds(parsed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Natural-log interval (lower, upper) of each row: observed x → (ln x, ln x); below L → (−inf, ln L);
    above U → (ln U, +inf); missing → (NaN, NaN). The input of :func:`censored_normal_mle`."""
    cens = parsed["censoring"].to_numpy()
    value = np.log(parsed["value"].to_numpy(dtype=float))
    limit = np.log(parsed["limit"].to_numpy(dtype=float))
    lower = np.select([cens == "observed", cens == "below", cens == "above"], [value, -np.inf, limit], np.nan)
    upper = np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan)
    return lower, upper


def flag_outliers(
    df: pd.DataFrame, column: str = "ln_value", k: float = 3.5, by: Sequence[str] = ("analyte", "timepoint")
) -> pd.DataFrame:
    """Add ``outlier`` (bool) and ``outlier_reason``: observed values outside median ± k·MAD (MAD × 1.4826)
    of ``column`` within each ``by`` group. Censored values are not judged; nothing is deleted."""
    out = df.copy()
    out["outlier"] = False
    out["outlier_reason"] = ""
    observed = out["censoring"] == "observed"
    for keys, idx in out[observed].groupby(list(by)).groups.items():
        x = out.loc[idx, column].astype(float)
        if x.notna().sum() < 3:
            continue
        median = float(x.median())
        mad = MAD_TO_SD * float((x - median).abs().median())
        if mad == 0:
            continue
        low, high = median - k * mad, median + k * mad
        label = ", ".join(f"{b}={v}" for b, v in zip(by, keys if isinstance(keys, tuple) else (keys,)))
        for i, v in x.items():
            if v > high or v < low:
                side = f"> median + {k}*MAD = {high:.3g}" if v > high else f"< median - {k}*MAD = {low:.3g}"
                out.loc[i, "outlier"] = True
                out.loc[i, "outlier_reason"] = (
                    f"{column}={v:.3g} {side} (median {median:.3g}, scaled MAD {mad:.3g}; {label})"
                )
    return out


def add_kyn_trp_ratio(parsed: pd.DataFrame, kyn: str = "KYN", trp: str = "TRP", name: str = "KYN_TRP") -> pd.DataFrame:
    """Append rows for ``name`` = KYN[µmol/L]/TRP[µmol/L] × 1000 (unit µmol/mmol) per subject-session-timepoint.

    Censoring propagates through the bounds; both members censored so that the ratio's direction is
    undetermined (e.g. both below) gives ``missing``. Mass units for KYN/TRP are an error.
    """
    if name in set(parsed["analyte"]):
        raise ValueError(f"analyte {name!r} already present")
    halves = {}
    for analyte in (kyn, trp):
        part = parsed[parsed["analyte"] == analyte]
        if part.empty:
            raise InputError(f"{parsed.attrs.get('source', '<table>')}: no {analyte} rows for the {name} ratio")
        factors = {}
        for unit in part["unit"].unique():
            try:
                factors[unit] = unit_conversion_factor(unit, "umol/L")
            except ValueError as exc:
                raise InputError(f"{part['source'].iloc[0]}: analyte {analyte}: {exc}") from None
        f = part["unit"].map(factors).astype(float)
        halves[analyte] = part.assign(value=part["value"] * f, limit=part["limit"] * f)[
            [*KEYS, "value", "censoring", "limit", "source"]
        ]
    both = halves[kyn].merge(halves[trp], on=list(KEYS), suffixes=("_k", "_t"))
    rows = []
    for r in both.itertuples(index=False):
        ck, ct = r.censoring_k, r.censoring_t
        # numerator bound and direction, denominator bound and direction -> ratio bound and direction
        value, cens, limit = math.nan, "missing", math.nan
        if "missing" in (ck, ct):
            pass
        elif ck == "observed" and ct == "observed":
            value, cens = r.value_k / r.value_t * 1000, "observed"
        else:
            num = r.value_k if ck == "observed" else r.limit_k
            den = r.value_t if ct == "observed" else r.limit_t
            up = {"observed": 0, "below": -1, "above": 1}
            direction = up[ck] - up[ct]  # numerator below or denominator above -> ratio below
            if direction != 0:  # both censored the same way: direction unknown -> missing
                cens, limit = ("below" if direction < 0 else "above"), num / den * 1000
        rows.append(
            {
                "participant_id": r.participant_id,
                "session_id": r.session_id,
                "timepoint": r.timepoint,
                "analyte": name,
                "value": value,
                "censoring": cens,
                "limit": limit,
                "unit": KYN_TRP_UNIT,
                "n_replicates": 1,
                "n_replicates_censored": int(cens in ("below", "above")),
                "replicate_cv_pct": math.nan,
                "value_raw": "",
                "unit_raw": "",
                "source": f"derived: {kyn}/{trp}*1000 from {r.source_k}",
                "source_rows": "",
            }
        )
    out = pd.concat([parsed, pd.DataFrame.from_records(rows, columns=parsed.columns)], ignore_index=True)
    out.attrs = dict(parsed.attrs)
    return out


# ------------------------------------------------------------------------------ censored MLE
def _log_interval_prob(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """log(Φ(zb) − Φ(za)) for za < zb, computed on the tail where it is accurate."""
    flip = za > 0
    a = np.where(flip, -zb, za)
    b = np.where(flip, -za, zb)
    log_b = special.log_ndtr(b)
    return log_b + np.log1p(-np.exp(np.minimum(special.log_ndtr(a) - log_b, 0.0)) + 1e-300)


def _censored_loglik(mu: float, log_sigma: float, exact, left_upper, right_lower, int_lower, int_upper) -> float:
    sigma = math.exp(log_sigma)
    ll = np.sum(sstats.norm.logpdf(exact, mu, sigma))
    ll += np.sum(special.log_ndtr((left_upper - mu) / sigma))
    ll += np.sum(special.log_ndtr(-(right_lower - mu) / sigma))
    if int_lower.size:
        ll += np.sum(_log_interval_prob((int_lower - mu) / sigma, (int_upper - mu) / sigma))
    return float(ll)


def _hessian(f, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    n = x.size
    h = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * step, np.eye(n)[j] * step
            h[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * step * step)
    return h


def censored_normal_mle(lower, upper, *, ci: float = 0.95, null_mean: float = 0.0) -> dict:
    """Maximum-likelihood mean and SD of a normal sample observed as intervals (Tobit-style).

    Each observation is an interval on the analysis (here: natural-log) scale: ``lower == upper`` exact;
    ``lower = -inf`` left-censored; ``upper = +inf`` right-censored; both finite an interval. Exact values
    contribute the density, censored ones the probability of their interval. Rows with NaN or with
    both ends infinite carry no information and are counted in ``n_uninformative``. Needs ≥ 2 exact
    values. Returns ``mean, sd, se_mean, ci_low, ci_high`` (Wald, observed information), ``p`` (likelihood
    ratio test of mean == ``null_mean``), ``n`` (informative), ``n_exact``, ``n_censored``,
    ``n_uninformative``, ``loglik``, ``converged``.
    """
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if lower.shape != upper.shape:
        raise ValueError("lower and upper must have the same shape")
    if np.any(lower > upper):
        raise ValueError("every interval needs lower <= upper")
    informative = ~(np.isnan(lower) | np.isnan(upper)) & ~(np.isneginf(lower) & np.isposinf(upper))
    lo, hi = lower[informative], upper[informative]
    exact = lo[lo == hi]
    left = hi[np.isneginf(lo) & np.isfinite(hi)]
    right = lo[np.isfinite(lo) & np.isposinf(hi)]
    is_int = np.isfinite(lo) & np.isfinite(hi) & (lo < hi)
    int_lo, int_hi = lo[is_int], hi[is_int]
    result = {
        "mean": math.nan,
        "sd": math.nan,
        "se_mean": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p": math.nan,
        "n": int(informative.sum()),
        "n_exact": int(exact.size),
        "n_censored": int(informative.sum() - exact.size),
        "n_uninformative": int((~informative).sum()),
        "loglik": math.nan,
        "converged": False,
    }
    if exact.size < 2:
        return result
    data = (exact, left, right, int_lo, int_hi)

    def nll(theta):
        return -_censored_loglik(theta[0], theta[1], *data)

    sd0 = float(np.std(exact, ddof=1)) or 1.0
    start = np.array([float(np.mean(exact)), math.log(sd0)])
    fit = optimize.minimize(nll, start, method="BFGS")
    if not fit.success:
        fit = optimize.minimize(
            nll, fit.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 5000}
        )
    theta = fit.x
    cov = np.linalg.pinv(_hessian(nll, theta))
    se = math.sqrt(cov[0, 0]) if cov[0, 0] > 0 else math.nan
    z = sstats.norm.ppf(0.5 + ci / 2)
    null = optimize.minimize_scalar(
        lambda ls: -_censored_loglik(null_mean, ls, *data), bracket=(theta[1] - 1, theta[1] + 1)
    )
    lr = max(2 * (null.fun - fit.fun), 0.0)
    result.update(
        mean=float(theta[0]),
        sd=math.exp(theta[1]),
        se_mean=se,
        ci_low=theta[0] - z * se,
        ci_high=theta[0] + z * se,
        p=float(sstats.chi2.sf(lr, 1)),
        loglik=-float(fit.fun),
        converged=bool(fit.success) and np.isfinite(se),
    )
    return result


# ------------------------------------------------------------------------------ paired change
def _pairs(parsed: pd.DataFrame, baseline: str, post: str, analytes) -> pd.DataFrame:
    """One row per subject-session-analyte with both time points' value/censoring/limit."""
    missing = [t for t in (baseline, post) if t not in set(parsed["timepoint"])]
    if missing:
        raise ValueError(f"time point(s) {missing} not in the table (have {sorted(set(parsed['timepoint']))})")
    data = parsed if analytes is None else parsed[parsed["analyte"].isin(list(analytes))]
    columns = ["participant_id", "session_id", "analyte", "value", "censoring", "limit"]
    base = data.loc[data["timepoint"] == baseline, columns]
    after = data.loc[data["timepoint"] == post, columns]
    pairs = base.merge(after, on=["participant_id", "session_id", "analyte"], suffixes=("_baseline", "_post"))
    present = (pairs["censoring_baseline"] != "missing") & (pairs["censoring_post"] != "missing")
    return pairs[present].reset_index(drop=True)


def log_change_table(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Per subject-session-analyte ``ln_baseline``, ``ln_post``, ``ln_change`` = ln(post) − ln(baseline)
    after substitution (``strategy`` must be a substitution), with ``any_censored``; ``value_baseline``,
    ``value_post`` (the analyte's unit) and ``change`` on ``scale`` (:data:`CHANGE_SCALES`: ``ln_change`` or
    post − baseline), with ``change_scale``."""
    if scale not in CHANGE_SCALES:
        raise ValueError(f"scale must be one of {CHANGE_SCALES}, not {scale!r}")
    sub = substitute_censored(parsed, strategy)
    pairs = _pairs(sub.assign(value=sub["value_substituted"]), baseline, post, analytes)
    pairs["ln_baseline"] = np.log(pairs["value_baseline"])
    pairs["ln_post"] = np.log(pairs["value_post"])
    pairs["ln_change"] = pairs["ln_post"] - pairs["ln_baseline"]
    pairs["any_censored"] = (pairs["censoring_baseline"] != "observed") | (pairs["censoring_post"] != "observed")
    pairs["strategy"] = strategy
    pairs["change"] = pairs["ln_change"] if scale == "ln_ratio" else pairs["value_post"] - pairs["value_baseline"]
    pairs["change_scale"] = scale
    return pairs[
        [
            "participant_id",
            "session_id",
            "analyte",
            "ln_baseline",
            "ln_post",
            "ln_change",
            "value_baseline",
            "value_post",
            "change",
            "change_scale",
            "any_censored",
            "strategy",
        ]
    ]


def hedges_g_av(baseline: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Hedges g_av (Lakens 2013, eq. 10): mean(post − baseline) / mean(SD_baseline, SD_post) ×
    (1 − 3 / (4·2n − 9)); rows of a 2-D input are separate samples (bootstrap)."""
    baseline, post = np.atleast_2d(baseline), np.atleast_2d(post)
    n = baseline.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        d_av = (post - baseline).mean(axis=1) / ((baseline.std(axis=1, ddof=1) + post.std(axis=1, ddof=1)) / 2)
    return d_av * (1 - 3 / (4 * 2 * n - 9))


def rank_biserial(diff: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial correlation (Kerby 2014), zero differences dropped as in Wilcoxon's
    ``zero_method='wilcox'``: (R+ − R−)/(R+ + R−); rows of a 2-D input are separate samples."""
    diff = np.atleast_2d(np.asarray(diff, dtype=float))
    a = np.where(diff == 0, np.nan, np.abs(diff))
    ranks = sstats.rankdata(a, axis=1, nan_policy="omit")
    total = np.nansum(ranks, axis=1)
    plus = np.nansum(np.where(diff > 0, ranks, 0.0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (2 * plus - total) / total, np.nan)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences ``d`` (zeros dropped, ``zero_method="wilcox"``),
    equal to ``scipy.stats.wilcoxon(d, zero_method="wilcox").pvalue``.

    With ties or zeros and n ≤ 13, scipy computes the exact sign-flip permutation p with a Python-level
    statistic per flip (~1 s per call, and substituted censored values make ties common); here the same
    permutation test runs vectorised: flipping signs leaves the ranks of |d| unchanged, so R+ of every flip
    is a sum of fixed ranks.
    """
    d = np.asarray(d, dtype=float)
    nonzero = np.abs(d[d != 0])
    if d.size > 13 or (nonzero.size == d.size and np.unique(nonzero).size == nonzero.size):
        return float(sstats.wilcoxon(d, zero_method="wilcox").pvalue)
    ranks = np.zeros(d.size)
    ranks[d != 0] = sstats.rankdata(nonzero)

    def r_plus(x, axis=-1):
        return np.sum(np.where(x > 0, ranks, 0.0), axis=axis)

    result = sstats.permutation_test(
        (d,), r_plus, permutation_type="samples", vectorized=True, n_resamples=np.inf, alternative="two-sided"
    )
    return float(result.pvalue)


def _percentile_ci(samples: np.ndarray, ci: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(samples, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def _substitution_stats(ln_base, ln_post, n_censored, *, n_boot, ci, seed) -> dict:
    d = ln_post - ln_base
    n = d.size
    row = {"n": n, "n_censored": n_censored, "n_uninformative": 0}
    nan_keys = (
        "estimate",
        "ci_low",
        "ci_high",
        "sd_change",
        "p_wilcoxon",
        "p_ttest",
        "p_mle",
        "hedges_g_av",
        "g_ci_low",
        "g_ci_high",
        "rank_biserial",
        "rb_ci_low",
        "rb_ci_high",
    )
    row.update(dict.fromkeys(nan_keys, math.nan))
    if n == 0:
        return row
    row["estimate"] = float(d.mean())
    if n < 2:
        return row
    sd = float(d.std(ddof=1))
    half = sstats.t.ppf(0.5 + ci / 2, n - 1) * sd / math.sqrt(n)
    row.update(sd_change=sd, ci_low=row["estimate"] - half, ci_high=row["estimate"] + half)
    if sd > 0:
        row["p_ttest"] = float(sstats.ttest_1samp(d, 0.0).pvalue)
    if np.any(d != 0):
        row["p_wilcoxon"] = wilcoxon_p(d)
    row["hedges_g_av"] = float(hedges_g_av(ln_base, ln_post)[0]) if n >= 3 else math.nan
    row["rank_biserial"] = float(rank_biserial(d)[0])
    if n >= 3 and n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        row["g_ci_low"], row["g_ci_high"] = _percentile_ci(hedges_g_av(ln_base[idx], ln_post[idx]), ci)
        row["rb_ci_low"], row["rb_ci_high"] = _percentile_ci(rank_biserial(d[idx]), ci)
    return row


def _mle_stats(pairs: pd.DataFrame, *, ci, scale: str = "ln_ratio") -> dict:
    bounds = ln_bounds if scale == "ln_ratio" else value_bounds
    lo_b, hi_b = bounds(pairs.rename(columns=lambda c: c.removesuffix("_baseline")))
    lo_p, hi_p = bounds(pairs.rename(columns=lambda c: c.removesuffix("_post")))
    with np.errstate(invalid="ignore"):
        lower, upper = lo_p - hi_b, hi_p - lo_b
    fit = censored_normal_mle(lower, upper, ci=ci)
    row = dict.fromkeys(
        ("p_wilcoxon", "p_ttest", "hedges_g_av", "g_ci_low", "g_ci_high", "rank_biserial", "rb_ci_low", "rb_ci_high"),
        math.nan,
    )
    row.update(
        n=fit["n"],
        n_censored=fit["n_censored"],
        n_uninformative=fit["n_uninformative"],
        estimate=fit["mean"],
        ci_low=fit["ci_low"],
        ci_high=fit["ci_high"],
        sd_change=fit["sd"],
        p_mle=fit["p"],
    )
    return row


def _fdr_within(table: pd.DataFrame, family: Sequence[str], alpha: float) -> pd.DataFrame:
    from pipelines.stats import fdr_bh

    table = table.copy()
    table["p_fdr"] = np.nan
    for _, idx in table.groupby(list(family), sort=False).groups.items():
        table.loc[idx, "p_fdr"] = fdr_bh(table.loc[idx, "p"].to_numpy(dtype=float))  # NaN p stays NaN
    table["significant_fdr"] = table["p_fdr"] <= alpha
    return table


def _attach_strata(data: pd.DataFrame, strata: pd.DataFrame | None) -> pd.DataFrame:
    if strata is None:
        return data.assign(stratum="all")
    on = [c for c in ("participant_id", "session_id") if c in strata.columns]
    if "participant_id" not in on or "stratum" not in strata.columns:
        raise ValueError("strata needs participant_id (optionally session_id) and stratum columns")
    if strata.duplicated(on).any():
        raise ValueError(f"strata has duplicate rows for {on}")
    merged = data.merge(strata[[*on, "stratum"]], on=on, how="left")
    merged["stratum"] = merged["stratum"].fillna("unassigned")
    return merged


def paired_change(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    strata: pd.DataFrame | None = None,
    primary_test: str = "wilcoxon",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Paired ln-change ``baseline`` → ``post`` per session × stratum × analyte, one tidy row each.

    ``scale="difference"`` expresses every change as post − baseline in the analyte's unit instead (estimate,
    CIs, effect sizes; fold-change columns NaN; censored_mle then fits normal differences whose censored
    members are bounded by 0 and the limit). The scale is stated in ``change_scale`` and ``estimand``.

    ``estimate`` = mean ln(post/baseline) (natural log; ``fold_change`` = exp) with a t CI, or the
    censored-likelihood estimate and Wald CI for ``strategy="censored_mle"``. Substitution strategies
    also give ``p_wilcoxon`` (scipy signed-rank, zeros dropped), ``p_ttest`` (paired t), Hedges ``g_av``
    and the matched-pairs ``rank_biserial`` with seeded percentile-bootstrap CIs. ``p`` is the
    ``primary_test`` p-value ("wilcoxon" or "ttest"; the likelihood-ratio p for censored_mle) and
    ``p_fdr`` its BH adjustment across analytes within each session × stratum. With ``strata`` (from
    :func:`inflammation_strata`) each stratum gets rows, plus ``stratum="all"``. Sessions are analysed
    separately: a subject contributes one pair per session row.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if primary_test not in ("wilcoxon", "ttest"):
        raise ValueError("primary_test must be 'wilcoxon' or 'ttest'")
    if scale not in CHANGE_SCALES:
        raise ValueError(f"scale must be one of {CHANGE_SCALES}, not {scale!r}")
    transform = np.log if scale == "ln_ratio" else (lambda v: v)
    if strategy == "censored_mle":
        pairs = _pairs(parsed, baseline, post, analytes)
    else:
        sub = substitute_censored(parsed, strategy)
        pairs = _pairs(sub.assign(value=sub["value_substituted"]), baseline, post, analytes)
    pairs = _attach_strata(pairs, strata)
    if strata is not None:
        pairs = pd.concat([pairs, pairs.assign(stratum="all")], ignore_index=True)

    rows = []
    for (session, stratum, analyte), group in pairs.groupby(["session_id", "stratum", "analyte"], sort=False):
        censored = int(((group["censoring_baseline"] != "observed") | (group["censoring_post"] != "observed")).sum())
        if strategy == "censored_mle":
            stats_row = _mle_stats(group, ci=ci, scale=scale)
        else:
            stats_row = _substitution_stats(
                transform(group["value_baseline"].to_numpy(float)),
                transform(group["value_post"].to_numpy(float)),
                censored,
                n_boot=n_boot,
                ci=ci,
                seed=seed,
            )
        rows.append({"analyte": analyte, "session_id": session, "stratum": stratum, **stats_row})
    columns = [
        "analyte",
        "session_id",
        "stratum",
        "n",
        "n_censored",
        "n_uninformative",
        "estimate",
        "ci_low",
        "ci_high",
        "sd_change",
        "p_wilcoxon",
        "p_ttest",
        "p_mle",
        "hedges_g_av",
        "g_ci_low",
        "g_ci_high",
        "rank_biserial",
        "rb_ci_low",
        "rb_ci_high",
    ]
    table = pd.DataFrame.from_records(rows, columns=columns)
    if strategy == "censored_mle":
        table["p"] = table["p_mle"]
    else:
        table["p"] = table["p_wilcoxon" if primary_test == "wilcoxon" else "p_ttest"]
    table = _fdr_within(table, ["session_id", "stratum"], fdr_alpha)
    for col in ("estimate", "ci_low", "ci_high"):
        table[col.replace("estimate", "fold_change").replace("ci_", "fold_ci_")] = (
            np.exp(table[col]) if scale == "ln_ratio" else np.nan
        )
    table["baseline"], table["post"], table["strategy"] = baseline, post, strategy
    table["change_scale"] = scale
    table["estimand"] = (
        "mean of ln(post/baseline); exp() = geometric-mean fold change"
        if scale == "ln_ratio"
        else "mean of (post − baseline), in the analyte's unit"
    )
    test = (
        "likelihood-ratio test"
        if strategy == "censored_mle"
        else {"wilcoxon": "Wilcoxon signed-rank", "ttest": "paired t"}[primary_test]
    )
    table["method"] = (
        f"{STRATEGY_DESCRIPTIONS[strategy]}; p from {test}; BH-FDR across analytes within session x stratum; "
        + (
            "Wald CI"
            if strategy == "censored_mle"
            else f"t CI; effect-size CIs: percentile bootstrap n_boot={n_boot}, seed={seed}"
        )
    )
    return table.reset_index(drop=True)


def sensitivity_comparison(
    parsed: pd.DataFrame,
    baseline: str = "baseline",
    post: str = "24h",
    *,
    strategies: Sequence[str] = STRATEGIES,
    **kwargs,
) -> pd.DataFrame:
    """:func:`paired_change` under each censoring strategy, stacked into one tidy table (column ``strategy``)."""
    return pd.concat(
        [paired_change(parsed, baseline, post, strategy=s, **kwargs) for s in strategies], ignore_index=True
    )


# ------------------------------------------------------------------------------ strata, models
def inflammation_strata(
    parsed: pd.DataFrame,
    *,
    crp_analyte: str = "CRP",
    baseline: str = "baseline",
    threshold: float = 3.0,
    threshold_unit: str = "mg/L",
    level: str = "session",
    inflamed: str = "inflamed",
    not_inflamed: str = "non-inflamed",
    rel_tol: float = THRESHOLD_REL_TOL,
) -> pd.DataFrame:
    """Label each subject-session (``level="session"``) or subject (``level="subject"``) by baseline CRP.

    CRP ≥ ``threshold`` (in ``threshold_unit``, converted to CRP's unit) → ``inflamed``, else
    ``not_inflamed``. Censored CRP is classified only when its bound settles the question ("<1" with
    threshold 3 is not inflamed); otherwise, and when missing, the label is ``undetermined``. At subject
    level, a subject whose sessions disagree is ``discordant``.

    Boundary: the threshold is converted exactly (:func:`convert_exact`), as every value was when
    loaded, so 3 mg/L, 0.3 mg/dL, 3000 µg/L and 3000 ng/mL are all *at* a 3 mg/L threshold (inflamed).
    A value within ``rel_tol`` (relative, default 1e-9: far below any assay's precision) of the
    threshold also counts as at it, so values produced by float arithmetic elsewhere (e.g. 0.3 × 10 done
    by hand) are classed like the concentration they stand for.
    """
    if not 0 <= rel_tol < 1e-3:
        raise ValueError("rel_tol must be in [0, 1e-3)")
    if level not in ("session", "subject"):
        raise ValueError("level must be 'session' or 'subject'")
    crp = parsed[(parsed["analyte"] == crp_analyte) & (parsed["timepoint"] == baseline)].copy()
    if crp.empty:
        raise InputError(f"{parsed.attrs.get('source', '<table>')}: no {crp_analyte} rows at time point {baseline!r}")
    thresholds = {}
    for unit in crp["unit"].unique():
        try:
            thresholds[unit] = convert_exact(threshold, unit_conversion_ratio(threshold_unit, unit))
        except ValueError as exc:
            raise InputError(f"{crp['source'].iloc[0]}: analyte {crp_analyte}: {exc}") from None
    thr = crp["unit"].map(thresholds).astype(float)
    cens, value, limit = crp["censoring"], crp["value"], crp["limit"]
    at_or_above = value >= thr * (1 - rel_tol)
    crp["stratum"] = np.select(
        [
            (cens == "observed") & at_or_above,
            (cens == "observed") & ~at_or_above,
            (cens == "below") & (limit <= thr * (1 + rel_tol)),
            (cens == "above") & (limit >= thr * (1 - rel_tol)),
        ],
        [inflamed, not_inflamed, not_inflamed, inflamed],
        default="undetermined",
    )
    crp["crp_baseline"] = np.where(cens == "observed", value, limit)
    crp["crp_threshold"] = thr
    out = crp.rename(columns={"censoring": "crp_censoring", "unit": "crp_unit"})[
        ["participant_id", "session_id", "crp_baseline", "crp_censoring", "crp_unit", "crp_threshold", "stratum"]
    ]
    if level == "session":
        return out.reset_index(drop=True)
    per_subject = out.groupby("participant_id", sort=False).agg(
        stratum=("stratum", lambda s: s.iloc[0] if s.nunique() == 1 else "discordant"),
        n_sessions=("session_id", "nunique"),
    )
    return per_subject.reset_index()


def _safe_name(label: str) -> str:
    return re.sub(r"\W", "_", str(label))


def stratum_mixed_model(
    parsed: pd.DataFrame,
    sessions: pd.DataFrame,
    strata: pd.DataFrame,
    *,
    analytes: Sequence[str] | None = None,
    timepoints: Sequence[str] = ("baseline", "24h"),
    strategy: str = "lloq_half",
    inflamed: str = "inflamed",
    reml: bool = True,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Per analyte, ``ln_value ~ time × inflamed × dose_mg_per_kg + (1 | participant_id)`` via
    (``scale="difference"``: ``value ~ ...`` on the analyte's unit, so time terms are absolute differences)
    :func:`pipelines.stats.mixed_model`.

    ``time_<tp>`` are 0/1 indicators for each time point after the first (the reference);
    ``inflamed`` is 1 for stratum == ``inflamed`` and 0 for the other determined stratum (rows with
    ``undetermined``/``discordant``/unassigned strata are left out). ``sessions``: ``participant_id,
    session_id, dose_mg_per_kg``. Substitution strategies only. ``p_fdr`` adjusts each term across analytes.
    With ``analytes=None``, analytes not measured at every time point (e.g. CRP at baseline only) are skipped.
    """
    from pipelines.stats import mixed_model

    if strategy not in SUBSTITUTION_STRATEGIES:
        raise ValueError(f"the mixed model needs a substitution strategy {SUBSTITUTION_STRATEGIES}, not {strategy!r}")
    need = {"participant_id", "session_id", "dose_mg_per_kg"}
    if not need <= set(sessions.columns):
        raise ValueError(f"sessions needs columns {sorted(need)}")
    if sessions.duplicated(["participant_id", "session_id"]).any():
        raise ValueError("sessions has duplicate participant_id/session_id rows")
    timepoints = list(timepoints)
    data = parsed[parsed["timepoint"].isin(timepoints) & (parsed["censoring"] != "missing")]
    if analytes is not None:
        data = data[data["analyte"].isin(list(analytes))]
    data = ln_transform(substitute_censored(data, strategy))
    data = _attach_strata(data, strata)
    other = set(strata["stratum"]) - {inflamed, "undetermined", "discordant", "excluded"}
    data = data[data["stratum"].isin({inflamed, *other})]
    # The dose comes from ``sessions``; a dose column already in the table would otherwise be suffixed away.
    data = data.drop(columns=["dose_mg_per_kg"], errors="ignore").merge(
        sessions[["participant_id", "session_id", "dose_mg_per_kg"]], on=["participant_id", "session_id"], how="left"
    )
    no_dose = data["dose_mg_per_kg"].isna()
    if no_dose.any():
        r = data[no_dose].iloc[0]
        raise InputError(f"sessions: subject {r['participant_id']}, session {r['session_id']}: no dose_mg_per_kg")
    data["dose_mg_per_kg"] = data["dose_mg_per_kg"].astype(float)
    data["inflamed"] = (data["stratum"] == inflamed).astype(int)
    time_terms = []
    for tp in timepoints[1:]:
        name = f"time_{_safe_name(tp)}"
        data[name] = (data["timepoint"] == tp).astype(int)
        time_terms.append(name)
    response = "ln_value" if scale == "ln_ratio" else "value_substituted"
    formula = f"{response} ~ ({' + '.join(time_terms)}) * inflamed * dose_mg_per_kg"
    if data["dose_mg_per_kg"].nunique() < 2:  # one dose (open label): the dose terms are not identified
        formula = f"{response} ~ ({' + '.join(time_terms)}) * inflamed"
    results = []
    for analyte, group in data.groupby("analyte", sort=False):
        if group["timepoint"].nunique() < len(timepoints):
            if analytes is None:  # e.g. CRP measured at baseline only: nothing to model over time
                continue
            raise ValueError(
                f"analyte {analyte}: measured at {sorted(set(group['timepoint']))}, not at all of {timepoints}"
            )
        if group["inflamed"].nunique() < 2:
            raise ValueError(
                f"analyte {analyte}: both strata are needed for the model, have {sorted(set(group['stratum']))}"
            )
        fit = mixed_model(group.reset_index(drop=True), formula, groups="participant_id", reml=reml)
        results.append(fit.assign(analyte=analyte, formula=formula, strategy=strategy))
    table = _fdr_within(pd.concat(results, ignore_index=True), ["term"], fdr_alpha)
    first = ["analyte", "term"]
    return table[first + [c for c in table.columns if c not in first]]


def change_vs_mood(
    parsed: pd.DataFrame,
    mood_change: pd.DataFrame,
    outcomes: Sequence[str],
    *,
    baseline: str = "baseline",
    post: str = "24h",
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    method: str = "spearman",
    covariates: Sequence[str] | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Correlate per subject-session ln-change of each analyte (``<analyte>_ln_change``; with
    ``scale="difference"`` the absolute change, ``<analyte>_change``) with mood-change
    ``outcomes`` (``mood_change``: participant_id, session_id, outcome and covariate columns) through
    :func:`pipelines.stats.correlation_table`; rows without both are left out (see its ``n``)."""
    from pipelines.stats import correlation_table

    outcomes = list(outcomes)
    keys = ["participant_id", "session_id"]
    need = [*keys, *outcomes, *(covariates or [])]
    absent = [c for c in need if c not in mood_change.columns]
    if absent:
        raise ValueError(f"mood_change lacks columns {absent}")
    if mood_change.duplicated(keys).any():
        dup = mood_change[mood_change.duplicated(keys, keep=False)].iloc[0]
        raise InputError(f"mood_change: subject {dup['participant_id']}, session {dup['session_id']}: duplicate rows")
    changes = log_change_table(parsed, baseline, post, strategy=strategy, analytes=analytes, scale=scale)
    wide = changes.pivot(index=keys, columns="analyte", values="change")
    suffix = "_ln_change" if scale == "ln_ratio" else "_change"
    wide.columns = [f"{a}{suffix}" for a in wide.columns]
    x = list(wide.columns)
    data = wide.reset_index().merge(mood_change[need], on=keys, how="inner")
    table = correlation_table(
        data,
        x=x,
        y=outcomes,
        method=method,
        covariates=list(covariates) if covariates else None,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        fdr_alpha=fdr_alpha,
    )
    return table.assign(baseline=baseline, post=post, strategy=strategy, change_scale=scale)


# ------------------------------------------------------------------ strata without regression to the mean
STRATA_SOURCES = ("auto", "screening", "mean_baselines", "single_baseline")
ACUTE_RULES = ("session", "subject")
STRATA_SOURCE_TEXT = {
    "screening": "a separate screening CRP draw (independent of the baselines the change is measured from: no "
    "regression to the mean)",
    "mean_baselines": "the geometric mean of the subject's repeated pre-infusion baselines (a session's own "
    "baseline is one of k draws, so within-stratum changes keep about 1/k of a single baseline's "
    "regression to the mean; the placebo-controlled interaction is unbiased)",
    "single_baseline": "each session's own baseline CRP, the draw the change is measured from",
}
RTM_WARNING = (
    "⚠ Strata come from the single baseline CRP the change is measured from: the stratum contrast (and "
    "each stratum's change) is biased by regression to the mean; only the placebo-controlled interaction "
    "is interpretable."
)


def acute_rule_text(rule: str, acute_threshold: float | None, unit: str = "mg/L") -> str:
    """The acute-infection rule in one line (stated in every report that uses the strata)."""
    if acute_threshold is None:
        return "Acute-infection rule: off (no CRP level excludes a draw from the strata analysis)."
    if rule == "subject":
        what = "a subject with any pre-infusion CRP (screening or any baseline) ≥ {t} {u} is left out of the strata analysis"
    else:
        what = (
            "a session whose baseline CRP is ≥ {t} {u} is left out of the strata analysis (and of the mean of "
            "baselines); a subject whose screening CRP is ≥ {t} {u} is left out entirely"
        )
    return (
        f"Acute-infection rule '{rule}' (CRP ≥ {acute_threshold:g} {unit} = probable acute infection): "
        + what.format(t=f"{acute_threshold:g}", u=unit)
        + ". Post-infusion values ≥ the limit are flagged, never used to exclude (that would select on the outcome)."
    )


def _classify(lower: pd.Series, upper: pd.Series, thr: pd.Series, rel_tol: float, inflamed: str, not_inflamed: str):
    """inflamed when the value's lower bound is at/above the threshold, not inflamed when the upper bound is below."""
    return np.select(
        [lower >= thr * (1 - rel_tol), upper < thr * (1 - rel_tol)], [inflamed, not_inflamed], default="undetermined"
    )


def _bounds(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    cens, value, limit = rows["censoring"], rows["value"], rows["limit"]
    lower = pd.Series(
        np.select([cens == "observed", cens == "below", cens == "above"], [value, 0.0, limit], np.nan), index=rows.index
    )
    upper = pd.Series(
        np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan),
        index=rows.index,
    )
    return lower, upper


def define_strata(
    parsed: pd.DataFrame,
    *,
    crp_analyte: str = "CRP",
    baseline: str = "baseline",
    screening: str | None = "screening",
    source: str = "auto",
    threshold: float = 3.0,
    threshold_unit: str = "mg/L",
    acute_threshold: float | None = 10.0,
    acute_rule: str = "session",
    inflamed: str = "inflamed",
    not_inflamed: str = "non-inflamed",
    rel_tol: float = THRESHOLD_REL_TOL,
) -> pd.DataFrame:
    """Inflammation stratum of every subject-session with a baseline CRP, from the least biased source present.

    ``source="auto"`` picks, in order: ``screening`` (a CRP draw at time point ``screening``, subject level,
    independent of the baselines), ``mean_baselines`` (geometric mean of the subject's baseline CRPs over its
    sessions, when every subject with a baseline has ≥ 2), ``single_baseline`` (each session's own baseline:
    biased by regression to the mean, :data:`RTM_WARNING`). A named source that the table cannot supply is an
    InputError. Thresholds are converted exactly into CRP's unit (:func:`convert_exact`); censored values are
    classified only when their bound settles it (else ``undetermined``).

    Acute infection (``acute_threshold``, same unit as ``threshold``; None = off): pre-infusion draws at or
    above it are flagged; ``acute_rule`` ``"session"`` leaves out the session (and its baseline from the mean),
    and the whole subject when the screening draw is at/above it; ``"subject"`` leaves out every session of a
    subject with any such pre-infusion draw. Left-out rows have ``stratum = "excluded"``.

    Returns one row per subject-session: ``participant_id, session_id, stratum, stratum_source, crp_stratifying``
    (the value classified, CRP's unit; for ``mean_baselines`` the geometric mean), ``crp_baseline``,
    ``crp_screening``, ``crp_unit``, ``crp_threshold``, ``acute_flag``, ``excluded_reason``. ``attrs``: ``source``,
    ``definition`` (one line), ``warning`` (one line or ""), ``acute_rule`` (one line), ``flags`` (a table of
    every draw at/above the acute limit, post-infusion ones included).
    """
    if source not in STRATA_SOURCES:
        raise ValueError(f"strata source must be one of {STRATA_SOURCES}, not {source!r}")
    if acute_rule not in ACUTE_RULES:
        raise ValueError(f"acute_rule must be one of {ACUTE_RULES}, not {acute_rule!r}")
    if not 0 <= rel_tol < 1e-3:
        raise ValueError("rel_tol must be in [0, 1e-3)")
    where = parsed.attrs.get("source", "<table>")
    crp_all = parsed[parsed["analyte"] == crp_analyte]
    base = crp_all[(crp_all["timepoint"] == baseline) & (crp_all["censoring"] != "missing")].copy()
    if base.empty:
        raise InputError(f"{where}: no {crp_analyte} rows at time point {baseline!r}")
    unit = base["unit"].iloc[0]
    if crp_all["unit"].nunique() > 1:
        raise InputError(
            f"{where}: analyte {crp_analyte} has more than one declared unit {sorted(set(crp_all['unit']))}"
        )
    try:
        thr = convert_exact(threshold, unit_conversion_ratio(threshold_unit, unit))
        acute = (
            None
            if acute_threshold is None
            else convert_exact(acute_threshold, unit_conversion_ratio(threshold_unit, unit))
        )
    except ValueError as exc:
        raise InputError(f"{where}: analyte {crp_analyte}: {exc}") from None
    screen = (
        crp_all[(crp_all["timepoint"] == screening) & (crp_all["censoring"] != "missing")].copy()
        if screening
        else crp_all.iloc[:0]
    )
    if screen.duplicated("participant_id").any():
        dup = screen[screen.duplicated("participant_id")].iloc[0]
        raise InputError(f"{where}: subject {dup['participant_id']}: more than one {crp_analyte} draw at {screening!r}")
    n_baselines = base.groupby("participant_id")["session_id"].nunique()
    available = {
        "screening": not screen.empty,
        "mean_baselines": bool(len(n_baselines)) and (n_baselines >= 2).all(),
        "single_baseline": True,
    }
    if source == "auto":
        source = next(s for s in ("screening", "mean_baselines", "single_baseline") if available[s])
    elif not available[source]:
        reason = (
            f"no {crp_analyte} draw at time point {screening!r}"
            if source == "screening"
            else f"subjects with fewer than 2 baselines: {sorted(n_baselines[n_baselines < 2].index)}"
        )
        raise InputError(f"{where}: strata source {source!r} is not available ({reason})")

    def at_or_above(rows, limit):
        lower, _ = _bounds(rows)
        return lower >= limit * (1 - rel_tol)

    base["acute"] = at_or_above(base, acute) if acute is not None else False
    screen["acute"] = at_or_above(screen, acute) if acute is not None and not screen.empty else False
    flags = pd.DataFrame(columns=["participant_id", "session_id", "timepoint", "crp", "crp_unit"])
    if acute is not None:
        high = crp_all[(crp_all["censoring"] != "missing") & at_or_above(crp_all, acute)]
        flags = high.assign(crp=np.where(high["censoring"] == "observed", high["value"], high["limit"]), crp_unit=unit)[
            ["participant_id", "session_id", "timepoint", "crp", "crp_unit"]
        ]
    screen_acute = set(screen.loc[screen["acute"], "participant_id"])
    subject_acute = set(base.loc[base["acute"], "participant_id"]) | screen_acute

    out = base[["participant_id", "session_id"]].copy()
    lower, upper = _bounds(base)
    out["crp_baseline"] = np.where(base["censoring"] == "observed", base["value"], base["limit"])
    screen_value = screen.set_index("participant_id")
    out["crp_screening"] = (
        out["participant_id"].map(
            pd.Series(
                np.where(screen_value["censoring"] == "observed", screen_value["value"], screen_value["limit"]),
                index=screen_value.index,
            )
        )
        if not screen.empty
        else np.nan
    )
    out["acute_flag"] = base["acute"].to_numpy() | out["participant_id"].isin(screen_acute).to_numpy()
    reason = pd.Series("", index=out.index, dtype=object)
    if acute is not None:
        if acute_rule == "subject":
            reason[out["participant_id"].isin(subject_acute)] = "acute infection (subject rule)"
        else:
            reason[base["acute"].to_numpy()] = "acute infection (this session's baseline)"
            reason[out["participant_id"].isin(screen_acute)] = "acute infection (screening)"
    kept = reason == ""
    if source == "screening":
        s_lower, s_upper = _bounds(screen_value)
        lo, hi = out["participant_id"].map(s_lower), out["participant_id"].map(s_upper)
        out["crp_stratifying"] = out["crp_screening"]
    elif source == "mean_baselines":
        # Geometric mean of the bounds over the kept baselines: a censored draw gives an interval.
        ln_lo = np.log(lower.where(kept).clip(lower=1e-300))
        ln_hi = np.log(upper.where(kept))
        groups = out["participant_id"]
        lo = np.exp(ln_lo.groupby(groups).transform("mean"))
        lo = lo.where(~(lower.where(kept) == 0).groupby(groups).transform("any"), 0.0)
        hi = np.exp(ln_hi.groupby(groups).transform("mean"))
        out["crp_stratifying"] = np.where(lo == hi, lo, np.nan)
        out["n_baselines_in_mean"] = kept.groupby(groups).transform("sum").astype(int)
    else:
        lo, hi = lower, upper
        out["crp_stratifying"] = out["crp_baseline"]
    thr_series = pd.Series(thr, index=out.index)
    out["stratum"] = _classify(lo, hi, thr_series, rel_tol, inflamed, not_inflamed)
    out.loc[lo.isna() & hi.isna(), "stratum"] = "undetermined"
    out.loc[~kept, "stratum"] = "excluded"
    out["excluded_reason"] = reason
    out["stratum_source"] = source
    out["crp_unit"] = unit
    out["crp_threshold"] = thr
    out = out.reset_index(drop=True)
    out.attrs = {
        "source": source,
        "definition": (f"inflamed = {crp_analyte} ≥ {threshold:g} {threshold_unit} in {STRATA_SOURCE_TEXT[source]}"),
        "warning": RTM_WARNING if source == "single_baseline" else "",
        "acute_rule": acute_rule_text(acute_rule, acute_threshold, threshold_unit),
        "flags": flags.reset_index(drop=True),
    }
    return out
