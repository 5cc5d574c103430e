"""Psychotherapy sessions around ketamine infusions (preparation, integration): reading and validation.

The table (``phenotype/therapy.tsv``, declared in the manifest as ``phenotype: therapy:``) has one row per
therapy session:

========================  ================================================================================
``participant_id``        pseudonymous participant (must be in participants.tsv)
``session_id``            the infusion session the therapy session belongs to (optional for studies with one
                          infusion per participant)
``session_type``          ``preparation`` (before the infusion) or ``integration`` (after it)
``start_h``               start relative to the END of that infusion, in hours (preparation: negative)
``duration_min``          optional, minutes
``therapist``/``adherence``  optional, kept as given
========================  ================================================================================

Errors name the file, the row (1-based data row, as a spreadsheet shows it after the header), the subject and the
field: an integration session that starts before its infusion ended, a preparation session after it, duplicate
rows, unknown participants or sessions, missing or non-numeric times.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError, did_you_mean

__all__ = ["SESSION_TYPES", "hours_of", "read_therapy"]

SESSION_TYPES = ("preparation", "integration")
REQUIRED = ("participant_id", "session_type", "start_h")
OPTIONAL = ("session_id", "duration_min", "therapist", "adherence")


_HOURS = re.compile(r"^(\d+(?:\.\d+)?)\s*(h|d|w)$")
_WEEK = re.compile(r"^week\s*(\d+)$")


def hours_of(timepoint: str) -> float | None:
    """Hours after the infusion that a time-point label means (4h, 24h, 7d, 2w, week3), or None (baseline)."""
    label = str(timepoint).strip().lower()
    if match := _HOURS.match(label):
        return float(match[1]) * {"h": 1, "d": 24, "w": 168}[match[2]]
    if match := _WEEK.match(label):
        return float(match[1]) * 168
    return None


def read_therapy(
    path: str | Path, participants: pd.DataFrame | None = None, sessions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The validated therapy table (see the module docstring); ``row`` is each row's 1-based data row.

    ``participants``: participants.tsv (its ``participant_id``); ``sessions``: the study's sessions
    (``participant_id``, ``session_id``), used to check that each row names an existing infusion."""
    path = Path(path)
    table = _read_columns(path)
    unknown = [c for c in table.columns if c not in (*REQUIRED, *OPTIONAL)]
    table.insert(0, "row", np.arange(1, len(table) + 1))
    table.attrs["unused_columns"] = unknown
    table["participant_id"] = [pid if str(pid).startswith("sub-") else f"sub-{pid}" for pid in table["participant_id"]]
    if "session_id" in table.columns:
        table["session_id"] = [
            s if pd.isna(s) or str(s).startswith("ses-") else f"ses-{s}" for s in table["session_id"]
        ]
    else:
        table["session_id"] = None
    _check_types_and_times(table, path)
    _check_known(table, path, participants, sessions)
    table.attrs["source"] = str(path)
    return table


def _read_columns(path: Path) -> pd.DataFrame:
    """The table as text, with every required column present."""
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, na_values=["n/a", ""], keep_default_na=False)
    except FileNotFoundError:
        raise InputError("therapy table not found", file=str(path)) from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(
            f"missing column(s) {missing}"
            + did_you_mean(missing[0], list(table.columns))
            + f"; columns are {list(table.columns)}",
            file=str(path),
            field=missing[0],
        )
    return table


def _fail(table: pd.DataFrame, path: Path, i: int, field: str, problem: str):
    """InputError naming the file, row, subject, session and field of the table's ``i``-th row."""
    r = table.iloc[i]
    raise InputError(
        problem,
        file=str(path),
        row=int(r["row"]),
        subject=str(r["participant_id"]),
        session=None if pd.isna(r["session_id"]) else str(r["session_id"]),
        field=field,
    )


def _check_types_and_times(table: pd.DataFrame, path: Path) -> None:
    """Session types known, times numeric (converted in place), preparation before and integration after the
    infusion, no duplicate rows."""
    for i, kind in enumerate(table["session_type"]):
        if kind not in SESSION_TYPES:
            _fail(
                table,
                path,
                i,
                "session_type",
                f"session_type {kind!r} is not one of {list(SESSION_TYPES)}" + did_you_mean(str(kind), SESSION_TYPES),
            )
    for column in ("start_h", "duration_min"):
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & (table[column].notna() if column == "duration_min" else True)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            _fail(
                table,
                path,
                i,
                column,
                f"{column} must be a number of {'hours' if column == 'start_h' else 'minutes'}, "
                f"got {table[column].iloc[i]!r}",
            )
        table[column] = values
    before = (table["session_type"] == "integration") & (table["start_h"] < 0)
    if before.any():
        i = int(np.flatnonzero(before.to_numpy())[0])
        _fail(
            table,
            path,
            i,
            "start_h",
            f"an integration session starts {-table['start_h'].iloc[i]:g} h before the infusion it "
            "follows ended (start_h is hours after the infusion end)",
        )
    after = (table["session_type"] == "preparation") & (table["start_h"] > 0)
    if after.any():
        i = int(np.flatnonzero(after.to_numpy())[0])
        _fail(
            table,
            path,
            i,
            "start_h",
            f"a preparation session starts {table['start_h'].iloc[i]:g} h after the infusion ended",
        )
    duplicated = table.duplicated(["participant_id", "session_id", "session_type", "start_h"], keep="first")
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        _fail(
            table,
            path,
            i,
            "start_h",
            "duplicate row (same participant, session, type and start time as an earlier row)",
        )


def _check_known(
    table: pd.DataFrame, path: Path, participants: pd.DataFrame | None, sessions: pd.DataFrame | None
) -> None:
    """Every participant in participants.tsv and every session an infusion session of its participant."""
    if participants is not None:
        known = set(participants["participant_id"].astype(str))
        for i, pid in enumerate(table["participant_id"]):
            if pid not in known:
                _fail(
                    table,
                    path,
                    i,
                    "participant_id",
                    f"participant {pid} is not in participants.tsv" + did_you_mean(pid, known),
                )
    if sessions is not None and table["session_id"].notna().any():
        known = set(zip(sessions["participant_id"], sessions["session_id"]))
        for i, (pid, sid) in enumerate(zip(table["participant_id"], table["session_id"])):
            if pd.notna(sid) and (pid, sid) not in known:
                labels = sorted({s for p, s in known if p == pid})
                _fail(
                    table,
                    path,
                    i,
                    "session_id",
                    f"{pid} has no infusion session {sid}" + did_you_mean(sid, labels) + f"; sessions: {labels}",
                )
