"""The steps that ``make`` runs, one command each (``python -m pipelines.make.build <step> <manifest> ...``).

Every step validates the manifest first.  Stamps are files holding a hash of everything a target
depends on (parameters, code, data checksum); they are rewritten only when the hash changes, so Make
reruns exactly the targets whose inputs really changed — file dates alone are not enough.

Steps:
    data      check every notebook's parameters in the manifest against its model; generate the study if the
              manifest has a generator and the data are absent or stale, then verify every checksum (a study
              that fails verification stops the build)
    stamp     write build/<study>/stamps/<target>.hash if its inputs changed
    notebook  run one notebook with papermill and publish its HTML report
    index     write reports/index.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from pipelines.core import codedeps
from pipelines.core.paths import NOTEBOOKS_DIR, REPO_ROOT, stamps_dir
from pipelines.study.manifest import Manifest, ManifestError, load_manifest, verify

# Targets other than notebooks, and the modules whose code they run.
STEP_MODULES = {
    "generator": {
        "pipelines.synth.study",
        "pipelines.synth.eeg",
        "pipelines.synth.phenotype",
        "pipelines.synth.designs",
    },
    "features": {"pipelines.eeg.features"},
    "figures": {"pipelines.dashboards.export"},
}
# Every notebook depends on the runner too: a change to how reports are made remakes them.
REPORT_MODULES = {"pipelines.make.reporting", "pipelines.core.provenance"}


def write_if_changed(path: Path, content: str) -> bool:
    """Write ``content`` only when it differs, so the file's date changes only when its content does."""
    if path.is_file() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(content)
    os.replace(tmp, path)
    return True


def _stamp_content(parts: dict) -> str:
    return json.dumps(parts, indent=1, sort_keys=True, default=str) + "\n"


def generator_stamp(manifest: Manifest) -> str:
    files = codedeps.module_closure(STEP_MODULES["generator"])
    return _stamp_content(
        {"generator": manifest.generator.model_dump(), "code": codedeps.hash_files(files), "lock": _lock_hash()}
    )


def _lock_hash() -> str:
    # Library versions change bytes (e.g. what mne-bids writes), so the pinned lock is an input too.
    return hashlib.sha256((REPO_ROOT / "env" / "requirements.lock.txt").read_bytes()).hexdigest()


def target_stamp(manifest: Manifest, target: str) -> str:
    """Hash inputs of a target: a notebook name or a step in STEP_MODULES."""
    if target in STEP_MODULES:
        # Dynamics parameters belong to notebook 01, not to the features: changing them must not recompute EEG.
        params = manifest.eeg.model_dump(mode="json", exclude={"dynamics"}) if target == "features" else {}
        if target == "figures":
            params = {"eeg": manifest.eeg.model_dump(mode="json"), "notebooks": manifest.notebooks}
        files = codedeps.module_closure(STEP_MODULES[target])
        return _stamp_content(
            {"target": target, "params": params, "code": codedeps.hash_files(files), "data": manifest.data_checksum()}
        )
    notebook = NOTEBOOKS_DIR / f"{target}.ipynb"
    if not notebook.is_file():
        raise ManifestError(f"no notebook or step named {target!r} (looked for {notebook})")
    files = sorted(set(codedeps.notebook_dependencies(notebook)) | set(codedeps.module_closure(REPORT_MODULES)))
    reads = NOTEBOOK_READS.get(target, ALL_READS)
    dumped = manifest.model_dump(mode="json")
    sections = {name: _section(dumped, name) for name in sorted(reads - {"eeg_data", "phenotype_data"})}
    data = {name: _data_checksum(manifest, name) for name in sorted(reads & {"eeg_data", "phenotype_data"})}
    return _stamp_content(
        {
            "target": target,
            "params": manifest.notebook_params(target),
            "notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(),
            "code": codedeps.hash_files(files),
            "manifest": sections,
            "data": data,
        }
    )


# What each report reads, so that a change elsewhere does not rerun it (an `eeg:` edit must not rerun the
# questionnaire report).  `eeg.design` is the part of `eeg` that says which sessions exist and their doses
# (task, conditions), which every report that groups by dose needs.  A notebook not listed reads everything.
# `design` holds the session-order column the dose models of 01, 02 and 04 read their crossover terms from.
ALL_READS = frozenset({"eeg", "phenotype", "timepoints", "truth", "exclude", "design", "eeg_data", "phenotype_data"})
NOTEBOOK_READS = {
    "00_study_overview": ALL_READS,
    "01_eeg_entropy_dose": frozenset({"eeg", "truth", "exclude", "design", "eeg_data"}),
    "02_peak_experience_mood": frozenset(
        {"eeg.design", "phenotype", "timepoints", "truth", "exclude", "design", "phenotype_data"}
    ),
    "03_cytokines": frozenset({"eeg.design", "phenotype", "timepoints", "truth", "exclude", "phenotype_data"}),
    "04_integrative_summary": ALL_READS,
    "05_mood_outcomes": frozenset({"eeg.design", "design", "phenotype", "timepoints", "exclude", "phenotype_data"}),
    "06_plasticity_window": ALL_READS,
}


