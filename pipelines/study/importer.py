"""Bring your own data: a folder of EEG files and a spreadsheet become a BIDS dataset and a draft manifest.

    python -m pipelines.study.importer --raw DIR --table recordings.csv --out /path/to/bids --study NAME
                                 [--manifest data_manifests/NAME.yml] [--encoding latin1]

The spreadsheet (CSV, TSV or XLSX) has one row per recording; column names ignore case:

=================  ===========================================================================================
``file``           the recording, relative to ``--raw`` (EDF, BDF, BrainVision ``.vhdr``, FIF, EEGLAB ``.set``)
``subject``        pseudonymous participant identifier; non-alphanumerics are dropped, numbers zero-padded
``session``        optional session label (a visit); without it the condition is the session
``condition``      optional condition label (``placebo``, ``eyes_closed``, ``high``)
``dose_mg_per_kg`` optional dose of the recording's condition (written to each ``sub-XX_sessions.tsv``)
``arm``            optional between-subject arm of a parallel trial (written to ``participants.tsv``)
``task``           optional BIDS task label (default ``rest``)
``infusion_start_s``, ``infusion_end_s``  optional times from the recording start, written as events
=================  ===========================================================================================

Every recording is read with MNE and written with mne-bids (EDF/BDF/BrainVision/FIF/EEGLAB are kept in
their format; measurement dates are shifted into the past as mne-bids anonymisation does).  The dataset is
written to a temporary folder and renamed into place only when complete; an existing ``--out`` is never
overwritten.  The draft manifest maps conditions to doses, declares the events, and carries the checksums of
every file, so ``make all STUDY=...`` can run on it at once.  Errors name the spreadsheet row and file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError

READERS = {".edf": "edf", ".bdf": "bdf", ".vhdr": "brainvision", ".fif": "fif", ".set": "eeglab"}
COLUMNS = (
    "file",
    "subject",
    "session",
    "condition",
    "dose_mg_per_kg",
    "arm",
    "task",
    "infusion_start_s",
    "infusion_end_s",
)
REQUIRED = ("file", "subject")


def read_table(path: Path) -> pd.DataFrame:
    """The spreadsheet with lower-case column names, as text; unknown columns are an error (a typo, usually)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("spreadsheet not found", file=str(path))
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        table = pd.read_excel(path, dtype=str)
    else:
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
    table.columns = [str(c).strip().lower() for c in table.columns]
    unknown = [c for c in table.columns if c not in COLUMNS]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}; known: {list(COLUMNS)}", file=str(path))
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=str(path))
    if "session" not in table.columns and "condition" not in table.columns and len(table) > table["subject"].nunique():
        raise InputError("subjects have several recordings but there is no session or condition column", file=str(path))
    return table.apply(lambda col: col.str.strip() if col.dtype == object else col)


def bids_label(value: str, width: int = 0) -> str:
    """A BIDS label: letters and digits only; a number is zero-padded to ``width``."""
    label = re.sub(r"[^A-Za-z0-9]", "", str(value))
    if not label:
        raise ValueError(f"{value!r} has no letter or digit")
    return label.zfill(width) if label.isdigit() else label


def _number(value, what: str, where: dict) -> float | None:
    if (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or str(value).strip() in ("", "n/a", "NA", "nan")
    ):
        return None
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{what} {value!r} is not a number", field=what, **where) from None
    if not np.isfinite(number) or number < 0:
        raise InputError(f"{what} {value!r} must be a finite number >= 0", field=what, **where)
    return number


def plan_recordings(table: pd.DataFrame, raw_dir: Path, source: str) -> pd.DataFrame:
    """One row per recording with BIDS labels, the file to read and the numbers parsed (errors name the row)."""
    raw_dir = Path(raw_dir)
    numeric = table["subject"].dropna().map(lambda s: bids_label(s).isdigit())
    width = max(2, max((len(bids_label(s)) for s in table["subject"].dropna()), default=2)) if numeric.all() else 0
    rows = []
    for index, rec in table.iterrows():
        where = {"file": f"{source}, row {index + 2}"}  # +2: header line, 1-based rows
        if pd.isna(rec.get("file")) or pd.isna(rec.get("subject")):
            raise InputError("file and subject are required", **where)
        path = raw_dir / str(rec["file"])
        if path.suffix.lower() not in READERS:
            raise InputError(f"{path.name}: unsupported format; supported: {sorted(READERS)}", **where)
        if not path.is_file():
            raise InputError(f"{path} not found", **where)
        try:
            subject = bids_label(rec["subject"], width)
            condition = bids_label(rec["condition"]) if pd.notna(rec.get("condition")) else None
            session = bids_label(rec["session"]) if pd.notna(rec.get("session")) else condition
            task = bids_label(rec["task"]) if pd.notna(rec.get("task")) else "rest"
        except ValueError as exc:
            raise InputError(str(exc), **where) from None
        rows.append(
            {
                "row": index + 2,
                "path": path,
                "subject": subject,
                "session": session,
                "task": task,
                "condition": condition or session,
                "dose_mg_per_kg": _number(rec.get("dose_mg_per_kg"), "dose_mg_per_kg", where),
                "arm": rec.get("arm") if pd.notna(rec.get("arm")) else None,
                "infusion_start_s": _number(rec.get("infusion_start_s"), "infusion_start_s", where),
                "infusion_end_s": _number(rec.get("infusion_end_s"), "infusion_end_s", where),
            }
        )
    plan = pd.DataFrame(rows)
    duplicated = plan.duplicated(["subject", "session", "task"], keep=False)
    if duplicated.any():
        first = plan[duplicated].iloc[0]
        raise InputError(
            f"two recordings for sub-{first['subject']} session {first['session']} task {first['task']} "
            f"(rows {', '.join(str(r) for r in plan.loc[duplicated, 'row'])})",
            file=source,
        )
    arms = plan.dropna(subset=["arm"]).groupby("subject")["arm"].nunique()
    if (arms > 1).any():
        raise InputError(f"sub-{arms[arms > 1].index[0]} is in more than one arm", file=source)
    return plan


