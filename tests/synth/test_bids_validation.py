"""Every dataset the workbench generates passes the official BIDS validator (bids-validator-deno) with no error."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import REPO

VALIDATOR = REPO / ".venv" / "bin" / "bids-validator-deno"


def validate(root) -> dict:
    exe = str(VALIDATOR) if VALIDATOR.exists() else shutil.which("bids-validator-deno")
    assert exe, "bids-validator-deno is part of the pinned environment (env/requirements.lock.txt)"
    proc = subprocess.run(
        [exe, str(root), "--format", "json", "--max-rows", "-1"], capture_output=True, text=True, timeout=600
    )
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def errors(report: dict) -> list[dict]:
    return [i for i in report["issues"]["issues"] if i["severity"] == "error"]


@pytest.mark.slow
def test_the_default_study_validates(default_study):
    found = errors(validate(default_study.root))
    assert not found, f"{len(found)} errors, e.g. {found[:3]}"


def test_the_validator_does_find_errors(tiny_copy):
    """The check can fail: a participants.tsv that repeats a participant is an error."""
    root = tiny_copy.parent / "bids"
    participants = root / "participants.tsv"
    lines = participants.read_text().splitlines()
    participants.write_text("\n".join(lines + [lines[1]]) + "\n")
    assert any(i["code"] == "TSV_INDEX_VALUE_NOT_UNIQUE" for i in errors(validate(root)))


def test_the_tiny_study_validates(tiny_copy):
    found = errors(validate(tiny_copy.parent / "bids"))
    assert not found, f"{len(found)} errors, e.g. {found[:3]}"


@pytest.mark.parametrize("manifest_name", ["mood_parallel.yml", "open_label.yml"])
def test_datasets_without_eeg_validate(manifest_name, tmp_path):
    """Phenotype-only datasets (a parallel mood trial, an open-label study) have a folder per participant, so
    the validator's participants.tsv check (PARTICIPANT_ID_MISMATCH) passes."""
    from pipelines.synth.__main__ import main as synth_main

    text = (REPO / "data_manifests" / manifest_name).read_text().split("\n# sha256")[0]
    path = tmp_path / manifest_name
    path.write_text(
        "\n".join("bids_root: bids" if line.startswith("bids_root:") else line for line in text.splitlines()) + "\n"
    )
    assert synth_main(["--manifest", str(path), "--no-progress"]) == 0
    found = errors(validate(tmp_path / "bids"))
    assert not found, f"{len(found)} errors, e.g. {found[:3]}"
