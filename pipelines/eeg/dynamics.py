"""What happens during each infusion, and how it depends on dose.

Per recording (the markers a clinician titrates with):
* **alpha-suppression onset**: the time (s after infusion start) at which smoothed occipital alpha,
  relative to the pre-infusion baseline, crosses ``alpha_threshold_db`` downward for the last time before a
  stretch of at least ``hold_s`` entirely below it; linearly interpolated between window centres.
  Smoothing is a centred, NaN-aware running mean over ``smooth_windows`` windows (unbiased for a locally
  linear trend; rejected windows are skipped).
* **depth**: the minimum of the smoothed curve after infusion start (dB).
* **entropy peak**: time and height (change from baseline) of the maximum of the smoothed entropy measure.
* **recovery**: the first upward crossing of the threshold after infusion end that is followed by
  ``hold_s`` above it (NaN when suppression never happened or the recording ends first).
* **entropy plateau** (causal, usable during an infusion): the first window at which the entropy change, as a
  trailing mean over ``smooth_windows`` windows, has risen above baseline by at least ``entropy_min_rise_sd``
  baseline SDs and its running maximum has grown by at most ``entropy_plateau_rel_tol`` of itself over the last
  ``entropy_plateau_s``: "entropy has stopped rising". Only windows up to that one are used, so the time is the
  one a monitor would have reported then (:func:`entropy_plateau`).

The threshold is the titration target "occipital alpha nearly disappears": by default -10 dB, 10 % of baseline
power (``DynamicsConfig.alpha_threshold_db``; docs/eeg_measures.md justifies it).

Across doses: each measure's change from baseline over the infusion plateau (the last ``plateau_s`` of the
infusion) per subject-session, then a mixed model ``change ~ dose + dose² + (1 | subject)`` — the quadratic
term tests the inverted U.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines import stats
from pipelines.eeg.features import baseline_windows, dose_table, plateau_windows


def smooth(values: np.ndarray, n_windows: int) -> np.ndarray:
    """Centred running mean over ``n_windows`` windows, ignoring NaN (all-NaN spans stay NaN)."""
    return pd.Series(np.asarray(values, dtype=float)).rolling(n_windows, center=True, min_periods=1).mean().to_numpy()


def _hold_windows(time_s: np.ndarray, hold_s: float) -> int:
    step = float(np.median(np.diff(time_s))) if len(time_s) > 1 else 1.0
    return max(1, int(round(hold_s / step)))


def _interpolated_crossing(t0, t1, y0, y1, threshold) -> float:
    if not (np.isfinite(y0) and np.isfinite(y1)) or y0 == y1:
        return float(t1)
    return float(t0 + (threshold - y0) * (t1 - t0) / (y1 - y0))


def suppression_onset(
    time_s, rel_db, threshold_db: float = -3.0, hold_s: float = 20.0, smooth_windows: int = 9, start_s: float = 0.0
) -> float:
    """Onset of sustained alpha suppression (s after infusion start), NaN when it never happens."""
    time_s = np.asarray(time_s, dtype=float)
    y = smooth(rel_db, smooth_windows)
    hold = _hold_windows(time_s, hold_s)
    below = (y <= threshold_db) & np.isfinite(y)
    candidates = np.flatnonzero((time_s >= start_s) & below)
    for i in candidates:
        span = below[i : i + hold + 1]
        if len(span) == hold + 1 and span.all():
            k = i
            while k - 1 >= 0 and time_s[k - 1] >= start_s and below[k - 1]:
                k -= 1
            if k == 0 or time_s[k - 1] < start_s:
                return float(time_s[k])
            return _interpolated_crossing(time_s[k - 1], time_s[k], y[k - 1], y[k], threshold_db)
    return float("nan")


def recovery_time(time_s, rel_db, threshold_db: float, hold_s: float, smooth_windows: int, after_s: float) -> float:
    """First sustained return above the threshold after ``after_s`` (infusion end), s after infusion start."""
    time_s = np.asarray(time_s, dtype=float)
    y = smooth(rel_db, smooth_windows)
    hold = _hold_windows(time_s, hold_s)
    above = (y > threshold_db) & np.isfinite(y)
    for i in np.flatnonzero((time_s >= after_s) & above):
        span = above[i : i + hold + 1]
        if len(span) == hold + 1 and span.all():
            if i > 0 and not above[i - 1]:
                return _interpolated_crossing(time_s[i - 1], time_s[i], y[i - 1], y[i], threshold_db)
            return float(time_s[i])
    return float("nan")


def peak(time_s, values, smooth_windows: int, start_s: float = 0.0) -> tuple[float, float]:
    """Time and value of the maximum of the smoothed series after ``start_s`` (NaN, NaN if empty)."""
    time_s = np.asarray(time_s, dtype=float)
    y = smooth(values, smooth_windows)
    mask = (time_s >= start_s) & np.isfinite(y)
    if not mask.any():
        return float("nan"), float("nan")
    i = np.flatnonzero(mask)[np.argmax(y[mask])]
    return float(time_s[i]), float(y[i])


def trailing_mean(values: np.ndarray, n_windows: int) -> np.ndarray:
    """Causal running mean over the current and the ``n_windows - 1`` previous windows, ignoring NaN."""
    return pd.Series(np.asarray(values, dtype=float)).rolling(n_windows, min_periods=1).mean().to_numpy()


def entropy_plateau(
    time_s,
    change,
    smooth_windows: int,
    plateau_s: float,
    rel_tol: float = 0.05,
    min_rise_sd: float = 8.0,
    start_s: float = 0.0,
) -> tuple[float, float]:
    """Causal entropy-plateau criterion: (time, trailing-mean change) of the first window after ``start_s`` at which
    entropy has risen and stopped rising; (NaN, NaN) when it never does.

    ``change`` is the entropy change from the pre-infusion baseline per window. With ``y`` its trailing mean over
    ``smooth_windows`` windows and ``M(t)`` the running maximum of ``y`` since ``start_s``, the criterion holds at
    ``t`` when ``M(t) >= min_rise_sd * SD(y over the baseline windows)`` and ``M(t) - M(t - plateau_s) <= rel_tol *
    M(t)``. Every quantity at ``t`` uses windows up to ``t`` only (the baseline SD uses windows before ``start_s``),
    so the result for a recording cut at ``t`` is the same as for the whole recording."""
    time_s = np.asarray(time_s, dtype=float)
    y = trailing_mean(change, smooth_windows)
    base = (time_s < start_s) & np.isfinite(y)
    if base.sum() < 3:
        return float("nan"), float("nan")
    floor = min_rise_sd * float(np.std(y[base], ddof=1))
    running = np.full(y.shape, np.nan)
    best = -np.inf
    for i in range(len(y)):
        if time_s[i] >= start_s and np.isfinite(y[i]):
            best = max(best, y[i])
        running[i] = best if np.isfinite(best) else np.nan
    for i in np.flatnonzero(time_s >= start_s + plateau_s):
        m = running[i]
        if not np.isfinite(m) or m < floor or m <= 0:
            continue
        j = int(np.searchsorted(time_s, time_s[i] - plateau_s, side="left"))
        earlier = running[j] if np.isfinite(running[j]) else 0.0
        if m - earlier <= rel_tol * m:
            return float(time_s[i]), float(y[i])
    return float("nan"), float("nan")


def _summary(features, name: str) -> "xr.DataArray":  # noqa: F821
    return features["summary_measures"].sel(summary_measure=name)


def recording_markers(features, cfg, window_s: float, infusion_end_s: float | None = None) -> pd.DataFrame:
    """One row per subject × session: onset, depth, entropy peak, recovery (see module docstring).

    ``features`` is the study Dataset (pipelines.eeg.features.open_features); ``cfg`` a DynamicsConfig."""
    time_s = features["time_s"].to_numpy()
    alpha = _summary(features, "occipital_alpha_db").load()
    entropy_name = f"{cfg.entropy_measure}_mean"
    entropy = _summary(features, entropy_name).load()
    base = baseline_windows(time_s, window_s)
    end_rel = np.nan if infusion_end_s is None else infusion_end_s
    rows = []
    for subject in features["subject"].to_numpy():
        for session in features["session"].to_numpy():
            dose = float(features["dose_mg_per_kg"].sel(subject=subject, session=session))
            if not np.isfinite(dose):
                continue
            a = alpha.sel(subject=subject, session=session).to_numpy()
            e = entropy.sel(subject=subject, session=session).to_numpy()
            e_change = e - np.nanmean(e[base]) if np.isfinite(e[base]).any() else e * np.nan
            onset = suppression_onset(time_s, a, cfg.alpha_threshold_db, cfg.hold_s, cfg.smooth_windows)
            sm = smooth(a, cfg.smooth_windows)
            after = time_s >= 0
            depth = float(np.nanmin(sm[after])) if np.isfinite(sm[after]).any() else float("nan")
            peak_t, peak_h = peak(time_s, e_change, cfg.smooth_windows)
            recovery = (
                recovery_time(time_s, a, cfg.alpha_threshold_db, cfg.hold_s, cfg.smooth_windows, end_rel)
                if np.isfinite(onset) and np.isfinite(end_rel)
                else float("nan")
            )
            plateau_t, plateau_h = entropy_plateau(
                time_s,
                e_change,
                cfg.smooth_windows,
                cfg.entropy_plateau_s,
                cfg.entropy_plateau_rel_tol,
                cfg.entropy_min_rise_sd,
            )
            rows.append(
                {
                    "participant_id": f"sub-{subject}",
                    "session": str(session),
                    "dose_mg_per_kg": dose,
                    "alpha_suppression_onset_s": onset,
                    "alpha_suppression_depth_db": depth,
                    "entropy_measure": cfg.entropy_measure,
                    "entropy_peak_time_s": peak_t,
                    "entropy_peak_change": peak_h,
                    "alpha_recovery_s": recovery,
                    "alpha_threshold_db": cfg.alpha_threshold_db,
                    "alpha_threshold_percent": 100.0 * 10.0 ** (cfg.alpha_threshold_db / 10.0),
                    "entropy_plateau_time_s": plateau_t,
                    "entropy_plateau_change": plateau_h,
                }
            )
    return pd.DataFrame(rows)


def plateau_changes(
    features,
    measures: list[str],
    cfg,
    window_s: float,
    infusion_end_s: float,
    regions: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Change from baseline over the infusion plateau, long format: one row per subject × session × measure × region.

    ``measures`` are per-channel measures (averaged over each region's channels; region 'global' = all
    channels) or summary measures (region 'summary').  Occipital alpha in dB is already relative."""
    time_s = features["time_s"].to_numpy()
    base = baseline_windows(time_s, window_s)
    plateau = plateau_windows(time_s, window_s, infusion_end_s, cfg.plateau_s)
    doses = dose_table(features).set_index(["subject", "session"])["dose_mg_per_kg"]
    channels = list(features["channel"].to_numpy())
    regions = {"global": channels, **(regions or {})}
    per_channel = set(features["measure"].to_numpy())
    summary = set(features["summary_measure"].to_numpy())
    rows = []
    for measure in measures:
        if measure in per_channel:
            da = features["channel_measures"].sel(measure=measure)
            series = {
                region: da.sel(channel=[c for c in chans if c in channels]).mean("channel", skipna=True)
                for region, chans in regions.items()
                if any(c in channels for c in chans)
            }
        elif measure in summary:
            series = {"summary": _summary(features, measure)}
        else:
            raise KeyError(
                f"unknown measure {measure!r}; per-channel: {sorted(per_channel)}; summary: {sorted(summary)}"
            )
        for region, da in series.items():
            values = da.load()
            b = values.isel(time_s=np.flatnonzero(base)).mean("time_s", skipna=True)
            p = values.isel(time_s=np.flatnonzero(plateau)).mean("time_s", skipna=True)
            relative = measure == "occipital_alpha_db"
            frame = pd.DataFrame(
                {
                    "baseline": b.to_numpy().ravel(),
                    "plateau": p.to_numpy().ravel(),
                },
                index=pd.MultiIndex.from_product(
                    [b["subject"].to_numpy(), b["session"].to_numpy()], names=["subject", "session"]
                ),
            )
            frame["change"] = frame["plateau"] if relative else frame["plateau"] - frame["baseline"]
            frame = frame.reset_index()
            frame["dose_mg_per_kg"] = doses.reindex(pd.MultiIndex.from_frame(frame[["subject", "session"]])).to_numpy()
            frame["participant_id"] = "sub-" + frame["subject"].astype(str)
            frame["measure"], frame["region"] = measure, region
            rows.append(frame.dropna(subset=["dose_mg_per_kg"]))
    return pd.concat(rows, ignore_index=True)


