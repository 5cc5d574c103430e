"""Reading BIDS EEG recordings (any format mne-bids reads) with errors that name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.core.errors import InputError


def read_raw(recording, root: Path, reader=None):
    """Read and preload one recording through mne-bids; a corrupted or truncated file is an InputError.

    ``reader``: the manifest's ``eeg.reader`` options (e.g. an EDF annotation encoding)."""
    import mne
    from mne_bids import read_raw_bids

    bids_path = recording.bids_path(root)
    extra = {}
    if reader is not None and reader.encoding and recording.path.suffix.lower() in (".edf", ".bdf"):
        extra["encoding"] = reader.encoding
    try:
        raw = read_raw_bids(bids_path, extra_params=extra or None, verbose="error")
        raw.load_data(verbose="error")
    except Exception as exc:  # mne raises many types for broken files; the user needs the file and the reason
        hint = (
            "; if the annotation channel is damaged, set eeg.reader.encoding (e.g. latin1) in the manifest"
            if "encoding" in str(exc)
            else ""
        )
        raise InputError(
            f"cannot read the EEG recording: {type(exc).__name__}: {exc}{hint}",
            file=str(recording.path),
            subject=f"sub-{recording.subject}",
            session=recording.session and f"ses-{recording.session}",
        ) from exc
    _check_complete(raw, recording)
    if reader is not None:
        _apply_reader_options(raw, recording, reader)
    n_bad = _count_nonfinite(raw)
    if n_bad is None:
        raise InputError(
            "the recording holds no EEG samples", file=str(recording.path), subject=f"sub-{recording.subject}"
        )
    if n_bad:
        raise InputError(
            f"the recording holds {n_bad} non-finite samples (NaN/inf): the file is corrupted",
            file=str(recording.path),
            subject=f"sub-{recording.subject}",
        )
    mne.set_log_level("error")
    return raw


def _count_nonfinite(raw) -> int | None:
    """Non-finite samples of the EEG channels (all channels if none is EEG) of a preloaded Raw; None when it
    holds no samples.  Reads the loaded array in place, one channel at a time (no copy of the recording):
    a finite sum proves every sample finite, and only a channel whose sum is not finite is counted."""
    import mne

    picks = mne.pick_types(raw.info, eeg=True) if "eeg" in raw else np.arange(len(raw.ch_names))
    if len(picks) == 0 or raw.n_times == 0:
        return None
    data = raw._data  # preloaded by read_raw
    n_bad = 0
    for i in picks:
        if not np.isfinite(data[i].sum()):
            n_bad += int((~np.isfinite(data[i])).sum())
    return n_bad


class ReaderOptionWarning(UserWarning):
    """A manifest reader option that does not apply to a recording (e.g. a channel it does not have)."""


def channel_renames(names: list[str], reader, file: str = "") -> dict[str, str]:
    """Old -> new channel names from ``eeg.reader.channel_name_pattern`` then ``rename_channels`` (only names
    that change). Two channels ending with one name is an :class:`InputError` naming both and the file."""
    import re
    import warnings

    from pipelines.core.errors import did_you_mean

    pattern = re.compile(reader.channel_name_pattern) if reader.channel_name_pattern else None
    new = {}
    for name in names:
        match = pattern.fullmatch(name) if pattern else None
        new[name] = match.group(1).strip() if match and match.group(1).strip() else name
    for name in sorted(set(reader.rename_channels) - set(new.values())):
        warnings.warn(
            f"{file}: eeg.reader.rename_channels names {name!r}, which this recording does not have"
            + did_you_mean(name, list(new.values())),
            ReaderOptionWarning,
            stacklevel=3,
        )
    new = {old: reader.rename_channels.get(name, name) for old, name in new.items()}
    seen: dict[str, str] = {}
    for old, name in new.items():
        if name.lower() in seen:
            raise InputError(
                f"channels {seen[name.lower()]!r} and {old!r} would both be named {name!r} after "
                "eeg.reader.channel_name_pattern / rename_channels",
                file=file,
                field="eeg.reader",
            )
        seen[name.lower()] = old
    return {old: name for old, name in new.items() if old != name}


