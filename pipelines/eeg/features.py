"""Windowed EEG features of a whole study, one recording per Dask task, stored as Zarr.

Per recording: read (mne-bids) → preprocess with QC (pipelines.eeg.preprocessing) → windows on a grid
aligned to infusion start (a window edge falls on it, so every recording shares the nominal time
coordinate ``time_s`` = window centre relative to infusion start) → window rejection by peak-to-peak →
entropy/complexity kernels (pipelines.eeg.kernels) and spectral markers → an xarray Dataset written to
``recordings/<key>.zarr`` (written to a temporary name and renamed, so a crash never leaves half a file).
All recordings are then combined lazily into one Dataset with dimensions (subject, session, measure,
channel, time_s) and written to ``features.zarr`` chunk by chunk, so memory stays bounded whatever the size.

Command line (what ``make`` runs)::

    python -m pipelines.eeg.features data_manifests/default.yml [--scheduler threads|processes|ADDRESS] [--workers N]

Without ``--scheduler`` the manifest's ``cluster:`` section decides where the recordings run (this machine,
a running Dask scheduler, or SLURM/PBS jobs through dask-jobqueue; see ``pipelines.core.cluster``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from pipelines.core.errors import InputError

FEATURES_VERSION = "1"
BASELINE = "pre-infusion windows (window end <= infusion start), rejected windows excluded"


# --- regions of interest -------------------------------------------------------------------------


def resolve_roi(name: str, wanted: list[str], fallbacks: list[str], available: list[str]) -> tuple[list[str], str]:
    """Channels used for a region and a sentence saying what was missing and what was used instead.

    Matching ignores case (real files spell 'OZ', 'Oz' or 'oz')."""
    lookup = {c.lower(): c for c in available}
    present = [lookup[c.lower()] for c in wanted if c.lower() in lookup]
    missing = [c for c in wanted if c.lower() not in lookup]
    if present:
        note = f"{name}: {', '.join(present)}" + (f" (missing: {', '.join(missing)})" if missing else "")
        return present, note
    substitute = [lookup[c.lower()] for c in fallbacks if c.lower() in lookup]
    if substitute:
        return substitute, f"{name}: none of {', '.join(wanted)} present; used {', '.join(substitute)} instead"
    return [], f"{name}: none of {', '.join(wanted)} (or fallbacks {', '.join(fallbacks) or '-'}) present"


# --- windows -------------------------------------------------------------------------------------


def window_grid(n_times: int, sfreq: float, window_s: float, step_s: float, infusion_start_s: float):
    """Window starts (samples) and nominal centre times (s, relative to infusion start).

    A window edge falls on infusion start, so windows never straddle it and every recording with the
    same window/step shares the same nominal times (exact to within half a sample)."""
    win = int(round(window_s * sfreq))
    step = int(round(step_s * sfreq))
    if win < 1 or step < 1:
        raise ValueError(f"window {window_s} s / step {step_s} s is shorter than one sample at {sfreq} Hz")
    start_sample = int(round(infusion_start_s * sfreq))
    k = start_sample // step
    first = start_sample - k * step
    starts = np.arange(first, n_times - win + 1, step)
    index = np.arange(len(starts)) - k
    times = np.round(index * step_s + window_s / 2.0, 6)
    return starts, times, win


def baseline_windows(time_s, window_s: float) -> np.ndarray:
    """Windows that end at or before infusion start (time_s is the window centre): the baseline."""
    return np.asarray(time_s) + window_s / 2.0 <= 1e-9


def plateau_windows(time_s, window_s: float, infusion_end_s: float, plateau_s: float) -> np.ndarray:
    """Windows lying within the last ``plateau_s`` seconds of the infusion (ending by infusion end)."""
    time_s = np.asarray(time_s)
    return (time_s >= infusion_end_s - plateau_s) & (time_s + window_s / 2.0 <= infusion_end_s + 1e-9)


def dose_table(features):
    """subject, session, dose_mg_per_kg for every cell of a features Dataset's subject × session grid."""
    import pandas as pd

    dose = features["dose_mg_per_kg"].to_numpy()
    subjects, sessions = features["subject"].to_numpy(), features["session"].to_numpy()
    return pd.DataFrame(
        [
            {"subject": s, "session": ss, "dose_mg_per_kg": float(dose[i, j])}
            for i, s in enumerate(subjects)
            for j, ss in enumerate(sessions)
        ]
    )


def _measure_params(fc, band_hz=None) -> dict:
    """Kernel parameters from the feature config; ``band_hz`` is the pass band preprocessing applied (spectral
    entropy is taken over ``fc.spectral_entropy_band_hz`` or that band, Welch segments of ``welch_segment_s``)."""
    band = fc.spectral_entropy_band_hz or band_hz or (None, None)
    return {
        "perm_entropy": {"order": fc.perm_entropy_order, "delay": fc.perm_entropy_delay, "normalize": True},
        "spectral_entropy_welch": {
            "normalize": True,
            "nperseg_s": fc.welch_segment_s,
            "fmin": band[0],
            "fmax": band[1],
        },
        "sample_entropy": {"order": fc.sample_entropy_order, "r_sd_factor": fc.sample_entropy_r},
        "svd_entropy": {"order": fc.svd_entropy_order, "delay": 1, "normalize": True},
        "higuchi_fd": {"kmax": fc.higuchi_kmax},
        "lzc_median": {"normalize": True},
        "lzs_schartner": {"seed": fc.lz_shuffle_seed},
        "lzc_schartner_st": {"seed": fc.lz_shuffle_seed},
        "lzs_schartner_lzw": {"seed": fc.lz_shuffle_seed, "n_shuffles": fc.lzw_n_shuffles, "detrend": True},
        "lzc_schartner_lzw": {"seed": fc.lz_shuffle_seed, "n_shuffles": fc.lzw_n_shuffles, "detrend": True},
    }


REJECTION = (
    "windows rejected when any channel's peak-to-peak exceeds reject_ptp_uv (if set), or its log "
    "peak-to-peak exceeds the channel's median over the recording by reject_robust_z x 1.4826 x MAD"
)


