"""What the dashboards read: the study's derived outputs, loaded once per server process behind ``@pn.cache``.

Every loader is keyed by the manifest path (a string, so the cache key is cheap and stable) and returns a
small in-memory object that every visitor's session shares.  Nothing here reruns an analysis per visitor:
tables written by notebook 01 (``derivatives/ketamine-workbench/tables``) are read when they exist; when
they do not (notebook 01 has not run yet), the same functions the notebook calls
(:mod:`pipelines.eeg.dynamics`) compute them once, from the derived features, and the result is cached.

Only pseudonymous identifiers (``sub-XX``) and relative times (seconds from infusion start, time points
such as ``24h``) ever leave this module: no dates, no demographic columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn

from pipelines.core.paths import MANIFESTS_DIR

DEFAULT_MANIFEST = str(MANIFESTS_DIR / "default.yml")


def manifest_key(manifest) -> str:
    """One spelling per manifest (absolute path), so each cache entry is computed once."""
    if manifest is None:
        return DEFAULT_MANIFEST
    if hasattr(manifest, "manifest"):  # a Study
        manifest = manifest.manifest.manifest_path
    elif hasattr(manifest, "manifest_path"):  # a Manifest
        manifest = manifest.manifest_path
    return str(Path(manifest).resolve())


@pn.cache
def study(manifest: str):
    from pipelines.study.dataset import Study

    return Study.load(manifest)


@pn.cache
def features(manifest: str):
    """The study's features (lazy, Dask-backed Zarr): only the slices asked for below are ever loaded."""
    from pipelines.eeg.features import open_features

    return open_features(study(manifest))


@pn.cache
def eeg_settings(manifest: str) -> dict:
    """Window, step, infusion duration and the dynamics parameters notebook 01 uses for this study."""
    from pipelines.analyses import eeg_entropy_dose as eeg_analysis
    from pipelines.eeg.features import read_qc

    s = study(manifest)
    params = eeg_analysis.validate_parameters(s, **s.manifest.notebook_params("01_eeg_entropy_dose"))
    ds = features(manifest)
    summary = set(map(str, ds["summary_measure"].to_numpy()))
    entropy_measures = [m for m in map(str, ds["measure"].to_numpy()) if f"{m}_mean" in summary]
    return {
        "params": params,
        "dynamics": params.dynamics_config(s.manifest.eeg.dynamics),
        "window_s": params.window_s,
        "step_s": params.step_s,
        "infusion_end_s": eeg_analysis.infusion_end_rel_s(read_qc(s)),
        "entropy_measures": entropy_measures,
        "time_s": ds["time_s"].to_numpy(),
    }


@pn.cache
def recordings(manifest: str) -> pd.DataFrame:
    """subject ('01'), participant_id ('sub-01'), session (condition label), dose_mg_per_kg: one row per recording."""
    from pipelines.eeg.features import dose_table

    table = dose_table(features(manifest)).dropna(subset=["dose_mg_per_kg"])
    table["subject"] = table["subject"].astype(str)
    table["session"] = table["session"].astype(str)
    table["participant_id"] = "sub-" + table["subject"]
    return table.sort_values(["subject", "dose_mg_per_kg"]).reset_index(drop=True)


@pn.cache
def summary_series(manifest: str, name: str):
    """One summary measure, loaded: DataArray (subject, session, time_s)."""
    return features(manifest)["summary_measures"].sel(summary_measure=name).load()


@pn.cache
def window_rejected(manifest: str):
    return features(manifest)["window_rejected"].load()


@pn.cache
def channel_measure(manifest: str, measure: str):
    """One per-channel measure, loaded: DataArray (subject, session, channel, time_s) — a few MB."""
    return features(manifest)["channel_measures"].sel(measure=measure).load()


def baseline_mask(manifest: str) -> np.ndarray:
    from pipelines.eeg.features import baseline_windows

    settings = eeg_settings(manifest)
    return baseline_windows(settings["time_s"], settings["window_s"])


@pn.cache
def entropy_change(manifest: str, measure: str):
    """Channel-mean entropy measure minus its pre-infusion mean, per recording (subject, session, time_s)."""
    da = summary_series(manifest, f"{measure}_mean")
    base = baseline_mask(manifest)
    return da - da.isel(time_s=np.flatnonzero(base)).mean("time_s", skipna=True)


def _table(manifest: str, name: str) -> pd.DataFrame | None:
    """A table notebook 01 wrote (pipelines.study.derived), or None when it has not run yet."""
    from pipelines.study.derived import read_table

    try:
        return read_table(study(manifest), name)
    except FileNotFoundError:
        return None


