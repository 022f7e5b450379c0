"""Shared benchmark helpers: interleaved timing, machine description, paired models."""

from __future__ import annotations

import os
import platform
import statistics
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


def official_and_ours(name: str, seed: int = 0):
    """The official model and ours, both holding the same seeded random weights."""
    from segment_anything import sam_model_registry as official_registry

    from segany import sam_model_registry
    from segany.testing import random_state_dict

    ours = sam_model_registry[name]()
    theirs = official_registry[name]()
    state = random_state_dict(ours.state_dict(), seed)
    ours.load_state_dict(state)
    theirs.load_state_dict(state)
    return theirs.eval(), ours.eval()


def sample_image(name: str = "truck.jpg"):
    """A sample photo from ../shared/images when present, else a generated RGB image."""
    import numpy as np
    from PIL import Image

    path = SHARED_IMAGES / name
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB")), name
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (534, 800, 3), dtype=np.uint8), "random 800x534 image"
