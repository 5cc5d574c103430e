"""Generated data and derived features do not depend on the CPU, the BLAS kernel, SIMD paths or thread counts.

CI runs on one machine, so it cannot see another CPU.  These tests make other machines inside this one: each
variant runs in its own interpreter with another OpenBLAS kernel (``OPENBLAS_CORETYPE``), NumPy's runtime SIMD
dispatch switched off (``NPY_DISABLE_CPU_FEATURES``), Numba compiled for a generic CPU (``NUMBA_CPU_NAME``) and
other thread counts.  Each variant checks that the setting really took effect (threadpoolctl, numpy's feature
table) before its result counts.

* The generator: every file's sha256 is identical across variants and equal to the checksums frozen in
  ``tests/manifests/determinism.yml``; the full default study, regenerated under the most different variant,
  verifies against ``data_manifests/default.yml``.
* Derived EEG features: equal across variants within ``FEATURE_RTOL`` (not bitwise: filters, FFTs and fits
  use kernels that legitimately round differently), with identical NaN patterns and rejected windows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEFAULT_MANIFEST, REPO

SMALL_MANIFEST = REPO / "tests" / "manifests" / "determinism.yml"
# Largest relative difference of any feature value between variants (measured: see test output); far below
# any effect a report interprets (a 0.1 dB alpha change is 2.3e-2 relative).
FEATURE_RTOL = 1e-6


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _numpy_dispatch() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return list(__cpu_dispatch__)


def variants() -> dict[str, dict[str, str]]:
    """Environment settings that make this machine compute like other ones (only kernels this CPU can run)."""
    flags = _cpu_flags()
    out = {
        "host": {},
        # An old x86-64 kernel (SSE4.2, no AVX), one thread, no SIMD dispatch in NumPy, Numba for a generic x86-64.
        # (OpenBLAS reports "Prescott" as "Katmai", so the check below could not confirm it: Nehalem it is.)
        "nehalem_1thread_nosimd": {
            "OPENBLAS_CORETYPE": "Nehalem",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
            "NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_dispatch()),
            "NUMBA_CPU_NAME": "generic",
        },
    }
    if "avx2" in flags:
        out["haswell_2threads"] = {
            "OPENBLAS_CORETYPE": "Haswell",
            "OPENBLAS_NUM_THREADS": "2",
            "OMP_NUM_THREADS": "2",
            "NUMBA_NUM_THREADS": "2",
        }
    return out


_PROBE = """
import json, numpy, sys
from threadpoolctl import threadpool_info
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
blas = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
simd = sorted(k for k in __cpu_dispatch__ if __cpu_features__.get(k))  # dispatch targets in use
print("PROBE " + json.dumps({"blas": blas, "simd_dispatch_on": simd}))
"""


def _run(env_overrides: dict[str, str], code: str, timeout: float = 900) -> tuple[dict, str]:
    env = {**os.environ, **env_overrides}
    if "NUMBA_CPU_NAME" in env_overrides:
        # A separate cache: generic-CPU machine code must not be mixed with the host's.
        env["NUMBA_CACHE_DIR"] = str(REPO / "build" / "tests" / "numba-generic")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE + code], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"variant {env_overrides} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    probe = next(json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("PROBE "))
    return probe, proc.stdout


def _check_took_effect(name: str, env: dict[str, str], probe: dict) -> None:
    if "OPENBLAS_CORETYPE" in env:
        assert probe["blas"] and all(a.lower() == env["OPENBLAS_CORETYPE"].lower() for a in probe["blas"]), (
            f"{name}: OpenBLAS ran {probe['blas']}, not {env['OPENBLAS_CORETYPE']}: the variant would test nothing"
        )
    if "NPY_DISABLE_CPU_FEATURES" in env:
        assert not probe["simd_dispatch_on"], f"{name}: NumPy still dispatches {probe['simd_dispatch_on']}"


def _sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _generate(name: str, env: dict[str, str], manifest: Path, out: Path) -> dict[str, str]:
    code = (
        f"from pipelines.synth.__main__ import main\n"
        f"raise SystemExit(main(['--manifest', {str(manifest)!r}, '--out', {str(out)!r}, '--no-progress']))\n"
    )
    probe, _ = _run(env, code)
    _check_took_effect(name, env, probe)
    return _sha256_tree(out)


def test_variants_really_differ_from_the_host():
    """The test below is only meaningful if at least one variant computes on another kernel than the host."""
    probes = {name: _run(env, "")[0] for name, env in variants().items()}
    for name, env in variants().items():
        _check_took_effect(name, env, probes[name])
    assert any(p != probes["host"] for name, p in probes.items() if name != "host"), probes


@pytest.mark.slow
def test_generated_study_is_byte_identical_across_kernels_and_equals_the_frozen_manifest(tmp_path):
    from pipelines.study.manifest import load_manifest

    frozen = load_manifest(SMALL_MANIFEST).checksums
    assert len(frozen) > 50
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(_generate, name, env, SMALL_MANIFEST, tmp_path / name / "bids")
            for name, env in variants().items()
        }
        sums = {name: f.result() for name, f in futures.items()}
    for name, got in sums.items():
        differ = sorted(k for k in frozen.keys() | got.keys() if frozen.get(k) != got.get(k))
        assert not differ, f"variant {name}: {len(differ)} files differ from the frozen checksums, e.g. {differ[:5]}"


@pytest.mark.slow
def test_default_study_verifies_under_another_kernel(tmp_path):
    """The failure a newcomer met: the full default study, generated on another kernel, fails verification."""
    from pipelines.study.manifest import load_manifest, verify

    name, env = "nehalem_1thread_nosimd", variants()["nehalem_1thread_nosimd"]
    out = tmp_path / "bids"
    _generate(name, env, DEFAULT_MANIFEST, out)
    manifest = load_manifest(DEFAULT_MANIFEST)
    report = verify(manifest.model_copy(update={"bids_root": str(out)}))
    assert report.ok, report.describe(manifest.model_copy(update={"bids_root": str(out)}))


@pytest.mark.slow
@pytest.mark.parametrize("design", ["two_condition_edf", "mood_parallel", "open_label"])
def test_other_designs_verify_under_another_kernel(design, tmp_path):
    """The other generated designs' frozen checksums hold on another BLAS kernel, without SIMD and with one thread
    (their cytokine values go through exp/log, which NumPy dispatches to SIMD code)."""
    from pipelines.study.manifest import load_manifest, verify

    path = REPO / "data_manifests" / f"{design}.yml"
    name, env = "nehalem_1thread_nosimd", variants()["nehalem_1thread_nosimd"]
    out = tmp_path / "bids"
    _generate(name, env, path, out)
    manifest = load_manifest(path).model_copy(update={"bids_root": str(out)})
    report = verify(manifest)
    assert report.ok, report.describe(manifest)


_FEATURES = """
from pipelines.study.manifest import load_manifest
from pipelines.study.dataset import Study
from pipelines.eeg.features import recording_features
manifest = load_manifest({manifest!r}).model_copy(update={{"bids_root": {bids!r}}})
study = Study(manifest)
for rec in study.recordings:
    ds = recording_features(manifest, rec)
    ds.attrs = {{}}
    ds.to_netcdf({out!r} + "/" + rec.key + ".nc")
