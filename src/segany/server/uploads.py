"""The embedding queue: an upload is hashed, found in the cache or embedded once (concurrent
uploads of the same bytes share one encoder run), and new uploads get 503 while too many
images wait for the encoder."""

from __future__ import annotations

import numpy as np
from anyio import to_thread

from ..formats.images import decode_image
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..inference.transforms import check_resizable
from .cache import CacheEntry, EmbeddingCache, content_key
from .entries import entry_embedding
from .errors import ApiError, too_large_message, upload_error
from .limits import Limits
from .workers import Workers


class EmbeddingQueue:
    """Uploads waiting for the encoder; counts ``pending`` images and ``encoder_runs``."""

    def __init__(
        self, predictor: Predictor, cache: EmbeddingCache, limits: Limits, workers: Workers
    ) -> None:
        self.predictor = predictor
        self.cache = cache
        self.limits = limits
        self.workers = workers
        self.pending = 0
        self.encoder_runs = 0

    async def upload(self, data: bytes) -> tuple[CacheEntry, Embedding, bool]:
        """Embed an uploaded image, or find it in the cache: the entry, its embedding and
        whether the encoder was spared (cached, or being embedded for another request)."""
        key = await to_thread.run_sync(content_key, data)  # hashing a large upload: off the loop
        entry = self.cache.get(key)
        if entry is not None:
            embedding = await to_thread.run_sync(entry_embedding, entry)
            return entry, embedding, True
        joining = self.workers.running("embed", key)
        if not joining and self.pending >= self.limits.max_pending:
            raise ApiError(
                503,
                f"server busy: {self.pending} images are waiting for the encoder; retry shortly",
            )
        result = await self.workers.single_flight("embed", key, lambda: self._embed(key, data))
        return result[0], result[1], joining

    async def _embed(self, key: str, data: bytes) -> tuple[CacheEntry, Embedding]:
        self.pending += 1
        try:
            image = await self.workers.decode(self._decode_upload, data)
            embedding = await self.workers.compute(self.predictor.embed, image)
            self.encoder_runs += 1
            entry = await to_thread.run_sync(self.cache.put, key, data, embedding)
        finally:
            self.pending -= 1
        return entry, embedding

    def _decode_upload(self, data: bytes) -> np.ndarray:
        if len(data) > self.limits.max_upload_bytes:
            raise ApiError(413, too_large_message(self.limits))
        try:
            image = decode_image(data, max_pixels=self.limits.max_pixels)
            check_resizable(image.shape[0], image.shape[1], self.predictor.model.img_size)
        except ValueError as exc:
            raise upload_error(exc) from None
        return image
