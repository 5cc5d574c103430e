"""Displayed p-values: one formatter for every report and summary text (tables keep raw floats)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

# Smallest p-value written as a number; anything below is "p < 0.001" (APA 7th ed., section 6.36).
P_FLOOR = 0.001


def format_p(p, label: str = "p") -> str:
    """A p-value as report text: ``"p < 0.001"``, ``"p = 0.003"``, ``"p = 0.032"``, ``"p = 0.41"``.

    Convention (one for every report; APA Publication Manual, 7th ed., section 6.36: "report exact p
    values to two or three decimal places ... report p values less than .001 as p < .001"):

    - p < 0.001 → ``"< 0.001"`` (never ``"= 0.0"`` or ``"= 3e-172"``: a p that small only says "very
      small", and an exact 0 is an artefact of floating point or of an asymptotic approximation);
    - 0.001 ≤ p < 0.1 → three decimals (``0.003``, ``0.032``, ``0.046``: values near 0.05 stay
      distinguishable from it);
    - p ≥ 0.1 → two decimals (``0.41``, ``1.00``);
    - NaN, None, ``pd.NA`` or ±inf → ``"n/a"``.

    The range is chosen on the unrounded value, then the shortest decimal of the float is rounded half
    up (0.0625 → ``0.063``). A leading zero is kept (APA omits it; the workbench's reports use it).
    ``label`` is the name written before the relation (``"p_FDR"``, ``"FDR-adjusted p"``). A finite p
    outside [0, 1] is a bug upstream and raises ValueError.
    """
    if p is None or p is pd.NA:
        return f"{label} = n/a"
    if isinstance(p, (str, bytes)):
        raise ValueError(f"format_p: {p!r} is not a number")
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"format_p: {p!r} is not a number") from None
    if not math.isfinite(value):
        return f"{label} = n/a"
    if value < 0 or value > 1:
        raise ValueError(f"format_p: p = {value!r} is outside [0, 1]")
    if value < P_FLOOR:
        return f"{label} < {P_FLOOR:g}"
    places = Decimal("0.001") if value < 0.1 else Decimal("0.01")
    text = Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_UP)
    return f"{label} = {text}"
