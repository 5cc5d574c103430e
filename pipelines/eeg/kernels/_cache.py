"""Where the kernels' numba cache lives: a directory named after a hash of every kernel source file.

numba's ``cache=True`` checks only the timestamp and size of the file a function is defined in. A kernel's
compiled code also holds the numba functions it calls from other files (``lempel_ziv`` calls ``lz_counts``,
which calls ``lz_sparse``; ``surrogates`` calls ``lz_counts``...), so after an edit of a callee's file, or a
``git pull`` that changes only it, the caller's cache entry would still load and run the old callee: a cache
serving a result whose inputs changed. Keying the directory on the sources of the whole package makes any
change to any kernel file start a fresh cache (compiled once, as on a fresh clone); unchanged code finds
its cache again, on this machine or, with ``NUMBA_CACHE_DIR`` on a shared filesystem, on a cluster's nodes.
numba itself keys each entry on the function's signature and the CPU it was compiled for.

The directory is ``$NUMBA_CACHE_DIR/kernels-<hash>`` when the variable is set, else
``pipelines/eeg/kernels/__pycache__/numba-<hash>``. It is set only while the package imports its modules
(numba picks a function's cache directory when it is decorated) and restored afterwards, so other numba code
in the process keeps its own cache. Directories of older sources are left in place (delete them freely).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def source_hash() -> str:
    """sha256 (first 16 hex digits) over the names and bytes of every ``.py`` file of this package."""
    digest = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """The numba cache directory of the current kernel sources."""
    shared = os.environ.get("NUMBA_CACHE_DIR")
    base = Path(shared) if shared else _HERE / "__pycache__"
    return base / f"{'kernels' if shared else 'numba'}-{source_hash()}"


class keyed_cache:
    """Context manager: numba's cache directory is :func:`cache_dir` inside, the previous one after."""

    def __enter__(self) -> Path:
        from numba.core import config

        self._previous = config.CACHE_DIR
        path = cache_dir()
        config.CACHE_DIR = str(path)
        return path

    def __exit__(self, *exc) -> None:
        from numba.core import config

        config.CACHE_DIR = self._previous
