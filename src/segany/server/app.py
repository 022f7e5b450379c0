"""The HTTP layer: FastAPI routes (:mod:`.routes`) over :class:`~.service.SegmentService`,
JSON errors (:mod:`.handlers`), the cross-origin isolation headers (:mod:`.middleware`), and
the page.

No path from a request reaches the disk: image ids are checked content hashes, sample names
come from a fixed list, static files are served by Starlette's guarded ``StaticFiles``.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .annotation import AnnotationService
from .auth import TokenGate
from .errors import ApiError
from .handlers import add_error_handlers
from .limits import Limits
from .middleware import HeadersAndLimits
from .routes import (
    annotation_router,
    images_router,
    model_router,
    results_router,
    samples_router,
    text_router,
)
from .service import SegmentService

STATIC_DIR = Path(__file__).with_name("static")
ANNOTATE_PAGE = "annotate.html"
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>segany</title>
<h1>segany server is running</h1>
<p>The page has not been built: run <code>make web</code> (npm ci and the Vite build in
<code>web/</code>). The API is at <a href="/docs">/docs</a>.</p>"""

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


def create_app(
    service: SegmentService,
    *,
    static_dir: str | os.PathLike[str] | None = STATIC_DIR,
    annotation: AnnotationService | None = None,
    token: str | None = None,
) -> FastAPI:
    """The web app over a service; ``static_dir`` holds the built page (``None``: API only).
    With ``annotation``, the annotation API and page (``/annotate``) too; with ``token``, every
    request must carry it (:mod:`.auth`)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if annotation is not None:
            annotation.start()
        yield
        if annotation is not None:
            await annotation.stop()

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
    if token is not None:  # outermost: nothing runs for a request without the token
        app.add_middleware(TokenGate, token=token)
    add_error_handlers(app)
    for router in (
        model_router(service),
        images_router(service),
        results_router(service),
        text_router(service),
        samples_router(),
    ):
        app.include_router(router)
    if annotation is not None:
        app.include_router(annotation_router(annotation))

    @app.get("/api/{rest:path}", include_in_schema=False)
    async def unknown(rest: str) -> None:
        raise ApiError(404, f"no such API route: /api/{rest}")

    if annotation is not None:
        add_annotation_page(app, static_dir)
    add_page(app, static_dir)
    return app


def add_annotation_page(app: FastAPI, static_dir: str | os.PathLike[str] | None) -> None:
    """The annotation page at ``/annotate``, where ``/`` leads in annotation mode."""
    page = Path(static_dir) / ANNOTATE_PAGE if static_dir is not None else None

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/annotate" + (f"?{query}" if query else ""), 307)

    @app.get("/annotate", include_in_schema=False)
    async def annotate() -> Response:
        if page is None or not page.is_file():
            return HTMLResponse(NOT_BUILT, 503)
        return FileResponse(page, media_type="text/html")


def add_page(app: FastAPI, static_dir: str | os.PathLike[str] | None) -> None:
    """Serve the built page at ``/``, or a 503 note saying how to build it."""
    page = Path(static_dir) if static_dir is not None else None
    if page is not None and (page / "index.html").is_file():
        app.mount("/", StaticFiles(directory=page, html=True), name="page")
        return

    @app.get("/", include_in_schema=False)
    async def not_built() -> HTMLResponse:
        return HTMLResponse(NOT_BUILT, 503)


__all__ = ["AnnotationService", "Limits", "SegmentService", "create_app"]