def _read(path: Path, encoding: str | None, preload: bool = True):
    import mne

    kind = READERS[path.suffix.lower()]
    try:
        if kind in ("edf", "bdf"):
            reader = mne.io.read_raw_edf if kind == "edf" else mne.io.read_raw_bdf
            return reader(path, preload=preload, verbose="error", encoding=encoding or "utf8")
        reader = {
            "brainvision": mne.io.read_raw_brainvision,
            "fif": mne.io.read_raw_fif,
            "eeglab": mne.io.read_raw_eeglab,
        }[kind]
        return reader(path, preload=preload, verbose="error")
    except Exception as exc:  # MNE raises many types; the user needs the file and the reason
        hint = (
            " (for EDF annotation errors try --encoding latin1)"
            if kind in ("edf", "bdf") and "encod" in str(exc)
            else ""
        )
        raise InputError(f"cannot read: {type(exc).__name__}: {exc}{hint}", file=str(path)) from exc


def import_study(
    raw_dir: Path,
    table_path: Path,
    out: Path,
    study: str,
    manifest_path: Path | None = None,
    encoding: str | None = None,
    line_freq: float = 50.0,
) -> Path:
    """Write the BIDS dataset to ``out`` (which must not exist) and, if asked, the draft manifest."""
    import mne
    from mne_bids import BIDSPath, make_dataset_description, write_raw_bids

    out = Path(out)
    if out.exists():
        raise InputError("the output folder exists; the importer never overwrites a dataset", file=str(out))
    plan = plan_recordings(read_table(table_path), raw_dir, str(table_path))
    daysback = _dataset_daysback(plan, encoding)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for rec in plan.itertuples(index=False):
            raw = _read(rec.path, encoding)
            if raw.info["line_freq"] is None:
                raw.info["line_freq"] = line_freq
            onsets, names = [], []
            for name, value in (("infusion_start", rec.infusion_start_s), ("infusion_end", rec.infusion_end_s)):
                if value is not None and not pd.isna(value):
                    if value > raw.times[-1]:
                        raise InputError(
                            f"{name} at {value} s is after the end of the recording ({raw.times[-1]:.2f} s)",
                            file=f"{table_path}, row {rec.row}",
                            field=f"{name}_s",
                        )
                    onsets.append(float(value))
                    names.append(name)
            if onsets:
                raw.set_annotations(
                    raw.annotations
                    + mne.Annotations(onsets, [0.0] * len(onsets), names, orig_time=raw.annotations.orig_time)
                )
            bids_path = BIDSPath(subject=rec.subject, session=rec.session, task=rec.task, datatype="eeg", root=tmp)
            try:
                write_raw_bids(
                    raw,
                    bids_path,
                    allow_preload=True,
                    format=_bids_format(rec.path),
                    overwrite=False,
                    anonymize={"daysback": daysback, "keep_his": False},
                    verbose="error",
                )
            except Exception as exc:
                raise InputError(
                    f"mne-bids could not write it: {type(exc).__name__}: {exc}", file=str(rec.path)
                ) from exc
        _write_sessions(tmp, plan)
        _write_participants(tmp, plan)
        make_dataset_description(
            path=tmp,
            name=f"{study} (imported by ketamine-workbench)",
            dataset_type="raw",
            authors=["ketamine-workbench importer"],
            overwrite=True,
            verbose=False,
        )
        _fix_readme(tmp, study)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if manifest_path is not None:
        write_draft_manifest(Path(manifest_path), out, study, plan)
    return out


# Dates are shifted into the past by one offset for the whole dataset (intervals between sessions are kept),
# landing the earliest recording on this date; the Raw/FIF date range forbids going much further back.
ANONYMISED_FIRST_DATE = "1925-01-01"


def _dataset_daysback(plan: pd.DataFrame, encoding: str | None) -> int:
    dates = [
        d for d in (_read(path, encoding, preload=False).info["meas_date"] for path in plan["path"]) if d is not None
    ]
    if not dates:
        return 0
    earliest = (
        pd.Timestamp(min(dates)).tz_convert(None) if pd.Timestamp(min(dates)).tzinfo else pd.Timestamp(min(dates))
    )
    return max(0, int((earliest - pd.Timestamp(ANONYMISED_FIRST_DATE)).days))


