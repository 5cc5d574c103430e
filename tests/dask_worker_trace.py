"""Preload for the test workers (``dask worker --preload tests/dask_worker_trace.py``).

Every start of a recording's computation leaves ``<KW_TEST_TRACE_DIR>/<key>.<pid>.<ns>.start``, so a test can
count how often each recording was computed and by which worker process.  The recording named in
``<KW_TEST_TRACE_DIR>/hold`` waits (in flight, mid-task) until ``<KW_TEST_TRACE_DIR>/release`` exists: the test
kills that worker then, knowing exactly what was in flight.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipelines.eeg import features

TRACE = Path(os.environ["KW_TEST_TRACE_DIR"])
# Dask may import a preload file more than once (nanny and worker): wrap the original only.
_recording_features = getattr(features, "_untraced_recording_features", features.recording_features)
features._untraced_recording_features = _recording_features


def _traced(manifest, recording):
    (TRACE / f"{recording.key}.{os.getpid()}.{time.time_ns()}.start").touch()
    hold = TRACE / "hold"
    if hold.is_file() and hold.read_text().strip() == recording.key:
        deadline = time.monotonic() + 300
        while not (TRACE / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return _recording_features(manifest, recording)


features.recording_features = _traced
