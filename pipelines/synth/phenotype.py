"""Synthetic phenotype tables of the default ketamine crossover study, with planted, recorded effects.

Design: every participant has every session (placebo and ketamine 0.25, 0.5, 1.0 mg/kg by default),
with a washout between sessions, so each session has its own baseline. The tables follow
``docs/data_formats.md`` (BIDS ``phenotype/``): ``meq30``, ``asc5d``, ``madrs`` and ``cytokines``.

The generative model, in order:

1. **Peak-experience intensity** (latent, 0-1, one per subject-session)::

       g(d)   = d (1 + ED50) / (d + ED50)                    Emax dose response, g(0) = 0, g(1 mg/kg) = 1
       eta    = intercept + dose_gain * g(d) + trait_loading * ketamine_sensitivity + noise_sd * e
       I      = expit(eta)

   ``ketamine_sensitivity`` is a standard-normal subject trait shared with the EEG generator, so that EEG
   entropy change and peak experience share a subject factor.
2. **MEQ30** (0-5 integers, after every session, placebo included, as real trials administer it; with
   ``questionnaires_after_placebo=False`` after active sessions only): item ``k`` of subscale ``S`` is
   ``round(5 * (w_S * lambda_k * I + u_S) + e_k)`` clipped to 0-5, with fixed item loadings ``lambda_k``
   (a property of the questionnaire, not of the sample), a subject-session subscale deviation ``u_S`` and
   item noise ``e_k``. All four subscales (Barrett et al. 2015 lists) load strongly on ``I``. Under placebo
   ``I`` is low (about 0.12 at an average trait), so placebo scores are low but not zero, with floor effects
   (many items 0) for low-trait subjects.
3. **5D-ASC** (0-100 visual analogue, one decimal, the same sessions as MEQ30): item ``k`` of dimension ``D`` is
   ``100 * (w_D * lambda_k * I + v_D * g(d) + u_D) + e_k`` clipped to 0-100. OBN loads strongly on ``I``;
   DED (anxious ego dissolution) and AUA weakly; VRS moderately; VIR (vigilance reduction) mostly on dose.
4. **MADRS** (10 items, 0-6) at baseline, 4h, 24h, 7d, 14d of every session. Baseline severity is that of
   treatment-resistant depression (about 28-34). Improvement (baseline - timepoint, positive = better)::

       improvement_t = placebo_t + period_p + h_t * (dose_slope * d + peak_slope * I) + noise_t

   with a time profile ``h_t`` that peaks at 24 h and fades by 14 d, noise correlated across time
   within a subject-session, and ``period_p`` a practice/expectancy effect of the session's position in
   the crossover (period p = ``session_order`` 1..K; 0 in period 1, the same at every time point; 0 when
   the sessions carry no order). The total is spread over the ten items (fixed item profile, item noise,
   rounding), so the planted effect is seen through the same item-level noise as real ratings.
5. **Cytokines** (long format, baseline and 24 h of every session, plus one screening hs-CRP draw per
   subject before the first session, ``timepoint = screening``, ``session_id = n/a``): log-normal; about 40 %
   of subjects form an inflamed subgroup whose CRP *set point* is at or above 3 mg/L (log-uniform on
   ``crp_range_inflamed``; the others on ``crp_range_non_inflamed``: both ranges meet at 3 mg/L). Every CRP
   draw is set point + a session-day state (shared by that session's baseline and 24 h draws) + an
   independent draw noise (hs-CRP within-subject variation), so a single draw misclassifies subjects near
   3 mg/L and strata defined from the baseline the change is measured from regress to the mean; the
   screening draw has its own day state and noise. In inflamed subjects, and only after an active dose,
   IL-6, TNF-alpha, CRP and kynurenine fall at 24 h (natural-log fold changes in ``truth``); tryptophan
   rises slightly so KYN/TRP falls. ``acute_infection_sessions`` session(s) carry an intercurrent
   infection (CRP ≥ 10 mg/L at that session's draws), recorded in ``truth``. Values under the assay's LLOQ
   are written as the lab would: ``<LLOQ`` or ``<0.7``.

Randomness: one ``numpy.random.Generator`` per named stream, derived from the seed and the stream's name
(``SeedSequence(seed, spawn_key=(crc32(name),))``), so adding a table or an analyte leaves the others
unchanged. ``truth`` records every generating parameter, the expected correlations (a large Monte-Carlo
study of the same model with a fixed seed) and the realised ones on the generated tables.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from pipelines.phenotype import questionnaires

__all__ = [
    "ASC5D_DIMENSIONS",
    "CYTOKINE_TIMEPOINTS",
    "MADRS_ITEM_NAMES",
    "MADRS_TIMEPOINTS",
    "MEQ30_SUBSCALES",
    "AnalyteParameters",
    "CytokineParameters",
    "MoodParameters",
    "PeakExperienceParameters",
    "PhenotypeParameters",
    "dose_response",
    "draw_subject_traits",
    "generate_phenotype",
    "write_phenotype",
]

# --- Instruments: the scoring keys are owned by pipelines.phenotype.questionnaires (cited there); the generator
# uses the same lists, so the planted structure and the scoring can never disagree. ---

MEQ30_SUBSCALES: dict[str, tuple[int, ...]] = dict(questionnaires.MEQ30_SUBSCALES)
ASC5D_DIMENSIONS: dict[str, tuple[int, ...]] = {k.upper(): v for k, v in questionnaires.ASC5D_DIMENSIONS.items()}
ASC5D_DIMENSION_NAMES = {
    "OBN": "oceanic boundlessness",
    "DED": "dread of ego dissolution (anxious ego dissolution)",
    "VRS": "visionary restructuralization",
    "AUA": "auditory alterations",
    "VIR": "vigilance reduction",
}
MADRS_ITEM_NAMES = (
    "apparent sadness",
    "reported sadness",
    "inner tension",
    "reduced sleep",
    "reduced appetite",
    "concentration difficulties",
    "lassitude",
    "inability to feel",
    "pessimistic thoughts",
    "suicidal thoughts",
)
MADRS_TIMEPOINTS = ("baseline", "4h", "24h", "7d", "14d")
CYTOKINE_TIMEPOINTS = ("baseline", "24h")
N_MEQ30, N_ASC5D, N_MADRS = 30, 94, 10

for _keys, _n in ((MEQ30_SUBSCALES, N_MEQ30), (ASC5D_DIMENSIONS, N_ASC5D)):
    assert sorted(i for items in _keys.values() for i in items) == list(range(1, _n + 1)), "keys must partition items"

MEQ30_COLUMNS = [f"meq30_{i:02d}" for i in range(1, N_MEQ30 + 1)]
ASC5D_COLUMNS = [f"asc5d_{i:02d}" for i in range(1, N_ASC5D + 1)]
MADRS_COLUMNS = [f"madrs_{i:02d}" for i in range(1, N_MADRS + 1)]

# Item loadings are a property of the questionnaire, not of the sample: fixed, whatever the study seed.
_ITEM_LOADING_SEED = 19980101
_loading_rng = np.random.default_rng(_ITEM_LOADING_SEED)
MEQ30_ITEM_LOADINGS = np.round(_loading_rng.uniform(0.80, 1.15, N_MEQ30), 3)
ASC5D_ITEM_LOADINGS = np.round(_loading_rng.uniform(0.70, 1.25, N_ASC5D), 3)
del _loading_rng


# --- Parameters -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakExperienceParameters:
    """Latent peak-experience intensity and the questionnaire items it drives (see the module docstring)."""

    ed50_mg_per_kg: float = 0.4  # dose giving half of the 1 mg/kg effect's Emax curve
    intercept_logit: float = -2.0  # logit intensity with no drug and an average trait
    dose_gain_logit: float = 3.0  # logit gain from g(0) = 0 to g(1 mg/kg) = 1
    trait_loading_logit: float = 0.6  # logit change per SD of ketamine_sensitivity
    noise_sd_logit: float = 0.5  # subject-session noise on the logit scale
    meq30_weights: tuple[tuple[str, float], ...] = (
        ("mystical", 0.95),
        ("positive_mood", 1.0),
        ("transcendence", 1.05),
        ("ineffability", 1.0),
    )
    meq30_subscale_sd: float = 0.05  # subject-session deviation of a subscale, fraction of maximum
    meq30_item_noise_sd: float = 0.6  # item noise on the 0-5 scale, before rounding
    # dimension: (loading on intensity, loading on g(dose)), fractions of the 0-100 scale
    asc5d_weights: tuple[tuple[str, float, float], ...] = (
        ("OBN", 0.85, 0.0),
        ("DED", 0.30, 0.0),
        ("VRS", 0.55, 0.0),
        ("AUA", 0.25, 0.0),
        ("VIR", 0.10, 0.45),
    )
    asc5d_dimension_sd: float = 0.05
    asc5d_item_noise_sd: float = 10.0  # on the 0-100 scale
    # Real trials give the peak questionnaires after placebo sessions too (blinding); False = active sessions only
    questionnaires_after_placebo: bool = True


@dataclass(frozen=True)
class MoodParameters:
    """MADRS baseline severity and planted improvement (MADRS points; improvement = baseline - timepoint)."""

    baseline_mean: float = 31.0  # treatment-resistant depression, moderate-to-severe
    baseline_subject_sd: float = 2.0
    baseline_session_sd: float = 1.2  # session-to-session variation after washout
    baseline_min: float = 22.0
    baseline_max: float = 42.0
    timepoints: tuple[str, ...] = ("4h", "24h", "7d", "14d")
    placebo_response: tuple[float, ...] = (3.0, 3.0, 2.0, 1.0)  # improvement under placebo, per timepoint
    time_profile: tuple[float, ...] = (0.8, 1.0, 0.45, 0.1)  # h_t: share of the drug effect per timepoint
    dose_slope_per_mg_per_kg: float = 4.0  # improvement per mg/kg at 24 h, beyond the peak experience
    peak_slope_per_unit_intensity: float = 22.0  # improvement per unit latent intensity (0-1) at 24 h
    noise_sd: float = 6.5  # improvement noise per timepoint (sets r(MEQ30 total, 24h improvement) ~ 0.56)
    noise_time_correlation: float = 0.5  # correlation of that noise across timepoints in a subject-session
    # practice/expectancy effect by crossover period (session_order 1, 2, ...): improvement added at every
    # post-baseline time point; periods past the end of the tuple take its last value
    period_effect: tuple[float, ...] = (0.0, 2.0, 3.0, 3.5)
    # share of the total carried by each item (relative; normalised), and item noise before rounding
    item_profile: tuple[float, ...] = (3.6, 3.6, 3.2, 3.0, 2.4, 3.2, 3.4, 3.6, 3.2, 1.8)
    item_noise_sd: float = 0.6


@dataclass(frozen=True)
class AnalyteParameters:
    """One analyte: unit, assay limits, log-normal medians per stratum, and the planted 24 h change."""

    name: str
    description: str
    unit: str
    lloq: float
    uloq: float
    decimals: int
    median_non_inflamed: float
    median_inflamed: float
    between_subject_sd_log: float
    session_sd_log: float  # baseline-to-baseline variation across sessions
    change_sd_log: float  # noise of log(24h / baseline), biological
    assay_sd_log: float  # measurement noise of each sample
    log_fold_change_inflamed_active: float  # natural log, 24 h vs baseline, inflamed subgroup, dose > 0


DEFAULT_ANALYTES: tuple[AnalyteParameters, ...] = (
    AnalyteParameters("IL6", "interleukin-6", "pg/mL", 0.7, 5000.0, 2, 1.6, 3.5, 0.35, 0.15, 0.20, 0.08, -0.50),
    AnalyteParameters("IL1B", "interleukin-1 beta", "pg/mL", 0.4, 1000.0, 2, 0.45, 0.6, 0.45, 0.20, 0.25, 0.10, 0.0),
    AnalyteParameters(
        "TNFA", "tumour necrosis factor alpha", "pg/mL", 0.5, 2000.0, 2, 1.3, 1.9, 0.30, 0.12, 0.12, 0.06, -0.30
    ),
    # CRP: medians unused (set points from CytokineParameters' ranges); assay_sd_log is the draw-to-draw noise
    # (assay + short-term biological variation), session_sd_log the session-day state shared by a session's draws:
    # single-draw within-subject SD ~0.32 on the ln scale (CV ~33 %, low end of published hs-CRP CV_I 30-60 %).
    AnalyteParameters(
        "CRP", "C-reactive protein (high-sensitivity)", "mg/L", 0.2, 200.0, 2, 1.7, 4.6, 0.0, 0.20, 0.10, 0.25, -0.35
    ),
    AnalyteParameters("KYN", "kynurenine", "µmol/L", 0.2, 50.0, 2, 1.9, 2.4, 0.20, 0.08, 0.10, 0.05, -0.25),
    AnalyteParameters("TRP", "tryptophan", "µmol/L", 5.0, 300.0, 1, 62.0, 55.0, 0.12, 0.06, 0.06, 0.04, 0.05),
)


@dataclass(frozen=True)
class CytokineParameters:
    """Inflamed subgroup and analytes. CRP set points are log-uniform within each stratum's range; the ranges
    meet at the threshold, so many subjects sit near 3 mg/L and a single noisy draw can fall on either side
    (CRP's ``session_sd_log`` and ``assay_sd_log`` in ``analytes``)."""

    crp_threshold_mg_per_l: float = 3.0
    inflamed_fraction: float = 0.4
    crp_range_non_inflamed: tuple[float, float] = (1.0, 3.0)
    crp_range_inflamed: tuple[float, float] = (3.0, 7.0)
    screening_timepoint: str | None = "screening"  # one CRP draw per subject before the first session; None = none
    acute_infection_sessions: int = 1  # subject-sessions with an intercurrent infection (CRP >= 10 mg/L at both draws)
    acute_infection_crp_mg_per_l: tuple[float, float] = (15.0, 40.0)  # log-uniform CRP level of such a session
    analytes: tuple[AnalyteParameters, ...] = DEFAULT_ANALYTES


@dataclass(frozen=True)
class PhenotypeParameters:
    """Every parameter of the phenotype generator; recorded in ``truth['parameters']``."""

    peak: PeakExperienceParameters = field(default_factory=PeakExperienceParameters)
    mood: MoodParameters = field(default_factory=MoodParameters)
    cytokines: CytokineParameters = field(default_factory=CytokineParameters)
    monte_carlo_subjects: int = 20000  # virtual subjects for the expected correlations
    monte_carlo_seed: int = 7


# --- Random streams -----------------------------------------------------------------------------------------


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator per named stream: adding a stream never changes another."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(name.encode()),)))


def draw_subject_traits(participants: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``participant_id`` and ``ketamine_sensitivity`` (standard normal), from the seed's ``subject_traits``
    stream. The study orchestration draws this once and passes it to both the EEG and phenotype generators."""
    rng = _stream(seed, "subject_traits")
    ids = participants["participant_id"].astype(str).tolist()
    return pd.DataFrame({"participant_id": ids, "ketamine_sensitivity": rng.standard_normal(len(ids))})


# --- Model pieces (vectorised, shared by the study and the Monte-Carlo expectations) ------------------------


def dose_response(dose_mg_per_kg: np.ndarray | float, ed50_mg_per_kg: float) -> np.ndarray:
    """Emax curve normalised to 1 at 1 mg/kg: ``g(d) = d (1 + ED50) / (d + ED50)``; ``g(0) = 0``."""
    d = np.asarray(dose_mg_per_kg, dtype=float)
    return d * (1.0 + ed50_mg_per_kg) / (d + ed50_mg_per_kg)


def _peak_intensity(dose, sensitivity, rng, p: PeakExperienceParameters) -> np.ndarray:
    eta = (
        p.intercept_logit
        + p.dose_gain_logit * dose_response(dose, p.ed50_mg_per_kg)
        + p.trait_loading_logit * np.asarray(sensitivity)
        + p.noise_sd_logit * rng.standard_normal(len(dose))
    )
    return expit(eta)


def _meq30_items(intensity: np.ndarray, rng: np.random.Generator, p: PeakExperienceParameters) -> np.ndarray:
    n = len(intensity)
    out = np.empty((n, N_MEQ30))
    for subscale, weight in p.meq30_weights:
        idx = np.asarray(MEQ30_SUBSCALES[subscale]) - 1
        deviation = rng.normal(0.0, p.meq30_subscale_sd, size=(n, 1))
        noise = rng.normal(0.0, p.meq30_item_noise_sd, size=(n, len(idx)))
        out[:, idx] = 5.0 * (weight * MEQ30_ITEM_LOADINGS[idx] * intensity[:, None] + deviation) + noise
    return np.clip(np.rint(out), 0, 5).astype(np.int64)


def _asc5d_items(intensity, dose, rng, p: PeakExperienceParameters) -> np.ndarray:
    n = len(intensity)
    g = dose_response(dose, p.ed50_mg_per_kg)
    out = np.empty((n, N_ASC5D))
    for dimension, w_intensity, w_dose in p.asc5d_weights:
        idx = np.asarray(ASC5D_DIMENSIONS[dimension]) - 1
        deviation = rng.normal(0.0, p.asc5d_dimension_sd, size=(n, 1))
        noise = rng.normal(0.0, p.asc5d_item_noise_sd, size=(n, len(idx)))
        fraction = w_intensity * ASC5D_ITEM_LOADINGS[idx] * intensity[:, None] + w_dose * g[:, None] + deviation
        out[:, idx] = 100.0 * fraction + noise
    return np.round(np.clip(out, 0.0, 100.0), 1)


def period_effect(period, p: MoodParameters) -> np.ndarray:
    """Planted improvement (MADRS points) of a session in crossover ``period`` (1-based; 0 or NaN = order
    not recorded, no effect)."""
    period = np.asarray(period, dtype=float)
    effects = np.asarray(p.period_effect, dtype=float)
    index = np.clip(np.nan_to_num(period, nan=0.0).astype(int), 0, len(effects)) - 1
    return np.where(index >= 0, effects[np.maximum(index, 0)], 0.0)


def _madrs_totals(intensity, dose, subject_index, rng, p: MoodParameters, period=None, extra=None) -> np.ndarray:
    """Continuous MADRS totals, shape (rows, 1 + len(p.timepoints)): baseline first. ``period``: each row's
    crossover period (1-based) or None (no period effect). ``extra``: (rows × time points) further improvement
    (the planted plasticity-window effect), or None."""
    n = len(dose)
    n_subjects = int(subject_index.max()) + 1
    subject_baseline = p.baseline_mean + p.baseline_subject_sd * rng.standard_normal(n_subjects)
    baseline = subject_baseline[subject_index] + p.baseline_session_sd * rng.standard_normal(n)
    baseline = np.clip(baseline, p.baseline_min, p.baseline_max)
    rho = p.noise_time_correlation
    common = rng.standard_normal((n, 1))
    own = rng.standard_normal((n, len(p.timepoints)))
    noise = p.noise_sd * (np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own)
    drug = p.dose_slope_per_mg_per_kg * np.asarray(dose) + p.peak_slope_per_unit_intensity * intensity
    practice = np.zeros(n) if period is None else period_effect(period, p)
    improvement = (
        np.asarray(p.placebo_response)
        + practice[:, None]
        + np.asarray(p.time_profile) * drug[:, None]
        + noise
        + (0.0 if extra is None else extra)
    )
    return np.column_stack([baseline, np.clip(baseline[:, None] - improvement, 0.0, 60.0)])


def _madrs_items(totals: np.ndarray, rng: np.random.Generator, p: MoodParameters) -> np.ndarray:
    """Items, shape (rows, timepoints, 10): the total spread by the item profile, plus item noise."""
    share = np.asarray(p.item_profile) / np.sum(p.item_profile)
    raw = totals[:, :, None] * share + rng.normal(0.0, p.item_noise_sd, size=(*totals.shape, N_MADRS))
    return np.clip(np.rint(raw), 0, 6).astype(np.int64)


def _subscale_mean(items: np.ndarray, numbers) -> np.ndarray:
    return np.nanmean(items[:, np.asarray(numbers) - 1], axis=1)


def _correlations(x: np.ndarray, improvement: np.ndarray, timepoints) -> dict:
    out = {}
    for j, tp in enumerate(timepoints):
        y = improvement[:, j]
        out[tp] = {"pearson_r": _r6(stats.pearsonr(x, y)[0]), "spearman_rho": _r6(stats.spearmanr(x, y)[0])}
    return out


@lru_cache(maxsize=8)
def _expected_mood_correlations(
    params: PhenotypeParameters, active_doses: tuple[float, ...], with_periods: bool = False, with_placebo: bool = False
) -> dict:
    """Population correlations of peak measures with MADRS improvement over the subject-sessions with peak
    questionnaires (each virtual subject has one session per active dose, and a placebo session with
    ``with_placebo``), by Monte Carlo with a fixed seed. With ``with_periods`` each virtual subject's sessions take
    the periods they have in Williams sequence i mod n of all k doses, placebo included (k = active doses + 1), so
    the period effect is in the expectation."""
    rng = np.random.default_rng(params.monte_carlo_seed)
    n_subj = params.monte_carlo_subjects
    rated = ((0.0,) if with_placebo else ()) + tuple(active_doses)
    dose = np.tile(np.asarray(rated, dtype=float), n_subj)
    subject_index = np.repeat(np.arange(n_subj), len(rated))
    sensitivity = rng.standard_normal(n_subj)[subject_index]
    intensity = _peak_intensity(dose, sensitivity, rng, params.peak)
    meq = _meq30_items(intensity, rng, params.peak).astype(float)
    asc = _asc5d_items(intensity, dose, rng, params.peak)
    period = None
    if with_periods:
        from pipelines.stats.crossover import williams_sequences

        k = len(active_doses) + 1  # placebo is dose index 0, active doses 1..k-1
        first = 0 if with_placebo else 1
        position = np.array([[seq.index(j) + 1 for j in range(first, k)] for seq in williams_sequences(k)])
        period = position[np.arange(n_subj) % len(position)].ravel()
    items = _madrs_items(_madrs_totals(intensity, dose, subject_index, rng, params.mood, period), rng, params.mood)
    totals = items.sum(axis=2).astype(float)
    improvement = totals[:, :1] - totals[:, 1:]
    tps = params.mood.timepoints
    return {
        "peak_intensity": _correlations(intensity, improvement, tps),
        "meq30_total": _correlations(meq.mean(axis=1), improvement, tps),
        "meq30_mystical": _correlations(_subscale_mean(meq, MEQ30_SUBSCALES["mystical"]), improvement, tps),
        "asc5d_obn": _correlations(_subscale_mean(asc, ASC5D_DIMENSIONS["OBN"]), improvement, tps),
    }


def _r6(x) -> float:
    return round(float(x), 6)


# --- The study ----------------------------------------------------------------------------------------------


def _design(participants: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Subject-session rows in participant order then each subject's session order, with subject index."""
    for name, df, cols in (
        ("participants", participants, ["participant_id"]),
        ("sessions", sessions, ["participant_id", "session_id", "dose_mg_per_kg"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
    ids = participants["participant_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise ValueError("participants has duplicate participant_id values")
    design = sessions[["participant_id", "session_id", "dose_mg_per_kg"]].copy()
    # The crossover period of each session when the schedule is known (it carries the planted period effect).
    design["session_order"] = sessions["session_order"].astype(float) if "session_order" in sessions.columns else np.nan
    design["participant_id"] = design["participant_id"].astype(str)
    design["session_id"] = design["session_id"].astype(str)
    design["dose_mg_per_kg"] = design["dose_mg_per_kg"].astype(float)
    unknown = sorted(set(design["participant_id"]) - set(ids))
    if unknown:
        raise ValueError(f"sessions name participant(s) not in participants: {unknown}")
    if design.duplicated(["participant_id", "session_id"]).any():
        raise ValueError("sessions has duplicate (participant_id, session_id) rows")
    if (design["dose_mg_per_kg"] < 0).any() or design["dose_mg_per_kg"].isna().any():
        raise ValueError("dose_mg_per_kg must be >= 0 and present")
    design["subject_index"] = design["participant_id"].map({pid: i for i, pid in enumerate(ids)})
    design["_order"] = np.arange(len(design))
    design = design.sort_values(["subject_index", "_order"], kind="stable").drop(columns="_order")
    return design.reset_index(drop=True)


def _traits(participants: pd.DataFrame, seed: int, subject_traits: pd.DataFrame | None) -> pd.Series:
    if subject_traits is None:
        subject_traits = draw_subject_traits(participants, seed)
    if "ketamine_sensitivity" not in subject_traits.columns:
        raise ValueError("subject_traits lacks column 'ketamine_sensitivity'")
    traits = subject_traits.assign(participant_id=subject_traits["participant_id"].astype(str))
    traits = traits.set_index("participant_id")["ketamine_sensitivity"].astype(float)
    missing = sorted(set(participants["participant_id"].astype(str)) - set(traits.index))
    if missing:
        raise ValueError(f"subject_traits lacks participant(s) {missing}")
    return traits


def _item_frame(keys: pd.DataFrame, columns: list[str], values: np.ndarray, dtype) -> pd.DataFrame:
    items = pd.DataFrame(values, columns=columns).astype(dtype)
    return pd.concat([keys.reset_index(drop=True), items], axis=1)


def _plant_missing_items(meq: pd.DataFrame, asc: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    """Blank a few items so the scorers' missing-item rules are exercised: one MEQ30 row misses one mystical
    item, another misses 2 of the 3 ineffability items (> 50 % of a subscale), one 5D-ASC row misses 3 items."""
    planted = []
    if len(meq) >= 2:
        row_a, row_b = (int(r) for r in rng.choice(len(meq), size=2, replace=False))
        mystical = int(rng.choice(MEQ30_SUBSCALES["mystical"]))
        ineffable = sorted(int(i) for i in rng.choice(MEQ30_SUBSCALES["ineffability"], size=2, replace=False))
        for row, numbers, note in (
            (row_a, [mystical], "1 mystical item"),
            (row_b, ineffable, "2 of 3 ineffability items (> 50 % of the subscale)"),
        ):
            cols = [MEQ30_COLUMNS[i - 1] for i in numbers]
            meq.loc[row, cols] = pd.NA
            planted.append(
                {
                    "table": "meq30",
                    "participant_id": meq.at[row, "participant_id"],
                    "session_id": meq.at[row, "session_id"],
                    "items": cols,
                    "note": note,
                }
            )
    if len(asc) >= 1:
        row = int(rng.integers(len(asc)))
        cols = [ASC5D_COLUMNS[i - 1] for i in sorted(int(i) for i in rng.choice(N_ASC5D, size=3, replace=False) + 1)]
        asc.loc[row, cols] = np.nan
        planted.append(
            {
                "table": "asc5d",
                "participant_id": asc.at[row, "participant_id"],
                "session_id": asc.at[row, "session_id"],
                "items": cols,
                "note": "3 items",
            }
        )
    return planted


def _dose_key(dose: float) -> str:
    return f"{dose:g}"


def _by_dose(values: np.ndarray, doses: np.ndarray) -> dict[str, float]:
    return {_dose_key(d): _r6(np.nanmean(values[doses == d])) for d in np.unique(doses)}


def _questionnaires(design: pd.DataFrame, traits: pd.Series, seed: int, p: PeakExperienceParameters):
    """Latent intensity for every subject-session; MEQ30 and 5D-ASC tables for every session (or the active ones
    when ``p.questionnaires_after_placebo`` is False)."""
    dose = design["dose_mg_per_kg"].to_numpy()
    sensitivity = traits.loc[design["participant_id"]].to_numpy()
    intensity = _peak_intensity(dose, sensitivity, _stream(seed, "peak_intensity"), p)
    # The sessions after which the peak questionnaires were filled in (every session, or active ones only).
    rated = np.ones(len(dose), dtype=bool) if p.questionnaires_after_placebo else dose > 0
    keys = design[["participant_id", "session_id"]]
    meq_values = _meq30_items(intensity[rated], _stream(seed, "meq30"), p)
    asc_values = _asc5d_items(intensity[rated], dose[rated], _stream(seed, "asc5d"), p)
    meq = _item_frame(keys[rated], MEQ30_COLUMNS, meq_values, "Int64")
    asc = _item_frame(keys[rated], ASC5D_COLUMNS, asc_values, "float64")
    missing = _plant_missing_items(meq, asc, _stream(seed, "missing_items"))

    # Realised scores from the tables as written (items may be missing: means of available items).
    meq_float = meq[MEQ30_COLUMNS].astype("float64").to_numpy()
    asc_float = asc[ASC5D_COLUMNS].to_numpy()
    truth = {
        "model": "I = expit(intercept + dose_gain * g(dose) + trait_loading * ketamine_sensitivity + noise_sd * N(0,1)); "
        "g(d) = d (1 + ED50) / (d + ED50)",
        "ed50_mg_per_kg": p.ed50_mg_per_kg,
        "intercept_logit": p.intercept_logit,
        "dose_gain_logit": p.dose_gain_logit,
        "trait_loading_logit": p.trait_loading_logit,
        "noise_sd_logit": p.noise_sd_logit,
        "dose_response_g": {_dose_key(d): _r6(dose_response(d, p.ed50_mg_per_kg)) for d in np.unique(dose)},
        "expected_intensity_at_average_trait": {
            _dose_key(d): _r6(expit(p.intercept_logit + p.dose_gain_logit * dose_response(d, p.ed50_mg_per_kg)))
            for d in np.unique(dose)
        },
        "realised_mean_intensity_by_dose": _by_dose(intensity, dose),
        "meq30_subscale_weights": dict(p.meq30_weights),
        "asc5d_dimension_weights": {d: {"intensity": wi, "dose_g": wd} for d, wi, wd in p.asc5d_weights},
        "meq30_item_loadings": {c: float(v) for c, v in zip(MEQ30_COLUMNS, MEQ30_ITEM_LOADINGS)},
        "asc5d_item_loadings": {c: float(v) for c, v in zip(ASC5D_COLUMNS, ASC5D_ITEM_LOADINGS)},
        "realised_mean_scores_by_dose": {
            "meq30_total": _by_dose(np.nanmean(meq_float, axis=1), dose[rated]),
            **{
                f"meq30_{s}": _by_dose(_subscale_mean(meq_float, MEQ30_SUBSCALES[s]), dose[rated])
                for s in MEQ30_SUBSCALES
            },
            **{
                f"asc5d_{d.lower()}": _by_dose(_subscale_mean(asc_float, ASC5D_DIMENSIONS[d]), dose[rated])
                for d in ASC5D_DIMENSIONS
            },
        },
        "questionnaires_collected": (
            "every session, placebo included" if p.questionnaires_after_placebo else "active sessions only (dose > 0)"
        ),
        "subject_sessions": [
            {"participant_id": pid, "session_id": sid, "dose_mg_per_kg": float(d), "peak_intensity": _r6(i)}
            for pid, sid, d, i in zip(design["participant_id"], design["session_id"], dose, intensity)
        ],
    }
    return intensity, meq, asc, missing, truth


def _mood(
    design: pd.DataFrame,
    intensity: np.ndarray,
    meq: pd.DataFrame,
    asc: pd.DataFrame,
    seed: int,
    params: PhenotypeParameters,
    extra_improvement: np.ndarray | None = None,
):
    """MADRS table for every subject-session and timepoint; truth with expected and realised correlations."""
    m = params.mood
    dose = design["dose_mg_per_kg"].to_numpy()
    active = dose > 0
    mood_rng = _stream(seed, "madrs")
    period = design["session_order"].to_numpy(float)
    has_order = bool(np.isfinite(period).all())
    totals = _madrs_totals(
        intensity,
        dose,
        design["subject_index"].to_numpy(),
        mood_rng,
        m,
        period if has_order else None,
        extra_improvement,
    )
    items = _madrs_items(totals, mood_rng, m)
    n_tp = len(MADRS_TIMEPOINTS)
    madrs_keys = pd.DataFrame(
        {
            "participant_id": np.repeat(design["participant_id"].to_numpy(), n_tp),
            "session_id": np.repeat(design["session_id"].to_numpy(), n_tp),
            "timepoint": np.tile(MADRS_TIMEPOINTS, len(design)),
        }
    )
    madrs = _item_frame(madrs_keys, MADRS_COLUMNS, items.reshape(-1, N_MADRS), "Int64")

    # meq and asc rows are every design row or the active ones, in design order: the correlations in truth are
    # over those rated sessions (their population, as the Monte-Carlo expectation's).
    meq_float = meq[MEQ30_COLUMNS].astype("float64").to_numpy()
    asc_float = asc[ASC5D_COLUMNS].to_numpy()
    rated = np.ones(len(design), dtype=bool) if len(meq) == len(design) else active
    with_placebo = bool((rated & ~active).any())
    madrs_total = items.sum(axis=2).astype(float)
    improvement = (madrs_total[:, :1] - madrs_total[:, 1:])[rated]
    tps = m.timepoints
    realised = (
        {
            "peak_intensity": _correlations(intensity[rated], improvement, tps),
            "meq30_total": _correlations(np.nanmean(meq_float, axis=1), improvement, tps),
            "meq30_mystical": _correlations(_subscale_mean(meq_float, MEQ30_SUBSCALES["mystical"]), improvement, tps),
            "asc5d_obn": _correlations(_subscale_mean(asc_float, ASC5D_DIMENSIONS["OBN"]), improvement, tps),
        }
        if rated.sum() > 2
        else {}
    )
    active_doses = tuple(float(d) for d in np.unique(dose[active]))
    expected = _expected_mood_correlations(params, active_doses, has_order, with_placebo) if active_doses else {}
    truth = {
        "model": "improvement_t = placebo_t + period_p + h_t * (dose_slope * dose + peak_slope * I) + noise_t; "
        "madrs_total_t = baseline - improvement_t, spread over 10 items (0-6)",
        "period_effect": (
            {
                "definition": "practice/expectancy effect: MADRS improvement added at every post-baseline time point "
                "of a session in crossover period p (p = session_order in sessions.tsv), relative to "
                "period 1",
                "by_period": {
                    str(k): _r6(v)
                    for k, v in zip(
                        range(1, int(period.max()) + 1), period_effect(np.arange(1, int(period.max()) + 1), m)
                    )
                },
            }
            if has_order
            else {"definition": "not planted: the sessions carry no order"}
        ),
        "change_definition": "baseline - timepoint (MADRS total points; positive = improvement)",
        "timepoints": list(MADRS_TIMEPOINTS),
        "baseline_mean": m.baseline_mean,
        "baseline_subject_sd": m.baseline_subject_sd,
        "baseline_session_sd": m.baseline_session_sd,
        "placebo_response": dict(zip(tps, m.placebo_response)),
        "time_profile": dict(zip(tps, m.time_profile)),
        "dose_slope_per_mg_per_kg": {tp: _r6(h * m.dose_slope_per_mg_per_kg) for tp, h in zip(tps, m.time_profile)},
        "peak_slope_per_unit_intensity": {
            tp: _r6(h * m.peak_slope_per_unit_intensity) for tp, h in zip(tps, m.time_profile)
        },
        "noise_sd": m.noise_sd,
        "noise_time_correlation": m.noise_time_correlation,
        "correlation_population": (
            "every subject-session with peak questionnaires, placebo included: one per subject and dose"
            if with_placebo
            else "active subject-sessions (dose > 0), one per subject and active dose"
        ),
        "expected_correlation_with_improvement": expected,
        "realised_correlation_with_improvement": realised,
        "realised_mean_improvement_by_dose": {
            tp: _by_dose(madrs_total[:, 0] - madrs_total[:, j + 1], dose) for j, tp in enumerate(tps)
        },
        "realised_mean_baseline_total": _r6(madrs_total[:, 0].mean()),
    }
    return madrs, truth


def _format_value(value: float, a: AnalyteParameters, rng_choice: float) -> str:
    if value < a.lloq:
        return "<LLOQ" if rng_choice < 0.5 else f"<{a.lloq:g}"
    if value > a.uloq:
        return f">{a.uloq:g}"
    return f"{value:.{a.decimals}f}"


def _cytokines(design: pd.DataFrame, participants: pd.DataFrame, seed: int, params: CytokineParameters):
    ids = participants["participant_id"].astype(str).tolist()
    n_subj = len(ids)
    n_inflamed = int(round(params.inflamed_fraction * n_subj))
    inflamed_subject = np.zeros(n_subj, dtype=bool)
    inflamed_subject[_stream(seed, "inflammation").permutation(n_subj)[:n_inflamed]] = True

    s = design["subject_index"].to_numpy()
    dose = design["dose_mg_per_kg"].to_numpy()
    active = dose > 0
    inflamed = inflamed_subject[s]
    n = len(design)
    # Intercurrent infection: chosen sessions get a high CRP at both draws (the acute-phase response dwarfs the
    # set point). Their own stream, so the other draws do not move when the number changes.
    acute_rng = _stream(seed, "cytokines/acute_infection")
    n_acute = min(max(int(params.acute_infection_sessions), 0), n)
    acute = np.zeros(n, dtype=bool)
    acute[acute_rng.permutation(n)[:n_acute]] = True
    acute_log = np.log(params.acute_infection_crp_mg_per_l)
    acute_level = acute_rng.uniform(acute_log[0], acute_log[1], n)
    rows, censored, above = [], {}, {}
    log_values = {}
    screening = None
    for a in params.analytes:
        rng = _stream(seed, f"cytokines/{a.name}")
        if a.name == "CRP":
            lo_hi = np.where(
                inflamed_subject[:, None], np.log(params.crp_range_inflamed), np.log(params.crp_range_non_inflamed)
            )
            subject_log = rng.uniform(lo_hi[:, 0], lo_hi[:, 1])
            crp_set_point = np.exp(subject_log)
        else:
            median = np.where(inflamed_subject, a.median_inflamed, a.median_non_inflamed)
            subject_log = np.log(median) + a.between_subject_sd_log * rng.standard_normal(n_subj)
        baseline_log = subject_log[s] + a.session_sd_log * rng.standard_normal(n)
        if a.name == "CRP":
            baseline_log = np.where(acute, acute_level, baseline_log)
        effect = np.where(inflamed & active, a.log_fold_change_inflamed_active, 0.0)
        later_log = baseline_log + effect + a.change_sd_log * rng.standard_normal(n)
        measured_log = np.column_stack([baseline_log, later_log]) + a.assay_sd_log * rng.standard_normal((n, 2))
        measured = np.exp(measured_log)
        choice = rng.random((n, 2))
        log_values[a.name] = measured_log
        censored[a.name] = int((measured < a.lloq).sum())
        above[a.name] = int((measured > a.uloq).sum())
        for i in range(n):
            for j in range(len(CYTOKINE_TIMEPOINTS)):
                rows.append((i, j, a.name, _format_value(measured[i, j], a, choice[i, j]), a.unit))
        if a.name == "CRP" and params.screening_timepoint:
            # Screening visit: its own day state and draw noise, independent of every session's draws.
            srng = _stream(seed, "cytokines/CRP/screening")
            screening = np.exp(
                subject_log
                + a.session_sd_log * srng.standard_normal(n_subj)
                + a.assay_sd_log * srng.standard_normal(n_subj)
            )
            choice_s = srng.random(n_subj)
            first_row = {int(k): i for i, k in reversed(list(enumerate(s)))}
            for k in range(n_subj):
                if k in first_row:  # ordered before the subject's first session (j = -1)
                    rows.append((first_row[k], -1, a.name, _format_value(screening[k], a, choice_s[k]), a.unit))

    analyte_order = {a.name: k for k, a in enumerate(params.analytes)}
    rows.sort(key=lambda r: (r[0], r[1], analyte_order[r[2]]))
    table = pd.DataFrame(
        {
            "participant_id": [design.at[r[0], "participant_id"] for r in rows],
            "session_id": ["n/a" if r[1] < 0 else design.at[r[0], "session_id"] for r in rows],
            "timepoint": [params.screening_timepoint if r[1] < 0 else CYTOKINE_TIMEPOINTS[r[1]] for r in rows],
            "analyte": [r[2] for r in rows],
            "value": [r[3] for r in rows],
            "unit": [r[4] for r in rows],
        }
    )

    def lfc(name_or_ratio, mask):
        if name_or_ratio == "KYN_TRP_ratio":
            d = (log_values["KYN"][:, 1] - log_values["TRP"][:, 1]) - (
                log_values["KYN"][:, 0] - log_values["TRP"][:, 0]
            )
        else:
            d = log_values[name_or_ratio][:, 1] - log_values[name_or_ratio][:, 0]
        return _r6(d[mask].mean()) if mask.any() else None

    planted_lfc = {a.name: a.log_fold_change_inflamed_active for a in params.analytes}
    names = [a.name for a in params.analytes]
    has_ratio = {"KYN", "TRP"} <= set(names)
    if has_ratio:
        planted_lfc["KYN_TRP_ratio"] = _r6(planted_lfc["KYN"] - planted_lfc["TRP"])
        names = names + ["KYN_TRP_ratio"]
    planted, realised = {}, {}
    for stratum, in_stratum in (("inflamed", inflamed), ("non_inflamed", ~inflamed)):
        planted[stratum], realised[stratum] = {}, {}
        for condition, in_condition in (("active", active), ("placebo", ~active)):
            planted[stratum][condition] = {
                k: (planted_lfc[k] if stratum == "inflamed" and condition == "active" else 0.0) for k in names
            }
            realised[stratum][condition] = {k: lfc(k, in_stratum & in_condition) for k in names}
    threshold = params.crp_threshold_mg_per_l
    realised_screening = {}
    if screening is not None:
        by_screening = (screening >= threshold)[s]
        for stratum, in_stratum in (("inflamed", by_screening), ("non_inflamed", ~by_screening)):
            realised_screening[stratum] = {
                condition: {k: lfc(k, in_stratum & in_condition & ~acute) for k in names}
                for condition, in_condition in (("active", active), ("placebo", ~active))
            }
    truth = {
        "crp_threshold_mg_per_l": threshold,
        "stratum_definition": "inflamed = CRP set point (the subject's long-run level) >= threshold; every draw adds a "
        "session-day state and draw noise, so measured CRP can fall on the other side",
        "inflamed_fraction_target": params.inflamed_fraction,
        "inflamed_subjects": [pid for pid, f in zip(ids, inflamed_subject) if f],
        "non_inflamed_subjects": [pid for pid, f in zip(ids, inflamed_subject) if not f],
        "crp_set_point_mg_per_l": {pid: _r6(v) for pid, v in zip(ids, crp_set_point)} if "CRP" in analyte_order else {},
        "screening_timepoint": params.screening_timepoint,
        "screening_crp_mg_per_l": ({pid: _r6(v) for pid, v in zip(ids, screening)} if screening is not None else {}),
        "screening_inflamed_subjects": (
            [pid for pid, v in zip(ids, screening) if v >= threshold] if screening is not None else []
        ),
        "acute_infection": [
            {
                "participant_id": design.at[i, "participant_id"],
                "session_id": design.at[i, "session_id"],
                "crp_baseline_mg_per_l": _r6(np.exp(log_values["CRP"][i, 0])),
                "crp_24h_mg_per_l": _r6(np.exp(log_values["CRP"][i, 1])),
            }
            for i in np.flatnonzero(acute)
        ]
        if "CRP" in analyte_order
        else [],
        "log_base": "natural",
        "log_fold_change_definition": "log(value at 24h / value at baseline) within a subject-session",
        "dose_dependence": "the same planted change for every active dose (dose > 0); none under placebo",
        "log_fold_change_24h": planted,
        "realised_mean_log_fold_change_24h": realised,
        "realised_note": "means over subject-sessions of measured (pre-censoring) values, by the true (set-point) "
        "stratum",
        "realised_mean_log_fold_change_24h_by_screening_stratum": realised_screening,
        "realised_by_screening_note": "the same means by the stratum of the screening CRP draw (what an analysis "
        "stratifying on screening sees), acute-infection sessions left out",
        "analytes": {
            a.name: {
                "description": a.description,
                "unit": a.unit,
                "LLOQ": a.lloq,
                "ULOQ": a.uloq,
                "median_non_inflamed": a.median_non_inflamed,
                "median_inflamed": a.median_inflamed,
            }
            for a in params.analytes
        },
        "crp_range_non_inflamed_mg_per_l": list(params.crp_range_non_inflamed),
        "crp_range_inflamed_mg_per_l": list(params.crp_range_inflamed),
        "n_below_lloq": censored,
        "n_above_uloq": above,
        "censored_value_formats": ["<LLOQ", "<{LLOQ}"],
    }
    return table, truth


def generate_phenotype(
    participants: pd.DataFrame,
    sessions: pd.DataFrame,
    seed: int,
    subject_traits: pd.DataFrame | None = None,
    params: PhenotypeParameters | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, dict], dict]:
    """Generate the phenotype tables of the synthetic ketamine crossover study.

    ``participants``: ``participant_id`` (``sub-01`` ...), ``age``, ``sex``. ``sessions``: ``participant_id``,
    ``session_id`` (``ses-placebo``, ``ses-ket025`` ...), ``dose_mg_per_kg`` (0 = placebo).
    ``subject_traits``: ``participant_id`` and ``ketamine_sensitivity`` (standard normal, shared with the EEG
    generator); drawn from the seed (:func:`draw_subject_traits`) when ``None``.

    Returns ``(tables, sidecars, truth)``: ``tables`` = ``{'meq30', 'asc5d', 'madrs', 'cytokines'}`` in the
    formats of ``docs/data_formats.md`` (items as nullable integers, 5D-ASC as floats, cytokine values as
    strings); ``sidecars`` = BIDS JSON sidecar dicts per table; ``truth`` = a JSON-serialisable record of every
    planted effect (keys ``generator``, ``parameters``, ``subjects``, ``peak_experience``, ``mood``,
    ``cytokines``, ``missing_items``).
    """
    params = params or PhenotypeParameters()
    design = _design(participants, sessions)
    traits = _traits(participants, seed, subject_traits)
    intensity, meq, asc, missing, truth_peak = _questionnaires(design, traits, seed, params.peak)
    # Therapy sessions are drawn from their own stream, so every other table's draws are unchanged by them.
    from pipelines.phenotype.therapy import hours_of
    from pipelines.synth.therapy import TherapyParameters, draw_therapy, window_effect

    therapy_params = TherapyParameters()
    therapy, inside = draw_therapy(design, _stream(seed, "therapy"), therapy_params)
    extra = window_effect(
        inside, design["dose_mg_per_kg"].to_numpy(), [hours_of(t) for t in params.mood.timepoints], therapy_params
    )
    madrs, truth_mood = _mood(design, intensity, meq, asc, seed, params, extra)
    cytokines, truth_cytokines = _cytokines(design, participants, seed, params.cytokines)
    tables = {"meq30": meq, "asc5d": asc, "madrs": madrs, "cytokines": cytokines, "therapy": therapy}
    sidecars = {**_sidecars(params.cytokines), "therapy": _THERAPY_SIDECAR}
    truth = {
        "generator": {
            "module": __name__,
            "seed": int(seed),
            "random_streams": "SeedSequence(seed, spawn_key=(crc32(name),)) per named stream",
            "subject_traits": "given" if subject_traits is not None else "drawn (stream 'subject_traits')",
        },
        "parameters": _jsonable(asdict(params)),
        "subjects": {
            "ketamine_sensitivity": {pid: _r6(traits[pid]) for pid in participants["participant_id"].astype(str)}
        },
        "peak_experience": truth_peak,
        "mood": truth_mood,
        "cytokines": truth_cytokines,
        "missing_items": missing,
        "therapy": {
            "window_h": list(therapy_params.window_h),
            "window_effect_points": therapy_params.window_effect_points,
            "effect_from_h": therapy_params.effect_from_h,
            "definition": "extra MADRS improvement (points) at every time point from effect_from_h on, for an active "
            "infusion whose first integration session starts inside window_h after the infusion ended",
            "inside_by_session": {
                f"{r.participant_id}_{r.session_id}": bool(flag)
                for r, flag in zip(design.itertuples(index=False), inside)
            },
        },
    }
    return tables, sidecars, _jsonable(truth)


_THERAPY_SIDECAR = {
    "participant_id": {"Description": "Participant identifier (BIDS label, pseudonymous)."},
    "session_id": {"Description": "The infusion session this therapy session belongs to."},
    "session_type": {
        "Description": "Kind of psychotherapy session",
        "Levels": {"preparation": "before the infusion", "integration": "after the infusion"},
    },
    "start_h": {"Description": "Start relative to the end of the infusion (negative: before it)", "Units": "h"},
    "duration_min": {"Description": "Duration", "Units": "min"},
    "MeasurementToolMetadata": {"Description": "Therapy-session log (synthetic; no real participants)."},
}


def _jsonable(obj):
    """Tuples to lists, numpy scalars to Python; fails loudly on anything else JSON cannot hold."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


# --- Sidecars -----------------------------------------------------------------------------------------------

_KEY_COLUMNS = {
    "participant_id": {"Description": "Participant identifier (BIDS label, pseudonymous)."},
    "session_id": {
        "Description": "Session identifier; each session is one dose condition (see sessions.tsv for dose_mg_per_kg)."
    },
}
_SYNTHETIC = " Synthetic data generated by pipelines.synth.phenotype (no real participants)."


def _sidecars(cyto: CytokineParameters) -> dict[str, dict]:
    meq_levels = {
        "0": "none; not at all",
        "1": "so slight cannot decide",
        "2": "slight",
        "3": "moderate",
        "4": "strong (equivalent in degree to any other strong experience)",
        "5": "extreme (more than ever before in my life and stronger than 4)",
    }
    meq_subscale_of = {i: s for s, items in MEQ30_SUBSCALES.items() for i in items}
    meq = {**_KEY_COLUMNS}
    for i, col in enumerate(MEQ30_COLUMNS, start=1):
        meq[col] = {
            "Description": f"MEQ30 item {i} (administered order); subscale: {meq_subscale_of[i].replace('_', ' ')}.",
            "Levels": meq_levels,
        }
    meq["MeasurementToolMetadata"] = {
        "Description": "Revised Mystical Experience Questionnaire, 30 items, rated after the session for the "
        "session's experience." + _SYNTHETIC,
        "Citation": "MacLean KA, Leoutsakos J-MS, Johnson MW, Griffiths RR (2012) J Sci Study Relig 51:721-737; "
        "Barrett FS, Johnson MW, Griffiths RR (2015) J Psychopharmacol 29:1182-1190.",
    }
    meq["ResponseScale"] = {"min": 0, "max": 5}

    asc_dim_of = {i: d for d, items in ASC5D_DIMENSIONS.items() for i in items}
    asc = {**_KEY_COLUMNS}
    for i, col in enumerate(ASC5D_COLUMNS, start=1):
        asc[col] = {
            "Description": f"5D-ASC item {i} (94-item numbering); dimension: {asc_dim_of[i]} "
            f"({ASC5D_DIMENSION_NAMES[asc_dim_of[i]]}). Visual analogue scale 0 = 'no, not "
            "more than usually' to 100 = 'yes, much more than usually'."
        }
    asc["MeasurementToolMetadata"] = {
        "Description": "Five-dimensional Altered States of Consciousness rating scale (5D-ASC), 94 visual analogue "
        "items, rated retrospectively for the session." + _SYNTHETIC,
        "Citation": "Dittrich A (1998) Pharmacopsychiatry 31 Suppl 2:80-84; Studerus E, Gamma A, Vollenweider FX "
        "(2010) PLoS One 5:e12412.",
    }
    asc["ResponseScale"] = {"min": 0, "max": 100}

    madrs = {
        **_KEY_COLUMNS,
        "timepoint": {
            "Description": "Time of rating relative to the session's infusion.",
            "Levels": {
                "baseline": "before the infusion",
                "4h": "4 hours after",
                "24h": "24 hours after",
                "7d": "7 days after",
                "14d": "14 days after",
            },
        },
    }
    madrs_levels = {
        "0": "absent / normal (anchor)",
        "1": "between anchors",
        "2": "anchor 2",
        "3": "between anchors",
        "4": "anchor 4",
        "5": "between anchors",
        "6": "most severe (anchor)",
    }
    for i, (col, name) in enumerate(zip(MADRS_COLUMNS, MADRS_ITEM_NAMES), start=1):
        madrs[col] = {"Description": f"MADRS item {i}: {name}.", "Levels": madrs_levels}
    madrs["MeasurementToolMetadata"] = {
        "Description": "Montgomery-Åsberg Depression Rating Scale, 10 clinician-rated items, 0-6 each, total 0-60."
        + _SYNTHETIC,
        "Citation": "Montgomery SA, Åsberg M (1979) Br J Psychiatry 134:382-389.",
    }
    madrs["ResponseScale"] = {"min": 0, "max": 6}

    levels = {"baseline": "before the infusion", "24h": "24 hours after"}
    session = dict(_KEY_COLUMNS["session_id"])
    if cyto.screening_timepoint:
        levels = {
            cyto.screening_timepoint: "screening visit before the first session (hs-CRP only; session_id n/a)",
            **levels,
        }
        session = {
            "Description": session["Description"] + " 'n/a' for the screening draw, which belongs to no session."
        }
    cytokines = {
        **_KEY_COLUMNS,
        "session_id": session,
        "timepoint": {"Description": "Blood draw relative to the session's infusion.", "Levels": levels},
        "analyte": {"Description": "Analyte measured.", "Levels": {a.name: a.description for a in cyto.analytes}},
        "value": {
            "Description": "Concentration as exported by the lab: a number, '<LLOQ' or '<x' (below "
            "the lower limit of quantification x), '>x' (above the upper limit)."
        },
        "unit": {"Description": "Unit of value (also declared per analyte under 'analytes')."},
        "analytes": {
            a.name: {"unit": a.unit, "LLOQ": a.lloq, "ULOQ": a.uloq, "Description": a.description}
            for a in cyto.analytes
        },
        "MeasurementToolMetadata": {
            "Description": "Serum inflammatory markers: IL-6, IL-1beta and TNF-alpha by high-sensitivity "
            "immunoassay, hs-CRP by immunoturbidimetry, kynurenine and tryptophan by "
            "LC-MS/MS." + _SYNTHETIC,
            "Citation": "Synthetic; effect pattern after Kiraly DD et al. (2017) Transl Psychiatry 7:e1065 "
            "and Verdonk F et al. (2019) Brain Behav Immun (ketamine and inflammation).",
        },
    }
    return {"meq30": meq, "asc5d": asc, "madrs": madrs, "cytokines": cytokines}


# --- Writing ------------------------------------------------------------------------------------------------

FLOAT_DECIMALS = {"asc5d": 1, "therapy": 1}  # fixed decimals per table for float columns (default 3)


def _format_column(series: pd.Series, decimals: int) -> list[str]:
    if pd.api.types.is_integer_dtype(series.dtype):
        return ["n/a" if pd.isna(v) else str(int(v)) for v in series]
    if pd.api.types.is_float_dtype(series.dtype):
        return ["n/a" if pd.isna(v) else f"{float(v):.{decimals}f}" for v in series]
    return ["n/a" if pd.isna(v) else str(v) for v in series]


def _tsv_text(name: str, table: pd.DataFrame) -> str:
    decimals = FLOAT_DECIMALS.get(name, 3)
    columns = [_format_column(table[c], decimals) for c in table.columns]
    lines = ["\t".join(map(str, table.columns))]
    lines += ["\t".join(cells) for cells in zip(*columns)]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.encode("utf-8"))
    tmp.replace(path)


def write_phenotype(bids_root: Path, tables: dict[str, pd.DataFrame], sidecars: dict[str, dict]) -> list[Path]:
    """Write ``bids_root/phenotype/<name>.tsv`` and ``<name>.json`` for every table; return the paths written.

    TSV: tab-separated, UTF-8, ``\\n`` line ends, ``n/a`` for missing, integers as integers and floats with
    fixed decimals (``FLOAT_DECIMALS``), so the bytes depend only on the tables. JSON: UTF-8, indent 2,
    keys in insertion order, trailing newline.
    """
    out_dir = Path(bids_root) / "phenotype"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        tsv, sidecar = out_dir / f"{name}.tsv", out_dir / f"{name}.json"
        _write_atomic(tsv, _tsv_text(name, table))
        _write_atomic(sidecar, json.dumps(sidecars[name], indent=2, ensure_ascii=False) + "\n")
        written += [tsv, sidecar]
    return written
