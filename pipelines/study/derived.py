"""Derived tables: what notebooks 01–03 hand on to notebook 04 and the dashboards.

One place owns the contract: the table names, which notebook writes each, where they live
(``build/<study>/derivatives/ketamine-workbench/tables/<name>.tsv``), how they are written (atomically,
TSV, ``n/a`` for missing) and read (identifiers as strings), and the shape of the two tables that are
reshaped for the hand-over (mood outcomes and cytokine changes).

Session labels: EEG tables carry the condition label (``ket050``) in ``session``; phenotype tables carry
the BIDS label (``ses-ket050``) in ``session_id``. :func:`session_label` normalises both for joins.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = [
    "FEATURE_READERS",
    "PRODUCERS",
    "READERS",
    "cytokine_changes_table",
    "mood_changes_table",
    "read_table",
    "session_label",
    "table_path",
    "tables_dir",
    "write_tables",
]

# Table name -> the notebook whose last cell writes it.
PRODUCERS: dict[str, str] = {
    "eeg_markers": "01_eeg_entropy_dose",
    "eeg_plateau_changes": "01_eeg_entropy_dose",
    "eeg_dose_models": "01_eeg_entropy_dose",
    "eeg_dose_means": "01_eeg_entropy_dose",
    "peak_scores": "02_peak_experience_mood",
    "mood_changes": "02_peak_experience_mood",
    "cytokine_changes": "03_cytokines",
    "mood_outcomes": "05_mood_outcomes",
    "plasticity_window": "06_plasticity_window",
}
# Notebook -> the derived tables it reads.  With PRODUCERS this is the one declaration of which notebook feeds
# which: the Makefile's notebook-to-notebook prerequisites are generated from these two literals
# (pipelines/make/notebook_deps.py, stdlib only, so make can run it before the environment exists).
READERS: dict[str, tuple[str, ...]] = {
    "04_integrative_summary": ("eeg_markers", "eeg_plateau_changes", "peak_scores", "mood_changes", "cytokine_changes"),
    "06_plasticity_window": ("peak_scores", "eeg_markers", "cytokine_changes"),
}
# Notebooks that read the per-recording EEG feature stores (they follow the features step).
FEATURE_READERS: tuple[str, ...] = ("01_eeg_entropy_dose", "04_integrative_summary", "06_plasticity_window")
# Identifier columns stay strings ('01' must not become 1).
_STRING_COLUMNS = {"participant_id": str, "subject": str, "session": str, "session_id": str, "timepoint": str}


def tables_dir(study) -> Path:
    from pipelines.core.paths import derivatives_dir

    return derivatives_dir(study.name) / "tables"


def table_path(study, name: str) -> Path:
    return tables_dir(study) / f"{name}.tsv"


def write_tables(study, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Write derived tables for downstream notebooks (04) and dashboards, atomically, as TSV.

    Returns the paths written, relative to the study's derivatives folder."""
    folder = tables_dir(study)
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.parent
    written = []
    for name, table in tables.items():
        path = folder / f"{name}.tsv"
        tmp = folder / f".{name}.tsv.tmp-{os.getpid()}"
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
        os.replace(tmp, path)
        written.append(str(path.relative_to(root)))
    return written


def read_table(study, name: str) -> pd.DataFrame:
    """Read one derived table of ``study``; a missing one raises FileNotFoundError naming its notebook."""
    path = table_path(study, name)
    if not path.is_file():
        producer = PRODUCERS.get(name)
        if producer is None:
            raise FileNotFoundError(
                f"derived table {name!r} of study {study.name!r} not found at {path}, and no "
                f"notebook is known to write it; known tables: {sorted(PRODUCERS)}"
            )
        raise FileNotFoundError(
            f"derived table {name!r} of study {study.name!r} not found at {path}: it is written by notebook "
            f"{producer} — run `make all` (or `python -m pipelines.make.build notebook "
            f"{study.manifest.manifest_path} {producer}`) first"
        )
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    dtypes = {c: t for c, t in _STRING_COLUMNS.items() if c in header}
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtypes)


def session_label(values) -> pd.Series:
    """Session labels without the BIDS ``ses-`` prefix (``ses-ket050`` and ``ket050`` → ``ket050``)."""
    return pd.Series(values, dtype="string").str.removeprefix("ses-").astype(object)


def mood_changes_table(outcomes: pd.DataFrame, score: str, scale: str) -> pd.DataFrame:
    """Scale-independent long table of mood outcomes (from :func:`pipelines.analyses.peak_experience_mood.mood_change_table`).

    One row per subject-session-time point: participant_id, session_id, dose_mg_per_kg, scale, score,
    timepoint, value (the total), baseline, change (time point − baseline; negative = better),
    improvement (baseline − time point; positive = better), pct_change, response (≥ 50 % reduction),
    remission (total at or below the threshold notebook 02 used)."""
    columns = {
        score: "value",
        f"{score}_baseline": "baseline",
        f"{score}_change": "change",
        f"{score}_improvement": "improvement",
        f"{score}_pct_change": "pct_change",
        f"{score}_response": "response",
        f"{score}_remission": "remission",
    }
    missing = [c for c in columns if c not in outcomes.columns]
    if missing:
        raise KeyError(f"mood outcome table lacks {missing}")
    out = outcomes[["participant_id", "session_id", "dose_mg_per_kg", "timepoint", *columns]].rename(columns=columns)
    out.insert(3, "scale", scale)
    out.insert(4, "score", score)
    out["timepoint"] = out["timepoint"].astype(str)
    return out.reset_index(drop=True)


def cytokine_changes_table(changes: pd.DataFrame, baseline: str, post: str) -> pd.DataFrame:
    """Per subject-session-analyte ln(post/baseline) (from :func:`pipelines.analyses.cytokines.change_table`):
    participant_id, session_id, dose_mg_per_kg, analyte, ln_baseline, ln_post, ln_change, any_censored,
    strategy (censoring substitution), stratum (session-level, from baseline CRP), baseline, post."""
    keep = [
        "participant_id",
        "session_id",
        "dose_mg_per_kg",
        "analyte",
        "ln_baseline",
        "ln_post",
        "ln_change",
        "any_censored",
        "strategy",
        "stratum",
    ]
    return changes[keep].assign(baseline=baseline, post=post).reset_index(drop=True)
