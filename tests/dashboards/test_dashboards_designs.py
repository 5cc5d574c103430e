"""The dashboards on designs they do not serve: a study without EEG, and EEG without an infusion window. The
server refuses to start with the one-line reason instead of a traceback from deep in the data layer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.study.manifest import freeze, load_manifest


def _mood_only_study(root) -> str:
    """Participants, sessions and a MADRS table; no EEG."""
    bids = root / "bids"
    (bids / "phenotype").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "mood", "BIDSVersion": "1.9.0"}))
    subjects = [f"sub-{i:02d}" for i in range(1, 5)]
    pd.DataFrame({"participant_id": subjects}).to_csv(bids / "participants.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    rows = [
        {"participant_id": s, "timepoint": tp} | {f"madrs_{i:02d}": int(rng.integers(0, 7)) for i in range(1, 11)}
        for s in subjects
        for tp in ("baseline", "24h")
    ]
    pd.DataFrame(rows).to_csv(bids / "phenotype" / "madrs.tsv", sep="\t", index=False)
    manifest = root / "mood.yml"
    manifest.write_text(
        "study: mood-only-dash\nbids_root: bids\nphenotype:\n  madrs: {path: phenotype/madrs.tsv, response_scale: [0, 6]}\n"
        "timepoints: [baseline, 24h]\n"
    )
    freeze(load_manifest(manifest))
    return str(manifest)


def test_a_study_without_eeg_is_refused_with_the_reason(tmp_path):
    from pipelines.dashboards import data, serve

    manifest = _mood_only_study(tmp_path)
    assert "no EEG recordings" in data.not_applicable(manifest)
    with pytest.raises(serve.ServeError, match="do not apply to study 'mood-only-dash': the study has no EEG"):
        serve.make_server(manifest, port=0)


def test_eeg_without_an_infusion_window_is_refused_with_the_reason(monkeypatch, default_study):
    """A resting pre/post study (no window before time zero): the reason is notebook 01's own."""
    from pipelines.analyses import eeg_entropy_dose
    from pipelines.dashboards import data, serve

    manifest = str(default_study.manifest.manifest_path)
    monkeypatch.setattr(eeg_entropy_dose, "has_infusion_window", lambda qc: (False, "no window before time zero"))
    assert data.not_applicable(manifest) == "no window before time zero"
    with pytest.raises(serve.ServeError, match="do not apply to study 'default': no window before time zero"):
        serve.make_server(manifest, port=0)


def test_first_view_points_a_parallel_arm_subject_to_the_condition_they_were_recorded_in(monkeypatch, default_study):
    """Parallel arms (one condition per subject): a subject shown in another arm's condition gets a link to
    their own, and blinded, the link and its text name the letter only."""
    import re
    import urllib.parse

    from pipelines.dashboards import blinding, data, overview
    from pipelines.dashboards.selection import Choices

    manifest = str(default_study.manifest.manifest_path)
    recs = data.recordings(manifest)
    # sub-01 recorded at 0.25 mg/kg only (as in a parallel arm); everyone else unchanged
    parallel = recs[(recs["participant_id"] != "sub-01") | np.isclose(recs["dose_mg_per_kg"], 0.25)]
    for blind in (None, blinding.for_study(manifest, "s" * 32)):
        choices = Choices(manifest, blind)
        monkeypatch.setattr(data, "recordings", lambda _m, table=parallel: table)
        selection = {**choices.defaults(), "subject": "sub-01", "dose": choices.conditions.value_of(1.0)}
        text = overview._elsewhere(choices, selection)
        label = choices.conditions.label(0.25)
        assert text.startswith(" Recorded in: <a href=") and text.endswith(f">{label}</a>."), text
        query = dict(
            urllib.parse.parse_qsl(re.search(r'href="explorer\?([^"]+)"', text).group(1).replace("&amp;", "&"))
        )
        assert query["subject"] == "sub-01" and query["dose"] == overview.safety.serialize(
            choices.conditions.value_of(0.25)
        )
        if blind is not None:
            assert "mg/kg" not in text and "0.25" not in text
        assert overview._elsewhere(choices, {**selection, "dose": choices.conditions.value_of(0.25)}) == ""
        monkeypatch.undo()