def _apply_reader_options(raw, recording, reader) -> None:
    """Channel names, channel types and a montage from the manifest's ``eeg.reader`` (clinical labels such as
    'EEG Fp1-REF', files that store everything as EEG, or have no electrode positions)."""
    import warnings

    from pipelines.core.errors import did_you_mean

    where = dict(file=str(recording.path), subject=f"sub-{recording.subject}")
    if reader.channel_name_pattern or reader.rename_channels:
        renames = channel_renames(raw.ch_names, reader, str(recording.path))
        if renames:
            raw.rename_channels(renames, verbose="error")
    if reader.channel_types:
        present = {name: kind for name, kind in reader.channel_types.items() if name in raw.ch_names}
        for name in sorted(set(reader.channel_types) - set(present)):
            warnings.warn(
                f"{recording.path}: eeg.reader.channel_types names {name!r}, which this recording does not "
                "have" + did_you_mean(name, raw.ch_names),
                ReaderOptionWarning,
                stacklevel=3,
            )
        if present:
            raw.set_channel_types(present, on_unit_change="ignore", verbose="error")
    if reader.montage and not _has_positions(raw):
        import mne

        montage = mne.channels.make_standard_montage(reader.montage)
        eeg_names = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True)]
        known = {name.lower() for name in montage.ch_names}
        unknown = [name for name in eeg_names if name.lower() not in known]
        if len(unknown) == len(eeg_names):
            raise InputError(
                f"eeg.reader.montage {reader.montage!r} has none of this recording's EEG channels "
                f"({', '.join(eeg_names[:8])}{' …' if len(eeg_names) > 8 else ''})",
                **where,
            )
        if unknown:
            warnings.warn(
                f"{recording.path}: channels {unknown} are not in montage {reader.montage!r}: they get no "
                "position (no interpolation or map for them)",
                ReaderOptionWarning,
                stacklevel=3,
            )
        raw.set_montage(montage, match_case=False, on_missing="ignore", verbose="error")


def _has_positions(raw) -> bool:
    import mne

    picks = mne.pick_types(raw.info, eeg=True)
    locs = np.array([raw.info["chs"][i]["loc"][:3] for i in picks]) if len(picks) else np.zeros((0, 3))
    return bool(len(locs)) and bool(np.isfinite(locs).all()) and bool(np.any(np.abs(locs) > 0))


def _expected_edf_bytes(path: Path) -> int | None:
    """File size an EDF/BDF header promises: header bytes + records × samples per record × bytes per sample."""
    with open(path, "rb") as fh:
        header = fh.read(256)
        if len(header) < 256:
            return None
        try:
            header_bytes = int(header[184:192].decode("ascii").strip())
            n_records = int(header[236:244].decode("ascii").strip())
            n_signals = int(header[252:256].decode("ascii").strip())
        except ValueError:
            return None
        fh.seek(256 + n_signals * 216)
        samples = fh.read(n_signals * 8).decode("ascii", "replace")
    try:
        per_record = sum(int(samples[i * 8 : (i + 1) * 8].strip()) for i in range(n_signals))
    except ValueError:
        return None
    if n_records < 0:
        return None
    sample_bytes = 3 if header[0:1] == b"\xff" else 2  # BDF marks its first byte 0xFF and stores 24-bit samples
    return header_bytes + n_records * per_record * sample_bytes


