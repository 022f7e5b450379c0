"""``segany.keep_freed_memory``: freed tensors' pages are reused instead of being faulted in
again (checked in a fresh process: the setting is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from segany import keep_freed_memory

def faults(keep):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensor = torch.ones(4 << 20)  # 16 MB, touched
    kept.append(tensor) if keep else None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

kept = []
assert keep_freed_memory() and keep_freed_memory()  # applies, and again is harmless
fresh = faults(keep=True)  # new memory: faulted in
for _ in range(3):
    faults(keep=False)
print(fresh, faults(keep=False))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_tensors_are_reused_without_page_faults():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    fresh, reused = (int(v) for v in out.stdout.split())
    assert fresh > 2000  # 4096 pages of 4 KiB: the probe sees faults where there are some
    assert reused < 200
