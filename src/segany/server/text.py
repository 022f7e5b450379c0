"""Text prompts for the page: a phrase → the masks of the objects a detector finds for it, on
an uploaded image (its cached embedding spares the encoder)."""

from __future__ import annotations

from typing import Any

import numpy as np
from anyio import to_thread

from ..formats import encode_coco_rle, mask_bbox_xywh
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..text import Detector, TextMask, segment_text, split_phrases
from .cache import CacheEntry
from .entries import entry_embedding, entry_image
from .errors import ApiError
from .schemas import TextRequest
from .workers import Workers

NO_DETECTOR = (
    "this server has no text detector: start it with `segany serve --detector PATH_OR_NAME` "
    "(a zero-shot detector of transformers: Grounding DINO, OWLv2, OmDet-Turbo)"
)


def text_record(found: TextMask) -> dict[str, Any]:
    """One object's JSON fields: the mask as COCO RLE with its box, and where it came from."""
    return {
        "segmentation": encode_coco_rle(found.mask),
        "area": int(found.mask.sum()),
        "bbox": [float(v) for v in mask_bbox_xywh(found.mask)],
        "predicted_iou": found.predicted_iou,
        "phrase": found.phrase,
        "detector_score": found.detector_score,
        "box": list(found.box),
    }


class TextPrompts:
    """The detector route over cached images; ``detector`` ``None`` answers 400 with advice."""

    def __init__(self, predictor: Predictor, detector: Detector | None, workers: Workers) -> None:
        self.predictor = predictor
        self.detector = detector
        self.workers = workers

    @property
    def name(self) -> str | None:
        return self.detector.source if self.detector is not None else None

    async def masks(self, entry: CacheEntry, request: TextRequest) -> dict[str, Any]:
        """``{"masks": [record, ...], "phrases": [...], "message": why none, or null}``."""
        if self.detector is None:
            raise ApiError(400, NO_DETECTOR)
        try:
            phrases = split_phrases(request.text)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        image = await to_thread.run_sync(entry_image, entry)
        embedding = await to_thread.run_sync(entry_embedding, entry)
        found = await self.workers.compute(
            self._segment, self.detector, image, phrases, embedding, request
        )
        message = None if found else f"no object found for {', '.join(map(repr, phrases))}"
        return {"masks": [text_record(f) for f in found], "phrases": phrases, "message": message}

    def _segment(
        self,
        detector: Detector,
        image: np.ndarray,
        phrases: list[str],
        embedding: Embedding,
        request: TextRequest,
    ) -> list[TextMask]:
        return segment_text(
            self.predictor, detector, image, phrases, embedding=embedding,
            box_threshold=request.box_threshold, max_objects=request.max_objects,
        )  # fmt: skip
