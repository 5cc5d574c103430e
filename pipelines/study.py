"""A study: the manifest plus what it points at — subjects, recordings, doses, tables.

This is the one place that turns a manifest into paths.  Everything downstream asks the Study.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from pipelines.manifest import Manifest, ManifestError, load_manifest

EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".fif", ".set")


@dataclass(frozen=True)
class Recording:
    """One EEG recording and the dose it was recorded under."""

    subject: str
    session: str | None
    task: str | None
    acquisition: str | None
    run: str | None
    condition: str
    dose_mg_per_kg: float
    path: Path

    @property
    def key(self) -> str:
        """A pseudonymous, unique name: BIDS entities only (sub-01_ses-ket050[_task-rest])."""
        parts = [f"sub-{self.subject}"]
        for prefix, value in (("ses", self.session), ("task", self.task), ("acq", self.acquisition), ("run", self.run)):
            if value is not None:
                parts.append(f"{prefix}-{value}")
        return "_".join(parts)

    def bids_path(self, root: Path):
        from mne_bids import BIDSPath

        return BIDSPath(subject=self.subject, session=self.session, task=self.task, acquisition=self.acquisition,
                        run=self.run, datatype="eeg", suffix="eeg", extension=self.path.suffix, root=root)


class Study:
    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self._sessions_tables: dict[str, pd.DataFrame] = {}

    @classmethod
    def load(cls, manifest_path) -> "Study":
        return cls(load_manifest(manifest_path))

    @property
    def name(self) -> str:
        return self.manifest.study

    @property
    def root(self) -> Path:
        return self.manifest.bids_path

    @cached_property
    def participants(self) -> pd.DataFrame:
        path = self.root / "participants.tsv"
        if not path.is_file():
            raise ManifestError(f"{path}: participants.tsv is missing from the BIDS root")
        table = pd.read_csv(path, sep="\t", dtype={"participant_id": str}, na_values=["n/a"], keep_default_na=True)
        # Only pseudonymous columns ever leave this function: drop anything that identifies a person or a date.
        identifying = [c for c in table.columns if c.lower() in {"name", "first_name", "last_name", "birthday", "birth_date", "dob", "date_of_birth"}]
        return table.drop(columns=identifying)

    @cached_property
    def sessions(self) -> pd.DataFrame:
        """participant_id, session_id, dose_mg_per_kg for every recording condition."""
        rows = [{"participant_id": f"sub-{r.subject}", "session_id": f"ses-{r.session}" if r.session else None,
                 "condition": r.condition, "dose_mg_per_kg": r.dose_mg_per_kg} for r in self.recordings]
        return pd.DataFrame(rows).drop_duplicates().reset_index(drop=True)

    @cached_property
    def _found_recordings(self) -> list[Recording]:
        from mne_bids import find_matching_paths

        eeg = self.manifest.eeg
        paths = find_matching_paths(self.root, tasks=eeg.task, datatypes="eeg", suffixes="eeg",
                                    extensions=list(EEG_EXTENSIONS), ignore_json=True)
        paths = [p for p in paths if "derivatives" not in Path(p.fpath).relative_to(self.root).parts]
        if not paths:
            raise ManifestError(f"{self.manifest.manifest_path}: no EEG recordings found under {self.root}"
                                + (f" for task {eeg.task!r}" if eeg.task else ""))
        found = [self._recording(p) for p in sorted(paths, key=lambda p: str(p.fpath))]
        self._check_exclusions(found)
        return found

    @cached_property
    def recordings(self) -> list[Recording]:
        """Every EEG recording of the study that the manifest does not exclude."""
        return [r for r in self._found_recordings if self.exclusion_reason(r) is None]

    @cached_property
    def excluded_recordings(self) -> list[tuple[Recording, str]]:
        """Recordings the manifest's ``exclude`` list leaves out, each with its reason."""
        return [(r, reason) for r in self._found_recordings if (reason := self.exclusion_reason(r)) is not None]

    def exclusion_reason(self, recording: Recording) -> str | None:
        for rule in self.manifest.exclude:
            if recording.key == rule.recording or recording.key.startswith(rule.recording + "_"):
                return rule.reason
        return None

    def _check_exclusions(self, found: list[Recording]) -> None:
        keys = [r.key for r in found]
        for i, rule in enumerate(self.manifest.exclude):
            if not any(k == rule.recording or k.startswith(rule.recording + "_") for k in keys):
                hint = difflib.get_close_matches(rule.recording, keys, 1)
                raise ManifestError(f"{self.manifest.manifest_path}: exclude[{i}].recording {rule.recording!r} matches no "
                                    "recording" + (f" — did you mean {hint[0]!r}?" if hint else ""))

    def _recording(self, bp) -> Recording:
        mapping = self.manifest.eeg.conditions
        entity_value = {"session": bp.session, "task": bp.task, "acquisition": bp.acquisition, "run": bp.run}[mapping.entity]
        condition = entity_value or "none"
        if mapping.source == "labels":
            if condition not in mapping.labels:
                hint = difflib.get_close_matches(condition, list(mapping.labels), 1)
                raise ManifestError(
                    f"{self.manifest.manifest_path}: eeg.conditions.labels has no dose for {mapping.entity} "
                    f"label {condition!r} (recording {Path(bp.fpath).name})" + (f" — did you mean {hint[0]!r}?" if hint else "")
                    + f"; known labels: {sorted(mapping.labels)}")
            dose = float("nan") if mapping.labels[condition] is None else float(mapping.labels[condition])
        else:
            dose = self._dose_from_sessions_tsv(bp.subject, bp.session, Path(bp.fpath))
        return Recording(bp.subject, bp.session, bp.task, bp.acquisition, bp.run, condition, dose, Path(bp.fpath))

    def _dose_from_sessions_tsv(self, subject: str, session: str | None, recording: Path) -> float:
        column = self.manifest.eeg.conditions.dose_column
        path = self.root / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
        if subject not in self._sessions_tables:
            if not path.is_file():
                raise ManifestError(f"{path}: missing; eeg.conditions.source is 'sessions_tsv', so every subject needs "
                                    f"a sessions.tsv with a {column!r} column (or use source: labels)")
            self._sessions_tables[subject] = pd.read_csv(path, sep="\t", dtype={"session_id": str}, na_values=["n/a"])
        table = self._sessions_tables[subject]
        if column not in table.columns:
            hint = difflib.get_close_matches(column, list(table.columns), 1)
            raise ManifestError(f"{path}: no column {column!r}" + (f" — did you mean {hint[0]!r}?" if hint else "")
                                + f"; columns are {list(table.columns)}")
        match = table[table["session_id"] == f"ses-{session}"]
        if len(match) != 1 or pd.isna(match[column].iloc[0]):
            raise ManifestError(f"{path}: no {column} for session ses-{session} (needed by {recording.name})")
        return float(match[column].iloc[0])

    def recording(self, key: str) -> Recording:
        for rec in self.recordings:
            if rec.key == key:
                return rec
        raise KeyError(f"no recording {key!r} in study {self.name!r}")

    def table_path(self, name: str) -> Path:
        return self.manifest.table_path(name)

    def truth(self) -> dict | None:
        import json

        path = self.manifest.truth_path
        return None if path is None or not path.is_file() else json.loads(path.read_text())
