"""Synthetic psychotherapy sessions around each infusion (preparation, integration) and the planted window effect.

Per infusion (every session, placebo included, as in a blinded crossover): one preparation session the day
before (start 20–30 h before the infusion ended), and — unless none was held (12 %) — a first integration
session whose start varies: inside the 24–48 h window, earlier (6–22 h) or later (56–140 h).  Each participant
has their own tendency to be booked inside the window (a trait), so the between-participant association differs
from the within-participant one.  A second integration session follows about a week later for half the
infusions.

Planted: on an active infusion (dose > 0) whose first integration session is inside the window, MADRS
improvement at every time point from ``effect_from_h`` on is larger by ``window_effect_points`` (placebo
infusions: no effect).  ``truth.json`` records the effect and each infusion's status.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TherapyParameters", "draw_therapy", "window_effect"]


@dataclass(frozen=True)
class TherapyParameters:
    window_h: tuple[float, float] = (24.0, 48.0)
    window_effect_points: float = 5.0  # extra MADRS improvement (points) when integration falls inside the window
    effect_from_h: float = 24.0 * 7  # the effect shows from the 7 d assessment on (after the window has closed)
    p_none: float = 0.12
    p_before: float = 0.15
    inside_tendency_sd: float = 1.0  # SD (logit scale) of each participant's tendency to be booked inside


def draw_therapy(
    design: pd.DataFrame, rng: np.random.Generator, p: TherapyParameters = TherapyParameters()
) -> tuple[pd.DataFrame, np.ndarray]:
    """``design``: one row per infusion with participant_id, session_id, subject_index. Returns the therapy table
    (the BIDS ``phenotype/therapy.tsv``) and, per design row, whether the first integration was inside the window."""
    n_subjects = int(design["subject_index"].max()) + 1
    tendency = rng.normal(0.0, p.inside_tendency_sd, n_subjects)
    rows, inside = [], np.zeros(len(design), dtype=bool)
    for i, row in enumerate(design.itertuples(index=False)):
        keys = {"participant_id": row.participant_id, "session_id": row.session_id}
        rows.append(
            {
                **keys,
                "session_type": "preparation",
                "start_h": -round(float(rng.uniform(20, 30)), 1),
                "duration_min": 60,
            }
        )
        draw = rng.random()
        if draw < p.p_none:
            continue
        p_inside = 1.0 / (1.0 + np.exp(-tendency[row.subject_index]))  # logit(0.5) = 0 on average
        if draw < p.p_none + p.p_before:
            start = rng.uniform(6, 22)
        elif rng.random() < p_inside:
            start = rng.uniform(*p.window_h)
        else:
            start = rng.uniform(p.window_h[1] + 8, 140)
        start = round(float(start), 1)
        inside[i] = p.window_h[0] <= start <= p.window_h[1]
        rows.append({**keys, "session_type": "integration", "start_h": start, "duration_min": 90})
        if rng.random() < 0.5:
            rows.append(
                {
                    **keys,
                    "session_type": "integration",
                    "start_h": round(start + float(rng.uniform(150, 180)), 1),
                    "duration_min": 60,
                }
            )
    return pd.DataFrame(rows), inside


def window_effect(
    inside: np.ndarray,
    dose: np.ndarray,
    timepoint_hours: list[float | None],
    p: TherapyParameters = TherapyParameters(),
) -> np.ndarray:
    """(infusions × post-baseline time points) extra improvement (MADRS points) from the planted window effect."""
    late = np.array([h is not None and h >= p.effect_from_h for h in timepoint_hours], dtype=float)
    return p.window_effect_points * (inside & (np.asarray(dose) > 0)).astype(float)[:, None] * late[None, :]
