"""Videos: open one, its frames, prompts per object and frame, the tracking job, the tracked
masks and their SA-V-like file."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from ..video import VideoService
from ..video_schemas import (
    MAX_OBJECT_ID,
    SESSION_PATTERN,
    MasksPage,
    PromptRequest,
    PromptResponse,
    TrackStatus,
    VideoInfo,
)
from ..video_sessions import VideoSession
from .common import ERRORS, binary
from .images import upload_bytes

ANSWERS = {**ERRORS, **{code: ERRORS[400] for code in (409, 501)}}
SessionId = PathParam(pattern=SESSION_PATTERN, description="the session of an opened video")
ObjectId = PathParam(ge=0, le=MAX_OBJECT_ID, description="the object's id (the page's choice)")
VIDEO_BODY = {
    "required": True,
    "description": "The video file (MP4, WebM, MOV, AVI, GIF…): the raw bytes, or "
    "multipart/form-data with a `file` field.",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "video/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


def video_info(session: VideoSession) -> VideoInfo:
    return VideoInfo(
        id=session.id,
        name=session.name,
        width=session.width,
        height=session.height,
        frames=session.frames,
        fps=session.fps,
        frame_url=f"/api/videos/{session.id}/frames/{{index}}.jpg",
    )


# long: one short handler per route
def video_router(video: VideoService) -> APIRouter:
    router = APIRouter(prefix="/api/videos", tags=["video"], responses=ANSWERS)

    @router.post("", response_model=VideoInfo, openapi_extra={"requestBody": VIDEO_BODY})
    async def open_video(
        request: Request,
        name: str = Query("video", max_length=200, description="the file's name, for exports"),
    ) -> VideoInfo:
        """Open a short video: it is decoded into frames and gets a session."""
        return video_info(await video.open(await upload_bytes(request), name))

    @router.get("/{session_id}", response_model=VideoInfo)
    async def info(session_id: str = SessionId) -> VideoInfo:
        """The opened video."""
        return video_info(video.get(session_id))

    @router.delete("/{session_id}", status_code=204)
    async def close(session_id: str = SessionId) -> Response:
        """Close the video (its frames and masks are removed)."""
        video.close(session_id)
        return Response(status_code=204)

    @router.get("/{session_id}/frames/{index}.jpg", responses=binary("image/jpeg"))
    async def frame(index: int, session_id: str = SessionId) -> Response:
        """Frame ``index`` as JPEG (what the tracker sees)."""
        data = await video.frame_jpeg(session_id, index)
        return Response(
            data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
        )

    @router.post("/{session_id}/prompts", response_model=PromptResponse)
    async def prompt(request: PromptRequest, session_id: str = SessionId) -> dict[str, Any]:
        """Set one object's points and/or box on one frame (replacing what it had there):
        its mask on that frame comes back at once. Tracked masks are dropped: track again."""
        return await video.prompt(session_id, request)

    @router.delete("/{session_id}/objects/{object_id}", status_code=204)
    async def remove_object(
        session_id: str = SessionId,
        object_id: int = ObjectId,
        frame_index: int | None = Query(None, ge=0, description="only its prompts on this frame"),
    ) -> Response:
        """Remove an object (or its prompts on one frame)."""
        video.clear(session_id, object_id, frame_index)
        return Response(status_code=204)

    @router.post("/{session_id}/track", response_model=TrackStatus, status_code=202)
    async def track(session_id: str = SessionId) -> dict[str, Any]:
        """Follow every prompted object through the clip, forward and backward from its
        prompts, in the background; poll the status, read the masks as they come."""
        return video.track(session_id)

    @router.get("/{session_id}/track", response_model=TrackStatus)
    async def status(session_id: str = SessionId) -> dict[str, Any]:
        """The tracking job's progress."""
        return video.status(session_id)

    @router.post("/{session_id}/track/cancel", response_model=TrackStatus)
    async def cancel(session_id: str = SessionId) -> dict[str, Any]:
        """Stop the tracking job (the frames done so far are kept)."""
        return video.cancel(session_id)

    @router.get("/{session_id}/masks", response_model=MasksPage)
    async def masks(
        session_id: str = SessionId,
        start: int = Query(0, ge=0, description="position in the tracker's order (from `next`)"),
    ) -> dict[str, Any]:
        """Tracked masks, frame by frame in the order the tracker gave them, from ``start``."""
        return video.masks(session_id, start)

    @router.get("/{session_id}/export", responses=binary("application/json"))
    async def export(session_id: str = SessionId) -> Response:
        """The tracked masks as an SA-V-like JSON file: the video, the object ids, and one
        record per object and frame (COCO RLE, score, lost, area, XYWH box)."""
        data, name = video.export(session_id)
        headers = {"content-disposition": f'attachment; filename="{name}"'}
        return Response(data, media_type="application/json", headers=headers)

    return router