def rejected_windows(ptp_uv: np.ndarray, absolute_uv: float | None, robust_z: float | None) -> np.ndarray:
    """Windows (columns of ``ptp_uv``, channel × window) to reject; see ``REJECTION``.

    The robust rule compares each channel with itself, so a recording with strong alpha (eyes closed) keeps its
    windows while blinks and movement, many times the channel's usual amplitude, are still rejected."""
    rejected = np.zeros(ptp_uv.shape[1], dtype=bool)
    if absolute_uv is not None:
        rejected |= (ptp_uv > absolute_uv).any(axis=0)
    if robust_z is not None and ptp_uv.shape[1] >= 5:
        log_ptp = np.log(np.maximum(ptp_uv, 1e-6))
        median = np.median(log_ptp, axis=1, keepdims=True)
        mad = 1.4826 * np.median(np.abs(log_ptp - median), axis=1, keepdims=True)
        # A floor on the spread: a near-constant channel must not turn ordinary windows into outliers.
        z = (log_ptp - median) / np.maximum(mad, 0.05)
        rejected |= (z > robust_z).any(axis=0)
    return rejected


def band_powers(psd: np.ndarray, freqs: np.ndarray, bands: dict, total_range: tuple[float, float]):
    """Absolute band power (µV², rectangle rule: sum of PSD bins × bin width, inclusive edges) and power
    relative to the total over ``total_range`` (the pass band)."""
    df = freqs[1] - freqs[0]
    total_mask = (freqs >= total_range[0]) & (freqs <= total_range[1])
    total = psd[..., total_mask].sum(axis=-1) * df
    absolute, relative = {}, {}
    for name, (lo, hi) in bands.items():
        mask = (freqs >= lo) & (freqs <= hi)
        absolute[name] = psd[..., mask].sum(axis=-1) * df
        with np.errstate(invalid="ignore", divide="ignore"):
            relative[name] = absolute[name] / total
    return absolute, relative


def alpha_peak_frequency(psd: np.ndarray, freqs: np.ndarray, search: tuple[float, float]) -> np.ndarray:
    """Peak frequency of ``psd`` (..., n_freqs) within ``search``, refined by a parabola through the
    maximum bin and its neighbours (sub-bin resolution); NaN where the maximum sits on the range edge
    (no peak) or the spectrum is NaN."""
    mask = np.flatnonzero((freqs >= search[0]) & (freqs <= search[1]))
    sub = psd[..., mask]
    out = np.full(sub.shape[:-1], np.nan)
    valid = np.isfinite(sub).all(axis=-1)
    idx = np.argmax(np.where(np.isfinite(sub), sub, -np.inf), axis=-1)
    interior = valid & (idx > 0) & (idx < len(mask) - 1)
    df = freqs[1] - freqs[0]
    ii = np.where(interior, idx, 1)
    y0 = np.take_along_axis(np.log(np.maximum(sub, 1e-30)), (ii - 1)[..., None], -1)[..., 0]
    y1 = np.take_along_axis(np.log(np.maximum(sub, 1e-30)), ii[..., None], -1)[..., 0]
    y2 = np.take_along_axis(np.log(np.maximum(sub, 1e-30)), (ii + 1)[..., None], -1)[..., 0]
    denom = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0)
    out[interior] = (freqs[mask][ii] + shift * df)[interior]
    return out


def aperiodic_exponents(psd: np.ndarray, freqs: np.ndarray, freq_range: tuple[float, float]) -> np.ndarray:
    """specparam 'fixed' aperiodic exponent of each spectrum in ``psd`` (n, n_freqs); NaN where it fails."""
    from specparam import SpectralModel

    out = np.full(psd.shape[0], np.nan)
    model = SpectralModel(aperiodic_mode="fixed", verbose=False)
    hi = min(freq_range[1], freqs[-1])
    for i, spectrum in enumerate(psd):
        if not np.all(np.isfinite(spectrum)) or np.any(spectrum <= 0):
            continue
        try:
            model.fit(freqs, spectrum, [freq_range[0], hi])
            out[i] = float(model.get_params("aperiodic")[-1])
        except Exception:  # specparam raises on degenerate spectra; the window is simply missing
            continue
    return out


