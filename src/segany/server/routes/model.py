"""The loaded model, its decoder graph and the server's counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..schemas import ModelInfo, Status
from ..service import SegmentService


def model_router(service: SegmentService) -> APIRouter:
    router = APIRouter(tags=["model"])

    @router.get("/api/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The loaded model and its decoder graph."""
        path = service.decoder_path
        return ModelInfo(
            name=service.name,
            img_size=service.model.img_size,
            embedding_shape=service.embedding_shape,
            low_res_size=service.predictor.low_res_size,
            mask_threshold=float(service.model.mask_threshold),
            encoder_id=service.encoder_id,
            decoder_url="/api/model/decoder.onnx",
            decoder_bytes=path.stat().st_size if path.is_file() else 0,
            text_detector=service.text_prompts.name,
        )

    @router.get(
        "/api/model/decoder.onnx",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def decoder_graph() -> FileResponse:
        """The prompt encoder + mask decoder as ONNX (official interface, all 4 masks)."""
        return FileResponse(service.decoder_path, media_type="application/octet-stream")

    @router.get("/api/status", response_model=Status)
    async def status() -> dict[str, Any]:
        """Cache and encoder counters."""
        return service.status()

    return router
