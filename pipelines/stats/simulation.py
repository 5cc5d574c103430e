"""Simulated crossover studies for calibration and tests (no files, no EEG: a tidy DataFrame out).

Design (the default study of issue 11): G subjects (12) each receive every dose (0, 0.25, 0.5, 1.0
mg/kg; placebo included) once, in one of the four sequences of a Williams design (balanced for
first-order carry-over; Williams 1949), sequences assigned in a shuffled balanced order. After every
session a peak-experience score (``peak``) and a mood score (``mood``) are recorded.

Generative model for subject i in period p receiving dose d:

    peak_ip = T_i            + a_i·d              + e_ip,      a_i ~ N(peak_dose_mean, peak_dose_sd²)
    mood_ip = T'_i + π_p     + m_i·g(d) + b·peak_ip + u_ip,    m_i ~ N(mood_dose_mean, mood_dose_sd²)

T_i, T'_i ~ N(0, trait_sd²) subject traits with correlation ``trait_corr`` (1 = one trait drives both
variables), π_p a period effect, g a dose shape (``linear`` g(d) = d; ``emax`` monotone saturating
g(d) = d(1+ED50)/(ED50+d), ED50 = 0.1, g(1) = 1; ``inverted_u`` g(d) = 4d(1−d)), b the within-subject
effect of peak on mood, e, u ~ N(0, noise_sd²). ``carryover`` is the dose of the previous period (0 in
period 1); no carry-over effect is simulated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Design", "WILLIAMS_4", "dose_shape", "simulate_crossover"]

# Williams design for 4 treatments: each dose once per period and each ordered pair of successive
# doses once, so period and first-order carry-over are balanced against dose.
WILLIAMS_4 = ((0, 1, 3, 2), (1, 2, 0, 3), (2, 3, 1, 0), (3, 0, 2, 1))


@dataclass(frozen=True)
class Design:
    n_subjects: int = 12
    doses: tuple = (0.0, 0.25, 0.5, 1.0)
    trait_sd: float = 1.0
    trait_corr: float = 1.0
    peak_dose_mean: float = 2.0
    peak_dose_sd: float = 1.0
    mood_dose_mean: float = 0.0
    mood_dose_sd: float = 0.0
    mood_shape: str = "linear"
    period_effect: tuple = (0.0, 0.4, 0.6, 0.7)
    within_b: float = 0.0
    noise_sd: float = 1.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def dose_shape(name: str, dose: np.ndarray) -> np.ndarray:
    dose = np.asarray(dose, dtype=float)
    if name == "linear":
        return dose
    if name == "emax":
        ed50 = 0.1
        return dose * (1 + ed50) / (ed50 + dose)
    if name == "inverted_u":
        return 4 * dose * (1 - dose)
    raise ValueError(f"unknown dose shape {name!r}")


def simulate_crossover(design: Design, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated study as a tidy DataFrame: subject, sequence, period, dose, carryover, peak, mood."""
    g, doses = design.n_subjects, np.asarray(design.doses, dtype=float)
    n_doses = len(doses)
    if n_doses != 4:
        raise ValueError("the simulator implements the 4-dose Williams design")
    sequences = np.resize(np.arange(4), g)
    rng.shuffle(sequences)
    order = np.asarray(WILLIAMS_4)[sequences]  # (G, 4) dose index per period
    dose = doses[order]
    carry = np.column_stack([np.zeros(g), dose[:, :-1]])
    z1, z2 = rng.standard_normal(g), rng.standard_normal(g)
    trait_peak = design.trait_sd * z1
    rho = design.trait_corr
    trait_mood = design.trait_sd * (rho * z1 + np.sqrt(max(0.0, 1 - rho * rho)) * z2)
    slope_peak = rng.normal(design.peak_dose_mean, design.peak_dose_sd, g)
    slope_mood = rng.normal(design.mood_dose_mean, design.mood_dose_sd, g)
    period = np.asarray(design.period_effect, dtype=float)[None, :]
    peak = trait_peak[:, None] + slope_peak[:, None] * dose + rng.normal(0, design.noise_sd, (g, 4))
    mood = (
        trait_mood[:, None]
        + period
        + slope_mood[:, None] * dose_shape(design.mood_shape, dose)
        + design.within_b * peak
        + rng.normal(0, design.noise_sd, (g, 4))
    )
    return pd.DataFrame(
        {
            "subject": np.repeat([f"sub-{i + 1:02d}" for i in range(g)], 4),
            "sequence": np.repeat(sequences + 1, 4),
            "period": np.tile(np.arange(1, 5), g),
            "dose": dose.ravel(),
            "carryover": carry.ravel(),
            "peak": peak.ravel(),
            "mood": mood.ravel(),
        }
    )
