"""A study: the manifest plus what it points at — subjects, recordings, doses, tables.

This is the one place that turns a manifest into paths.  Everything downstream asks the Study.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from pipelines.core.errors import did_you_mean
from pipelines.core.labels import condition_order_key
from pipelines.study.manifest import Manifest, ManifestError, load_manifest

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

        return BIDSPath(
            subject=self.subject,
            session=self.session,
            task=self.task,
            acquisition=self.acquisition,
            run=self.run,
            datatype="eeg",
            suffix="eeg",
            extension=self.path.suffix,
            root=root,
        )


PEAK_SCALES = ("meq30", "asc5d", "asc11d")
MOOD_SCALES = ("madrs", "hamd17", "qids_sr16", "bdi_ii")


@dataclass(frozen=True)
class Design:
    """What a study holds and how it is laid out (from the manifest's ``design`` section and the data).

    ``conditions``: (label, dose in mg/kg or NaN) in analysis order, placebo/lowest dose first.
    ``tables``: granularity of each phenotype table: ``subject``, ``session``, ``timepoint`` or
    ``session_timepoint`` (which key columns it has)."""

    kind: str
    conditions: tuple[tuple[str, float], ...]
    arms: tuple[str, ...]
    has_eeg: bool
    tables: dict

    @property
    def blocks(self) -> tuple[str, ...]:
        found = ["eeg"] if self.has_eeg else []
        found += ["peak"] if any(t in self.tables for t in PEAK_SCALES) else []
        found += ["mood"] if any(t in self.tables for t in MOOD_SCALES) else []
        found += ["cytokines"] if "cytokines" in self.tables else []
        found += ["therapy"] if "therapy" in self.tables else []
        return tuple(found)

    @property
    def doses(self) -> list[float]:
        return sorted({d for _, d in self.conditions if d == d})  # NaN != NaN: conditions without a dose drop out

    def supports(self, analysis: str) -> tuple[bool, str]:
        """Whether an analysis applies, and if not, the one line that says why."""
        n_cond, n_dose = len(self.conditions), len(self.doses)
        instead = (
            ""
            if n_cond != 2
            else "; between-arm comparison instead"
            if self.kind == "parallel"
            else "; paired contrast instead"
        )
        rules = {
            "eeg": (self.has_eeg, "no EEG recordings in this study"),
            "peak": (
                "peak" in self.blocks,
                "no peak-experience questionnaire (MEQ30, 5D-ASC, 11D-ASC) in the manifest",
            ),
            "mood": ("mood" in self.blocks, "no mood scale (MADRS, HAM-D17, QIDS-SR16, BDI-II) in the manifest"),
            "cytokines": ("cytokines" in self.blocks, "no cytokine table in the manifest"),
            "therapy": (
                "therapy" in self.blocks,
                "no therapy-session table (phenotype: therapy:) in the manifest: "
                "the timing of integration sessions is unknown",
            ),
            "dose_trend": (
                n_dose >= 3,
                f"{n_cond} condition(s), {n_dose} dose level(s): a dose trend needs 3 or more doses{instead}",
            ),
            "paired_contrast": (
                n_cond == 2 and self.kind in ("crossover", "pre_post"),
                "paired contrast needs exactly two conditions within each participant",
            ),
            "between_arms": (len(self.arms) >= 2, "no arms: not a parallel-group trial"),
            "integrative": (
                len(self.blocks) >= 2,
                f"one data block only ({', '.join(self.blocks) or 'none'}): nothing to integrate",
            ),
        }
        if analysis not in rules:
            raise KeyError(f"unknown analysis {analysis!r}; known: {sorted(rules)}")
        ok, reason = rules[analysis]
        return bool(ok), "" if ok else reason


def _within_subject_kind(doses) -> str:
    """``pre_post`` when the conditions within participants are drug-free recordings (no dose: before the
    infusion, eyes closed...) and exactly one active dose, with no placebo: an uncontrolled before/after
    design, not a crossover (nothing is randomised and time is confounded with treatment); else ``crossover``."""
    doses = list(doses)
    given = [float(d) for d in doses if d is not None and d == d]  # NaN != NaN: no dose
    active = {d for d in given if d > 0}
    drug_free = len(given) < len(doses)
    return "pre_post" if drug_free and len(active) == 1 and 0.0 not in given else "crossover"


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
        identifying = [
            c
            for c in table.columns
            if c.lower() in {"name", "first_name", "last_name", "birthday", "birth_date", "dob", "date_of_birth"}
        ]
        return table.drop(columns=identifying)

    @cached_property
    def sessions(self) -> pd.DataFrame:
        """participant_id, session_id, dose_mg_per_kg for every recording condition."""
        rows = [
            {
                "participant_id": f"sub-{r.subject}",
                "session_id": f"ses-{r.session}" if r.session else None,
                "condition": r.condition,
                "dose_mg_per_kg": r.dose_mg_per_kg,
            }
            for r in self.recordings
        ]
        if not rows:  # no EEG: the sessions that sessions.tsv files or the phenotype tables list
            rows = self._sessions_without_eeg()
        columns = ["participant_id", "session_id", "condition", "dose_mg_per_kg"]
        return pd.DataFrame(rows, columns=columns).drop_duplicates().reset_index(drop=True)

    def _sessions_without_eeg(self) -> list[dict]:
        rows = []
        for path in sorted(self.root.glob("sub-*/sub-*_sessions.tsv")):
            table = pd.read_csv(path, sep="\t", dtype={"session_id": str}, na_values=["n/a"])
            for session_id in table.get("session_id", pd.Series(dtype=str)).dropna():
                label = str(session_id).removeprefix("ses-")
                rows.append(
                    {
                        "participant_id": path.parent.name,
                        "session_id": f"ses-{label}",
                        "condition": label,
                        "dose_mg_per_kg": self._session_dose(label),
                    }
                )
        if rows:
            return rows
        for name in self.manifest.phenotype:
            path = self.table_path(name)
            if path.is_file() and self._granularity(name).startswith("session"):
                table = pd.read_csv(
                    path,
                    sep="\t" if path.suffix != ".csv" else ",",
                    usecols=["participant_id", "session_id"],
                    dtype=str,
                )
                for participant, session_id in table.dropna().drop_duplicates().itertuples(index=False):
                    label = session_id.removeprefix("ses-")
                    rows.append(
                        {
                            "participant_id": participant if participant.startswith("sub-") else f"sub-{participant}",
                            "session_id": f"ses-{label}",
                            "condition": label,
                            "dose_mg_per_kg": self._session_dose(label),
                        }
                    )
        return rows

    @cached_property
    def _found_recordings(self) -> list[Recording]:
        eeg = self.manifest.eeg
        paths = self._eeg_paths(eeg.task)
        if not paths and eeg.task is not None and (other := self._eeg_paths(None)):
            tasks = sorted({p.task for p in other if p.task})
            raise ManifestError(
                f"{self.manifest.manifest_path}: no EEG recording of task {eeg.task!r} under {self.root}"
                + did_you_mean(eeg.task, tasks)
                + f"; tasks present: {tasks}"
            )
        if not paths:
            return []  # a study without EEG (mood-only trials): the EEG analyses say they do not apply
        found = [self._recording(p) for p in sorted(paths, key=lambda p: str(p.fpath))]
        self._check_exclusions(found)
        return found

    def _eeg_paths(self, task):
        from mne_bids import find_matching_paths

        if not self.root.is_dir():
            raise ManifestError(f"{self.manifest.manifest_path}: bids_root {self.root} does not exist")
        paths = find_matching_paths(
            self.root, tasks=task, datatypes="eeg", suffixes="eeg", extensions=list(EEG_EXTENSIONS), ignore_json=True
        )
        return [p for p in paths if "derivatives" not in Path(p.fpath).relative_to(self.root).parts]

    @cached_property
    def design(self) -> Design:
        """The study's layout: declared kind or inferred (arms → parallel; several conditions per participant →
        crossover, or pre_post when they are drug-free recordings and one active dose with no placebo; else
        open label)."""
        declared = self.manifest.design
        conditions: dict[str, float] = {}
        per_subject: dict[str, set] = {}
        for rec in self.recordings:
            conditions.setdefault(rec.condition, rec.dose_mg_per_kg)
            per_subject.setdefault(rec.subject, set()).add(rec.condition)
        if not conditions:  # no EEG: sessions as the phenotype tables and sessions.tsv list them
            for label in self._phenotype_sessions():
                conditions.setdefault(label, self._session_dose(label))
        # Placebo, then drug-free conditions (no dose) in the order the manifest's labels list them, then doses.
        declared_order = list(self.manifest.eeg.conditions.labels)
        position = {label: i for i, label in enumerate(declared_order)}
        ordered = tuple(
            sorted(
                conditions.items(),
                key=lambda kv: (*condition_order_key(kv[1]), position.get(kv[0], len(position)), kv[0]),
            )
        )
        arms: tuple[str, ...] = ()
        arm_column = declared.arm_column or ("arm" if "arm" in self.participants.columns else None)
        if arm_column is not None:
            if arm_column not in self.participants.columns:
                raise ManifestError(
                    f"{self.manifest.manifest_path}: design.arm_column {arm_column!r} is not a column of "
                    f"participants.tsv; columns: {list(self.participants.columns)}"
                )
            arms = tuple(sorted(self.participants[arm_column].dropna().astype(str).unique()))
        kind = declared.kind or (
            "parallel"
            if len(arms) >= 2
            else _within_subject_kind(conditions.values())
            if any(len(c) >= 2 for c in per_subject.values())
            else "open_label"
        )
        tables = {name: self._granularity(name) for name in self.manifest.phenotype}
        return Design(kind=kind, conditions=ordered, arms=arms, has_eeg=bool(self.recordings), tables=tables)

    def _granularity(self, name: str) -> str:
        path = self.table_path(name)
        if not path.is_file():
            return "missing"
        header = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
        columns = {c.strip().lower() for c in header.replace(",", "\t").split("\t")}
        has_session, has_time = "session_id" in columns, "timepoint" in columns
        return {
            (False, False): "subject",
            (True, False): "session",
            (False, True): "timepoint",
            (True, True): "session_timepoint",
        }[(has_session, has_time)]

    def _phenotype_sessions(self) -> list[str]:
        labels = set()
        for name in self.manifest.phenotype:
            path = self.table_path(name)
            if path.is_file() and self._granularity(name).startswith("session"):
                column = pd.read_csv(
                    path, sep="\t" if path.suffix != ".csv" else ",", usecols=["session_id"], dtype=str
                )
                labels |= {s.removeprefix("ses-") for s in column["session_id"].dropna()}
        return sorted(labels)

    def _session_dose(self, label: str) -> float:
        mapping = self.manifest.eeg.conditions
        if mapping.source == "labels":
            value = mapping.labels.get(label)
            return float("nan") if value is None else float(value)
        return self._doses_by_session_label.get(label, float("nan"))

    @cached_property
    def _doses_by_session_label(self) -> dict[str, float]:
        """Session label -> dose, from every subject's sessions.tsv (read once; the first stated dose wins)."""
        column, doses = self.manifest.eeg.conditions.dose_column, {}
        for path in sorted(self.root.glob("sub-*/sub-*_sessions.tsv")):
            table = pd.read_csv(path, sep="\t", dtype={"session_id": str}, na_values=["n/a"])
            if column in table:
                for session_id, dose in zip(table["session_id"], table[column]):
                    if pd.notna(dose):
                        doses.setdefault(str(session_id).removeprefix("ses-"), float(dose))
        return doses

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
                raise ManifestError(
                    f"{self.manifest.manifest_path}: exclude[{i}].recording {rule.recording!r} matches no "
                    "recording" + did_you_mean(rule.recording, keys)
                )

    def _recording(self, bp) -> Recording:
        mapping = self.manifest.eeg.conditions
        entity_value = {"session": bp.session, "task": bp.task, "acquisition": bp.acquisition, "run": bp.run}[
            mapping.entity
        ]
        condition = entity_value or "none"
        if mapping.source == "labels":
            if condition not in mapping.labels:
                raise ManifestError(
                    f"{self.manifest.manifest_path}: eeg.conditions.labels has no dose for {mapping.entity} "
                    f"label {condition!r} (recording {Path(bp.fpath).name})"
                    + did_you_mean(condition, list(mapping.labels))
                    + f"; known labels: {sorted(mapping.labels)}"
                )
            dose = float("nan") if mapping.labels[condition] is None else float(mapping.labels[condition])
        else:
            dose = self._dose_from_sessions_tsv(bp.subject, bp.session, Path(bp.fpath))
        return Recording(bp.subject, bp.session, bp.task, bp.acquisition, bp.run, condition, dose, Path(bp.fpath))

    def _dose_from_sessions_tsv(self, subject: str, session: str | None, recording: Path) -> float:
        column = self.manifest.eeg.conditions.dose_column
        path = self.root / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
        if subject not in self._sessions_tables:
            if not path.is_file():
                raise ManifestError(
                    f"{path}: missing; eeg.conditions.source is 'sessions_tsv', so every subject needs "
                    f"a sessions.tsv with a {column!r} column (or use source: labels)"
                )
            self._sessions_tables[subject] = pd.read_csv(path, sep="\t", dtype={"session_id": str}, na_values=["n/a"])
        table = self._sessions_tables[subject]
        if column not in table.columns:
            raise ManifestError(
                f"{path}: no column {column!r}"
                + did_you_mean(column, table.columns)
                + f"; columns are {list(table.columns)}"
            )
        match = table[table["session_id"] == f"ses-{session}"]
        if len(match) != 1 or pd.isna(match[column].iloc[0]):
            raise ManifestError(f"{path}: no {column} for session ses-{session} (needed by {recording.name})")
        return float(match[column].iloc[0])

    @cached_property
    def session_order(self) -> pd.DataFrame | None:
        """The crossover schedule when the manifest declares ``design.session_order_column``, else None.

        One row per session listed in a ``sub-XX_sessions.tsv``: ``participant_id``, ``session_id``,
        ``dose_mg_per_kg``, ``session_order`` (as recorded), ``period`` (1..K: rank of the order within the
        participant), ``sequence`` (the participant's doses in period order, ``/``-joined) and
        ``carryover_dose`` (the previous period's dose, 0 in period 1); see
        :func:`pipelines.stats.crossover.crossover_terms`. A missing column, a session without an order
        or a tie within a participant is a ManifestError naming the file."""
        from pipelines.stats.crossover import crossover_terms

        column = self.manifest.design.session_order_column
        if not column:
            return None
        paths = sorted(self.root.glob("sub-*/sub-*_sessions.tsv"))
        if not paths:
            raise ManifestError(
                f"{self.manifest.manifest_path}: design.session_order_column is {column!r}, but no "
                f"sub-XX_sessions.tsv exists under {self.root}"
            )
        parts = []
        for path in paths:
            table = pd.read_csv(path, sep="\t", dtype={"session_id": str}, na_values=["n/a"])
            if column not in table.columns:
                raise ManifestError(
                    f"{path}: no column {column!r} (design.session_order_column)"
                    + did_you_mean(column, table.columns)
                    + f"; columns are {list(table.columns)}"
                )
            if table[column].isna().any():
                row = int(table.index[table[column].isna()][0]) + 2  # +1 header, +1 one-based
                raise ManifestError(f"{path}: line {row}: no {column} for session {table.loc[row - 2, 'session_id']}")
            labels = table["session_id"].str.removeprefix("ses-")
            parts.append(
                pd.DataFrame(
                    {
                        "participant_id": path.name.split("_")[0],
                        "session_id": table["session_id"],
                        "dose_mg_per_kg": [self._session_dose(lab) for lab in labels],
                        "session_order": table[column],
                    }
                )
            )
        order = pd.concat(parts, ignore_index=True)
        try:
            return crossover_terms(order, "participant_id", "session_order", "dose_mg_per_kg")
        except ValueError as exc:
            raise ManifestError(
                f"{self.manifest.manifest_path}: design.session_order_column {column!r}: {exc}"
            ) from None

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
