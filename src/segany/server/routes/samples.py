"""Sample scenes to try the page without an image of one's own."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from ...data.samples import SAMPLE_SEEDS, sample_names, sample_scene, sample_size
from ...formats.pictures import png_bytes
from ..errors import ApiError
from ..schemas import Sample, SampleList
from .common import binary


@lru_cache(maxsize=len(SAMPLE_SEEDS))
def sample_png(name: str) -> bytes:
    """The PNG of a sample scene; ``ApiError`` 404 for an unknown name."""
    if name not in sample_names():
        raise ApiError(404, f"no sample named {name!r}; known: {', '.join(sample_names())}")
    return png_bytes(sample_scene(name).image)


def samples_router() -> APIRouter:
    router = APIRouter(tags=["samples"])

    @router.get("/api/samples", response_model=SampleList)
    async def samples() -> SampleList:
        """Generated scenes to try the page without an image of one's own."""
        height, width = sample_size()
        return SampleList(
            samples=[
                Sample(name=n, width=width, height=height, url=f"/api/samples/{n}.png")
                for n in sample_names()
            ]
        )

    @router.get("/api/samples/{name}.png", responses=binary("image/png"))
    async def sample(name: str) -> Response:
        """A sample scene as PNG."""
        return Response(sample_png(name), media_type="image/png")

    return router
