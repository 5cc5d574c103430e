"""Labels and colours shared by analyses, figures and dashboards (so an analysis never imports a figure module)."""

from __future__ import annotations

DOSE_COLORS = {0.0: "#7f7f7f", 0.25: "#9ecae1", 0.5: "#3182bd", 1.0: "#08306b"}


def dose_color(dose: float) -> str:
    return DOSE_COLORS.get(round(float(dose), 2), "#444444")


def dose_label(dose: float) -> str:
    """Fixed-width label so that categorical axes sort in dose order."""
    return f"{float(dose):.2f} mg/kg"


def condition_order_key(dose: float | None) -> tuple[int, float]:
    """Analysis order of a condition by its dose: placebo (0 mg/kg) first, then drug-free conditions without a
    dose (a pre-infusion or eyes-closed resting recording), then active doses ascending. The first condition is
    the reference of within-subject contrasts, so a pre/post study contrasts post against pre."""
    if dose is None or dose != dose:
        return (1, 0.0)
    return (0, 0.0) if float(dose) == 0.0 else (2, float(dose))
