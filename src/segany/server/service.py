"""What the server does, without HTTP: embed uploads once (cached by content hash), serve
embeddings compactly, export the decoder graph, run "segment everything", and turn accepted
masks into files. Every step is a library call (:class:`~segany.Predictor`,
:func:`~segany.export_onnx`, :mod:`segany.formats`); the HTTP layer (:mod:`.app`) only maps
requests and errors.

Compute-heavy steps run in worker threads, one at a time (the encoder uses every core), so
the event loop keeps answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from anyio import to_thread

from ..automatic.generator import SamAutomaticMaskGenerator
from ..config import SamConfig
from ..data.scenes import generate_scene
from ..formats.coco import CocoDataset
from ..formats.images import ImageTooLargeError, NotAnImageError, decode_image
from ..formats.pictures import cutout, mask_png, png_bytes
from ..formats.rle import decode_coco_rle, encode_coco_rle, mask_bbox_xywh
from ..inference.embedding import Embedding, encoder_id
from ..inference.predictor import Predictor
from ..inference.transforms import check_resizable
from ..modeling.sam import Sam
from .cache import CacheEntry, EmbeddingCache, check_key, content_key
from .limits import Limits
from .schemas import EMBEDDING_DTYPES, ExportRequest

T = TypeVar("T")
DECODER_FILE = "decoder.onnx"
DISPLAY_FILE = "display.png"
EVERYTHING_FILE = "everything.json"
# Generated scenes offered as samples: large, well-separated objects.
SAMPLE_SEEDS = (164, 217, 260, 185, 83)


class ApiError(Exception):
    """A failure the client caused (4xx) or must wait out (503): status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sample_names() -> tuple[str, ...]:
    return tuple(f"scene-{seed}" for seed in SAMPLE_SEEDS)


@lru_cache(maxsize=len(SAMPLE_SEEDS))
def sample_png(name: str) -> bytes:
    """The PNG of a sample scene; ``ApiError`` 404 for an unknown name."""
    if name not in sample_names():
        raise ApiError(404, f"no sample named {name!r}; known: {', '.join(sample_names())}")
    return png_bytes(generate_scene(int(name.split("-")[1])).image)


