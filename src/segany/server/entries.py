"""Cache entries as the API sees them: looked up by a client's image id, read back as an
embedding or an image, with a 4xx :class:`~.errors.ApiError` for what the client must fix."""

from __future__ import annotations

import numpy as np

from ..formats.images import decode_image
from ..inference.embedding import Embedding
from .cache import CacheEntry, EmbeddingCache, check_key
from .errors import EVICTED, ApiError


def find_entry(cache: EmbeddingCache, key: str) -> CacheEntry:
    """The entry of image id ``key``: 400 for a malformed id, 404 for an unknown one."""
    try:
        check_key(key)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    entry = cache.get(key)
    if entry is None:
        raise ApiError(
            404,
            "unknown image id (never uploaded here, or evicted from the cache): upload it again",
        )
    return entry


def entry_embedding(entry: CacheEntry) -> Embedding:
    """The entry's embedding; 404 if it was evicted since the lookup."""
    try:
        return Embedding.load(entry.embedding_path)
    except ValueError:  # evicted between lookup and read
        raise ApiError(404, EVICTED) from None


def entry_image(entry: CacheEntry) -> np.ndarray:
    """The entry's image ``(H, W, 3)`` uint8, upright RGB; 404 if it was evicted."""
    try:
        data = entry.image_path.read_bytes()
    except FileNotFoundError:
        raise ApiError(404, EVICTED) from None
    return decode_image(data, max_pixels=None)
