"""The video API's types: an opened video, a prompt on one of its frames, the tracking job and
the tracked masks (COCO RLE per object per frame)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MAX_OBJECT_ID = 1000
SESSION_PATTERN = r"^[0-9a-f]{32}$"

TrackState = Literal["idle", "running", "done", "failed", "cancelled"]


class VideoInfo(BaseModel):
    """An uploaded video, decoded into frames and open as session ``id``."""

    id: str = Field(pattern=SESSION_PATTERN, description="the session: a random token")
    name: str
    width: int
    height: int
    frames: int
    fps: float
    frame_url: str = Field(description="a frame as JPEG: replace {index} with 0 … frames-1")


class CompressedRle(BaseModel):
    size: list[int] = Field(description="(H, W)")
    counts: str = Field(description="COCO's compressed RLE text")


class PromptRequest(BaseModel):
    """One object's prompts on one frame (they replace what it had there): points with labels
    (1 foreground, 0 background), a box, or both; pixels of the frame."""

    object_id: int = Field(ge=0, le=MAX_OBJECT_ID)
    frame_index: int = Field(ge=0)
    points: list[tuple[float, float]] = Field(
        default=[], description="(x, y) per point", max_length=64
    )
    labels: list[int] = Field(default=[], description="1 foreground, 0 background (default 1s)")
    box: list[float] | None = Field(
        default=None, min_length=4, max_length=4, description="x0, y0, x1, y1"
    )


class ObjectMask(BaseModel):
    object_id: int
    mask: CompressedRle
    score: float = Field(description="the mask's predicted IoU")
    lost: bool = Field(default=False, description="the tracker lost the object on this frame")


class PromptResponse(ObjectMask):
    frame_index: int


class TrackStatus(BaseModel):
    """The propagation job: ``done`` of ``total`` frames; ``error`` says why it failed."""

    state: TrackState
    done: int = Field(description="frames whose masks can be read")
    total: int
    steps_done: int = Field(description="frames the tracker embedded (its walk back comes first)")
    steps_total: int = Field(description="frames it will embed (some twice: once per walk)")
    objects: list[int] = Field(description="the object ids being tracked")
    error: str | None = None


class FrameMasks(BaseModel):
    frame_index: int
    objects: list[ObjectMask]


class MasksPage(BaseModel):
    """Tracked frames in the order the tracker gave them, from ``start``; ask again from
    ``next`` for the ones that came since."""

    frames: list[FrameMasks]
    next: int
    state: TrackState
