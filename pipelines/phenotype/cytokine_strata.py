"""Inflammation strata from CRP: by baseline CRP, and from the least biased source present (screening, mean of
baselines, single baseline) with the acute-infection rule.  Conventions: :mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError
from pipelines.phenotype.cytokine_values import convert_exact, unit_conversion_ratio

#: Relative tolerance of threshold comparisons (:func:`inflammation_strata`): a value within 1e-9 of
#: the threshold, relative, is at the threshold.
THRESHOLD_REL_TOL = 1e-9


def inflammation_strata(
    parsed: pd.DataFrame,
    *,
    crp_analyte: str = "CRP",
    baseline: str = "baseline",
    threshold: float = 3.0,
    threshold_unit: str = "mg/L",
    level: str = "session",
    inflamed: str = "inflamed",
    not_inflamed: str = "non-inflamed",
    rel_tol: float = THRESHOLD_REL_TOL,
) -> pd.DataFrame:
    """Label each subject-session (``level="session"``) or subject (``level="subject"``) by baseline CRP.

    CRP ≥ ``threshold`` (in ``threshold_unit``, converted to CRP's unit) → ``inflamed``, else
    ``not_inflamed``. Censored CRP is classified only when its bound settles the question ("<1" with
    threshold 3 is not inflamed); otherwise, and when missing, the label is ``undetermined``. At subject
    level, a subject whose sessions disagree is ``discordant``.

    Boundary: the threshold is converted exactly (:func:`convert_exact`), as every value was when
    loaded, so 3 mg/L, 0.3 mg/dL, 3000 µg/L and 3000 ng/mL are all *at* a 3 mg/L threshold (inflamed).
    A value within ``rel_tol`` (relative, default 1e-9: far below any assay's precision) of the
    threshold also counts as at it, so values produced by float arithmetic elsewhere (e.g. 0.3 × 10 done
    by hand) are classed like the concentration they stand for.
    """
    if not 0 <= rel_tol < 1e-3:
        raise ValueError("rel_tol must be in [0, 1e-3)")
    if level not in ("session", "subject"):
        raise ValueError("level must be 'session' or 'subject'")
    crp = parsed[(parsed["analyte"] == crp_analyte) & (parsed["timepoint"] == baseline)].copy()
    if crp.empty:
        raise InputError(f"{parsed.attrs.get('source', '<table>')}: no {crp_analyte} rows at time point {baseline!r}")
    thresholds = {}
    for unit in crp["unit"].unique():
        try:
            thresholds[unit] = convert_exact(threshold, unit_conversion_ratio(threshold_unit, unit))
        except ValueError as exc:
            raise InputError(f"{crp['source'].iloc[0]}: analyte {crp_analyte}: {exc}") from None
    thr = crp["unit"].map(thresholds).astype(float)
    cens, value, limit = crp["censoring"], crp["value"], crp["limit"]
    at_or_above = value >= thr * (1 - rel_tol)
    crp["stratum"] = np.select(
        [
            (cens == "observed") & at_or_above,
            (cens == "observed") & ~at_or_above,
            (cens == "below") & (limit <= thr * (1 + rel_tol)),
            (cens == "above") & (limit >= thr * (1 - rel_tol)),
        ],
        [inflamed, not_inflamed, not_inflamed, inflamed],
        default="undetermined",
    )
    crp["crp_baseline"] = np.where(cens == "observed", value, limit)
    crp["crp_threshold"] = thr
    out = crp.rename(columns={"censoring": "crp_censoring", "unit": "crp_unit"})[
        ["participant_id", "session_id", "crp_baseline", "crp_censoring", "crp_unit", "crp_threshold", "stratum"]
    ]
    if level == "session":
        return out.reset_index(drop=True)
    per_subject = out.groupby("participant_id", sort=False).agg(
        stratum=("stratum", lambda s: s.iloc[0] if s.nunique() == 1 else "discordant"),
        n_sessions=("session_id", "nunique"),
    )
    return per_subject.reset_index()


STRATA_SOURCES = ("auto", "screening", "mean_baselines", "single_baseline")
ACUTE_RULES = ("session", "subject")
STRATA_SOURCE_TEXT = {
    "screening": "a separate screening CRP draw (independent of the baselines the change is measured from: no "
    "regression to the mean)",
    "mean_baselines": "the geometric mean of the subject's repeated pre-infusion baselines (a session's own "
    "baseline is one of k draws, so within-stratum changes keep about 1/k of a single baseline's "
    "regression to the mean; the placebo-controlled interaction is unbiased)",
    "single_baseline": "each session's own baseline CRP, the draw the change is measured from",
}
RTM_WARNING = (
    "⚠ Strata come from the single baseline CRP the change is measured from: the stratum contrast (and "
    "each stratum's change) is biased by regression to the mean; only the placebo-controlled interaction "
    "is interpretable."
)


def acute_rule_text(rule: str, acute_threshold: float | None, unit: str = "mg/L") -> str:
    """The acute-infection rule in one line (stated in every report that uses the strata)."""
    if acute_threshold is None:
        return "Acute-infection rule: off (no CRP level excludes a draw from the strata analysis)."
    if rule == "subject":
        what = "a subject with any pre-infusion CRP (screening or any baseline) ≥ {t} {u} is left out of the strata analysis"
    else:
        what = (
            "a session whose baseline CRP is ≥ {t} {u} is left out of the strata analysis (and of the mean of "
            "baselines); a subject whose screening CRP is ≥ {t} {u} is left out entirely"
        )
    return (
        f"Acute-infection rule '{rule}' (CRP ≥ {acute_threshold:g} {unit} = probable acute infection): "
        + what.format(t=f"{acute_threshold:g}", u=unit)
        + ". Post-infusion values ≥ the limit are flagged, never used to exclude (that would select on the outcome)."
    )


def _classify(lower: pd.Series, upper: pd.Series, thr: pd.Series, rel_tol: float, inflamed: str, not_inflamed: str):
    """inflamed when the value's lower bound is at/above the threshold, not inflamed when the upper bound is below."""
    return np.select(
        [lower >= thr * (1 - rel_tol), upper < thr * (1 - rel_tol)], [inflamed, not_inflamed], default="undetermined"
    )


def _bounds(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    cens, value, limit = rows["censoring"], rows["value"], rows["limit"]
    lower = pd.Series(
        np.select([cens == "observed", cens == "below", cens == "above"], [value, 0.0, limit], np.nan), index=rows.index
    )
    upper = pd.Series(
        np.select([cens == "observed", cens == "below", cens == "above"], [value, limit, np.inf], np.nan),
        index=rows.index,
    )
    return lower, upper


def define_strata(
    parsed: pd.DataFrame,
    *,
    crp_analyte: str = "CRP",
    baseline: str = "baseline",
    screening: str | None = "screening",
    source: str = "auto",
    threshold: float = 3.0,
    threshold_unit: str = "mg/L",
    acute_threshold: float | None = 10.0,
    acute_rule: str = "session",
    inflamed: str = "inflamed",
    not_inflamed: str = "non-inflamed",
    rel_tol: float = THRESHOLD_REL_TOL,
) -> pd.DataFrame:
    """Inflammation stratum of every subject-session with a baseline CRP, from the least biased source present.

    ``source="auto"`` picks, in order: ``screening`` (a CRP draw at time point ``screening``, subject level,
    independent of the baselines), ``mean_baselines`` (geometric mean of the subject's baseline CRPs over its
    sessions, when every subject with a baseline has ≥ 2), ``single_baseline`` (each session's own baseline:
    biased by regression to the mean, :data:`RTM_WARNING`). A named source that the table cannot supply is an
    InputError. Thresholds are converted exactly into CRP's unit (:func:`convert_exact`); censored values are
    classified only when their bound settles it (else ``undetermined``).

    Acute infection (``acute_threshold``, same unit as ``threshold``; None = off): pre-infusion draws at or
    above it are flagged; ``acute_rule`` ``"session"`` leaves out the session (and its baseline from the mean),
    and the whole subject when the screening draw is at/above it; ``"subject"`` leaves out every session of a
    subject with any such pre-infusion draw. Left-out rows have ``stratum = "excluded"``.

    Returns one row per subject-session: ``participant_id, session_id, stratum, stratum_source, crp_stratifying``
    (the value classified, CRP's unit; for ``mean_baselines`` the geometric mean), ``crp_baseline``,
    ``crp_screening``, ``crp_unit``, ``crp_threshold``, ``acute_flag``, ``excluded_reason``. ``attrs``: ``source``,
    ``definition`` (one line), ``warning`` (one line or ""), ``acute_rule`` (one line), ``flags`` (a table of
    every draw at/above the acute limit, post-infusion ones included).
    """
    if source not in STRATA_SOURCES:
        raise ValueError(f"strata source must be one of {STRATA_SOURCES}, not {source!r}")
    if acute_rule not in ACUTE_RULES:
        raise ValueError(f"acute_rule must be one of {ACUTE_RULES}, not {acute_rule!r}")
    if not 0 <= rel_tol < 1e-3:
        raise ValueError("rel_tol must be in [0, 1e-3)")
    where = parsed.attrs.get("source", "<table>")
    crp_all, base, unit = _baseline_draws(parsed, crp_analyte, baseline, where)
    try:
        thr = convert_exact(threshold, unit_conversion_ratio(threshold_unit, unit))
        acute = (
            None
            if acute_threshold is None
            else convert_exact(acute_threshold, unit_conversion_ratio(threshold_unit, unit))
        )
    except ValueError as exc:
        raise InputError(f"{where}: analyte {crp_analyte}: {exc}") from None
    screen = _screening_draws(crp_all, crp_analyte, screening, where)
    source = _strata_source(source, base, screen, crp_analyte, screening, where)
    flags = _mark_acute(crp_all, base, screen, acute, rel_tol, unit)
    screen_acute = set(screen.loc[screen["acute"], "participant_id"])
    subject_acute = set(base.loc[base["acute"], "participant_id"]) | screen_acute

    out = base[["participant_id", "session_id"]].copy()
    lower, upper = _bounds(base)
    out["crp_baseline"] = np.where(base["censoring"] == "observed", base["value"], base["limit"])
    screen_value = screen.set_index("participant_id")
    out["crp_screening"] = (
        out["participant_id"].map(
            pd.Series(
                np.where(screen_value["censoring"] == "observed", screen_value["value"], screen_value["limit"]),
                index=screen_value.index,
            )
        )
        if not screen.empty
        else np.nan
    )
    out["acute_flag"] = base["acute"].to_numpy() | out["participant_id"].isin(screen_acute).to_numpy()
    reason = _exclusion_reasons(out, base, screen_acute, subject_acute, acute, acute_rule)
    kept = reason == ""
    lo, hi = _stratifying_bounds(out, source, screen_value, lower, upper, kept)
    out["stratum"] = _classify(lo, hi, pd.Series(thr, index=out.index), rel_tol, inflamed, not_inflamed)
    out.loc[lo.isna() & hi.isna(), "stratum"] = "undetermined"
    out.loc[~kept, "stratum"] = "excluded"
    out["excluded_reason"] = reason
    out["stratum_source"] = source
    out["crp_unit"] = unit
    out["crp_threshold"] = thr
    out = out.reset_index(drop=True)
    out.attrs = {
        "source": source,
        "definition": (f"inflamed = {crp_analyte} ≥ {threshold:g} {threshold_unit} in {STRATA_SOURCE_TEXT[source]}"),
        "warning": RTM_WARNING if source == "single_baseline" else "",
        "acute_rule": acute_rule_text(acute_rule, acute_threshold, threshold_unit),
        "flags": flags.reset_index(drop=True),
    }
    return out


def _baseline_draws(parsed: pd.DataFrame, crp_analyte: str, baseline: str, where: str):
    """Every CRP row, the non-missing baseline draws (a copy) and CRP's one unit."""
    crp_all = parsed[parsed["analyte"] == crp_analyte]
    base = crp_all[(crp_all["timepoint"] == baseline) & (crp_all["censoring"] != "missing")].copy()
    if base.empty:
        raise InputError(f"{where}: no {crp_analyte} rows at time point {baseline!r}")
    unit = base["unit"].iloc[0]
    if crp_all["unit"].nunique() > 1:
        raise InputError(
            f"{where}: analyte {crp_analyte} has more than one declared unit {sorted(set(crp_all['unit']))}"
        )
    return crp_all, base, unit


def _screening_draws(crp_all: pd.DataFrame, crp_analyte: str, screening: str | None, where: str) -> pd.DataFrame:
    """The non-missing screening draws, at most one per subject (none without a screening time point)."""
    screen = (
        crp_all[(crp_all["timepoint"] == screening) & (crp_all["censoring"] != "missing")].copy()
        if screening
        else crp_all.iloc[:0]
    )
    if screen.duplicated("participant_id").any():
        dup = screen[screen.duplicated("participant_id")].iloc[0]
        raise InputError(f"{where}: subject {dup['participant_id']}: more than one {crp_analyte} draw at {screening!r}")
    return screen


def _strata_source(
    source: str, base: pd.DataFrame, screen: pd.DataFrame, crp_analyte: str, screening: str | None, where: str
) -> str:
    """The source ``auto`` stands for (the least biased the table supplies), or ``source`` when it is there."""
    n_baselines = base.groupby("participant_id")["session_id"].nunique()
    available = {
        "screening": not screen.empty,
        "mean_baselines": bool(len(n_baselines)) and (n_baselines >= 2).all(),
        "single_baseline": True,
    }
    if source == "auto":
        return next(s for s in ("screening", "mean_baselines", "single_baseline") if available[s])
    if not available[source]:
        reason = (
            f"no {crp_analyte} draw at time point {screening!r}"
            if source == "screening"
            else f"subjects with fewer than 2 baselines: {sorted(n_baselines[n_baselines < 2].index)}"
        )
        raise InputError(f"{where}: strata source {source!r} is not available ({reason})")
    return source


def _at_or_above(rows: pd.DataFrame, limit: float, rel_tol: float) -> pd.Series:
    lower, _ = _bounds(rows)
    return lower >= limit * (1 - rel_tol)


def _mark_acute(
    crp_all: pd.DataFrame, base: pd.DataFrame, screen: pd.DataFrame, acute: float | None, rel_tol: float, unit: str
) -> pd.DataFrame:
    """Add ``acute`` to the baseline and screening draws (in place) and return the table of every draw at or
    above the acute limit, post-infusion ones included."""
    base["acute"] = _at_or_above(base, acute, rel_tol) if acute is not None else False
    screen["acute"] = _at_or_above(screen, acute, rel_tol) if acute is not None and not screen.empty else False
    flags = pd.DataFrame(columns=["participant_id", "session_id", "timepoint", "crp", "crp_unit"])
    if acute is not None:
        high = crp_all[(crp_all["censoring"] != "missing") & _at_or_above(crp_all, acute, rel_tol)]
        flags = high.assign(crp=np.where(high["censoring"] == "observed", high["value"], high["limit"]), crp_unit=unit)[
            ["participant_id", "session_id", "timepoint", "crp", "crp_unit"]
        ]
    return flags


def _exclusion_reasons(
    out: pd.DataFrame,
    base: pd.DataFrame,
    screen_acute: set,
    subject_acute: set,
    acute: float | None,
    acute_rule: str,
) -> pd.Series:
    """Why each session is left out by the acute-infection rule ("" = kept)."""
    reason = pd.Series("", index=out.index, dtype=object)
    if acute is not None:
        if acute_rule == "subject":
            reason[out["participant_id"].isin(subject_acute)] = "acute infection (subject rule)"
        else:
            reason[base["acute"].to_numpy()] = "acute infection (this session's baseline)"
            reason[out["participant_id"].isin(screen_acute)] = "acute infection (screening)"
    return reason


def _stratifying_bounds(
    out: pd.DataFrame,
    source: str,
    screen_value: pd.DataFrame,
    lower: pd.Series,
    upper: pd.Series,
    kept: pd.Series,
) -> tuple[pd.Series, pd.Series]:
    """Bounds of the CRP value each session is classified by; adds ``crp_stratifying`` (and, for the mean of
    baselines, ``n_baselines_in_mean``) to ``out``."""
    if source == "screening":
        s_lower, s_upper = _bounds(screen_value)
        lo, hi = out["participant_id"].map(s_lower), out["participant_id"].map(s_upper)
        out["crp_stratifying"] = out["crp_screening"]
    elif source == "mean_baselines":
        # Geometric mean of the bounds over the kept baselines: a censored draw gives an interval.
        ln_lo = np.log(lower.where(kept).clip(lower=1e-300))
        ln_hi = np.log(upper.where(kept))
        groups = out["participant_id"]
        lo = np.exp(ln_lo.groupby(groups).transform("mean"))
        lo = lo.where(~(lower.where(kept) == 0).groupby(groups).transform("any"), 0.0)
        hi = np.exp(ln_hi.groupby(groups).transform("mean"))
        out["crp_stratifying"] = np.where(lo == hi, lo, np.nan)
        out["n_baselines_in_mean"] = kept.groupby(groups).transform("sum").astype(int)
    else:
        lo, hi = lower, upper
        out["crp_stratifying"] = out["crp_baseline"]
    return lo, hi
