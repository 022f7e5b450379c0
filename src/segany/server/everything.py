"""Segment everything for the page: the automatic mask generator's records (COCO RLE), made
once per image and kept in its cache entry."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from anyio import to_thread

from ..automatic.generator import SamAutomaticMaskGenerator
from ..modeling.sam import Sam
from .cache import CacheEntry, EmbeddingCache
from .entries import entry_image
from .workers import Workers

EVERYTHING_FILE = "everything.json"


def mask_record(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON fields of one generator record (plain ints and floats)."""
    return {
        "segmentation": record["segmentation"],
        "area": int(record["area"]),
        "bbox": [float(v) for v in record["bbox"]],
        "predicted_iou": float(record["predicted_iou"]),
        "stability_score": float(record["stability_score"]),
    }


class Everything:
    """The generator (made on first use with ``options``) over cached images."""

    def __init__(
        self, model: Sam, options: dict[str, Any], cache: EmbeddingCache, workers: Workers
    ) -> None:
        self.model = model
        self.options = options
        self.cache = cache
        self.workers = workers
        self._generator: SamAutomaticMaskGenerator | None = None

    def generator(self) -> SamAutomaticMaskGenerator:
        if self._generator is None:
            options = {"output_mode": "coco_rle", **self.options}
            self._generator = SamAutomaticMaskGenerator(self.model, **options)
        return self._generator

    async def masks(self, entry: CacheEntry) -> dict[str, Any]:
        """``{"masks": [record, ...], "seconds": generator time}``; 0 s from the cache."""
        cached = entry.file(EVERYTHING_FILE)
        if cached.is_file():
            try:
                return {"masks": json.loads(cached.read_text()), "seconds": 0.0}
            except (FileNotFoundError, ValueError):
                pass
        generator = self.generator()
        return await self.workers.single_flight(
            "everything", entry.key, lambda: self._run(entry, generator)
        )

    async def _run(self, entry: CacheEntry, generator: SamAutomaticMaskGenerator) -> dict[str, Any]:
        image = await to_thread.run_sync(entry_image, entry)
        records, seconds = await self.workers.compute(_timed_generate, generator, image)
        masks = [mask_record(r) for r in records]
        await to_thread.run_sync(
            self.cache.add_file, entry, EVERYTHING_FILE, json.dumps(masks).encode()
        )
        return {"masks": masks, "seconds": seconds}


def _timed_generate(
    generator: SamAutomaticMaskGenerator, image: np.ndarray
) -> tuple[list[dict[str, Any]], float]:
    start = time.perf_counter()
    records = generator.generate(image)
    return records, time.perf_counter() - start
