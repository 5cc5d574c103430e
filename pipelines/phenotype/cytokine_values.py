"""Cytokine assay values: units and their exact conversion, and lab strings ("<0.7", "ND", ">ULOQ") parsed
into values and censoring bounds.  Conventions: :mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pipelines.core.units import UNIT_TABLE, canonical_unit

MISSING_STRINGS = frozenset({"", "na", "n/a", "nan", "null", "none"})
NOT_DETECTED_STRINGS = frozenset({"nd", "n.d.", "not detected"})

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


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