def _notebook_rows(manifest: str, name: str, feature: str, region: str) -> pd.DataFrame | None:
    """The rows of one measure and region in a notebook-01 table, or None (then the caller computes them)."""
    table = _table(manifest, name)
    if table is None:
        return None
    rows = table[(table["measure"] == feature) & (table["region"] == region)]
    return rows.reset_index(drop=True) if len(rows) else None


@pn.cache
def markers(manifest: str) -> pd.DataFrame:
    """Per-recording EEG markers (onset, depth, entropy peak): notebook 01's table, else computed once."""
    table = _table(manifest, "eeg_markers")
    if table is None:
        from pipelines.eeg import dynamics

        s = eeg_settings(manifest)
        table = dynamics.recording_markers(features(manifest), s["dynamics"], s["window_s"], s["infusion_end_s"])
    return table


def _change_spec(manifest: str, measure: str) -> tuple[str, str]:
    """(measure name in the features, region) of a dose-response: entropy over all channels, or a summary measure."""
    summary = set(map(str, features(manifest)["summary_measure"].to_numpy()))
    return (
        (measure, "summary")
        if measure in summary and measure not in eeg_settings(manifest)["entropy_measures"]
        else (measure, "global")
    )


@pn.cache
def plateau_changes(manifest: str, measure: str) -> pd.DataFrame:
    """Change from baseline over the infusion plateau, one row per recording, for one measure."""
    feature, region = _change_spec(manifest, measure)
    rows = _notebook_rows(manifest, "eeg_plateau_changes", feature, region)
    if rows is not None:
        return rows
    from pipelines.eeg import dynamics

    s = eeg_settings(manifest)
    return (
        dynamics.plateau_changes(features(manifest), [feature], s["dynamics"], s["window_s"], s["infusion_end_s"])
        .query("region == @region")
        .reset_index(drop=True)
    )


@pn.cache
def dose_means(manifest: str, measure: str) -> pd.DataFrame:
    """Per-dose mean change with its t CI (pipelines.eeg.dynamics.dose_means)."""
    feature, region = _change_spec(manifest, measure)
    rows = _notebook_rows(manifest, "eeg_dose_means", feature, region)
    if rows is not None:
        return rows
    from pipelines.eeg import dynamics

    return dynamics.dose_means(plateau_changes(manifest, measure), feature, region)


@pn.cache
def channel_positions(manifest: str) -> dict[str, tuple[float, float]]:
    """x, y of each channel from the standard 10-20 montage notebook 01 uses (channels without one are left out)."""
    from pipelines.eeg.montage import standard_positions

    return standard_positions(map(str, features(manifest)["channel"].to_numpy()))


# --- peak experience, mood, cytokines -------------------------------------------------------------


def _peak_mood_params(manifest: str):
    from pipelines.analyses import peak_experience_mood as peak_mood

    s = study(manifest)
    nb = s.manifest.notebook_params("02_peak_experience_mood")
    allowed = {"scales", "mood_scale", "remission_threshold", "missing_items", "max_missing_fraction"}
    return peak_mood.validate_parameters(s, **{k: v for k, v in nb.items() if k in allowed})


@pn.cache
def peak_scores(manifest: str) -> tuple[pd.DataFrame, list[str]]:
    """Peak-experience scores per session (participant_id, session_id, dose_mg_per_kg, scores) and the
    profile columns, all on a 0-100 scale: MEQ30 subscales as % of maximum, 5D-ASC dimensions and factors."""
    from pipelines.analyses import peak_experience_mood as peak_mood

    params = _peak_mood_params(manifest)
    scores = peak_mood.load_scores(
        study(manifest),
        params.scales,
        params.mood_scale,
        missing_items=params.missing_items,
        max_missing_fraction=params.max_missing_fraction,
    )
    peak = (
        scores.peak
        if scores.peak is not None
        else pd.DataFrame(columns=["participant_id", "session_id", "dose_mg_per_kg"])
    )
    profile = [c for c in peak.columns if c.startswith("meq30_") and c.endswith("_pct_max")]
    profile += [c for c in peak.columns if c.startswith("asc5d_") and pd.api.types.is_numeric_dtype(peak[c])]
    return peak.reset_index(drop=True), profile