def dose_means(changes: pd.DataFrame, measure: str, region: str, ci: float = 0.95) -> pd.DataFrame:
    """Mean plateau change per dose with its t-based CI (every design; no model): measure, region,
    dose_mg_per_kg, mean, std (ddof=1), count, ci_low, ci_high."""
    from scipy import stats as sps

    data = changes[(changes["measure"] == measure) & (changes["region"] == region)].dropna(subset=["change"])
    per_dose = data.groupby("dose_mg_per_kg")["change"].agg(["mean", "std", "count"]).reset_index()
    half = sps.t.ppf(0.5 + ci / 2, np.maximum(per_dose["count"] - 1, 1)) * per_dose["std"] / np.sqrt(per_dose["count"])
    per_dose["ci_low"], per_dose["ci_high"] = per_dose["mean"] - half, per_dose["mean"] + half
    per_dose.insert(0, "region", region)
    per_dose.insert(0, "measure", measure)
    return per_dose


def dose_response(changes: pd.DataFrame, measure: str, region: str, ci: float = 0.95) -> dict:
    """Mixed model ``change ~ dose + dose² + (1 | subject)`` and per-dose means with t CIs.

    Returns {'model': tidy fixed effects (pipelines.stats.mixed_model), 'per_dose': DataFrame,
    'dose_of_max': dose with the highest mean change, 'vertex_mg_per_kg': where the fitted parabola peaks}."""
    data = changes[(changes["measure"] == measure) & (changes["region"] == region)].dropna(subset=["change"]).copy()
    n_doses = data["dose_mg_per_kg"].nunique()
    if n_doses < 3:
        raise ValueError(
            f"a dose-response model of {measure} ({region}) needs 3 or more doses; the data have {n_doses} "
            "(dose_means gives the per-dose means)"
        )
    data["dose"] = data["dose_mg_per_kg"]
    data["dose_sq"] = data["dose"] ** 2
    model = stats.mixed_model(data, "change ~ dose + dose_sq", groups="participant_id", ci=ci)
    model.insert(0, "region", region)
    model.insert(0, "measure", measure)
    per_dose = dose_means(data, measure, region, ci)
    coef = model.set_index("term")["estimate"]
    vertex = float(-coef["dose"] / (2 * coef["dose_sq"])) if coef.get("dose_sq", 0) < 0 else float("nan")
    return {
        "model": model,
        "per_dose": per_dose,
        "dose_of_max": float(per_dose.loc[per_dose["mean"].idxmax(), "dose_mg_per_kg"]),
        "vertex_mg_per_kg": vertex,
    }


def topography(features, measure: str, cfg, window_s: float, infusion_end_s: float) -> pd.DataFrame:
    """Mean plateau change per dose × channel (for topomaps)."""
    time_s = features["time_s"].to_numpy()
    base = baseline_windows(time_s, window_s)
    plateau = plateau_windows(time_s, window_s, infusion_end_s, cfg.plateau_s)
    da = features["channel_measures"].sel(measure=measure).load()
    change = da.isel(time_s=np.flatnonzero(plateau)).mean("time_s") - da.isel(time_s=np.flatnonzero(base)).mean(
        "time_s"
    )
    frame = change.to_dataframe(name="change").reset_index()
    doses = dose_table(features).set_index(["subject", "session"])["dose_mg_per_kg"]
    frame["dose_mg_per_kg"] = doses.reindex(pd.MultiIndex.from_frame(frame[["subject", "session"]])).to_numpy()
    return frame.groupby(["dose_mg_per_kg", "channel"], as_index=False)["change"].mean()
