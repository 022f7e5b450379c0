"""The service's errors: a status code and one readable sentence for the client."""

from __future__ import annotations

from ..formats.images import ImageTooLargeError, NotAnImageError
from .limits import Limits

EVICTED = "this image was evicted from the cache: upload it again"


class ApiError(Exception):
    """A failure the client caused (4xx) or must wait out (503): status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def upload_error(exc: ValueError) -> ApiError:
    """The answer to an upload that does not decode, or decodes too large."""
    if isinstance(exc, NotAnImageError):
        return ApiError(415, f"{exc}; accepted: JPEG, PNG, BMP, TIFF, WebP, GIF")
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, str(exc))
    return ApiError(400, str(exc))


def too_large_message(limits: Limits) -> str:
    """The sentence for an upload over ``limits.max_upload_bytes``."""
    limit = limits.max_upload_bytes
    return f"upload: larger than the limit of {limit / 2**20:.0f} MB ({limit:,} bytes)"
