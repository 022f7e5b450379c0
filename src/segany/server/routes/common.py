"""What the routers share: the documented error answers and the image id parameter."""

from __future__ import annotations

from typing import Any

from fastapi import Path as PathParam

from ..cache import KEY_PATTERN
from ..schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503)
}
ImageId = PathParam(pattern=KEY_PATTERN, description="SHA-256 of the uploaded bytes")


def binary(media_type: str) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route that returns ``media_type`` bytes."""
    return {200: {"content": {media_type: {}}}, **ERRORS}
