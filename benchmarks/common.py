"""Shared benchmark helpers: interleaved timing, machine description, paired models."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def machine() -> str:
    """CPU model, logical cores, torch threads: the line every result is recorded with."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each function, alternating between them on every round so
    machine noise hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def seeded_model(package: str, name: str, seed: int = 0, region_head: bool = False):
    """``package`` (``official`` or ``segany``) model ``name`` with seeded random weights, the
    same for both packages; with ``region_head`` the mask head makes regions instead of texture
    (``region_mask_head``)."""
    from segany.testing import random_state_dict, region_mask_head

    if package == "official":
        from segment_anything import sam_model_registry as registry
    else:
        from segany import sam_model_registry as registry
    model = registry[name]()
    state = random_state_dict(model.state_dict(), seed)
    if region_head:
        state = region_mask_head(state)
    model.load_state_dict(state)
    return model.eval()


def official_and_ours(name: str, seed: int = 0, region_head: bool = False):
    """The official model and ours, both holding the same seeded random weights."""
    return (
        seeded_model("official", name, seed, region_head),
        seeded_model("segany", name, seed, region_head),
    )


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _high_water_bytes() -> int | None:
    """The kernel's peak resident memory of this process (``VmHWM``), if readable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_during(fn: Callable[[], object]) -> tuple[int, int]:
    """(RSS before, peak RSS while ``fn`` runs). Exact where the kernel lets the peak be reset
    (``/proc/self/clear_refs``), else sampled every 5 ms."""
    before = rss_bytes()
    if _high_water_bytes() is not None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        else:
            fn()
            return before, _high_water_bytes() or 0
    peak_seen = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_seen[0] = max(peak_seen[0], rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return before, max(peak_seen[0], rss_bytes())


def sample_image(name: str = "truck.jpg"):
    """A sample photo from ../shared/images when present, else a generated RGB image."""
    import numpy as np
    from PIL import Image

    path = SHARED_IMAGES / name
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB")), name
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (534, 800, 3), dtype=np.uint8), "random 800x534 image"
