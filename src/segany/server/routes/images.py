"""Uploads, embeddings and the image as the model sees it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...inference.embedding import Embedding
from ..errors import ApiError
from ..schemas import EmbeddingDtype, EmbeddingInfo, ImageInfo
from ..service import SegmentService
from .common import ERRORS, ImageId, binary

UPLOAD_BODY = {
    "required": True,
    "description": "The image file: the raw bytes, or multipart/form-data with a `file` field.",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
    },
}


def image_info(key: str, embedding: Embedding, cached: bool) -> ImageInfo:
    """The answer to an upload: the image id and where to fetch its embedding."""
    return ImageInfo(
        id=key,
        width=embedding.width,
        height=embedding.height,
        cached=cached,
        image_url=f"/api/images/{key}/image.png",
        embedding=EmbeddingInfo(
            url=f"/api/images/{key}/embedding",
            shape=list(embedding.features.shape),
            dtypes=["float16", "float32"],
            input_size=list(embedding.input_size),
            img_size=embedding.img_size,
            early_url=None if embedding.early is None else f"/api/images/{key}/early",
            early_shape=None if embedding.early is None else list(embedding.early.shape),
        ),
    )


def embedding_headers(value: Embedding, dtype: str, early: bool = False) -> dict[str, str]:
    """Shape, dtype and sizes of a raw embedding answer (the page reads them)."""
    shape = value.early.shape if (early and value.early is not None) else value.features.shape
    return {
        "x-embedding-shape": ",".join(str(v) for v in shape),
        "x-embedding-dtype": dtype,
        "x-original-size": f"{value.height},{value.width}",
        "x-input-size": f"{value.input_size[0]},{value.input_size[1]}",
        "cache-control": "private, max-age=3600",
    }


async def upload_bytes(request: Request) -> bytes:
    """The uploaded file: the raw body, or the ``file`` field of a multipart form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        item = form.get("file")
        if item is None or isinstance(item, str):
            raise ApiError(400, "multipart upload without a `file` field")
        data = await item.read()
    else:
        data = await request.body()
    if not data:
        raise ApiError(400, "empty upload: send the file as the request body")
    return data


def images_router(service: SegmentService) -> APIRouter:
    router = APIRouter(tags=["images"])

    @router.post(
        "/api/images",
        response_model=ImageInfo,
        responses=ERRORS,
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def upload(request: Request) -> ImageInfo:
        """Upload an image: it is embedded once and cached by the SHA-256 of its bytes."""
        entry, embedding, cached = await service.upload(await upload_bytes(request))
        return image_info(entry.key, embedding, cached)

    @router.get("/api/images/{image_id}/embedding", responses=binary("application/octet-stream"))
    async def embedding(
        image_id: str = ImageId,
        dtype: EmbeddingDtype = Query("float16", description="float16 halves the transfer"),
    ) -> Response:
        """The image embedding as raw little-endian values; shape and dtype in headers."""
        data, value = await service.embedding(image_id, dtype)
        return Response(
            data, media_type="application/octet-stream", headers=embedding_headers(value, dtype)
        )

    @router.get("/api/images/{image_id}/early", responses=binary("application/octet-stream"))
    async def early(
        image_id: str = ImageId,
        dtype: EmbeddingDtype = Query("float16", description="float16 halves the transfer"),
    ) -> Response:
        """HQ-SAM models: the early encoder features as raw little-endian values (the decoder
        graph's ``interm_embeddings``); shape and dtype in headers."""
        data, value = await service.embedding(image_id, dtype, early=True)
        return Response(
            data,
            media_type="application/octet-stream",
            headers=embedding_headers(value, dtype, early=True),
        )

    @router.get("/api/images/{image_id}/image.png", responses=binary("image/png"))
    async def image_png(image_id: str = ImageId) -> Response:
        """The image as the model sees it: upright RGB, as PNG."""
        return Response(await service.display_png(image_id), media_type="image/png")

    return router
