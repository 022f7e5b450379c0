"""Every error as JSON, ``{"detail": "one sentence"}``: 4xx for bad input, 5xx only for the
server's own failures."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError


def validation_message(exc: RequestValidationError) -> str:
    """The first three validation errors, each as ``field: message``."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "invalid request: " + "; ".join(parts)


async def api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, exc.status)


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)


async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_message(exc)}, 422)


async def internal(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); see the server log"}, 500
    )


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as JSON."""
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal)