@pn.cache
def mood_outcomes(manifest: str) -> tuple[pd.DataFrame, str, list[str]]:
    """Mood per session and time point (participant_id, session_id, timepoint, <score>, dose), the score's name and
    the time points in order."""
    from pipelines.analyses import peak_experience_mood as peak_mood

    params = _peak_mood_params(manifest)
    s = study(manifest)
    scores = peak_mood.load_scores(
        s,
        params.scales,
        params.mood_scale,
        missing_items=params.missing_items,
        max_missing_fraction=params.max_missing_fraction,
    )
    outcomes = peak_mood.mood_change_table(
        scores,
        baseline=params.baseline,
        remission_threshold=params.remission_threshold,
        timepoint_order=s.manifest.timepoints,
    )
    return outcomes, params.mood_score, [params.baseline, *params.timepoints]


@pn.cache
def mood_trajectory(manifest: str) -> pd.DataFrame:
    """Mean mood per dose and time point with CIs (pipelines.analyses.peak_experience_mood.mood_trajectory_table)."""
    from pipelines.analyses import peak_experience_mood as peak_mood

    outcomes, score, timepoints = mood_outcomes(manifest)
    return peak_mood.mood_trajectory_table(outcomes, score, timepoints)


@pn.cache
def cytokine_changes(manifest: str) -> tuple[pd.DataFrame, list[str], str]:
    """ln change (post − baseline) per subject × session × analyte, the analytes, and the change's label."""
    from pipelines.analyses import cytokines as ca

    s = study(manifest)
    nb = s.manifest.notebook_params("03_cytokines")
    allowed = {"baseline_timepoint", "post_timepoint", "censoring_strategy", "crp_threshold_mg_per_l", "mood_scale"}
    params = ca.validate_parameters(s, **{k: v for k, v in nb.items() if k in allowed})
    parsed = ca.load_study_cytokines(s, timepoints=[params.baseline_timepoint, params.post_timepoint])
    analytes = ca.resolve_analytes(parsed, params.analytes)
    strata = ca.study_strata(parsed, params)
    per_pair = ca.change_table(parsed, s.sessions, strata, params, analytes)
    return per_pair, analytes, f"ln change ({params.post_timepoint} − {params.baseline_timepoint})"


@pn.cache
def therapy_sessions(manifest: str) -> pd.DataFrame:
    """Therapy sessions (pipelines.phenotype.therapy) with each infusion's dose; an empty frame when the study has none."""
    from pipelines.phenotype.therapy import read_therapy

    s = study(manifest)
    columns = ["participant_id", "session_id", "session_type", "start_h", "dose_mg_per_kg"]
    if "therapy" not in s.manifest.phenotype:
        return pd.DataFrame(columns=columns)
    table = read_therapy(s.table_path("therapy"), s.participants, s.sessions)
    doses = s.sessions[["participant_id", "session_id", "dose_mg_per_kg"]]
    return table.merge(doses, on=["participant_id", "session_id"], how="left")[columns]


# --- freshness: the caches above stand for the inputs as they were when they were filled --------------------


def input_files(manifest: str) -> list[Path]:
    """Every file the loaders above read for this study: the manifest, the derived outputs (features store, QC,
    notebook tables) and the study's own tables (participants, sessions, phenotype sidecars and tables)."""
    from pipelines.core.paths import derivatives_dir
    from pipelines.study.derived import tables_dir

    s = study(manifest)
    derived = derivatives_dir(s.name)
    files = [Path(manifest), *_entries(derived), *_entries(tables_dir(s))]
    files += [s.root / "participants.tsv", *sorted(s.root.glob("sub-*/sub-*_sessions.tsv"))]
    files += [s.table_path(name) for name in s.manifest.phenotype]
    return files


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(e for e in folder.iterdir() if not e.name.startswith("."))
    except FileNotFoundError:
        return []


def input_fingerprint(manifest: str) -> tuple:
    """(path, size, modification time in ns, inode) of every input file (None for a missing one).  Outputs are
    replaced atomically (a new inode), so a rewritten features store or table always changes it; a few
    dozen stat() calls, cheap enough to check at every visit."""
    stamp = []
    for path in input_files(manifest):
        try:
            st = path.stat()
            stamp.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            stamp.append((str(path), None))
    return tuple(stamp)


_FINGERPRINTS: dict[str, tuple] = {}


def ensure_fresh(manifest: str) -> bool:
    """Called as each visitor's session starts: when any input of the study changed since the caches were filled
    (a rebuilt features store, a rerun notebook, an edited manifest or table), every cache is dropped
    (``pn.state.clear_caches()``: these loaders and the explorer's per-selection caches) so this visitor and the
    next are served the new data, never stale ones.  Returns True when it dropped them."""
    try:
        now = input_fingerprint(manifest)
    except Exception:  # e.g. the manifest was just removed: the loaders will say what is wrong
        now = None
    before = _FINGERPRINTS.get(manifest)
    _FINGERPRINTS[manifest] = now
    if before is None or now == before:
        return False
    pn.state.clear_caches()
    if now is not None:
        try:
            _FINGERPRINTS[manifest] = input_fingerprint(manifest)  # the study itself may have been reloaded
        except Exception:
            _FINGERPRINTS[manifest] = None
    return True


