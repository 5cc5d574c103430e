"""Channel positions from the standard 10-20 montage, by channel name (the topographies of report 01 and the
dashboards draw channels there)."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.eeg.preprocessing import STANDARD_MONTAGE


def standard_positions(channels: Iterable[str]) -> dict[str, tuple[float, float]]:
    """x, y (m, head coordinates) of each channel in :data:`STANDARD_MONTAGE`, matched case-insensitively;
    channels the montage does not name are left out."""
    import mne

    positions = mne.channels.make_standard_montage(STANDARD_MONTAGE).get_positions()["ch_pos"]
    lower = {name.lower(): pos for name, pos in positions.items()}
    return {
        str(c): (float(lower[str(c).lower()][0]), float(lower[str(c).lower()][1]))
        for c in channels
        if str(c).lower() in lower
    }
