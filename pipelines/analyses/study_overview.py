"""Study overview: what recordings and tables a study has, and a first data-quality look (notebook 00).

One shape: ``run(study, params) -> StudyOverviewResult`` (tidy tables + a summary), used by the notebook and the
tests alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.study.dataset import Study


class OverviewParameters(BaseModel):
    """Parameters of notebook 00 (``notebooks: 00_study_overview:`` in the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qc_seconds: float = Field(60.0, description="Seconds at the start of each recording used for the quick QC")

    @field_validator("qc_seconds")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"qc_seconds must be positive, got {value!r}")
        return value


PARAMETERS = OverviewParameters


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


@dataclass
class StudyOverviewResult:
    """What notebook 00 shows: the design, participants, recordings, a quick channel QC, the phenotype tables."""

    params: OverviewParameters
    study_name: str
    design: object  # pipelines.study.dataset.Design
    design_table: pd.DataFrame
    participants: pd.DataFrame
    recordings: pd.DataFrame  # one row per EEG recording (empty without EEG)
    recordings_by_condition: pd.DataFrame
    qc: pd.DataFrame  # quick QC per recording (empty without EEG)
    phenotype_tables: pd.DataFrame
    summary: str = ""


def participants_description(participants: pd.DataFrame) -> pd.DataFrame:
    """participants.tsv described column by column (count, unique, top, mean, min, max)."""
    return participants.describe(include="all").T[["count", "unique", "top", "mean", "min", "max"]]


def summary_text(result: StudyOverviewResult) -> str:
    """One paragraph: design, participants, conditions, arms, data blocks, EEG and its quick QC, missing tables."""
    design, recordings, qc, tables = result.design, result.recordings, result.qc, result.phenotype_tables
    missing = tables.loc[~tables["present"], "table"].tolist() if "present" in tables else []
    conditions = ", ".join(c + (f" ({d:g} mg/kg)" if d == d else "") for c, d in design.conditions) or "none"
    eeg_text = "no EEG recordings. "
    if len(recordings):
        n_bad = int((qc["n_bad_channels"] > 0).sum())
        eeg_text = (
            f"{len(recordings)} EEG recordings, median duration {recordings['duration_s'].median() / 60:.1f} min; "
            f"{n_bad} of {len(qc)} have at least one flat or noisy channel in the first "
            f"{result.params.qc_seconds:g} s (interpolated in preprocessing). "
        )
    return (
        f"**{result.study_name}** ({design.kind} design): {result.participants.shape[0]} participants; "
        f"conditions {conditions}"
        + (f"; arms {', '.join(design.arms)}" if design.arms else "")
        + f"; data blocks {', '.join(design.blocks) or 'none'}. "
        + eeg_text
        + (
            f"Missing phenotype tables: {', '.join(missing)}."
            if missing
            else f"All {len(tables)} phenotype tables are present."
        )
    )


def run(study: Study, params: OverviewParameters | dict | None = None) -> StudyOverviewResult:
    """Everything notebook 00 shows, for any design (no EEG: the EEG tables are empty)."""
    params = OverviewParameters.model_validate(params or {})
    recordings = recording_table(study)
    result = StudyOverviewResult(
        params=params,
        study_name=study.name,
        design=study.design,
        design_table=design_table(study),
        participants=study.participants,
        recordings=recordings,
        recordings_by_condition=recordings_by_condition(recordings),
        qc=quick_qc(study, seconds=params.qc_seconds),
        phenotype_tables=phenotype_table_summary(study),
    )
    result.summary = summary_text(result)
    return result