def _nanmean_quiet(values: np.ndarray) -> np.ndarray:
    """Mean over channels ignoring NaN; all-NaN windows give NaN without a RuntimeWarning."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# --- one recording -------------------------------------------------------------------------------


def _whole_recording_lz(kernels, data, sfreq: float, fc, params: dict, requested: list[str]) -> dict | None:
    """The Lempel-Ziv measures on each whole continuous channel (None when ``whole_recording_lz`` is off)."""
    if not fc.whole_recording_lz:
        return None
    whole_measures = [m for m in ("lzc_median", "lzs_schartner", "lzc_schartner_st") if m in requested]
    return kernels.compute_whole(
        data, sfreq, measures=whole_measures, params={m: params[m] for m in whole_measures}, n_threads=fc.n_threads
    )


def _read_recording(manifest, recording) -> dict:
    """Read and preprocess one recording: its data in µV (channel × time), channel names, rate, QC and infusion
    times (relative to the file's start) with where each came from."""
    from pipelines.eeg.io import infusion_time_sources, infusion_times, read_raw
    from pipelines.eeg.preprocessing import preprocess

    eeg = manifest.eeg
    file = str(recording.path)
    raw = read_raw(recording, manifest.bids_path, eeg.reader)
    start_s, end_s = infusion_times(
        raw, eeg.infusion_start_event, eeg.infusion_end_event, file, eeg.infusion_start_s, eeg.infusion_end_s
    )
    sources = infusion_time_sources(raw, eeg.infusion_start_event, eeg.infusion_end_event)
    clean, qc = preprocess(raw, eeg.preprocessing, file=file, copy=False)  # raw is filtered in place
    # µV in place in the preprocessed array itself (clean is not used after): the values of get_data() * 1e6
    # without a copy of the recording (get_data() copies)
    data = np.ascontiguousarray(clean._data, dtype=np.float64)
    data *= 1e6
    # Only ``data`` is kept (raw and clean go out of scope here): a worker's memory stays one recording's worth.
    return {
        "file": file,
        "data": data,
        "names": list(clean.ch_names),
        "sfreq": clean.info["sfreq"],
        "qc": qc,
        "start_s": start_s,
        "end_s": end_s,
        "sources": sources,
    }


def _windows_of(data: np.ndarray, sfreq: float, fc, start_s: float, file: str):
    """Window starts, nominal times, window length (samples) and the windows (channel, window, time) of ``data``."""
    n_times = data.shape[1]
    if n_times < int(round(fc.window_s * sfreq)):
        raise InputError(
            f"the recording ({n_times / sfreq:.2f} s) is shorter than one analysis window ({fc.window_s} s)",
            file=file,
            field="eeg.features.window_s",
        )
    starts, times, win = window_grid(n_times, sfreq, fc.window_s, fc.step_s, start_s)
    if len(starts) and np.all(np.diff(starts) == win):
        # Non-overlapping windows: a reshaped view, no copy.
        windows = data[:, starts[0] : starts[0] + len(starts) * win].reshape(data.shape[0], len(starts), win)
    else:
        windows = np.stack([data[:, s : s + win] for s in starts], axis=1)  # (channel, window, time)
    return times, win, windows


def _reject_windows(windows: np.ndarray, pre, qc, file: str) -> np.ndarray:
    """Rejected windows (``rejected_windows`` on each window's peak-to-peak); a QC note when many are."""
    ptp = windows.max(axis=-1) - windows.min(axis=-1)
    rejected = rejected_windows(ptp, pre.reject_ptp_uv, pre.reject_robust_z)
    if rejected.all():
        raise InputError(
            f"every one of the {len(rejected)} windows was rejected (reject_ptp_uv={pre.reject_ptp_uv}, "
            f"reject_robust_z={pre.reject_robust_z}; median peak-to-peak {np.median(ptp):.0f} µV)",
            file=file,
            field="eeg.preprocessing",
        )
    if rejected.mean() > pre.max_rejected_fraction:
        qc.notes.append(
            f"WARNING: {rejected.mean():.0%} of windows rejected (more than "
            f"{pre.max_rejected_fraction:.0%}): check this recording"
        )
    return rejected


def _window_spectra(kernels, windows, sfreq: float, win: int, fc, rejected, band_hz) -> dict:
    """Welch inside each window (µV²/Hz, rejected windows NaN) and the band powers from it."""
    nperseg = min(win, max(8, int(round(fc.welch_segment_s * sfreq))))
    freqs, psd = kernels.spectral.welch_psd(windows, sfreq, nperseg)  # µV²/Hz, = scipy.signal.welch
    psd[:, rejected, :] = np.nan
    band_abs, band_rel = band_powers(psd, freqs, fc.bands, band_hz)
    return {"nperseg": nperseg, "freqs": freqs, "psd": psd, "band_abs": band_abs, "band_rel": band_rel}


def _spectral_entropy_params(kernels, spectra, windows, sfreq: float, fc, params: dict, requested) -> dict | None:
    """The spectral-entropy parameters when it can be taken from the band-power spectra (same Welch segments, no
    surrogates of it), else None (the kernel then runs its own Welch)."""
    if (
        spectra is None
        or "spectral_entropy_welch" not in requested
        or "spectral_entropy_welch" in fc.surrogates.measures
    ):
        return None
    p = kernels.common._params_for("spectral_entropy_welch", params.get("spectral_entropy_welch"))
    nperseg = kernels.entropy._spectral_nperseg(windows.shape[-1], sfreq, p["nperseg"], p["nperseg_s"])
    return p if nperseg == spectra["nperseg"] else None


def _windowed_kernels(
    kernels, windows, rejected, sfreq: float, fc, params: dict, requested: list[str], spectra: dict | None = None
) -> dict:
    """Entropy and complexity (per channel, per window), from the tested kernels.

    Called once the spectra and the whole-recording LZ are taken: the rejected windows are blanked in the
    recording itself (kernels return NaN for them, quickly) instead of in a copy of it. Spectral entropy is
    taken from ``spectra`` (the band powers' Welch of the same windows) when its segments are the same: the
    kernel's own arithmetic after its Welch step, so the values are those of the kernel."""
    reuse = _spectral_entropy_params(kernels, spectra, windows, sfreq, fc, params, requested)
    windows[:, rejected, :] = np.nan
    measures = [m for m in requested if not (reuse and m == "spectral_entropy_welch")]
    out = kernels.compute_windowed(
        windows,
        sfreq,
        None,
        None,
        measures=measures,
        params={m: params[m] for m in measures if m in params},
        n_threads=fc.n_threads,
        surrogates=fc.surrogates.model_dump() | {"measures": [m for m in fc.surrogates.measures if m in measures]},
    )
    if not reuse:
        return out
    entropy = kernels.entropy.spectral_entropy_from_psd(
        spectra["freqs"], spectra["psd"], bool(reuse["normalize"]), reuse["fmin"], reuse["fmax"]
    )
    common = kernels.common
    for ch in range(windows.shape[0]):  # the kernel's rule: constant or non-finite windows have no entropy
        entropy[ch, common._row_states(common._rows(windows, ch)) != common._ROW_OK] = np.nan
    out["spectral_entropy_welch"] = entropy
    return {m: out[m] for m in requested} | {m: v for m, v in out.items() if m not in requested}


def _channel_measures(kernels, kern: dict, spectra: dict, bands) -> dict:
    """Per-channel measures (channel × window) by name: the windowed kernels, then each band's powers."""
    per_channel = {m: v for m, v in kern.items() if m not in kernels.SPATIOTEMPORAL_MEASURES}
    for band in bands:
        per_channel[f"{band}_power_uv2"] = spectra["band_abs"][band]
        per_channel[f"{band}_power_rel"] = spectra["band_rel"][band]
    return per_channel


def _resolve_rois(eeg, names: list[str], file: str) -> tuple[dict, list[str]]:
    """Channel indices of every region of interest and the QC notes; an error when occipital has no channel."""
    roi_notes = []
    rois = {}
    for roi, wanted in eeg.rois.items():
        used, note = resolve_roi(roi, wanted, eeg.roi_fallbacks.get(roi, []), names)
        rois[roi] = used
        roi_notes.append(note)
    if not rois.get("occipital"):
        raise InputError(
            f"no occipital channel for occipital alpha: {roi_notes[list(eeg.rois).index('occipital')] if 'occipital' in eeg.rois else 'eeg.rois has no occipital region'}; "
            f"channels are {names}; set eeg.rois.occipital in the manifest",
            file=file,
            field="eeg.rois.occipital",
        )
    return {roi: [names.index(c) for c in used] for roi, used in rois.items()}, roi_notes


def _alpha_markers(spectra: dict, idx: dict, times, rejected, fc, qc) -> dict:
    """Occipital alpha (µV² and dB relative to baseline), frontal alpha asymmetry and the alpha peak frequency."""
    alpha = spectra["band_abs"].get("alpha")
    if alpha is None:
        raise InputError("eeg.features.bands needs an 'alpha' band", field="eeg.features.bands")
    baseline = baseline_windows(times, fc.window_s) & ~rejected
    occ_alpha = alpha[idx["occipital"]].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        occ_alpha_db = 10 * np.log10(occ_alpha)
    if baseline.sum() == 0:
        qc.notes.append("no clean pre-infusion window: occipital alpha cannot be expressed relative to baseline")
        occ_rel_db = np.full_like(occ_alpha_db, np.nan)
    else:
        # Baseline as the mean of dB values (not dB of the mean power): per-window power is chi-square-like,
        # and comparing like with like removes the log bias.
        occ_rel_db = occ_alpha_db - np.nanmean(occ_alpha_db[baseline])
    if idx.get("frontal_left") and idx.get("frontal_right"):
        with np.errstate(divide="ignore", invalid="ignore"):
            faa = np.log(alpha[idx["frontal_right"]].mean(axis=0)) - np.log(alpha[idx["frontal_left"]].mean(axis=0))
    else:
        faa = np.full(len(times), np.nan)
        qc.notes.append("frontal alpha asymmetry not computed: a frontal region has no channel")
    iaf = alpha_peak_frequency(spectra["psd"][idx["occipital"]].mean(axis=0), spectra["freqs"], fc.alpha_peak_range_hz)
    return {"baseline": baseline, "occ_alpha": occ_alpha, "occ_rel_db": occ_rel_db, "faa": faa, "iaf": iaf}


def _block_aperiodic_exponents(spectra: dict, n_windows: int, rejected, fc) -> np.ndarray:
    """Aperiodic exponent on blocks of windows (mean spectrum over channels and windows of the block), per window."""
    block = max(1, int(round(fc.aperiodic_block_s / fc.step_s)))
    mean_psd = _nanmean_quiet(spectra["psd"])  # (window, freq); rejected windows are NaN
    block_ids = np.arange(n_windows) // block
    block_psd = np.stack([_nanmean_quiet(mean_psd[block_ids == b]) for b in range(block_ids.max() + 1)])
    exponents = aperiodic_exponents(block_psd, spectra["freqs"], fc.aperiodic_freq_range)[block_ids]
    exponents[rejected] = np.nan
    return exponents


def _summary_measures(kernels, alpha: dict, exponents, spectra: dict, kern: dict, per_channel: dict, n_windows: int):
    """Summary measures (one value per window) by name: regional markers, spatio-temporal LZ, channel means."""
    band_rel = spectra["band_rel"]
    roi_measures = {
        "occipital_alpha_power_uv2": alpha["occ_alpha"],
        "occipital_alpha_db": alpha["occ_rel_db"],
        "frontal_alpha_asymmetry": alpha["faa"],
        "alpha_peak_frequency_hz": alpha["iaf"],
        "aperiodic_exponent": exponents,
        "gamma_power_rel_mean": band_rel["gamma"].mean(axis=0) if "gamma" in band_rel else np.full(n_windows, np.nan),
    }
    for m in kernels.SPATIOTEMPORAL_MEASURES:
        if m in kern:
            roi_measures[m] = kern[m]
    for m in per_channel:
        if m in kernels.MEASURES or kernels.is_surrogate_measure(m):
            with np.errstate(invalid="ignore"):
                # Rejected windows are NaN in every channel: their mean is NaN too (no warning needed).
                roi_measures[f"{m}_mean"] = _nanmean_quiet(per_channel[m])
    return roi_measures


def _features_dataset(per_channel: dict, roi_measures: dict, rejected, names: list[str], times, whole):
    """The recording's Dataset: channel and summary measures by window, rejections, whole-recording LZ."""
    import xarray as xr

    measure_names = list(per_channel)
    channel_values = np.stack([per_channel[m] for m in measure_names])  # (measure, channel, window)
    ds = xr.Dataset(
        {
            "channel_measures": (("measure", "channel", "time_s"), channel_values),
            "summary_measures": (("summary_measure", "time_s"), np.stack(list(roi_measures.values()))),
            "window_rejected": (("time_s",), rejected),
        },
        coords={"measure": measure_names, "channel": names, "time_s": times, "summary_measure": list(roi_measures)},
    )
    ds["time_s"].attrs.update(
        units="s", description="window centre relative to infusion start (nominal, ±half a sample)"
    )
    if whole is not None:
        per_ch = [m for m in whole if m != "lzc_schartner_st"]
        if per_ch:
            ds["whole_recording_lz"] = (("whole_measure", "channel"), np.stack([whole[m] for m in per_ch]))
            ds = ds.assign_coords(whole_measure=per_ch)
        if "lzc_schartner_st" in whole:
            ds["whole_recording_lzc_st"] = ((), float(whole["lzc_schartner_st"]))
    return ds


def _qc_record(recording, rec: dict, n_times: int, times, rejected, baseline, roi_notes: list[str]) -> dict:
    """The recording's QC row (one line of qc.tsv)."""
    qc, sfreq = rec["qc"], rec["sfreq"]
    kept = float((~rejected).mean())
    return {
        "recording": recording.key,
        "participant_id": f"sub-{recording.subject}",
        "session": recording.condition,
        "dose_mg_per_kg": recording.dose_mg_per_kg,
        "sfreq_hz": sfreq,
        "n_channels": len(rec["names"]),
        "duration_s": round(n_times / sfreq, 3),
        "infusion_start_s": rec["start_s"],
        "infusion_end_s": rec["end_s"],
        "n_windows": int(len(times)),
        "n_rejected_windows": int(rejected.sum()),
        "fraction_kept": round(kept, 4),
        "n_baseline_windows": int(baseline.sum()),
        "bad_channels": qc.bad_channels,
        "interpolated": qc.interpolated,
        "dropped": qc.dropped,
        "median_channel_sd_uv": round(qc.median_channel_sd_uv, 3),
        "notch_hz": qc.notch_hz,
        "band_hz": list(qc.band_hz),
        "montage": qc.montage,
        "rois": roi_notes,
        "notes": qc.notes,
    }


def recording_features(manifest, recording):
    """All features of one recording as an xarray Dataset (and its QC record in ``attrs['qc']``).

    Steps: read and preprocess → windows on the infusion-aligned grid → window rejection → Welch spectra and
    band powers → whole-recording LZ → windowed kernels → regions of interest → alpha markers → aperiodic
    exponents → summary measures → Dataset with QC and provenance attributes."""
    from pipelines.eeg import kernels

    eeg = manifest.eeg
    fc = eeg.features
    rec = _read_recording(manifest, recording)
    file, data, sfreq, qc = rec["file"], rec["data"], rec["sfreq"], rec["qc"]
    n_times = data.shape[1]
    times, win, windows = _windows_of(data, sfreq, fc, rec["start_s"], file)
    rejected = _reject_windows(windows, eeg.preprocessing, qc, file)
    params = _measure_params(fc, qc.band_hz)
    requested = list(fc.measures)
    spectra = _window_spectra(kernels, windows, sfreq, win, fc, rejected, qc.band_hz)
    whole = _whole_recording_lz(kernels, data, sfreq, fc, params, requested)
    kern = _windowed_kernels(kernels, windows, rejected, sfreq, fc, params, requested, spectra)
    del data, windows
    rec["data"] = None
    per_channel = _channel_measures(kernels, kern, spectra, fc.bands)
    idx, roi_notes = _resolve_rois(eeg, rec["names"], file)
    alpha = _alpha_markers(spectra, idx, times, rejected, fc, qc)
    exponents = _block_aperiodic_exponents(spectra, len(times), rejected, fc)
    roi_measures = _summary_measures(kernels, alpha, exponents, spectra, kern, per_channel, len(times))
    ds = _features_dataset(per_channel, roi_measures, rejected, rec["names"], times, whole)
    start_s, end_s = rec["start_s"], rec["end_s"]
    qc_record = _qc_record(recording, rec, n_times, times, rejected, alpha["baseline"], roi_notes)
    ds.attrs.update(
        {
            "subject": recording.subject,
            "session": recording.condition,
            "dose_mg_per_kg": recording.dose_mg_per_kg,
            "infusion_end_rel_s": (end_s - start_s) if end_s is not None else float("nan"),
            "qc": json.dumps(qc_record),
            "window_samples": int(win),
            "welch_nperseg": int(spectra["nperseg"]),
            "infusion_sources": json.dumps(rec["sources"], sort_keys=True),
        }
    )
    return ds


# --- the study -----------------------------------------------------------------------------------


def feature_parameters(manifest) -> dict:
    """Every study-wide setting that defines the features (stored with them and part of every cache key).

    The whole ``eeg`` section counts except ``dynamics`` (notebook 01's titration markers) and what a
    recording's own key covers instead: ``task`` and ``conditions`` decide which recordings exist and their
    condition and dose (in ``recording_inputs``), and the fixed infusion times count only for recordings
    without the infusion events (``_input_hash``)."""
    eeg = manifest.eeg
    return {
        "reader": eeg.reader.model_dump(mode="json"),
        "preprocessing": eeg.preprocessing.model_dump(mode="json"),
        "features": eeg.features.model_dump(mode="json"),
        "rois": eeg.rois,
        "roi_fallbacks": eeg.roi_fallbacks,
        "infusion_events": [eeg.infusion_start_event, eeg.infusion_end_event],
        "features_version": FEATURES_VERSION,
        "baseline": BASELINE,
        "rejection": REJECTION,
    }


# Study-wide manifest fields that feature_parameters does not hash, each with the reason.  A test walks the
# schema and fails when a new eeg field is neither hashed nor listed here.
NOT_IN_FEATURE_PARAMETERS = {
    "dynamics": "titration markers are computed by notebook 01 from the stored features",
    "task": "selects which recordings exist; each recording's own key holds its task",
    "conditions": "maps recordings to condition and dose; each recording's own key holds both",
    "infusion_start_s": "hashed only for recordings without the start event (the event wins when present)",
    "infusion_end_s": "hashed only for recordings without the end event",
}

# Sidecars at the BIDS root apply to every recording (BIDS inheritance).
_INHERITED_SUFFIXES = (
    "_eeg.json",
    "_channels.tsv",
    "_electrodes.tsv",
    "_coordsystem.json",
    "_events.tsv",
    "_events.json",
)


def recording_files(manifest, recording) -> dict[str, str]:
    """The manifest checksums of every file a recording is read from.

    Its own files (same stem: data, header, marker, sidecar, channels, events), the shared sidecars of its
    folder that carry no task/acquisition/run of their own (electrodes and coordsystem), and sidecars
    inherited from the BIDS root."""
    folder = recording.path.parent.relative_to(manifest.bids_path).as_posix()
    stem = recording.path.name.rsplit("_", 1)[0]
    entities_other = ("_task-", "_acq-", "_run-")
    files = {}
    for rel, checksum in manifest.checksums.items():
        parent, _, name = rel.rpartition("/")
        if parent == folder and (name.startswith(stem + "_") or not any(e in name for e in entities_other)):
            files[rel] = checksum
        elif not parent and name.endswith(_INHERITED_SUFFIXES):
            files[rel] = checksum
    return dict(sorted(files.items()))


def recording_inputs(manifest, recording) -> dict:
    """Everything one recording's features are computed from, except the fixed infusion times (those
    depend on whether the file has the events; see ``_input_hash``)."""
    return {
        "recording": {
            "key": recording.key,
            "condition": recording.condition,
            "dose_mg_per_kg": recording.dose_mg_per_kg,
            "path": recording.path.relative_to(manifest.bids_path).as_posix(),
        },
        "files": recording_files(manifest, recording),
        "parameters": feature_parameters(manifest),
        "code": _code_hash(),
    }


def _input_hash(manifest, inputs: dict, sources: dict[str, str]) -> str:
    fixed = {}
    if sources.get("start") != "event":
        fixed["infusion_start_s"] = manifest.eeg.infusion_start_s
    if sources.get("end") != "event":
        fixed["infusion_end_s"] = manifest.eeg.infusion_end_s
    payload = {**inputs, "infusion_sources": sources, "fixed_infusion_times": fixed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# The code that computes a recording: its closure (followed through imports) is part of every cache key.
FEATURE_CODE_MODULES = ("pipelines.eeg.kernels", "pipelines.eeg.preprocessing", "pipelines.eeg.io")


def feature_code_files() -> list[Path]:
    """Source files whose content is in every recording's cache key: this module and the closure of what computes
    a recording (every module of the ``kernels`` package, preprocessing, reading), not this module's own closure,
    which reaches provenance, the study and the runner: editing a report's provenance block must not recompute
    every recording."""
    from pipelines.core import codedeps

    return sorted(set(codedeps.module_closure(set(FEATURE_CODE_MODULES))) | {Path(__file__).resolve()})


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of the code that computes features (the files of ``feature_code_files``)."""
    from pipelines.core import codedeps

    return hashlib.sha256(json.dumps(codedeps.hash_files(feature_code_files()), sort_keys=True).encode()).hexdigest()


def _stored_attrs(store: Path) -> dict | None:
    """Attributes of a Zarr store, or None when absent, unreadable or incomplete.

    Read from the consolidated metadata (``.zmetadata``, written last), so a store whose writing never
    finished counts as missing even if it sits under its final name (copied in part, say)."""
    try:
        return json.loads((store / ".zmetadata").read_text())["metadata"][".zattrs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# A recording that could not be computed leaves this record instead of a store; it is reused (not retried)
# while its inputs are unchanged, so one bad file costs its time once, not on every make.
UNKNOWN_SOURCES = {"start": "unknown", "end": "unknown"}


def _failure_path(rec_dir: Path, key: str) -> Path:
    return Path(rec_dir) / f"{key}.failed.json"


def cached_input_hash(manifest, recording, rec_dir: Path) -> str | None:
    """The recording's current input hash if its stored result (or recorded failure) is still valid, else
    None (compute it).  A valid failure's hash is returned prefixed with ``failed:``."""
    inputs = recording_inputs(manifest, recording)
    attrs = _stored_attrs(Path(rec_dir) / f"{recording.key}.zarr")
    if attrs and "infusion_sources" in attrs:
        wanted = _input_hash(manifest, inputs, json.loads(attrs["infusion_sources"]))
        if attrs.get("input_hash") == wanted:
            return wanted
    failure = read_failure(rec_dir, recording.key)
    if failure and failure.get("input_hash") == _input_hash(manifest, inputs, UNKNOWN_SOURCES):
        return "failed:" + failure["input_hash"]
    return None


def read_failure(rec_dir: Path, key: str) -> dict | None:
    try:
        return json.loads(_failure_path(rec_dir, key).read_text())
    except (OSError, ValueError):
        return None


def _write_recording(manifest_path: str, recording, out_dir: str) -> dict:
    """Dask task: compute one recording and write ``<out_dir>/<key>.zarr`` atomically; return its QC.

    The task gets the Recording itself (small, picklable), so workers never rescan the BIDS tree.  A stored
    result is reused only when its input hash (``recording_inputs`` + the fixed infusion times it used) matches."""
    from pipelines.study.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    key = recording.key
    target = Path(out_dir) / f"{key}.zarr"
    cached = cached_input_hash(manifest, recording, Path(out_dir))
    if cached is not None:
        if cached.startswith("failed:"):
            return _failure_row(recording, read_failure(Path(out_dir), key)) | {"cached": True}
        return json.loads(_stored_attrs(target)["qc"]) | {"status": "ok", "cached": True}
    try:
        return _compute_recording(manifest, recording, Path(out_dir))
    except Exception as exc:  # one bad recording must not stop the study: record it, name the file, go on
        failure = {
            "input_hash": _input_hash(manifest, recording_inputs(manifest, recording), UNKNOWN_SOURCES),
            "file": recording.path.relative_to(manifest.bids_path).as_posix(),
            "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, InputError) else str(exc),
        }
        if not isinstance(exc, InputError):  # not a data problem we foresaw: keep the traceback for the log
            import traceback

            failure["traceback"] = traceback.format_exc()
        shutil.rmtree(target, ignore_errors=True)
        _write_json_atomic(_failure_path(Path(out_dir), key), failure)
        return _failure_row(recording, failure) | {"cached": False}


def _failure_row(recording, failure: dict) -> dict:
    return {
        "recording": recording.key,
        "participant_id": f"sub-{recording.subject}",
        "session": recording.condition,
        "dose_mg_per_kg": recording.dose_mg_per_kg,
        "status": "failed",
        "error": failure.get("error", "?"),
        "file": failure.get("file"),
    }


def _compute_recording(manifest, recording, out_dir: Path) -> dict:
    from pipelines.core.memory import keep_freed_memory

    keep_freed_memory()  # a worker reuses its freed pages (see pipelines.core.memory)
    key = recording.key
    target = out_dir / f"{key}.zarr"
    t0 = time.perf_counter()
    ds = recording_features(manifest, recording)
    sources = json.loads(ds.attrs["infusion_sources"])
    ds.attrs["input_hash"] = _input_hash(manifest, recording_inputs(manifest, recording), sources)
    ds.attrs["compute_s"] = round(time.perf_counter() - t0, 3)
    tmp = Path(out_dir) / f".{key}.zarr.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)  # v2: read by every Zarr implementation
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    _failure_path(out_dir, key).unlink(missing_ok=True)
    return json.loads(ds.attrs["qc"]) | {"status": "ok", "cached": False, "compute_s": ds.attrs["compute_s"]}


def features_digest(study) -> str | None:
    """One hash of every recording's valid input hash: what ``features.done`` and ``features.zarr`` stand
    for.  None when any recording has no valid stored result (something must be computed)."""
    from pipelines.core.paths import derivatives_dir

    rec_dir = derivatives_dir(study.name) / "recordings"
    digest = hashlib.sha256(FEATURES_VERSION.encode())
    for rec in sorted(study.recordings, key=lambda r: r.key):
        current = cached_input_hash(study.manifest, rec, rec_dir)
        if current is None:
            return None
        digest.update(f"{rec.key}\t{current}\n".encode())
    return digest.hexdigest()


def features_up_to_date(study) -> bool:
    """True when every per-recording store, the combined ``features.zarr`` and ``features.done`` all stand
    for the current inputs; a deleted or stale piece makes it False."""
    from pipelines.core.paths import derivatives_dir

    out = derivatives_dir(study.name)
    digest = features_digest(study)
    if digest is None:
        return False
    combined = _stored_attrs(out / "features.zarr")
    done = out / "features.done"
    return (
        combined is not None
        and combined.get("inputs_digest") == digest
        and done.is_file()
        and done.read_text().strip() == digest
    )


# On a Dask cluster, a task whose worker died (killed, out of memory, job ended) is rerun elsewhere by the
# scheduler (up to distributed.scheduler.allowed-failures times); these retries cover an exception escaping the
# task itself (e.g. a shared filesystem that briefly fails while the failure record is written).
TASK_RETRIES = 2


def _run_tasks(tasks: list, scheduler: str, workers: int | None, progress: bool, retries: int) -> list[dict]:
    """Run the recordings' Dask tasks on a local scheduler or a running Dask cluster; their QC rows."""
    import dask

    if "://" in scheduler:
        from distributed import Client
        from distributed import progress as dist_progress

        with Client(scheduler) as client:
            futures = client.compute(tasks, retries=retries)
            if progress:
                dist_progress(futures)
            return client.gather(futures)
    from dask.diagnostics import ProgressBar

    kwargs = {"scheduler": scheduler}
    if workers:
        kwargs["num_workers"] = workers
    if not progress:
        return dask.compute(*tasks, **kwargs)
    # A redrawn bar on a terminal; a line every 10 s in logs (make, CI).
    with ProgressBar(dt=0.5 if sys.stderr.isatty() else 10.0, out=sys.stderr):
        return dask.compute(*tasks, **kwargs)


def _remove_stale_results(rec_dir: Path, keys: list[str]) -> None:
    """Remove results of recordings no longer in the study and half-written stores of killed tasks."""
    for stale in rec_dir.glob("*.zarr"):
        if stale.name.removesuffix(".zarr") not in keys:
            shutil.rmtree(stale)
    for stale in rec_dir.glob("*.failed.json"):
        if stale.name.removesuffix(".failed.json") not in keys:
            stale.unlink()
    # Half-written stores of a task killed mid-write (its retry wrote the store under its own temporary name).
    for orphan in rec_dir.glob(".*.zarr.tmp-*"):
        shutil.rmtree(orphan, ignore_errors=True)


def _report_run(out: Path, results, progress: bool) -> list[dict]:
    """Write ``features_run.json`` (computed, reused, failed) and warn about failures and uneven window loss;
    the failed recordings' rows."""
    import pandas as pd

    computed = sorted(r["recording"] for r in results if not r.get("cached"))
    reused = sorted(r["recording"] for r in results if r.get("cached"))
    failed = [r for r in results if r.get("status") == "failed"]
    _write_json_atomic(
        out / "features_run.json",
        {"computed": computed, "reused": reused, "failed": sorted(r["recording"] for r in failed)},
    )
    if progress:
        print(
            f"EEG features: {len(computed)} recording(s) computed, {len(reused)} reused from the cache", file=sys.stderr
        )
    if failed:
        lines = [f"  - {r['recording']} ({r['file']}): {r['error']}" for r in failed]
        print(
            f"WARNING: {len(failed)} of {len(results)} recordings could not be computed and are left out of every "
            "analysis (listed in qc.tsv with status 'failed'):\n" + "\n".join(lines),
            file=sys.stderr,
        )
    kept = kept_by_condition(pd.DataFrame([r for r in results if r.get("status") == "ok"]))
    if progress and len(kept):
        print("Windows kept by condition:\n" + kept.to_string(index=False), file=sys.stderr)
    if len(kept) > 1 and kept["fraction_kept"].max() - kept["fraction_kept"].min() > CONDITION_LOSS_GAP:
        print(
            f"WARNING: conditions lose different shares of their windows ({kept['fraction_kept'].min():.0%} to "
            f"{kept['fraction_kept'].max():.0%} kept; more than {CONDITION_LOSS_GAP:.0%} apart): condition contrasts "
            "may be biased; check the rejection settings (eeg.preprocessing)",
            file=sys.stderr,
        )
    return failed


def _qc_table(study, results):
    """qc.tsv's rows: every computed or failed recording, then those the manifest excludes (lists and dicts as
    JSON, so any tool can read the TSV back)."""
    import pandas as pd

    excluded = [
        {
            "recording": r.key,
            "participant_id": f"sub-{r.subject}",
            "session": r.condition,
            "dose_mg_per_kg": r.dose_mg_per_kg,
            "status": "excluded",
            "error": reason,
        }
        for r, reason in study.excluded_recordings
    ]
    qc = pd.DataFrame(list(results) + excluded)
    for column in qc.columns:
        if qc[column].map(lambda v: isinstance(v, (list, dict))).any():
            qc[column] = qc[column].map(lambda v: json.dumps(v, ensure_ascii=False))
    return qc.drop(columns=["cached"], errors="ignore")


def compute_study_features(
    study, scheduler: str = "threads", workers: int | None = None, progress: bool = True, retries: int = TASK_RETRIES
) -> Path:
    """Compute every recording (one Dask task each) and write the combined ``features.zarr``.

    ``scheduler``: "threads" / "processes" / "synchronous" (local), or the address of a running Dask
    scheduler (``tcp://127.0.0.1:8786``) — the same code runs on a laptop and on a cluster.  Each recording
    writes its own store atomically, so an interrupted study resumes with the recordings it lacks."""
    import dask

    from pipelines.core.paths import derivatives_dir

    out = derivatives_dir(study.name)
    rec_dir = out / "recordings"
    rec_dir.mkdir(parents=True, exist_ok=True)
    keys = [r.key for r in study.recordings]
    tasks = [
        dask.delayed(_write_recording, pure=False)(
            str(study.manifest.manifest_path), r, str(rec_dir), dask_key_name=f"features-{r.key}"
        )
        for r in study.recordings
    ]
    results = _run_tasks(tasks, scheduler, workers, progress, retries)
    _remove_stale_results(rec_dir, keys)
    failed = _report_run(out, results, progress)
    ok_keys = [r["recording"] for r in results if r.get("status") == "ok"]
    if not ok_keys:
        raise InputError(
            f"no recording of study {study.name!r} could be computed; the first error: {failed[0]['error']}",
            file=failed[0]["file"],
        )
    qc = _qc_table(study, results)
    digest = features_digest(study)
    write_combined(study, ok_keys, out, digest)
    tmp = out / ".qc.tsv.tmp"
    qc.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, out / "qc.tsv")
    _write_description(study, out)
    return out / "features.zarr"


def open_recordings(study, keys: list[str], rec_dir: Path):
    """Lazily combine per-recording Zarr stores into one Dataset (subject, session, ..., time_s)."""
    import xarray as xr

    subjects = sorted({study.recording(k).subject for k in keys})
    # Conditions by dose (placebo first), then conditions without a dose by label.
    sessions = sorted(
        {study.recording(k).condition for k in keys},
        key=lambda c: (np.isnan(_dose_of(study, c)), np.nan_to_num(_dose_of(study, c)), c),
    )
    pieces = []
    for k in keys:
        rec = study.recording(k)
        ds = xr.open_zarr(rec_dir / f"{k}.zarr", consolidated=True)
        qc = ds.attrs.get("qc")
        ds = ds.expand_dims(subject=[rec.subject], session=[rec.condition])
        ds.attrs = {"qc": qc}
        pieces.append(ds)
    combined = xr.combine_by_coords(pieces, join="outer", combine_attrs="drop", fill_value=np.nan)
    combined = combined.reindex(subject=subjects, session=sessions)
    dose = np.full((len(subjects), len(sessions)), np.nan)
    for k in keys:
        rec = study.recording(k)
        dose[subjects.index(rec.subject), sessions.index(rec.condition)] = rec.dose_mg_per_kg
    combined = combined.assign_coords(dose_mg_per_kg=(("subject", "session"), dose))
    combined["dose_mg_per_kg"].attrs["units"] = "mg/kg"
    combined["window_rejected"] = combined["window_rejected"].fillna(True).astype(bool)
    return combined


def _dose_of(study, condition: str) -> float:
    doses = [r.dose_mg_per_kg for r in study.recordings if r.condition == condition and not np.isnan(r.dose_mg_per_kg)]
    return float(np.median(doses)) if doses else np.nan


def _write_json_atomic(path: Path, content: dict) -> None:
    _write_if_changed(path, json.dumps(content, indent=1) + "\n")


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically, and only when the content differs: Make sees the date change only then."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_combined(study, keys: list[str], out: Path, inputs_digest: str | None = None) -> Path:
    from pipelines.core.provenance import git_commit, library_versions, utc_now
    from pipelines.eeg import filtering, kernels

    combined = open_recordings(study, keys, out / "recordings")
    combined.attrs.update(
        {
            "study": study.name,
            "parameters": json.dumps(feature_parameters(study.manifest), sort_keys=True),
            "measure_definitions": json.dumps(kernels.MEASURE_INFO, sort_keys=True),
            "filter_definition": filtering.CONVENTION,
            "library_versions": json.dumps(library_versions(), sort_keys=True),
            "data_checksum": study.manifest.data_checksum(),
            "inputs_digest": inputs_digest or "",
            "git_commit": git_commit(),
            "created_utc": utc_now(),
            "dims": "subject: BIDS subject label; session: condition label; measure: per-channel measure; "
            "channel; time_s: window centre relative to infusion start",
        }
    )
    combined = combined.chunk({"subject": 1, "session": 1})
    for name in combined.variables:
        combined[name].encoding = {}
    target = out / "features.zarr"
    tmp = out / f".features.zarr.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    combined.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def _write_description(study, out: Path) -> None:
    import pipelines
    from pipelines.core.provenance import git_commit

    description = {
        "Name": f"ketamine-workbench EEG features of study {study.name}",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "ketamine-workbench",
                "Version": pipelines.__version__,
                "Description": "pipelines.eeg.features",
                "CodeURL": "git commit " + git_commit(),
            }
        ],
        "SourceDatasets": [
            {
                "Description": f"study manifest {Path(study.manifest.manifest_path).name}",
                "DataChecksum": study.manifest.data_checksum(),
            }
        ],
    }
    (out / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")


def open_features(study):
    """The study's combined features (lazy, Dask-backed)."""
    import xarray as xr

    from pipelines.core.paths import derivatives_dir

    path = derivatives_dir(study.name) / "features.zarr"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no features yet for study {study.name!r}; run `make all` (or "
            f"python -m pipelines.eeg.features {study.manifest.manifest_path})"
        )
    return xr.open_zarr(path, consolidated=True)


def read_qc(study):
    """QC of every recording whose features exist (one row each)."""
    qc = _read_qc_table(study)
    return qc[qc["status"] == "ok"].drop(columns=["status", "error", "file"], errors="ignore").reset_index(drop=True)


# A gap in the share of windows kept between two conditions larger than this is warned about.
CONDITION_LOSS_GAP = 0.10


def kept_by_condition(qc):
    """Per condition: recordings, windows and the share kept after rejection (from QC rows of computed recordings)."""
    import pandas as pd

    if qc.empty:
        return pd.DataFrame(columns=["session", "n_recordings", "n_windows", "n_kept", "fraction_kept"])
    table = (
        qc.assign(n_kept=qc["n_windows"] - qc["n_rejected_windows"])
        .groupby("session", sort=False)
        .agg(n_recordings=("recording", "count"), n_windows=("n_windows", "sum"), n_kept=("n_kept", "sum"))
        .reset_index()
    )
    table["fraction_kept"] = (table["n_kept"] / table["n_windows"]).round(4)
    return table


def left_out_recordings(study):
    """Recordings with no features: failed (file and reason) or excluded by the manifest (its reason)."""
    qc = _read_qc_table(study)
    columns = [
        c for c in ("recording", "participant_id", "session", "dose_mg_per_kg", "status", "error", "file") if c in qc
    ]
    return qc.loc[qc["status"] != "ok", columns].rename(columns={"error": "reason"}).reset_index(drop=True)


def _read_qc_table(study):
    import pandas as pd

    from pipelines.core.paths import derivatives_dir

    qc = pd.read_csv(derivatives_dir(study.name) / "qc.tsv", sep="\t")
    if "status" not in qc:  # written before failures were recorded
        qc["status"] = "ok"
    return qc


def main(argv: list[str] | None = None) -> int:
    import argparse

    from pipelines.core.cluster import scheduler_for
    from pipelines.core.paths import derivatives_dir
    from pipelines.study.dataset import Study
    from pipelines.study.manifest import ManifestError

    parser = argparse.ArgumentParser(prog="python -m pipelines.eeg.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument(
        "--scheduler",
        default=None,
        help="threads, processes, synchronous, or a scheduler address "
        "(default: the manifest's cluster: section, else threads)",
    )
    parser.add_argument("--workers", type=int, default=None, help="local workers, or at most this many cluster jobs")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--force-combine",
        action="store_true",
        help="rewrite features.zarr even when everything is up to date (per-recording caches still apply)",
    )
    args = parser.parse_args(argv)
    try:
        study = Study.load(args.manifest)
        if not study.recordings:
            _write_if_changed(derivatives_dir(study.name) / "features.done", "no-eeg\n")
            print(f"Study {study.name!r} has no EEG recordings: no EEG features to compute")
            return 0
        if not args.force_combine and features_up_to_date(study):
            # Make asks every time (the stamp alone cannot see a deleted store): answer fast, touch nothing.
            print(f"EEG features of {study.name!r} are up to date ({len(study.recordings)} recordings)")
            return 0
        t0 = time.perf_counter()
        with scheduler_for(study.manifest.cluster, args.scheduler, args.workers) as scheduler:
            path = compute_study_features(
                study, scheduler=scheduler, workers=args.workers, progress=not args.no_progress
            )
    except (InputError, ManifestError) as exc:
        print(f"EEG features failed: {exc}", file=sys.stderr)
        return 1
    # The digest the combined store was written with; features.done changes only when it does, so Make reruns
    # the reports that read the features only then (a deleted store recomputed to the same inputs changes nothing).
    digest = _stored_attrs(path)["inputs_digest"]
    _write_if_changed(derivatives_dir(study.name) / "features.done", f"{digest}\n")
    print(f"Wrote {path} ({len(study.recordings)} recordings, {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
