"""Label Studio's ML backend API (``segany serve --label-studio``): health, setup, predict,
webhook and versions, at the paths Label Studio calls under the backend's URL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from ..label_studio_backend import LabelStudioBackend
from .common import ERRORS

ANSWERS = {**ERRORS, **{code: ERRORS[400] for code in (403, 502)}}
JsonBody = Body(..., description="Label Studio's request, as it sends it")


def label_studio_router(backend: LabelStudioBackend) -> APIRouter:
    router = APIRouter(tags=["label studio"], responses=ANSWERS)

    @router.get("/health")
    async def health() -> dict[str, Any]:
        """Label Studio checks the backend is up before every setup."""
        return backend.health()

    @router.post("/setup")
    async def setup(body: dict[str, Any] = JsonBody) -> dict[str, Any]:
        """A project connects: its labeling config (``schema``) must have a BrushLabels tag;
        its address and token serve to fetch images when none were given at start."""
        return backend.setup(body)

    @router.post("/predict")
    async def predict(body: dict[str, Any] = JsonBody) -> dict[str, Any]:
        """Interactive pre-annotation: the keypoints and rectangles of ``params.context``
        give a ``brushlabels`` region (Label Studio's RLE)."""
        return await backend.predict(body)

    @router.post("/webhook")
    async def webhook(body: dict[str, Any] = JsonBody) -> dict[str, Any]:
        """Label Studio's events: with ``--project``, submitted brush masks are recorded."""
        return await backend.webhook(body)

    @router.get("/versions")
    async def versions() -> dict[str, Any]:
        """The one model version this backend serves."""
        return {"versions": [backend.model_version], "message": ""}

    return router
