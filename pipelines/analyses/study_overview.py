"""Study overview: what recordings and tables a study has, and a first data-quality look (notebook 00)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.study.dataset import Study


def recording_table(study: Study) -> pd.DataFrame:
    """One row per EEG recording: pseudonymous key, dose, sampling rate, channels, duration, infusion times."""
    from pipelines.eeg.io import infusion_times, read_raw

    rows = []
    eeg = study.manifest.eeg
    for rec in study.recordings:
        raw = read_raw(rec, study.root, eeg.reader)  # errors name the file
        try:
            start, end = infusion_times(
                raw,
                eeg.infusion_start_event,
                eeg.infusion_end_event,
                rec.path,
                eeg.infusion_start_s,
                eeg.infusion_end_s,
            )
        except ValueError:
            start, end = np.nan, np.nan
        rows.append(
            {
                "recording": rec.key,
                "participant_id": f"sub-{rec.subject}",
                "condition": rec.condition,
                "dose_mg_per_kg": rec.dose_mg_per_kg,
                "sfreq_hz": raw.info["sfreq"],
                "n_channels": len(raw.ch_names),
                "duration_s": round(raw.n_times / raw.info["sfreq"], 2),
                "infusion_start_s": start,
                "infusion_end_s": end if end is not None else np.nan,
                "format": rec.path.suffix,
            }
        )
    columns = [
        "recording",
        "participant_id",
        "condition",
        "dose_mg_per_kg",
        "sfreq_hz",
        "n_channels",
        "duration_s",
        "infusion_start_s",
        "infusion_end_s",
        "format",
    ]
    return pd.DataFrame(rows, columns=columns)


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
        rows.append(
            {
                "recording": rec.key,
                "dose_mg_per_kg": rec.dose_mg_per_kg,
                "median_channel_sd_uv": round(qc.median_channel_sd_uv, 2),
                "n_bad_channels": len(qc.bad_channels),
                "bad_channels": "; ".join(f"{k}: {v}" for k, v in qc.bad_channels.items()) or "",
            }
        )
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
        rows.append(
            {
                "table": name,
                "path": table.path,
                "present": True,
                "rows": len(df),
                "participants": df["participant_id"].nunique() if "participant_id" in df else np.nan,
                "columns": len(df.columns),
                "missing_cells": int(df.isin(["n/a"]).sum().sum() + df.isna().sum().sum()),
            }
        )
    return pd.DataFrame(rows)


def design_table(study: Study) -> pd.DataFrame:
    """The study's design as the workbench understands it (declared or inferred), one row per property, and
    for each analysis family whether it applies and, if not, why."""
    design = study.design
    rows = [
        ("design", design.kind),
        ("data blocks", ", ".join(design.blocks) or "none"),
        (
            "conditions (in order)",
            ", ".join(f"{c}" + (f" ({d:g} mg/kg)" if d == d else "") for c, d in design.conditions) or "none",
        ),
        ("arms", ", ".join(design.arms) or "none"),
    ]
    rows += [
        (f"table {name}", f"one row per {granularity.replace('_', ' × ')}")
        for name, granularity in design.tables.items()
    ]
    for analysis in ("dose_trend", "paired_contrast", "between_arms", "integrative"):
        ok, reason = design.supports(analysis)
        rows.append((analysis.replace("_", " "), "applies" if ok else f"does not apply: {reason}"))
    return pd.DataFrame(rows, columns=["property", "value"])


def recordings_by_condition(recordings: pd.DataFrame) -> pd.DataFrame:
    """Recordings, participants, duration and format per condition (conditions in dose order, placebo first;
    conditions without a dose kept, after the dosed ones)."""
    if recordings.empty:
        return pd.DataFrame(
            columns=[
                "condition",
                "dose_mg_per_kg",
                "recordings",
                "participants",
                "median_duration_s",
                "sfreq_hz",
                "channels",
            ]
        )
    table = (
        recordings.groupby("condition", dropna=False, sort=False)
        .agg(
            dose_mg_per_kg=("dose_mg_per_kg", "first"),
            recordings=("recording", "size"),
            participants=("participant_id", "nunique"),
            median_duration_s=("duration_s", "median"),
            sfreq_hz=("sfreq_hz", "first"),
            channels=("n_channels", "first"),
        )
        .reset_index()
    )
    order = table["dose_mg_per_kg"].isna().astype(int) * 1e9 + table["dose_mg_per_kg"].fillna(0)
    return table.assign(_order=order).sort_values(["_order", "condition"]).drop(columns="_order").reset_index(drop=True)
