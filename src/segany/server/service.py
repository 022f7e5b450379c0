"""What the server does, without HTTP: embed uploads once (cached by content hash), serve
embeddings compactly, export the decoder graph, run "segment everything", and turn accepted
masks into files. Every step is a library call (:class:`~segany.Predictor`,
:func:`~segany.export_onnx`, :mod:`segany.formats`); the HTTP layer (:mod:`.app`) only maps
requests and errors.

Compute-heavy steps run in worker threads (:mod:`.workers`), so the event loop keeps answering
other requests meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread

from ..config import SamConfig
from ..formats.pictures import png_bytes
from ..inference.embedding import Embedding, encoder_id
from ..inference.predictor import Predictor
from ..modeling.sam import Sam
from ..text import Detector
from ..text.prompt import TextPromptHead
from .cache import CacheEntry, EmbeddingCache
from .decoder_graph import DecoderGraph
from .entries import entry_embedding, entry_image, find_entry
from .errors import ApiError, too_large_message
from .everything import Everything
from .exports import check_export, export_file
from .limits import Limits
from .schemas import EMBEDDING_DTYPES, ExportRequest, TextRequest
from .text import TextPrompts
from .uploads import EmbeddingQueue
from .video import VideoService
from .workers import Workers

DISPLAY_FILE = "display.png"


class SegmentService:
    """One loaded model behind the web API.

    ``cache_dir`` holds one embedding cache per model (``<encoder id>/``) and the exported
    decoder graph (``models/<encoder id>/decoder.onnx``, unless ``decoder_path`` names a
    graph exported beforehand). Call :meth:`start` inside the event loop before serving.
    """

    def __init__(
        self,
        model: Sam,
        cache_dir: str | os.PathLike[str],
        limits: Limits = Limits(),
        *,
        decoder_path: str | os.PathLike[str] | None = None,
        everything_options: dict[str, Any] | None = None,
        text_detector: Detector | None = None,
        text_head: TextPromptHead | None = None,
    ) -> None:
        self.model = model.eval()
        self.predictor = Predictor(self.model)
        self.limits = limits
        self.encoder_id = encoder_id(self.model)
        root = Path(cache_dir)
        self.cache = EmbeddingCache(root / self.encoder_id, limits.cache_bytes)
        self.graph = DecoderGraph(self.model, self.encoder_id, root, decoder_path)
        self.everything_options = dict(everything_options or {})
        self.workers = Workers()
        self.queue = EmbeddingQueue(self.predictor, self.cache, limits, self.workers)
        self._everything = Everything(self.model, self.everything_options, self.cache, self.workers)
        self.video = VideoService(self.predictor, root / "videos", limits, self.workers)
        self.text_prompts = TextPrompts(self.predictor, text_detector, self.workers, text_head)

    # ----------------------------------------------------------------------- set-up
    @property
    def config(self) -> SamConfig | None:
        return self.model.config

    @property
    def name(self) -> str:
        return self.config.name if self.config is not None else "sam"

    @property
    def embedding_shape(self) -> list[int]:
        """(1, C, h, w) of an image embedding."""
        grid = self.model.prompt_encoder.image_embedding_size
        return [1, int(self.model.prompt_encoder.embed_dim), int(grid[0]), int(grid[1])]

    @property
    def decoder_path(self) -> Path:
        return self.graph.path

    @property
    def pending(self) -> int:
        """Uploads waiting for the encoder."""
        return self.queue.pending

    @pending.setter
    def pending(self, value: int) -> None:
        self.queue.pending = value

    @property
    def encoder_runs(self) -> int:
        return self.queue.encoder_runs

    async def start(self) -> None:
        """Create the loop's semaphores and make sure the decoder graph exists."""
        self.workers.start()
        await to_thread.run_sync(self.ensure_decoder)

    def ensure_decoder(self) -> Path:
        """The decoder graph, exported on first use (official interface, 4 masks)."""
        return self.graph.ensure()

    def too_large_message(self) -> str:
        return too_large_message(self.limits)

    # ----------------------------------------------------------------------- images
    async def upload(self, data: bytes) -> tuple[CacheEntry, Embedding, bool]:
        """Embed an uploaded image, or find it in the cache: the entry, its embedding and
        whether the encoder was spared (cached, or being embedded for another request)."""
        return await self.queue.upload(data)

    async def embedding(self, key: str, dtype: str, early: bool = False) -> tuple[bytes, Embedding]:
        """The embedding's raw values (C order, little-endian) as ``dtype``; with ``early``, its
        early encoder features instead (HQ-SAM models; 404 for others)."""
        if dtype not in EMBEDDING_DTYPES:
            raise ApiError(
                400, f"dtype must be one of {', '.join(EMBEDDING_DTYPES)}; got {dtype!r}"
            )
        entry = find_entry(self.cache, key)
        embedding = await to_thread.run_sync(entry_embedding, entry)
        tensor = embedding.early if early else embedding.features
        if tensor is None:
            raise ApiError(404, "this model's embeddings have no early features (not HQ-SAM)")
        values = tensor.float().numpy().astype(np.dtype(dtype).newbyteorder("<"))
        return values.tobytes(), embedding

    async def display_png(self, key: str) -> bytes:
        """The image as the model saw it (upright RGB), as PNG; made once per entry."""
        entry = find_entry(self.cache, key)
        return await self.workers.decode(
            self.cache.read_or_make, entry, DISPLAY_FILE, lambda: png_bytes(entry_image(entry))
        )

    async def everything(self, key: str) -> dict[str, Any]:
        """Every mask of the image (the automatic generator's records), cached per entry."""
        return await self._everything.masks(find_entry(self.cache, key))

    async def text(self, key: str, request: TextRequest) -> dict[str, Any]:
        """The masks of what a phrase names (:class:`~.text.TextPrompts`)."""
        return await self.text_prompts.masks(find_entry(self.cache, key), request)

    async def export(self, key: str, request: ExportRequest) -> tuple[bytes, str, str]:
        """A file of accepted masks: (content, media type, file name)."""
        entry = find_entry(self.cache, key)
        check_export(request, self.limits)
        return await self.workers.decode(lambda: export_file(entry_image(entry), request))

    def status(self) -> dict[str, Any]:
        """Cache and encoder counters (the ``Status`` schema)."""
        return {
            "model": self.name,
            "cache_entries": len(self.cache),
            "cache_bytes": self.cache.total_bytes,
            "cache_max_bytes": self.cache.max_bytes,
            "cache_evictions": self.cache.evictions,
            "encoder_runs": self.encoder_runs,
            "pending_embeddings": self.pending,
        }