def _check_complete(raw, recording) -> None:
    """Readers accept truncated files silently (BrainVision and EDF return fewer samples): compare what was
    read with what the file's own header and the BIDS sidecar promise, and say so when data are missing."""
    import json

    where = dict(
        file=str(recording.path),
        subject=f"sub-{recording.subject}",
        session=recording.session and f"ses-{recording.session}",
    )
    duration = raw.n_times / raw.info["sfreq"]
    sidecar = recording.path.with_name(recording.path.name.rsplit("_", 1)[0] + "_eeg.json")
    if sidecar.is_file():
        try:
            promised = json.loads(sidecar.read_text()).get("RecordingDuration")
        except json.JSONDecodeError:
            promised = None
        if isinstance(promised, (int, float)) and duration < promised - 2.0 / raw.info["sfreq"]:
            raise InputError(
                f"truncated recording: {duration:.3f} s of data, but {sidecar.name} says RecordingDuration "
                f"{promised} s",
                **where,
            )
    suffix = recording.path.suffix.lower()
    if suffix in (".edf", ".bdf"):
        expected = _expected_edf_bytes(recording.path)
        actual = recording.path.stat().st_size
        if expected is not None and actual < expected:
            raise InputError(
                f"truncated {suffix[1:].upper()} file: {actual} bytes, the header promises {expected}", **where
            )
    elif suffix == ".vhdr":
        data_file = recording.path.with_suffix(".eeg")
        n_channels = len(raw.ch_names)
        if data_file.is_file():
            header = recording.path.read_text(errors="replace")
            width = 4 if "IEEE_FLOAT_32" in header else 2 if "INT_16" in header else 4
            if data_file.stat().st_size % (n_channels * width):
                raise InputError(
                    f"truncated BrainVision data file {data_file.name}: its size is not a whole number of "
                    f"samples × {n_channels} channels",
                    **where,
                )
    end_events = [o for o in raw.annotations.onset if o > duration + 1.0 / raw.info["sfreq"]]
    if end_events:
        raise InputError(
            f"events at {end_events[0]:.1f} s lie beyond the end of the data ({duration:.1f} s): the file "
            "looks truncated",
            **where,
        )
    # Readers drop annotations that fall outside the data, so a file cut at a sample boundary loses its
    # infusion end without a word: compare with the BIDS events file itself.
    events = recording.path.with_name(recording.path.name.rsplit("_", 1)[0] + "_events.tsv")
    if events.is_file():
        import pandas as pd

        try:
            table = pd.read_csv(events, sep="\t", na_values=["n/a"])
        except Exception:  # an unreadable events file is mne-bids' to report; this check is only a safeguard
            table = None
        if table is not None and "onset" in table:
            onsets = pd.to_numeric(table["onset"], errors="coerce")
            late = table[onsets > duration + 1.0 / raw.info["sfreq"]]
            if len(late):
                name = late["trial_type"].iloc[0] if "trial_type" in late else "an event"
                raise InputError(
                    f"truncated recording: {events.name} has {name!r} at {float(late['onset'].iloc[0]):.2f} s "
                    f"(and {len(late) - 1} more beyond the end) but the data end at {duration:.2f} s",
                    **where,
                )


def infusion_time_sources(raw, start_event: str, end_event: str) -> dict[str, str]:
    """Where each infusion time of ``infusion_times`` comes from: "event" (the recording's own annotation)
    or "manifest" (the fixed time, used only when the event is absent).  The features cache keys a
    recording on the manifest's fixed times only when the recording uses them."""
    descriptions = set(raw.annotations.description)
    return {
        "start": "event" if start_event in descriptions else "manifest",
        "end": "event" if end_event in descriptions else "manifest",
    }


def infusion_times(
    raw,
    start_event: str,
    end_event: str,
    file: Path | str | None = None,
    default_start_s: float | None = None,
    default_end_s: float | None = None,
) -> tuple[float, float | None]:
    """Onsets (s from recording start) of infusion start and end, from the annotations (BIDS events),
    else the manifest's defaults.  The start is required (time is expressed relative to it); a missing end
    is allowed (None).  One event with a duration marks both (``events.tsv`` row ``infusion`` with onset and
    duration): when the end event is the start event, or is absent and the start event has a duration, the
    end is onset + duration."""
    descriptions = list(raw.annotations.description)
    onsets = raw.annotations.onset - (
        raw.first_samp / raw.info["sfreq"] if raw.annotations.orig_time is not None else 0.0
    )
    durations = raw.annotations.duration

    def find(event: str) -> tuple[float, float] | None:
        """(onset, duration) of the event's first occurrence."""
        hits = [(float(o), float(d)) for name, o, d in zip(descriptions, onsets, durations) if name == event]
        return hits[0] if hits else None

    first = find(start_event)
    start = first[0] if first else None
    if first and first[1] > 0 and (end_event == start_event or find(end_event) is None):
        return start, start + first[1]
    if start is None and default_start_s is not None:
        start = float(default_start_s)
    if start is None:
        available = sorted(set(descriptions))
        raise InputError(
            f"no {start_event!r} event: time is measured from infusion start. Events present: {available or 'none'}; "
            "set eeg.infusion_start_event in the manifest to the event that marks infusion start, or "
            "eeg.infusion_start_s to a fixed time",
            file=str(file) if file else None,
            field="eeg.infusion_start_event",
        )
    end = find(end_event)
    return start, end[0] if end is not None else default_end_s
