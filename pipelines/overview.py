"""Study overview: what recordings and tables a study has, and a first data-quality look (notebook 00)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.study import Study


def recording_table(study: Study) -> pd.DataFrame:
    """One row per EEG recording: pseudonymous key, dose, sampling rate, channels, duration, infusion times."""
    from pipelines.eeg.io import infusion_times, read_raw

    rows = []
    eeg = study.manifest.eeg
    for rec in study.recordings:
        raw = read_raw(rec, study.root, eeg.reader)  # errors name the file
        try:
            start, end = infusion_times(raw, eeg.infusion_start_event, eeg.infusion_end_event, rec.path,
                                         eeg.infusion_start_s, eeg.infusion_end_s)
        except ValueError:
            start, end = np.nan, np.nan
        rows.append({
            "recording": rec.key, "participant_id": f"sub-{rec.subject}", "condition": rec.condition,
            "dose_mg_per_kg": rec.dose_mg_per_kg, "sfreq_hz": raw.info["sfreq"], "n_channels": len(raw.ch_names),
            "duration_s": round(raw.n_times / raw.info["sfreq"], 2), "infusion_start_s": start,
            "infusion_end_s": end if end is not None else np.nan, "format": rec.path.suffix,
        })
    return pd.DataFrame(rows)


def quick_qc(study: Study, seconds: float = 60.0) -> pd.DataFrame:
    """Flat/noisy channels and median channel SD on the first ``seconds`` of each recording,
    preprocessed as the manifest says (a fast look; the feature step runs QC on the whole recording)."""
    from pipelines.eeg.io import read_raw
    from pipelines.eeg.preprocessing import preprocess

    rows = []
    for rec in study.recordings:
        raw = read_raw(rec, study.root, study.manifest.eeg.reader)
        raw.crop(0, min(seconds, raw.times[-1]))
        _, qc = preprocess(raw, study.manifest.eeg.preprocessing, file=str(rec.path))
        rows.append({
            "recording": rec.key, "dose_mg_per_kg": rec.dose_mg_per_kg,
            "median_channel_sd_uv": round(qc.median_channel_sd_uv, 2),
            "n_bad_channels": len(qc.bad_channels),
            "bad_channels": "; ".join(f"{k}: {v}" for k, v in qc.bad_channels.items()) or "",
        })
    return pd.DataFrame(rows)


def phenotype_table_summary(study: Study) -> pd.DataFrame:
    """Rows, subjects and columns of each phenotype table the manifest lists (missing files are reported)."""
    rows = []
    for name, table in study.manifest.phenotype.items():
        path = study.table_path(name)
        if not path.is_file():
            rows.append({"table": name, "path": table.path, "present": False})
            continue
        sep = "\t" if path.suffix == ".tsv" else ","
        df = pd.read_csv(path, sep=sep, dtype=str)
        rows.append({
            "table": name, "path": table.path, "present": True, "rows": len(df),
            "participants": df["participant_id"].nunique() if "participant_id" in df else np.nan,
            "columns": len(df.columns),
            "missing_cells": int(df.isin(["n/a"]).sum().sum() + df.isna().sum().sum()),
        })
    return pd.DataFrame(rows)
