"""Infusion start and end from a recording's events (pipelines.eeg.io.infusion_times)."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from pipelines.core.errors import InputError
from pipelines.eeg.io import infusion_times


def _raw(onsets, durations, names):
    raw = mne.io.RawArray(np.zeros((1, 128 * 100)), mne.create_info(["Cz"], 128.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations(onsets, durations, names))
    return raw


def test_one_infusion_event_with_a_duration_marks_start_and_end():
    """BIDS events often hold one row per infusion (onset, duration): the end is onset + duration, both when the
    manifest names the same event twice and when the end event is absent; explicit end events still win."""
    raw = _raw([10.0], [40.0], ["ketamine_infusion"])
    assert infusion_times(raw, "ketamine_infusion", "ketamine_infusion") == (10.0, 50.0)
    assert infusion_times(raw, "ketamine_infusion", "infusion_end") == (10.0, 50.0)
    raw = _raw([10.0, 45.0], [40.0, 0.0], ["ketamine_infusion", "infusion_end"])
    assert infusion_times(raw, "ketamine_infusion", "infusion_end") == (10.0, 45.0)


def test_point_events_and_defaults():
    raw = _raw([10.0], [0.0], ["infusion_start"])  # no duration, no end event: no end
    assert infusion_times(raw, "infusion_start", "infusion_end") == (10.0, None)
    assert infusion_times(raw, "infusion_start", "infusion_end", default_end_s=70.0) == (10.0, 70.0)
    with pytest.raises(InputError, match="Events present: \\['infusion_start'\\]"):
        infusion_times(raw, "drug_on", "drug_off", file="rec.edf")