def _bids_format(path: Path) -> str:
    return {".edf": "EDF", ".bdf": "BDF", ".vhdr": "BrainVision", ".fif": "FIF", ".set": "EEGLAB"}[path.suffix.lower()]


def _write_sessions(root: Path, plan: pd.DataFrame) -> None:
    if plan["session"].isna().all():
        return
    for subject, part in plan.groupby("subject"):
        sessions = part.drop_duplicates("session")[["session", "condition", "dose_mg_per_kg"]].copy()
        sessions.insert(0, "session_id", "ses-" + sessions.pop("session"))
        if sessions["dose_mg_per_kg"].isna().all():
            sessions = sessions.drop(columns="dose_mg_per_kg")
        sessions.to_csv(
            root / f"sub-{subject}" / f"sub-{subject}_sessions.tsv",
            sep="\t",
            index=False,
            na_rep="n/a",
            lineterminator="\n",
        )
        sidecar = {"condition": {"Description": "Condition of the session (from the import spreadsheet)"}}
        if "dose_mg_per_kg" in sessions:
            sidecar["dose_mg_per_kg"] = {"Description": "Dose of the session's condition", "Units": "mg/kg"}
        (root / f"sub-{subject}" / f"sub-{subject}_sessions.json").write_text(json.dumps(sidecar, indent=2) + "\n")


def _write_participants(root: Path, plan: pd.DataFrame) -> None:
    # mne-bids wrote one row per participant (age/sex/hand unknown); add the arm of parallel trials.
    path = root / "participants.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)  # keep "n/a" as written
    if plan["arm"].notna().any():
        arms = plan.dropna(subset=["arm"]).drop_duplicates("subject").set_index("subject")["arm"]
        table["arm"] = table["participant_id"].str.removeprefix("sub-").map(arms).fillna("n/a")
        sidecar_path = root / "participants.json"
        sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
        sidecar["arm"] = {"Description": "Between-subject arm (from the import spreadsheet)"}
        sidecar_path.write_text(json.dumps(sidecar, indent=4) + "\n")
    table.to_csv(path, sep="\t", index=False, lineterminator="\n")


def _fix_readme(root: Path, study: str) -> None:
    readme = root / "README"
    if not readme.exists():
        readme.write_text(f"{study}: EEG recordings imported by ketamine-workbench (pipelines.study.importer).\n")


def write_draft_manifest(path: Path, bids_root: Path, study: str, plan: pd.DataFrame) -> Path:
    """A manifest that validates: conditions mapped to doses, events declared, checksums frozen."""
    from pipelines.study.manifest import freeze, load_manifest

    has_dose = plan["dose_mg_per_kg"].notna().any()
    lines = [
        f"# Draft manifest written by `python -m pipelines.study.importer` for {study}; review every field, then commit.",
        f"study: {study}",
        f"bids_root: {os.path.relpath(bids_root, path.parent)}",
        "",
        "eeg:",
        f"  task: {plan['task'].iloc[0] if plan['task'].nunique() == 1 else 'null  # several tasks: all are read'}",
        "  conditions:",
    ]
    if has_dose:
        lines += ["    source: sessions_tsv", "    dose_column: dose_mg_per_kg"]
    else:
        lines += [
            "    # No doses in the spreadsheet: conditions are labels (dose n/a); give doses here if they exist.",
            "    source: labels",
            "    entity: session",
            "    labels:",
        ]
        lines += [f"      {c}: null" for c in sorted(plan["condition"].dropna().unique())]
    if plan["infusion_start_s"].isna().all():
        lines += [
            "  # No infusion times in the spreadsheet: time zero is the recording start.",
            "  infusion_start_s: 0",
        ]
    lines += ["", "phenotype: {}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    freeze(load_manifest(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.study.importer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="folder of the EEG files named in the spreadsheet")
    parser.add_argument("--table", required=True, help="spreadsheet: CSV, TSV or XLSX, one row per recording")
    parser.add_argument("--out", required=True, help="BIDS root to create (must not exist)")
    parser.add_argument("--study", required=True, help="short study name (letters, digits, - _ .)")
    parser.add_argument("--manifest", help="where to write the draft manifest (e.g. data_manifests/NAME.yml)")
    parser.add_argument("--encoding", help="EDF/BDF annotation encoding, e.g. latin1 for damaged annotation channels")
    parser.add_argument("--line-freq", type=float, default=50.0, help="mains frequency when the files do not say")
    args = parser.parse_args(argv)
    from pipelines.study.manifest import ManifestError

    try:
        out = import_study(
            Path(args.raw),
            Path(args.table),
            Path(args.out),
            args.study,
            Path(args.manifest) if args.manifest else None,
            args.encoding,
            args.line_freq,
        )
    except (InputError, ManifestError) as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote the BIDS dataset {out}" + (f" and the draft manifest {args.manifest}" if args.manifest else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
