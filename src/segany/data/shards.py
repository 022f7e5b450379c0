"""Write generated scenes as SA-1B-format files (PNG image + json with COCO RLE), so the same
loader serves generated data and real SA-1B. Resumable: finished scenes are skipped."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..formats.files import atomic_write_bytes
from ..formats.sa1b import Sa1bAnnotation, Sa1bImage, write_sa1b
from .scenes import SceneConfig, generate_scene


def write_scene(folder: Path, seed: int, config: SceneConfig) -> None:
    """Write ``sa_<seed>.png`` and ``sa_<seed>.json`` (json last, so it marks completion)."""
    scene = generate_scene(seed, config)
    name = f"sa_{seed:08d}"
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    atomic_write_bytes(folder / f"{name}.png", buffer.getvalue())
    height, width = scene.image.shape[:2]
    annotations = [Sa1bAnnotation.from_mask(i, mask) for i, mask in enumerate(scene.masks)]
    write_sa1b(folder / f"{name}.json", Sa1bImage(seed, width, height, f"{name}.png"), annotations)


def write_generated_shards(
    folder: str | os.PathLike[str],
    seed_start: int,
    count: int,
    config: SceneConfig = SceneConfig(),
    progress: bool = True,
) -> int:
    """Write scenes ``seed_start .. seed_start + count - 1``; returns how many were new."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for seed in tqdm(range(seed_start, seed_start + count), disable=not progress, desc="scenes"):
        if (folder / f"sa_{seed:08d}.json").is_file():
            continue
        write_scene(folder, seed, config)
        written += 1
    return written