"""


@pytest.mark.slow
def test_features_agree_across_kernels_within_tolerance(tmp_path):
    import xarray as xr

    from pipelines.study.manifest import load_manifest

    bids = tmp_path / "bids"
    _generate("host", {}, SMALL_MANIFEST, bids)
    assert load_manifest(SMALL_MANIFEST).checksums
    results = {}
    for name, env in variants().items():
        out = tmp_path / name
        out.mkdir()
        code = _FEATURES.format(manifest=str(SMALL_MANIFEST), bids=str(bids), out=str(out))
        probe, _ = _run(env, code)
        _check_took_effect(name, env, probe)
        results[name] = {p.stem: xr.load_dataset(p) for p in sorted(out.glob("*.nc"))}
    reference = results.pop("host")
    assert len(reference) == 4
    worst = 0.0
    for name, datasets in results.items():
        assert datasets.keys() == reference.keys()
        for key, ds in datasets.items():
            ref = reference[key]
            assert (ds["window_rejected"].values == ref["window_rejected"].values).all(), (name, key)
            for var in ("channel_measures", "summary_measures"):
                a, b = ds[var].values, ref[var].values
                assert (np.isnan(a) == np.isnan(b)).all(), f"{name} {key} {var}: NaN patterns differ"
                # Relative to each measure's own scale (its largest |value| in the recording): measures that
                # cross zero (asymmetry, dB change) have no meaningful per-value relative error.
                scale = np.nanmax(np.abs(b.reshape(b.shape[0], -1)), axis=1)
                scale = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (b.ndim - 1))
                rel = float(np.nanmax(np.abs(a - b) / scale)) if np.isfinite(b).any() else 0.0
                worst = max(worst, rel)
                assert rel <= FEATURE_RTOL, f"{name} {key} {var}: relative difference {rel:.2e} > {FEATURE_RTOL:g}"
    print(f"largest relative feature difference across kernels: {worst:.2e}")
