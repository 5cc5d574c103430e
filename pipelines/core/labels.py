"""Labels and colours shared by analyses, figures and dashboards (so an analysis never imports a figure module)."""

from __future__ import annotations

DOSE_COLORS = {0.0: "#7f7f7f", 0.25: "#9ecae1", 0.5: "#3182bd", 1.0: "#08306b"}


def dose_color(dose: float) -> str:
    return DOSE_COLORS.get(round(float(dose), 2), "#444444")


def dose_label(dose: float) -> str:
    """Fixed-width label so that categorical axes sort in dose order."""
    return f"{float(dose):.2f} mg/kg"