def _upload_error(exc: ValueError) -> ApiError:
    if isinstance(exc, NotAnImageError):
        return ApiError(415, f"{exc}; accepted: JPEG, PNG, BMP, TIFF, WebP, GIF")
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, str(exc))
    return ApiError(400, str(exc))


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
    ) -> None:
        self.model = model.eval()
        self.predictor = Predictor(self.model)
        self.limits = limits
        self.encoder_id = encoder_id(self.model)
        root = Path(cache_dir)
        self.cache = EmbeddingCache(root / self.encoder_id, limits.cache_bytes)
        self._decoder_given = decoder_path is not None
        self.decoder_path = (
            Path(decoder_path) if decoder_path else root / "models" / self.encoder_id / DECODER_FILE
        )
        self.everything_options = dict(everything_options or {})
        self.encoder_runs = 0
        self.pending = 0
        self._export_lock = threading.Lock()
        self._generator: SamAutomaticMaskGenerator | None = None
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._compute: asyncio.Semaphore | None = None
        self._decode: asyncio.Semaphore | None = None

    # ----------------------------------------------------------------------- set-up
    @property
    def config(self) -> SamConfig | None:
        return self.model.config

    @property
    def name(self) -> str:
        return self.config.name if self.config is not None else "sam"

    @property
    def embedding_shape(self) -> list[int]:
        grid = self.model.prompt_encoder.image_embedding_size
        return [1, int(self.model.prompt_encoder.embed_dim), int(grid[0]), int(grid[1])]

    async def start(self) -> None:
        """Create the loop's semaphores and make sure the decoder graph exists."""
        self._compute = asyncio.Semaphore(1)  # encoder and generator: all cores each
        self._decode = asyncio.Semaphore(2)  # image decoding: bounded memory
        await to_thread.run_sync(self.ensure_decoder)

    def ensure_decoder(self) -> Path:
        """The decoder graph, exported on first use (official interface, 4 masks)."""
        from ..export import export_onnx, read_metadata

        with self._export_lock:
            if self.decoder_path.is_file():
                if self._decoder_given:
                    self._check_decoder(read_metadata(self.decoder_path))
                return self.decoder_path
            if self._decoder_given:
                raise ValueError(f"{self.decoder_path}: no such decoder graph")
            self.decoder_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.decoder_path.with_name(f".{os.getpid()}-{DECODER_FILE}")
            export_onnx(self.model, tmp)
            os.replace(tmp, self.decoder_path)
            return self.decoder_path

    def _check_decoder(self, meta: dict[str, str]) -> None:
        options = json.loads(meta.get("options", "{}"))
        if meta.get("encoder_id") and meta["encoder_id"] != self.encoder_id:
            raise ValueError(
                f"{self.decoder_path}: exported from other weights than the loaded model"
            )
        if options.get("return_single_mask"):
            raise ValueError(
                f"{self.decoder_path}: exported with --return-single-mask; the page needs all "
                "4 masks"
            )

    def _slots(self) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        if self._compute is None or self._decode is None:
            raise RuntimeError("SegmentService.start() was not called")
        return self._compute, self._decode

    async def _single_flight(self, kind: str, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make`` once for concurrent callers with the same (kind, key); the work goes on
        if a caller disconnects, so an upload is never lost half-way."""
        token = (kind, key)
        future = self._inflight.get(token)
        if future is None:
            future = asyncio.ensure_future(make())
            self._inflight[token] = future
            future.add_done_callback(lambda _: self._inflight.pop(token, None))
        return await asyncio.shield(future)

    def _entry(self, key: str) -> CacheEntry:
        try:
            check_key(key)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        entry = self.cache.get(key)
        if entry is None:
            raise ApiError(
                404,
                "unknown image id (never uploaded here, or evicted from the cache): upload it again",
            )
        return entry

    # ----------------------------------------------------------------------- images
    async def upload(self, data: bytes) -> tuple[CacheEntry, Embedding, bool]:
        """Embed an uploaded image, or find it in the cache: the entry, its embedding and
        whether the encoder was spared (cached, or being embedded for another request)."""
        key = await to_thread.run_sync(content_key, data)  # ~0.1 s for 32 MB: off the loop
        entry = self.cache.get(key)
        if entry is not None:
            embedding = await to_thread.run_sync(self._load_embedding, entry)
            return entry, embedding, True
        joining = ("embed", key) in self._inflight
        if not joining and self.pending >= self.limits.max_pending:
            raise ApiError(
                503,
                f"server busy: {self.pending} images are waiting for the encoder; retry shortly",
            )
        result = await self._single_flight("embed", key, lambda: self._embed_new(key, data))
        return result[0], result[1], joining

    async def _embed_new(self, key: str, data: bytes) -> tuple[CacheEntry, Embedding]:
        compute, decode = self._slots()
        self.pending += 1
        try:
            async with decode:
                image = await to_thread.run_sync(self._decode_upload, data)
            async with compute:
                embedding = await to_thread.run_sync(self.predictor.embed, image)
                self.encoder_runs += 1
            entry = await to_thread.run_sync(self.cache.put, key, data, embedding)
        finally:
            self.pending -= 1
        return entry, embedding

    def _decode_upload(self, data: bytes) -> np.ndarray:
        if len(data) > self.limits.max_upload_bytes:
            raise ApiError(413, self.too_large_message())
        try:
            image = decode_image(data, max_pixels=self.limits.max_pixels)
            check_resizable(image.shape[0], image.shape[1], self.model.img_size)
        except ValueError as exc:
            raise _upload_error(exc) from None
        return image

    def too_large_message(self) -> str:
        limit = self.limits.max_upload_bytes
        return f"upload: larger than the limit of {limit / 2**20:.0f} MB ({limit:,} bytes)"

    def _load_embedding(self, entry: CacheEntry) -> Embedding:
        try:
            return Embedding.load(entry.embedding_path)
        except ValueError:  # evicted between lookup and read
            raise ApiError(404, "this image was evicted from the cache: upload it again") from None

    def _image(self, entry: CacheEntry) -> np.ndarray:
        try:
            data = entry.image_path.read_bytes()
        except FileNotFoundError:
            raise ApiError(404, "this image was evicted from the cache: upload it again") from None
        return decode_image(data, max_pixels=None)

    async def embedding(self, key: str, dtype: str) -> tuple[bytes, Embedding]:
        """The embedding's raw values (C order, little-endian) as ``dtype``."""
        if dtype not in EMBEDDING_DTYPES:
            raise ApiError(
                400, f"dtype must be one of {', '.join(EMBEDDING_DTYPES)}; got {dtype!r}"
            )
        entry = self._entry(key)
        embedding = await to_thread.run_sync(self._load_embedding, entry)
        values = embedding.features.float().numpy().astype(np.dtype(dtype).newbyteorder("<"))
        return values.tobytes(), embedding

    async def display_png(self, key: str) -> bytes:
        """The image as the model saw it (upright RGB), as PNG; made once per entry."""
        entry = self._entry(key)
        _, decode = self._slots()
        async with decode:
            return await to_thread.run_sync(
                self.cache.read_or_make, entry, DISPLAY_FILE, lambda: png_bytes(self._image(entry))
            )

    # ----------------------------------------------------------------------- everything
    def _make_generator(self) -> SamAutomaticMaskGenerator:
        if self._generator is None:
            options = {"output_mode": "coco_rle", **self.everything_options}
            self._generator = SamAutomaticMaskGenerator(self.model, **options)
        return self._generator

    async def everything(self, key: str) -> dict[str, Any]:
        """Every mask of the image (the automatic generator's records), cached per entry."""
        entry = self._entry(key)
        cached = entry.file(EVERYTHING_FILE)
        if cached.is_file():
            try:
                return {"masks": json.loads(cached.read_text()), "seconds": 0.0}
            except (FileNotFoundError, ValueError):
                pass
        generator = self._make_generator()
        return await self._single_flight(
            "everything", key, lambda: self._run_everything(entry, generator)
        )

    async def _run_everything(
        self, entry: CacheEntry, generator: SamAutomaticMaskGenerator
    ) -> dict[str, Any]:
        compute, _ = self._slots()
        image = await to_thread.run_sync(self._image, entry)
        async with compute:
            start = time.perf_counter()
            records = await to_thread.run_sync(generator.generate, image)
            seconds = time.perf_counter() - start
        masks = [
            {
                "segmentation": r["segmentation"],
                "area": int(r["area"]),
                "bbox": [float(v) for v in r["bbox"]],
                "predicted_iou": float(r["predicted_iou"]),
                "stability_score": float(r["stability_score"]),
            }
            for r in records
        ]
        await to_thread.run_sync(
            self.cache.add_file, entry, EVERYTHING_FILE, json.dumps(masks).encode()
        )
        return {"masks": masks, "seconds": seconds}

    # ----------------------------------------------------------------------- export
    async def export(self, key: str, request: ExportRequest) -> tuple[bytes, str, str]:
        """A file of accepted masks: (content, media type, file name)."""
        entry = self._entry(key)
        if len(request.masks) > self.limits.max_export_masks:
            raise ApiError(
                413, f"too many masks: {len(request.masks)} (limit {self.limits.max_export_masks})"
            )
        if request.scores is not None and len(request.scores) != len(request.masks):
            raise ApiError(400, f"{len(request.scores)} scores for {len(request.masks)} masks")
        _, decode = self._slots()
        async with decode:
            return await to_thread.run_sync(self._export, entry, request)

    def _export(self, entry: CacheEntry, request: ExportRequest) -> tuple[bytes, str, str]:
        """One mask decoded at a time: memory stays at a few image-sized arrays whatever
        the number of masks."""
        image = self._image(entry)
        height, width = image.shape[:2]
        scores = request.scores or [1.0] * len(request.masks)
        union = np.zeros((height, width), dtype=bool)
        records = []
        for index, (rle, score) in enumerate(zip(request.masks, scores)):
            mask = _decode_uncompressed(rle.size, rle.counts, (height, width), index)
            union |= mask
            if request.format == "coco":
                records.append(
                    {
                        "segmentation": encode_coco_rle(mask),
                        "bbox": mask_bbox_xywh(mask),
                        "area": int(mask.sum()),
                        "predicted_iou": float(score),
                    }
                )
        if request.format == "cutout":
            return png_bytes(cutout(image, union, crop=request.crop)), "image/png", "cutout.png"
        if request.format == "mask":
            return png_bytes(mask_png(union)), "image/png", "mask.png"
        dataset = CocoDataset()
        dataset.add_image(Path(request.file_name).name or "image.png", height, width, records)
        return json.dumps(dataset.to_dict()).encode(), "application/json", "masks.coco.json"

    # ----------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "cache_entries": len(self.cache),
            "cache_bytes": self.cache.total_bytes,
            "cache_max_bytes": self.cache.max_bytes,
            "cache_evictions": self.cache.evictions,
            "encoder_runs": self.encoder_runs,
            "pending_embeddings": self.pending,
        }


def _decode_uncompressed(
    size: list[int], counts: list[int], shape: tuple[int, int], index: int
) -> np.ndarray:
    """Check an uncompressed COCO RLE against the image, then decode it (pycocotools trusts
    the counts, so they are checked here first)."""
    height, width = shape
    if list(size) != [height, width]:
        raise ApiError(
            400, f"mask {index}: size {list(size)} is not the image's [{height}, {width}]"
        )
    if min(counts) < 0:
        raise ApiError(400, f"mask {index}: negative run length")
    if sum(counts) != height * width:
        raise ApiError(
            400, f"mask {index}: run lengths add up to {sum(counts)}, not {height * width} pixels"
        )
    return decode_coco_rle({"size": [height, width], "counts": list(counts)})
