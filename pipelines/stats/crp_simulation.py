"""Simulated CRP-stratified crossover studies: regression to the mean in inflammation strata (issue 11).

Design: G subjects (12), each with one placebo and ``n_active`` active sessions; every session has its own
baseline and post-infusion draw; one screening draw per subject before the first session. On the natural-log
scale, for subject i, session s:

    set point     μ_i ~ N(ln crp_median, set_point_sd²)                      (many subjects near 3 mg/L)
    day state     v_is ~ N(0, session_sd²)       shared by the session's baseline and post draws
    baseline      b_is = μ_i + v_is + e_b,       e ~ N(0, draw_sd²)          (assay + short-term biology)
    post          p_is = μ_i + v_is + δ·[μ_i ≥ ln thr]·active_s + c_is + e_p,   c ~ N(0, change_sd²)
    screening     z_i  = μ_i + v_i0 + e_z                                     (its own day and noise)

The change is p − b (ln ratio). Under δ = 0 nothing changes, yet strata defined from b select sessions with
a high e_b, whose change is negative on average (regression to the mean). Strata (``strata_rule``):
``screening`` (z ≥ ln thr, subject level), ``mean_baselines`` (mean of the subject's b ≥ ln thr, subject
level) or ``session_baseline`` (each session's own b; a subject's stratum is the common label of its
sessions, discordant subjects dropped — the old definition).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["StrataDesign", "assign_strata", "simulate_crp_crossover"]

STRATA_RULES = ("screening", "mean_baselines", "session_baseline")


@dataclass(frozen=True)
class StrataDesign:
    n_subjects: int = 12
    n_active: int = 3
    crp_median_mg_per_l: float = 2.6
    set_point_sd_log: float = 0.5
    session_sd_log: float = 0.20
    draw_sd_log: float = 0.25
    change_sd_log: float = 0.10
    effect_log: float = 0.0  # δ: ln change after an active dose in truly inflamed subjects
    threshold_mg_per_l: float = 3.0
    strata_rule: str = "screening"

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_crp_crossover(design: StrataDesign, rng: np.random.Generator) -> pd.DataFrame:
    """One study: subject, session (0 = placebo), treated, true_inflamed, ln_screening, ln_baseline, ln_post,
    ln_change and the 0/1 ``inflamed`` of ``design.strata_rule`` (NaN for a dropped subject)."""
    g, k = design.n_subjects, design.n_active + 1
    mu = np.log(design.crp_median_mg_per_l) + design.set_point_sd_log * rng.standard_normal(g)
    day = design.session_sd_log * rng.standard_normal((g, k + 1))  # column 0: screening day
    draw = design.draw_sd_log * rng.standard_normal((g, 2 * k + 1))
    treated = np.arange(k) > 0
    true_inflamed = mu >= np.log(design.threshold_mg_per_l)
    baseline = mu[:, None] + day[:, 1:] + draw[:, 1 : k + 1]
    post = (
        mu[:, None]
        + day[:, 1:]
        + design.effect_log * (true_inflamed[:, None] & treated[None, :])
        + design.change_sd_log * rng.standard_normal((g, k))
        + draw[:, k + 1 :]
    )
    screening = mu + day[:, 0] + draw[:, 0]
    data = pd.DataFrame(
        {
            "subject": np.repeat([f"sub-{i + 1:02d}" for i in range(g)], k),
            "session": np.tile(np.arange(k), g),
            "treated": np.tile(treated, g),
            "true_inflamed": np.repeat(true_inflamed, k),
            "ln_screening": np.repeat(screening, k),
            "ln_baseline": baseline.ravel(),
            "ln_post": post.ravel(),
        }
    )
    data["ln_change"] = data["ln_post"] - data["ln_baseline"]
    data["inflamed"] = assign_strata(data, design.strata_rule, design.threshold_mg_per_l)
    return data


def assign_strata(data: pd.DataFrame, rule: str, threshold_mg_per_l: float = 3.0) -> pd.Series:
    """0/1 inflamed per row under ``rule`` (see the module docstring); NaN where a subject has no stratum."""
    thr = np.log(threshold_mg_per_l)
    if rule == "screening":
        return (data["ln_screening"] >= thr).astype(float)
    if rule == "mean_baselines":
        return (data.groupby("subject")["ln_baseline"].transform("mean") >= thr).astype(float)
    if rule == "session_baseline":
        own = (data["ln_baseline"] >= thr).astype(float)
        common = own.groupby(data["subject"]).transform(lambda s: s.iloc[0] if s.nunique() == 1 else np.nan)
        return common
    raise ValueError(f"strata rule must be one of {STRATA_RULES}, not {rule!r}")
