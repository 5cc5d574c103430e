"""The kernels' numba cache is keyed on every kernel source: an edit of a callee's file cannot leave a caller's
compiled code (which embeds the callee) in use."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from numba.core.dispatcher import Dispatcher

from pipelines.eeg import kernels
from pipelines.eeg.kernels import _cache
from tests.conftest import REPO


def _cached_dispatchers():
    modules = [getattr(kernels, name) for name in ("common", "entropy", "fractal", "lempel_ziv", "lz_counts",
                                                   "lz_sparse", "measure_functions", "surrogates")]  # fmt: skip
    for module in modules:
        for name, obj in vars(module).items():
            if (
                isinstance(obj, Dispatcher)
                and obj.__module__ == module.__name__
                and obj._cache.__class__.__name__ != "NullCache"
            ):
                yield f"{module.__name__}.{name}", obj


def test_every_cached_kernel_lives_in_the_directory_of_the_current_sources():
    expected = str(_cache.cache_dir())
    found = dict(_cached_dispatchers())
    assert len(found) > 40  # every module's kernels, not a handful
    outside = {name: d._cache._cache_path for name, d in found.items() if not d._cache._cache_path.startswith(expected)}
    assert outside == {}


def test_the_hash_changes_with_any_kernel_file_and_only_with_them(tmp_path, monkeypatch):
    copy = tmp_path / "kernels"
    shutil.copytree(_cache._HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_cache, "_HERE", copy)
    original = _cache.source_hash()
    assert original == _cache.source_hash() and len(original) == 16
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.nbi").write_bytes(b"compiled")  # the cache itself is not a source
    (copy / "notes.txt").write_text("not python")
    assert _cache.source_hash() == original
    for name in ("lz_sparse.py", "common.py"):  # a callee deep down, a module everyone imports
        path = copy / name
        text = path.read_text()
        path.write_text(text + "\n# edited\n")
        assert _cache.source_hash() != original
        path.write_text(text)
        assert _cache.source_hash() == original
    (copy / "new_family.py").write_text("")
    assert _cache.source_hash() != original


def test_numba_cache_dir_is_honoured_and_restored_after_the_import(tmp_path):
    """With NUMBA_CACHE_DIR (a cluster's shared cache) the kernels go to kernels-<hash> inside it; numba's own
    setting is back to the user's after the import, so other numba code keeps its cache."""
    code = (
        "import json; from numba.core import config; before = config.CACHE_DIR\n"
        "from pipelines.eeg.kernels import lz_counts, _cache\n"
        "print(json.dumps([before, config.CACHE_DIR, lz_counts._lz76_auto._cache._cache_path, _cache.source_hash()]))"
    )
    shared = tmp_path / "shared-cache"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(shared)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    before, after, path, digest = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == after == str(shared)
    assert path.startswith(str(shared / f"kernels-{digest}"))
