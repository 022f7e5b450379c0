"""Text prompts on an uploaded image: the objects a phrase names, as masks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..schemas import TextRequest, TextResponse
from ..service import SegmentService
from .common import ERRORS, ImageId


def text_router(service: SegmentService) -> APIRouter:
    router = APIRouter(tags=["images"])

    @router.post("/api/images/{image_id}/text", response_model=TextResponse, responses=ERRORS)
    async def text(request: TextRequest, image_id: str = ImageId) -> dict[str, Any]:
        """The masks of what a phrase names ('a dog'; several: 'dog . cat'): a zero-shot
        detector's boxes, segmented with the image's embedding. 400 without a detector."""
        return await service.text(image_id, request)

    return router
