"""What the page asks of an uploaded image beyond its embedding: segment everything, and
accepted masks as a file."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ..schemas import EverythingResponse, ExportRequest
from ..service import SegmentService
from .common import ERRORS, ImageId


def results_router(service: SegmentService) -> APIRouter:
    router = APIRouter(tags=["images"])

    @router.post(
        "/api/images/{image_id}/everything", response_model=EverythingResponse, responses=ERRORS
    )
    async def everything(image_id: str = ImageId) -> dict[str, Any]:
        """Segment everything: the automatic mask generator's masks (COCO RLE), cached."""
        return await service.everything(image_id)

    @router.post(
        "/api/images/{image_id}/export",
        responses={200: {"content": {"image/png": {}, "application/json": {}}}, **ERRORS},
    )
    async def export(request: ExportRequest, image_id: str = ImageId) -> Response:
        """Accepted masks as a cut-out PNG, a mask PNG or a COCO json file."""
        data, media_type, name = await service.export(image_id, request)
        return Response(
            data,
            media_type=media_type,
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    return router
