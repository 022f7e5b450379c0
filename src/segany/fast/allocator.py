"""Keep freed memory in the process for reuse (glibc's allocator), so large tensors freed and
allocated again, layer after layer and image after image, are not handed back to the kernel and
faulted in (and zeroed) page by page once more.

By default glibc returns big blocks to the kernel as soon as they are freed, and an fp32 ViT-B
encoder forward faults hundreds of thousands of pages in again. ``benchmarks/bench_encoder.py
--keep-freed-memory`` measures the effect. The cost is resident memory: up to
:data:`TRIM_THRESHOLD` of freed memory stays with the process. The ``segany`` command and its
server call it; library users opt in.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt(3) parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before trimming
TOP_PAD = 512 << 20  # extra heap asked of the kernel at a time (untouched pages cost nothing)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: smaller blocks come from the reusable heap


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's allocator to keep freed memory for reuse (process-wide, once). Returns
    whether it applied (``False`` off Linux/glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD),
    )
    return all(mallopt(option, value) == 1 for option, value in settings)


__all__ = ["keep_freed_memory"]
