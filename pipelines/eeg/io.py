"""Reading BIDS EEG recordings (any format mne-bids reads) with errors that name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.errors import InputError


def read_raw(recording, root: Path):
    """Read and preload one recording through mne-bids; a corrupted or truncated file is an InputError."""
    import mne
    from mne_bids import read_raw_bids

    bids_path = recording.bids_path(root)
    try:
        raw = read_raw_bids(bids_path, verbose="error")
        raw.load_data(verbose="error")
    except Exception as exc:  # mne raises many types for broken files; the user needs the file and the reason
        raise InputError(f"cannot read the EEG recording: {type(exc).__name__}: {exc}", file=str(recording.path),
                         subject=f"sub-{recording.subject}", session=recording.session and f"ses-{recording.session}") from exc
    data = raw.get_data(picks="eeg") if "eeg" in raw else raw.get_data()
    if data.size == 0:
        raise InputError("the recording holds no EEG samples", file=str(recording.path), subject=f"sub-{recording.subject}")
    if not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise InputError(f"the recording holds {n_bad} non-finite samples (NaN/inf): the file is corrupted",
                         file=str(recording.path), subject=f"sub-{recording.subject}")
    mne.set_log_level("error")
    return raw


def infusion_times(raw, start_event: str, end_event: str, file: Path | str | None = None) -> tuple[float, float | None]:
    """Onsets (s from recording start) of infusion start and end, from the annotations (BIDS events).

    The start is required (time is expressed relative to it); a missing end is allowed (None)."""
    descriptions = list(raw.annotations.description)
    onsets = raw.annotations.onset - (raw.first_samp / raw.info["sfreq"] if raw.annotations.orig_time is not None else 0.0)

    def find(event: str) -> float | None:
        hits = [o for d, o in zip(descriptions, onsets) if d == event]
        return float(hits[0]) if hits else None

    start = find(start_event)
    if start is None:
        available = sorted(set(descriptions))
        raise InputError(
            f"no {start_event!r} event: time is measured from infusion start. Events present: {available or 'none'}; "
            "set eeg.infusion_start_event in the manifest to the event that marks infusion start",
            file=str(file) if file else None, field="eeg.infusion_start_event")
    return start, find(end_event)
