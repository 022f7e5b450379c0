"""The HTTP layer: FastAPI routes over :class:`~.service.SegmentService`, JSON errors, the
cross-origin isolation headers the page's multithreaded WebAssembly needs, and the page.

Every error is ``{"detail": "one sentence"}`` with a 4xx code for bad input (5xx only for the
server's own failures); no path from a request reaches the disk (image ids are checked content
hashes, sample names come from a fixed list, static files are served by Starlette's guarded
``StaticFiles``).
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..data.scenes import SceneConfig
from .cache import KEY_PATTERN
from .limits import Limits
from .schemas import (
    EmbeddingDtype,
    EmbeddingInfo,
    ErrorResponse,
    EverythingResponse,
    ExportRequest,
    ImageInfo,
    ModelInfo,
    Sample,
    SampleList,
    Status,
)
from .service import ApiError, SegmentService, sample_names, sample_png

STATIC_DIR = Path(__file__).with_name("static")
SCENE = SceneConfig()  # the samples' size
ISOLATION_HEADERS = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503)
}
ImageId = PathParam(pattern=KEY_PATTERN, description="SHA-256 of the uploaded bytes")
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
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>segany</title>
<h1>segany server is running</h1>
<p>The page has not been built: run <code>make web</code> (npm ci and the Vite build in
<code>web/</code>). The API is at <a href="/docs">/docs</a>.</p>"""

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body past the limit."""


class HeadersAndLimits:
    """ASGI middleware: adds the isolation headers to every response and refuses request
    bodies over ``max_bytes`` (by ``Content-Length`` at once, or while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *ISOLATION_HEADERS]
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse({"detail": self.message}, 413)(scope, receive, send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(413, self.message)
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await JSONResponse({"detail": self.message}, 413)(scope, receive, send_with_headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "invalid request: " + "; ".join(parts)


def create_app(
    service: SegmentService,
    *,
    static_dir: str | os.PathLike[str] | None = STATIC_DIR,
) -> FastAPI:
    """The web app over a service; ``static_dir`` holds the built page (``None``: API only)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield

    app = FastAPI(
        title="segany",
        version=__version__,
        description="Segment Anything: embeddings on the server, prompts and masks in the browser.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(
        HeadersAndLimits,
        max_bytes=service.limits.max_upload_bytes,
        message=service.too_large_message(),
    )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, 422)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see the server log"}, 500
        )

    def image_info(entry_key: str, embedding: Any, cached: bool) -> ImageInfo:
        return ImageInfo(
            id=entry_key,
            width=embedding.width,
            height=embedding.height,
            cached=cached,
            image_url=f"/api/images/{entry_key}/image.png",
            embedding=EmbeddingInfo(
                url=f"/api/images/{entry_key}/embedding",
                shape=list(embedding.features.shape),
                dtypes=["float16", "float32"],
                input_size=list(embedding.input_size),
                img_size=embedding.img_size,
            ),
        )

    @app.get("/api/model", response_model=ModelInfo, tags=["model"])
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
        )

    @app.get(
        "/api/model/decoder.onnx",
        response_class=FileResponse,
        tags=["model"],
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def decoder_graph() -> FileResponse:
        """The prompt encoder + mask decoder as ONNX (official interface, all 4 masks)."""
        return FileResponse(service.decoder_path, media_type="application/octet-stream")

    @app.post(
        "/api/images",
        response_model=ImageInfo,
        responses=ERRORS,
        tags=["images"],
        openapi_extra={"requestBody": UPLOAD_BODY},
    )
    async def upload(request: Request) -> ImageInfo:
        """Upload an image: it is embedded once and cached by the SHA-256 of its bytes."""
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
            raise ApiError(400, "empty upload: send the image file as the request body")
        entry, embedding, cached = await service.upload(data)
        return image_info(entry.key, embedding, cached)

    @app.get(
        "/api/images/{image_id}/embedding",
        tags=["images"],
        responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
    )
    async def embedding(
        image_id: str = ImageId,
        dtype: EmbeddingDtype = Query("float16", description="float16 halves the transfer"),
    ) -> Response:
        """The image embedding as raw little-endian values; shape and dtype in headers."""
        data, value = await service.embedding(image_id, dtype)
        shape = ",".join(str(v) for v in value.features.shape)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "x-embedding-shape": shape,
                "x-embedding-dtype": dtype,
                "x-original-size": f"{value.height},{value.width}",
                "x-input-size": f"{value.input_size[0]},{value.input_size[1]}",
                "cache-control": "private, max-age=3600",
            },
        )

    @app.get(
        "/api/images/{image_id}/image.png",
        tags=["images"],
        responses={200: {"content": {"image/png": {}}}, **ERRORS},
    )
    async def image_png(image_id: str = ImageId) -> Response:
        """The image as the model sees it: upright RGB, as PNG."""
        return Response(await service.display_png(image_id), media_type="image/png")

    @app.post(
        "/api/images/{image_id}/everything",
        response_model=EverythingResponse,
        responses=ERRORS,
        tags=["images"],
    )
    async def everything(image_id: str = ImageId) -> dict[str, Any]:
        """Segment everything: the automatic mask generator's masks (COCO RLE), cached."""
        return await service.everything(image_id)

    @app.post(
        "/api/images/{image_id}/export",
        tags=["images"],
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

    @app.get("/api/samples", response_model=SampleList, tags=["samples"])
    async def samples() -> SampleList:
        """Generated scenes to try the page without an image of one's own."""
        return SampleList(
            samples=[
                Sample(name=n, width=SCENE.width, height=SCENE.height, url=f"/api/samples/{n}.png")
                for n in sample_names()
            ]
        )

    @app.get(
        "/api/samples/{name}.png",
        tags=["samples"],
        responses={200: {"content": {"image/png": {}}}, **ERRORS},
    )
    async def sample(name: str) -> Response:
        """A sample scene as PNG."""
        return Response(sample_png(name), media_type="image/png")

    @app.get("/api/status", response_model=Status, tags=["model"])
    async def status() -> dict[str, Any]:
        """Cache and encoder counters."""
        return service.status()

    @app.get("/api/{rest:path}", include_in_schema=False)
    async def unknown(rest: str) -> None:
        raise ApiError(404, f"no such API route: /api/{rest}")

    page = Path(static_dir) if static_dir is not None else None
    if page is not None and (page / "index.html").is_file():
        app.mount("/", StaticFiles(directory=page, html=True), name="page")
    else:

        @app.get("/", include_in_schema=False)
        async def not_built() -> HTMLResponse:
            return HTMLResponse(NOT_BUILT, 503)

    return app


__all__ = ["Limits", "SegmentService", "create_app"]
