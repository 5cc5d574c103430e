"""Which report section a warning belongs to, when one notebook cell runs a whole analysis.

A report's warnings table names the section each warning was raised under (``pipelines.make.reporting``
reads the notebook's headings).  When an analysis ``run()`` does every step in one cell, the steps say which
section they compute with :func:`report_section`: inside a report run (the runner sets ``KW_REPORT_SECTIONS``)
it writes a marker line to stderr before and after the step, which the runner reads and removes; elsewhere
(tests, dashboards, a console) it does nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ENV_VAR = "KW_REPORT_SECTIONS"
MARKER = "\x1fkw-report-section:"


@contextmanager
def report_section(title: str) -> Iterator[None]:
    """Attribute warnings raised inside to the report section ``title`` (a heading of the notebook)."""
    if not os.environ.get(ENV_VAR):
        yield
        return
    sys.stderr.write(f"{MARKER}{title}\n")
    sys.stderr.flush()
    try:
        yield
    finally:
        sys.stderr.write(f"{MARKER}\n")  # back to the heading of the cell itself
        sys.stderr.flush()