# What each report needs from the study's design (Study.design.supports); a report whose needs are not met is
# replaced by a one-page note that says why, in one line, instead of failing.
NOTEBOOK_NEEDS = {
    "01_eeg_entropy_dose": ("eeg",),
    "02_peak_experience_mood": ("peak", "mood"),
    "03_cytokines": ("cytokines",),
    "04_integrative_summary": ("eeg", "peak", "mood"),
    "05_mood_outcomes": ("mood",),
    "06_plasticity_window": ("therapy", "mood"),
}


def notebook_not_applicable(manifest: Manifest, name: str) -> str | None:
    """The one-line reason a report does not apply to this study, or None."""
    from pipelines.study.dataset import Study

    design = Study(manifest).design
    for need in NOTEBOOK_NEEDS.get(name, ()):
        ok, reason = design.supports(need)
        if not ok:
            return reason
    return None


def write_not_applicable(manifest: Manifest, name: str, reason: str) -> Path:
    """A self-contained report page that says the report does not apply, and why (plus its provenance)."""
    import html

    from pipelines.core import provenance
    from pipelines.core.paths import reports_dir

    out_dir = reports_dir(manifest.study)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{name} — {manifest.study}: not applicable"
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><main><h1>{html.escape(title)}</h1><p>This report does not apply to this study: "
        f"{html.escape(reason)}.</p><p>Data checksum {manifest.data_checksum()[:16]}, git commit "
        f"{html.escape(provenance.git_commit())}, written {provenance.utc_now()}.</p></main></body></html>\n"
    )
    meta = {
        "notebook": name,
        "study": manifest.study,
        "status": "not_applicable",
        "reason": reason,
        "manifest": provenance.relative_path(manifest.manifest_path),
        "title": f"{name} (not applicable)",
        "data_checksum": manifest.data_checksum(),
        "git_commit": provenance.git_commit(),
        "started_utc": provenance.utc_now(),
    }
    write_if_changed(out_dir / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    path = out_dir / f"{name}.html"
    write_if_changed(path, page)
    return path


def _section(dumped: dict, name: str):
    if name == "eeg.design":
        return {k: dumped["eeg"][k] for k in ("task", "conditions")}
    return dumped.get(name)


def _data_checksum(manifest: Manifest, part: str) -> str:
    """Checksum of the data a report reads: EEG files, or phenotype tables with the session layout.

    A phenotype-only report still sees which recordings exist (their names decide the sessions), but not
    their contents."""
    digest = hashlib.sha256(part.encode())
    for rel in sorted(manifest.checksums):
        tabular = rel.startswith("phenotype/") or rel.startswith("participants.") or "_sessions." in rel
        if part == "eeg_data" and not rel.startswith("phenotype/"):
            digest.update(f"{rel}\t{manifest.checksums[rel]}\n".encode())
        elif part == "phenotype_data":
            digest.update(f"{rel}\t{manifest.checksums[rel] if tabular else ''}\n".encode())
    return digest.hexdigest()


def _generate(manifest: Manifest, stamp: Path) -> int:
    from pipelines.synth.__main__ import main as synth_main

    print(f"Generating the synthetic study {manifest.study!r} into {manifest.bids_path}", flush=True)
    code = synth_main(["--manifest", str(manifest.manifest_path)])
    if not code:
        write_if_changed(stamp, generator_stamp(manifest))
    return code


def machine_summary() -> str:
    """CPU, BLAS kernel and thread settings: what a report of a non-reproducible result needs."""
    import platform

    parts = [platform.machine(), platform.processor() or "cpu?"]
    try:
        from threadpoolctl import threadpool_info

        parts += [
            f"{i.get('internal_api')} {i.get('architecture', '')} {i.get('num_threads')} threads"
            for i in threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional here: the summary is a courtesy
        pass
    parts += [f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith(("OPENBLAS_", "NPY_", "NUMBA_"))]
    return ", ".join(p for p in parts if p)


def step_data(manifest: Manifest) -> int:
    from pipelines.make.reporting import NotebookFailed, check_all_parameters

    try:  # the first step: a bad notebook parameter stops the build before any data are made
        check_all_parameters(manifest)
    except NotebookFailed as exc:
        print(exc, file=sys.stderr)
        return 2
    stamp = stamps_dir(manifest.study) / "generator.hash"
    generated = False
    if manifest.generator is not None:
        have = stamp.read_text() if stamp.is_file() else None
        if not manifest.bids_path.is_dir() or have != generator_stamp(manifest):
            code = _generate(manifest, stamp)
            if code:
                return code
            generated = True
    if not manifest.checksums:
        print(
            f"{manifest.manifest_path}: has no checksums yet; run `make freeze STUDY={manifest.manifest_path}` "
            "once, check the data, and commit the manifest.",
            file=sys.stderr,
        )
        return 1
    report = verify(manifest)
    if not report.ok and manifest.generator is not None and not generated:
        # Generated data are disposable: a file edited or half-copied by hand is simply made again.
        print(
            report.describe(manifest).split("\n", 1)[0] + f" ({len(report.mismatched)} differ, {len(report.missing)} "
            f"missing, {len(report.extra)} extra); regenerating the synthetic study once",
            flush=True,
        )
        code = _generate(manifest, stamp)
        if code:
            return code
        generated = True
        report = verify(manifest)
    if not report.ok:
        message = report.describe(manifest)
        if generated:
            message += (
                "\nThe generator has just written these files, so it is not reproducible on this machine "
                f"({machine_summary()}): please report it as a bug with this message."
            )
        print(message, file=sys.stderr)
        (stamps_dir(manifest.study) / "data.hash").unlink(missing_ok=True)
        return 1
    print(report.describe(manifest))
    write_if_changed(stamps_dir(manifest.study) / "data.hash", manifest.data_checksum() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.make.build", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("data")
    p.add_argument("manifest")
    p = sub.add_parser("stamp")
    p.add_argument("manifest")
    p.add_argument("targets", nargs="+")
    p = sub.add_parser("notebook")
    p.add_argument("manifest")
    p.add_argument("name")
    sub.add_parser("index")
    p = sub.add_parser("figures", help="offline HTML of the dashboards' key figures into reports/<study>/figures")
    p.add_argument("manifest")
    args = parser.parse_args(argv)

    if args.step == "index":
        from pipelines.make.reporting import write_index

        print(f"Wrote {write_index()}")
        return 0
    try:
        manifest = load_manifest(args.manifest)
        if args.step == "data":
            return step_data(manifest)
        if args.step == "stamp":
            for target in args.targets:
                changed = write_if_changed(
                    stamps_dir(manifest.study) / f"{target}.hash", target_stamp(manifest, target)
                )
                if changed:
                    print(f"  inputs of {target} changed")
            return 0
        if args.step == "figures":
            from pipelines.core.paths import reports_dir
            from pipelines.dashboards.export import export_static
            from pipelines.study.dataset import Study

            out = reports_dir(manifest.study) / "figures"
            study = Study(manifest)
            reason = None
            if not study.recordings or not (reports_dir(manifest.study) / "01_eeg_entropy_dose.ipynb").exists():
                reason = "the study has no EEG recordings (or no EEG report)"
            else:
                from pipelines.analyses.eeg_entropy_dose import has_infusion_window
                from pipelines.eeg.features import read_qc

                timing_ok, timing_reason = has_infusion_window(read_qc(study))
                reason = None if timing_ok else timing_reason
            if reason:
                out.mkdir(parents=True, exist_ok=True)
                (out / ".done").write_text(f"no offline EEG figures: {reason}\n")
                print(f"No offline EEG figures (time courses around an infusion): {reason}")
                return 0
            written = export_static(study, out)
            (out / ".done").write_text("\n".join(p.name for p in written) + "\n")
            print(f"Wrote {len(written)} offline figure files to {out}")
            return 0
        if args.step == "notebook":
            from pipelines.make.reporting import NotebookFailed, run_notebook

            reason = notebook_not_applicable(manifest, args.name)
            if reason:
                out = write_not_applicable(manifest, args.name, reason)
                print(f"{args.name} does not apply to study {manifest.study!r}: {reason} (wrote {out})")
                return 0

            try:
                out = run_notebook(args.name, manifest)
            except NotebookFailed as exc:
                print(exc, file=sys.stderr)
                return 1
            print(f"Wrote {out}")
            return 0
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
