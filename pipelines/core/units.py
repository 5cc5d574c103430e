"""Concentration units: one table of known spellings with exact conversion factors (foundation module).

Kept apart from :mod:`pipelines.phenotype.cytokines` so that the manifest schema can validate declared units
(``PhenotypeTable.units``) without importing the assay reader.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["UNIT_TABLE", "canonical_unit"]

#: Canonical unit spelling -> (dimension, factor to the dimension's base unit).
#: Bases: mass concentration g/L, amount concentration mol/L, ratio of amounts mol/mol.
#: Factors are exact fractions (powers of ten), not binary floats: 1e-3 / 1e-2 and 3 × 0.1 are not
#: exactly 0.1 and 0.3 in floating point, which put 0.3 mg/dL and 3000 µg/L below a 3 mg/L threshold.
UNIT_TABLE: dict[str, tuple[str, Fraction]] = {
    "pg/mL": ("mass", Fraction(1, 10**9)),
    "ng/L": ("mass", Fraction(1, 10**9)),
    "ng/mL": ("mass", Fraction(1, 10**6)),
    "ug/L": ("mass", Fraction(1, 10**6)),
    "ug/mL": ("mass", Fraction(1, 10**3)),
    "mg/L": ("mass", Fraction(1, 10**3)),
    "mg/dL": ("mass", Fraction(1, 10**2)),
    "g/L": ("mass", Fraction(1)),
    "pmol/mL": ("amount", Fraction(1, 10**9)),
    "nmol/L": ("amount", Fraction(1, 10**9)),
    "nM": ("amount", Fraction(1, 10**9)),
    "nmol/mL": ("amount", Fraction(1, 10**6)),
    "umol/L": ("amount", Fraction(1, 10**6)),
    "uM": ("amount", Fraction(1, 10**6)),
    "mmol/L": ("amount", Fraction(1, 10**3)),
    "mM": ("amount", Fraction(1, 10**3)),
    "umol/mmol": ("ratio", Fraction(1, 10**3)),
    "nmol/umol": ("ratio", Fraction(1, 10**3)),
    "mol/mol": ("ratio", Fraction(1)),
}
_UNIT_LOOKUP = {k.lower(): k for k in UNIT_TABLE}


def canonical_unit(unit: str) -> str:
    """The :data:`UNIT_TABLE` spelling of ``unit`` (µ/μ/u/mcg and letter case accepted); ValueError if unknown."""
    key = str(unit).strip().replace("µ", "u").replace("μ", "u").replace(" ", "").lower()
    key = key.replace("mcg", "ug")
    if key not in _UNIT_LOOKUP:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNIT_TABLE)}")
    return _UNIT_LOOKUP[key]
