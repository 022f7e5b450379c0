"""Annotation mode (``segany annotate``): the queue, the leased image and its embedding, and
the writes (accept, reject/restore a proposal, undo, image done, release)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from ..annotation import AnnotationService
from ..annotation_schemas import (
    MAX_ID,
    AcceptRequest,
    AnnotationInfo,
    AnnotatorRequest,
    Finished,
    FinishRequest,
    Lease,
    NextResponse,
    StoredMask,
)
from ..schemas import EmbeddingDtype
from .common import ERRORS, binary
from .images import embedding_headers

ANSWERS = {**ERRORS, **{code: ERRORS[400] for code in (401, 409)}}
ImageId = PathParam(ge=1, le=MAX_ID, description="the image's id in the project")
MaskId = PathParam(ge=1, le=MAX_ID, description="the mask's id in the project")


# long: one short handler per route
def annotation_router(annotation: AnnotationService) -> APIRouter:
    router = APIRouter(prefix="/api/annotate", tags=["annotation"], responses=ANSWERS)

    @router.get("/project", response_model=AnnotationInfo)
    async def project() -> dict[str, Any]:
        """The project, the model version recorded on accepted masks, images left."""
        return await annotation.info()

    @router.post("/next", response_model=NextResponse)
    async def next_image(request: AnnotatorRequest) -> dict[str, Any]:
        """The image this annotator holds (its lease renewed), else the next free one, leased
        to them: no one else gets it until they finish, release it or the lease runs out."""
        return await annotation.next(request.annotator)

    @router.get("/images/{image_id}/image.png", responses=binary("image/png"))
    async def picture(image_id: int = ImageId) -> Response:
        """The image as the model sees it: upright RGB, as PNG."""
        return Response(await annotation.picture(image_id), media_type="image/png")

    @router.get("/images/{image_id}/embedding", responses=binary("application/octet-stream"))
    async def embedding(
        image_id: int = ImageId,
        dtype: EmbeddingDtype = Query("float16", description="float16 halves the transfer"),
    ) -> Response:
        """The image embedding as raw little-endian values (computed ahead for queued images)."""
        data, value = await annotation.embedding(image_id, dtype)
        headers = embedding_headers(value, dtype)
        return Response(data, media_type="application/octet-stream", headers=headers)

    @router.post("/images/{image_id}/accept", response_model=StoredMask)
    async def accept(request: AcceptRequest, image_id: int = ImageId) -> dict[str, Any]:
        """Commit an accepted mask at once, with its clicks and seconds; a retry with the
        same ``client_key`` returns the mask stored the first time."""
        return await annotation.accept(image_id, request)

    @router.post("/images/{image_id}/masks/{mask_id}/{action}", status_code=204)
    async def decide(
        request: AnnotatorRequest,
        action: Literal["reject", "restore", "undo"],
        image_id: int = ImageId,
        mask_id: int = MaskId,
    ) -> Response:
        """Reject or restore a pre-filled proposal, or undo one's own accepted mask."""
        await annotation.decide(action, image_id, mask_id, request.annotator)
        return Response(status_code=204)

    @router.post("/images/{image_id}/finish", response_model=Finished)
    async def finish(request: FinishRequest, image_id: int = ImageId) -> dict[str, Any]:
        """Image done: open proposals count as accepted, the image leaves the queue."""
        remaining = await annotation.finish(image_id, request.annotator, request.seconds)
        return {"remaining": remaining}

    @router.post("/images/{image_id}/renew", response_model=Lease)
    async def renew(request: AnnotatorRequest, image_id: int = ImageId) -> dict[str, Any]:
        """Keep the image while working on it (writes renew the lease too)."""
        return {"expires_at": await annotation.renew(image_id, request.annotator)}

    @router.post("/images/{image_id}/release", status_code=204)
    async def release(request: AnnotatorRequest, image_id: int = ImageId) -> Response:
        """Give the image back to the queue unfinished (accepted masks stay)."""
        await annotation.release(image_id, request.annotator)
        return Response(status_code=204)

    return router
