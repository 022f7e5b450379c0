"""The JSON API's types (they make the OpenAPI schema served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EMBEDDING_DTYPES = ("float16", "float32")
EmbeddingDtype = Literal["float16", "float32"]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: one readable sentence."""

    detail: str = Field(examples=["upload: not an image file (or an unsupported format)"])


class ModelInfo(BaseModel):
    """The loaded model, and what the page needs to run its decoder graph."""

    name: str
    img_size: int = Field(description="side of the model's square input (1024 for ViT-B/L/H)")
    embedding_shape: list[int] = Field(description="(1, C, h, w) of an image embedding")
    low_res_size: int = Field(description="side of the low-res mask logits (mask_input)")
    mask_threshold: float
    encoder_id: str = Field(description="fingerprint of the encoder weights")
    decoder_url: str = Field(description="the decoder ONNX graph (official SamOnnxModel API)")
    decoder_bytes: int
    text_detector: str | None = Field(
        default=None, description="the zero-shot detector of text prompts, if the server has one"
    )


class EmbeddingInfo(BaseModel):
    url: str = Field(description="GET: raw little-endian values, C order, shape below")
    shape: list[int]
    dtypes: list[EmbeddingDtype] = Field(description="choose with ?dtype=; float16 by default")
    input_size: list[int] = Field(description="(h, w) after resizing, before padding")
    img_size: int
    early_url: str | None = Field(
        None,
        description="HQ-SAM models: GET the early encoder features like the embedding (the "
        "decoder graph's interm_embeddings input)",
    )
    early_shape: list[int] | None = None


class ImageInfo(BaseModel):
    """An uploaded image, embedded and cached under ``id`` (the SHA-256 of its bytes)."""

    id: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int
    height: int
    cached: bool = Field(description="true when the embedding came from the cache")
    image_url: str = Field(description="the image as the model sees it (PNG, upright RGB)")
    embedding: EmbeddingInfo


class Sample(BaseModel):
    name: str
    width: int
    height: int
    url: str


class SampleList(BaseModel):
    samples: list[Sample]


class MaskFields(BaseModel):
    """What every mask record the server sends has: the mask as COCO RLE, its area and box,
    and the model's predicted IoU."""

    segmentation: dict[str, object] = Field(description="compressed COCO RLE: size, counts")
    area: int
    bbox: list[float] = Field(description="the mask's box, XYWH")
    predicted_iou: float


class MaskRecord(MaskFields):
    """One mask of "segment everything" (the official generator's record, COCO RLE)."""

    stability_score: float


class EverythingResponse(BaseModel):
    masks: list[MaskRecord]
    seconds: float = Field(description="generator time (0 when served from the cache)")


class UncompressedRle(BaseModel):
    """A binary mask as uncompressed COCO RLE: run lengths in column-major order, starting
    with a run of zeros."""

    size: list[int] = Field(min_length=2, max_length=2, description="(H, W)")
    counts: list[int] = Field(min_length=1)


class ExportRequest(BaseModel):
    """Accepted masks to turn into a file: a cut-out PNG (RGBA, alpha = the union of the
    masks), a mask PNG (0/255) or a COCO instance json (one annotation per mask)."""

    format: Literal["cutout", "mask", "coco"]
    masks: list[UncompressedRle] = Field(min_length=1)
    scores: list[float] | None = Field(default=None, description="predicted IoU per mask")
    crop: bool = Field(default=False, description="cut-out cropped to the masks' box")
    file_name: str = Field(default="image.png", max_length=200, description="for COCO json")


class Status(BaseModel):
    model: str
    cache_entries: int
    cache_bytes: int
    cache_max_bytes: int
    cache_evictions: int
    encoder_runs: int
    pending_embeddings: int


class TextRequest(BaseModel):
    """A text prompt: phrases separated by "." ("dog . cat")."""

    text: str = Field(min_length=1, max_length=500, examples=["a dog"])
    box_threshold: float | None = Field(
        default=None, ge=0, le=1, description="lowest detector score kept (default: the family's)"
    )
    max_objects: int | None = Field(default=None, ge=1, le=100)


class TextMaskRecord(MaskFields):
    """One object a text prompt found: its mask record, phrase and detector box."""

    phrase: str
    detector_score: float | None
    box: list[float] = Field(description="the detector's box, XYXY in image pixels")


class TextResponse(BaseModel):
    masks: list[TextMaskRecord]
    phrases: list[str]
    message: str | None = Field(description="why there is no mask, when there is none")
