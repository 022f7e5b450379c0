"""Annotation mode: the project's queue (:class:`~segany.engine.AnnotationDesk`, the one code
path shared with the simulated annotator) behind the web API, and the embeddings of queued
images computed ahead by the service's encoder queue and cache.

Every database call runs in a worker thread; the desk's refusals become 409s, an unknown image
a 404, a mask that does not fit its image a 422, a busy database a 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ..engine import AnnotationDesk, LeaseLostError, NewMask, NotAllowedError, Project
from ..engine.annotation import LEASE_SECONDS, ImageTask, mask_json
from ..engine.schema import ImageRow, MaskRow, ModelVersionRow
from ..engine.store import image_masks, is_done
from ..formats.rle import checked_rle_mask
from ..inference.embedding import Embedding
from .annotation_schemas import AcceptRequest
from .cache import CacheEntry, content_key
from .errors import ApiError
from .service import SegmentService

T = TypeVar("T")
AHEAD = 3  # queued images embedded ahead of the annotators
DECISIONS = ("reject", "restore", "undo")
log = logging.getLogger(__name__)


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        name = Path(path).name
        raise ApiError(
            404, f"the file of this image ({name}) cannot be read: {exc.strerror}"
        ) from None


def task_json(task: ImageTask, rejected: list[MaskRow]) -> dict[str, Any]:
    base = f"/api/annotate/images/{task.image_id}"
    return {
        "image_id": task.image_id,
        "name": Path(task.path).name,
        "width": task.width,
        "height": task.height,
        "gear": task.gear,
        "split": task.split,
        "expires_at": task.expires_at,
        "image_url": f"{base}/image.png",
        "embedding_url": f"{base}/embedding",
        "proposals": [mask_json(m) for m in task.proposals],
        "rejected": [mask_json(m) for m in rejected],
        "accepted": [mask_json(m) for m in task.accepted],
    }


class AnnotationService:
    """Gears 1 and 2 in the browser, over ``project``; ``segment`` embeds and serves images,
    ``model_version`` is recorded on every accepted mask."""

    def __init__(
        self,
        project: Project,
        segment: SegmentService,
        model_version: ModelVersionRow,
        *,
        lease_seconds: float = LEASE_SECONDS,
        ahead: int = AHEAD,
    ) -> None:
        self.project = project
        self.segment = segment
        self.desk = AnnotationDesk(project, lease_seconds)
        self.lease_seconds = float(lease_seconds)
        self.model_version_id = model_version.id
        self.model_name = model_version.name
        self.ahead = ahead
        self._background: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------------- life
    def start(self) -> None:
        """Begin embedding the first queued images (call inside the event loop)."""
        self._prepare(None)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _db(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread, its refusals as API errors."""
        try:
            return await to_thread.run_sync(work, *args)
        except (LeaseLostError, NotAllowedError) as exc:
            raise ApiError(409, str(exc)) from None
        except OperationalError as exc:
            log.warning("project database: %s", exc)
            raise ApiError(
                503, "the project database is busy or unreachable; retry shortly"
            ) from None

    # ----------------------------------------------------------------------- queue
    def _remaining(self) -> int:
        with self.project.session() as session:
            query = select(func.count(ImageRow.id)).where(
                ImageRow.error.is_(None), ~is_done(ImageRow.id)
            )
            return session.scalar(query) or 0

    def _info(self) -> dict[str, Any]:
        with self.project.session() as session:
            images = session.scalar(select(func.count(ImageRow.id)).where(ImageRow.error.is_(None)))
        return {
            "project": self.project.path.resolve().name,
            "model": self.model_name,
            "model_version_id": self.model_version_id,
            "images": images or 0,
            "remaining": self._remaining(),
            "lease_seconds": self.lease_seconds,
        }

    async def info(self) -> dict[str, Any]:
        return await self._db(self._info)

    def _checkout(self, annotator: str) -> dict[str, Any]:
        task = self.desk.checkout(annotator)
        if task is None:
            return {"task": None, "remaining": self._remaining()}
        with self.project.session() as session:
            rejected = list(image_masks(session, task.image_id, ("rejected",)))
        return {"task": task_json(task, rejected), "remaining": self._remaining()}

    async def next(self, annotator: str) -> dict[str, Any]:
        """The image this annotator holds, else the next free one (leased to them)."""
        answer = await self._db(self._checkout, annotator)
        if answer["task"] is not None:
            self._prepare(answer["task"]["image_id"])
        return answer

    # ----------------------------------------------------------------------- images
    def _image(self, image_id: int) -> ImageRow:
        with self.project.session() as session:
            row = session.get(ImageRow, image_id)
        if row is None:
            raise ApiError(404, f"no image {image_id} in this project")
        if row.error is not None:
            raise ApiError(409, f"image {image_id} is unreadable and not annotated: {row.error}")
        return row

    async def entry(self, image_id: int) -> CacheEntry:
        """The image's cache entry, embedded on first use (the cache key is its SHA-256, as
        the project's)."""
        row = await self._db(self._image, image_id)
        entry = self.segment.cache.get(row.sha256)
        if entry is not None:
            return entry
        data = await to_thread.run_sync(read_file, row.path)
        if await to_thread.run_sync(content_key, data) != row.sha256:
            raise ApiError(409, f"the file of image {image_id} changed after it was added")
        entry, _, _ = await self.segment.queue.upload(data)
        return entry

    async def embedding(self, image_id: int, dtype: str) -> tuple[bytes, Embedding]:
        return await self.segment.embedding((await self.entry(image_id)).key, dtype)

    async def picture(self, image_id: int) -> bytes:
        return await self.segment.display_png((await self.entry(image_id)).key)

    def _prepare(self, current: int | None) -> None:
        """Embed the current image and the next free ones in the background."""
        if self.ahead <= 0 and current is None:
            return
        task = asyncio.create_task(self._embed_ahead(current))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _embed_ahead(self, current: int | None) -> None:
        upcoming = await to_thread.run_sync(self.desk.upcoming, self.ahead)
        for image_id in ([current] if current is not None else []) + upcoming:
            try:
                await self.entry(image_id)
            except Exception as exc:  # the page asks again, and shows why
                log.info("not embedded ahead: image %s: %s", image_id, exc)

    # ----------------------------------------------------------------------- writes
    def _accept(self, image_id: int, request: AcceptRequest) -> dict[str, Any]:
        image = self._image(image_id)
        try:
            mask = checked_rle_mask(
                request.segmentation.model_dump(), image.height or 0, image.width or 0
            )
        except ValueError as exc:
            raise ApiError(422, f"segmentation: {exc}") from None
        if not mask.any():
            raise ApiError(422, "segmentation: the mask is empty; there is nothing to accept")
        mask_id = self.desk.accept(
            request.annotator,
            image_id,
            NewMask.from_mask(mask),
            clicks=request.clicks,
            seconds=request.seconds,
            model_version_id=self.model_version_id,
            client_key=request.client_key,
            corrects_id=request.corrects_id,
        )
        with self.project.session() as session:
            row = session.get(MaskRow, mask_id)
            assert row is not None
            return mask_json(row)

    async def accept(self, image_id: int, request: AcceptRequest) -> dict[str, Any]:
        """Commit an accepted mask now; the stored mask."""
        return await self._db(self._accept, image_id, request)

    def _decide(self, decision: str, image_id: int, mask_id: int, annotator: str) -> None:
        self._image(image_id)
        getattr(self.desk, decision)(annotator, image_id, mask_id)

    async def decide(self, decision: str, image_id: int, mask_id: int, annotator: str) -> None:
        """Reject or restore a proposal, or undo one's own accepted mask."""
        if decision not in DECISIONS:
            raise ApiError(404, f"no action {decision!r}; known: {', '.join(DECISIONS)}")
        await self._db(self._decide, decision, image_id, mask_id, annotator)

    def _finish(self, image_id: int, annotator: str, seconds: float | None) -> int:
        self._image(image_id)
        self.desk.finish(annotator, image_id, seconds)
        return self._remaining()

    async def finish(self, image_id: int, annotator: str, seconds: float | None) -> int:
        """ "Image done"; the images left."""
        return await self._db(self._finish, image_id, annotator, seconds)

    def _renew(self, image_id: int, annotator: str) -> datetime:
        self._image(image_id)
        return self.desk.renew(annotator, image_id)

    async def renew(self, image_id: int, annotator: str) -> datetime:
        """Keep the image while its annotator works on it; the lease's new end."""
        return await self._db(self._renew, image_id, annotator)

    def _release(self, image_id: int, annotator: str) -> None:
        self._image(image_id)
        self.desk.release(annotator, image_id)

    async def release(self, image_id: int, annotator: str) -> None:
        """Give the image back unfinished."""
        await self._db(self._release, image_id, annotator)