def _safe(fn, *args):
    """A branch whose table is absent (no cytokines in a study) shows an empty view, not an error page."""
    try:
        return fn(*args), None
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def not_applicable(manifest: str | None = None) -> str | None:
    """Why the dashboards do not apply to this study (one line), or None. Every page follows EEG recorded
    around an infusion (time from infusion start, alpha relative to the pre-infusion baseline, the plateau)."""
    from pipelines.analyses.eeg_entropy_dose import has_infusion_window
    from pipelines.eeg.features import read_qc

    s = study(manifest_key(manifest))
    if not s.recordings:
        return "the study has no EEG recordings, and every dashboard page follows EEG around an infusion"
    try:
        qc = read_qc(s)
    except FileNotFoundError:
        return None  # not built yet: the caller's own check names the missing features
    ok, reason = has_infusion_window(qc)
    return None if ok else reason


def warm(manifest: str | None = None) -> dict[str, str | None]:
    """Load everything once (the server calls this before accepting visitors); returns problems by branch."""
    key = manifest_key(manifest)
    ensure_fresh(key)  # records the inputs these caches stand for
    eeg_settings(key)
    recordings(key)
    problems = {}
    for name, fn, args in (
        ("markers", markers, (key,)),
        ("peak", peak_scores, (key,)),
        ("mood", mood_trajectory, (key,)),
        ("cytokines", cytokine_changes, (key,)),
        ("positions", channel_positions, (key,)),
    ):
        problems[name] = _safe(fn, *args)[1]
    settings = eeg_settings(key)
    for name in ("occipital_alpha_db", f"{settings['params'].entropy_measure}_mean"):
        summary_series(key, name)
    plateau_changes(key, settings["params"].entropy_measure)
    dose_means(key, settings["params"].entropy_measure)
    return problems


def describe_measure(manifest: str, measure: str) -> str:
    definitions = json.loads(features(manifest).attrs.get("measure_definitions", "{}"))
    return definitions.get(measure, "")


@pn.cache
def group_time_course(manifest: str, name: str) -> pd.DataFrame:
    """Long table (participant_id, session, dose_mg_per_kg, time_s, value) of occipital alpha ('occipital_alpha_db',
    already relative to baseline) or of an entropy measure's change from baseline (its per-channel name)."""
    da = summary_series(manifest, name) if name == "occipital_alpha_db" else entropy_change(manifest, name)
    frame = da.to_dataframe(name="value").reset_index()[["subject", "session", "time_s", "value"]]
    frame["subject"] = frame["subject"].astype(str)
    frame["session"] = frame["session"].astype(str)
    return frame.merge(recordings(manifest), on=["subject", "session"])


@pn.cache
def group_stats(manifest: str, name: str) -> pd.DataFrame:
    """Mean and SEM over subjects per dose and time (what the explorer's time courses draw), computed once."""
    frame = group_time_course(manifest, name)
    return frame.groupby(["dose_mg_per_kg", "time_s"])["value"].agg(["mean", "sem"]).reset_index()


_TRIM_PENDING = False


def return_freed_memory_soon(delay_s: float = 2.0) -> None:
    """Hand the heap memory freed by closed sessions back to the OS (glibc malloc_trim), once per burst of closes.

    Without it the server's resident memory stays at the high-water mark of the most sessions ever open at
    once (freed blocks are kept by the allocator), which reads as a leak in a long-running lab server."""
    global _TRIM_PENDING
    if _TRIM_PENDING:
        return
    try:
        import ctypes

        from tornado.ioloop import IOLoop

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError, ImportError):  # not glibc: nothing to do
        return

    def run():
        global _TRIM_PENDING
        _TRIM_PENDING = False
        import gc

        gc.collect()
        trim(0)

    _TRIM_PENDING = True
    IOLoop.current().call_later(delay_s, run)


def setup_extension() -> None:
    """Panel + HoloViews (Bokeh) with resources served by the Panel server itself (no CDN: works offline)."""
    import holoviews as hv

    pn.extension(sizing_mode="fixed", notifications=False)
    hv.extension("bokeh", logo=False)
