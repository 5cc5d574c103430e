"""The worker memory policy: freed blocks are reused, so a second large array costs no fresh pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, resource, sys
import numpy as np
from pipelines.core import memory
applied = memory.keep_freed_memory() if sys.argv[1] == "on" else False
def faults_of_a_fresh_array(mb=64):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(mb * 2**20 // 8)
    a[:] = 1.0  # touch every page
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del a
    return after - before
first, second = faults_of_a_fresh_array(), faults_of_a_fresh_array()
print(json.dumps({"applied": applied, "first": first, "second": second}))
"""


def _probe(mode: str, **env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env=os.environ | env
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the policy is glibc's mallopt (Linux only)")
def test_a_second_large_array_reuses_the_first_ones_pages_only_under_the_policy():
    on = _probe("on")
    off = _probe("off")
    assert on["applied"] is True
    # 64 MB is 32 transparent huge pages or 16384 small ones: either way dozens of faults at least
    assert off["first"] >= 32 and off["second"] > off["first"] / 2  # without it, every 64-MB array faults again
    assert on["second"] < on["first"] / 20  # with it, the freed pages are reused


def test_the_environment_can_turn_the_policy_off():
    assert _probe("on", KW_KEEP_FREED_MEMORY="0")["applied"] is False
