"""The annotation API's types: what the page sends (checked here, so that a bad body is a 422
with the field named) and what it gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_ID = 2**62  # ids beyond this cannot be rows; they would overflow the database's integers
Annotator = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


class AnnotatorRequest(BaseModel):
    """Who asks: the name the page asked for once."""

    model_config = ConfigDict(extra="forbid")
    annotator: Annotator = Field(description="the annotator's name, recorded on every mask")


class SubmittedMask(BaseModel):
    """A mask in the image's frame: COCO RLE, compressed (a string) or uncompressed (run
    lengths, column-major, starting with background; what the page sends)."""

    model_config = ConfigDict(extra="forbid")
    size: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        min_length=2, max_length=2, description="(H, W)"
    )
    counts: (
        Annotated[str, StringConstraints(max_length=50_000_000)] | list[Annotated[int, Field(ge=0)]]
    )


class AcceptRequest(AnnotatorRequest):
    """An accepted mask and what it cost."""

    segmentation: SubmittedMask
    clicks: int = Field(ge=0, le=1_000_000, description="clicks and brush strokes")
    seconds: float = Field(
        ge=0, le=7 * 86400, allow_inf_nan=False, description="first interaction to accept"
    )
    client_key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{8,100}$",
        description="a key the page makes once per mask: a retried request stores it once",
    )
    corrects_id: RowId | None = Field(default=None, description="the proposal this replaces")


class FinishRequest(AnnotatorRequest):
    seconds: float | None = Field(
        default=None, ge=0, le=7 * 86400, allow_inf_nan=False, description="time on the image"
    )


class StoredMask(BaseModel):
    """A mask of the project (compressed COCO RLE in the image's frame)."""

    id: int
    gear: int
    status: str
    segmentation: dict[str, object] = Field(description="compressed COCO RLE: size, counts")
    bbox: list[float] = Field(description="XYWH")
    area: int
    annotator: str | None
    predicted_iou: float | None
    corrects_id: int | None


class Task(BaseModel):
    """The image leased to this annotator, and its masks so far."""

    image_id: int
    name: str = Field(description="the image's file name")
    width: int
    height: int
    gear: int = Field(description="2 when the image has pre-filled proposals, else 1")
    split: str
    expires_at: datetime = Field(description="the lease's end unless renewed by a write")
    image_url: str
    embedding_url: str
    proposals: list[StoredMask] = Field(description="pre-filled masks still open (gear 2)")
    rejected: list[StoredMask] = Field(description="pre-filled masks rejected so far")
    accepted: list[StoredMask] = Field(description="masks accepted by annotators")


class NextResponse(BaseModel):
    task: Task | None = Field(description="null: every image is done or held by someone else")
    remaining: int = Field(description="images not finished yet")


class AnnotationInfo(BaseModel):
    project: str
    model: str = Field(description="the model version recorded on accepted masks")
    model_version_id: int
    images: int = Field(description="readable images in the project")
    remaining: int
    lease_seconds: float


class Lease(BaseModel):
    expires_at: datetime


class Finished(BaseModel):
    remaining: int
