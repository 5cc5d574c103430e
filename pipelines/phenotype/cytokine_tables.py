"""Reading and validating cytokine assay tables (long or wide, units, limits, replicate wells) into one tidy row
per subject-session-timepoint-analyte.  Conventions: :mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError
from pipelines.core.units import canonical_unit
from pipelines.phenotype.cytokine_values import MISSING_STRINGS, parse_lab_value, unit_conversion_ratio

KEYS = ("participant_id", "session_id", "timepoint")

REPLICATE_COLUMNS = ("replicate", "well")
LONG_COLUMNS = ("analyte", "value", "unit")
#: ``session_id`` of a subject-level draw that belongs to no session (e.g. a screening visit).
NO_SESSION = "n/a"


class UnknownColumnWarning(UserWarning):
    """A table column the reader does not know was not read (reported, never dropped silently)."""


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
    present = _file_analytes(table, name, declared_units)
    meta = analyte_metadata(
        _read_sidecar(sidecar, path), units, limits, source=name, declared_units=declared_units, file_analytes=present
    )
    known = _participant_ids(participants)
    wanted = set(analytes) if analytes is not None else None
    replicate_column = next((c for c in REPLICATE_COLUMNS if c in table.columns), None)

    cells = []
    # The loop stays here: _cells' warnings (stacklevel=3) name the line that called load_cytokines.
    for cell in _cells(table, meta, name, wanted):
        cells.append(_parse_cell(cell, meta, known, declared_units, decimal, name))
    declared = replicates or replicate_column is not None
    records = _records(cells, name, by_replicate=replicate_column is not None, declared=declared)
    out = _tidy_table(records, name)
    _flag_converted_units(out, name)
    out.attrs["analytes"] = meta
    out.attrs["source"] = name
    return out.reset_index(drop=True)


def _file_analytes(table: pd.DataFrame, name: str, declared_units: Mapping[str, str] | None):
    """The analytes the file holds that the manifest's ``declared_units`` may give a unit (none without them);
    a declared unit that is not a unit is an InputError."""
    if not declared_units:
        return ()
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
    return present


def _parse_cell(cell: dict, meta: dict, known: set[str] | None, declared_units, decimal: str, source: str) -> dict:
    """Check one cell's keys, subject and unit, and add its parsed value in the analyte's declared unit."""
    where = _where(source, cell["row"], cell["participant_id"], cell["session_id"], cell["timepoint"], cell["analyte"])
    for key in KEYS:
        if not cell[key]:
            raise InputError(f"{where}, field {key}: empty key")
    if known is not None and cell["participant_id"] not in known:
        raise InputError(f"{where}, field participant_id: unknown subject (not in participants)")
    entry = meta.get(cell["analyte"])
    if entry is None:
        raise InputError(f"{where}, field analyte: no unit declared for this analyte (sidecar 'analytes' or units=)")
    factor = _unit_factor(cell, entry, declared_units, where)
    try:
        parsed = parse_lab_value(cell["text"], lloq=entry["LLOQ"], uloq=entry["ULOQ"], decimal=decimal, factor=factor)
    except ValueError as exc:
        raise InputError(f"{where}, field value: {exc}") from None
    cell.update(value=parsed.value, censoring=parsed.censoring, limit=parsed.limit, unit=entry["unit"])
    return cell


def _unit_factor(cell: dict, entry: dict, declared_units, where: str):
    """The exact factor from the unit written in the cell's row to the analyte's declared unit (1 without one)."""
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
    return factor


def _records(cells: list[dict], source: str, *, by_replicate: bool, declared: bool) -> list[dict]:
    """One record per subject-session-timepoint-analyte: duplicates collapsed, replicate wells combined."""
    grouped: dict[tuple, list[dict]] = {}
    for cell in cells:
        grouped.setdefault((cell["participant_id"], cell["session_id"], cell["timepoint"], cell["analyte"]), []).append(
            cell
        )
    records = []
    for group in grouped.values():
        if len(group) > 1:
            group = _deduplicate(group, source, by_replicate=by_replicate, declared=declared)
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
            records.append(_combine_wells(group, source))
    return records


#: The columns of :func:`load_cytokines`' table, in order.
_TIDY_COLUMNS = [
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


def _tidy_table(records: list[dict], name: str) -> pd.DataFrame:
    out = pd.DataFrame.from_records(records)
    if out.empty:
        raise InputError(f"{name}: no analyte values read")
    out = out.rename(columns={"text": "value_raw", "unit_text": "unit_raw", "row": "source_rows"})
    out["source"] = name
    out["value_raw"] = out["value_raw"].astype(str)
    out["unit_raw"] = out["unit_raw"].fillna("").astype(str)
    out = out[_TIDY_COLUMNS]
    return out.astype(
        {"value": float, "limit": float, "replicate_cv_pct": float, "n_replicates": int, "n_replicates_censored": int}
    )


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
            # Called through _records and load_cytokines: 5 names the frame the warning named before the split.
            warnings.warn(f"{where}: identical duplicate rows collapsed into one", stacklevel=5)
            kept.append(first)
        else:
            kept.extend(cells)
    return kept
