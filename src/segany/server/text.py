"""Text prompts for the page: a phrase → the masks of the objects a detector finds for it, or
without a detector the bundled model's text head picks, on an uploaded image (its cached
embedding spares the encoder)."""

from __future__ import annotations

from typing import Any

import numpy as np
from anyio import to_thread

from ..data.names import UnknownWordError, phrase_words
from ..formats import encode_coco_rle, mask_bbox_xywh
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..text import Detector, TextMask, segment_text, split_phrases
from ..text.prompt import TextPromptHead
from .cache import CacheEntry
from .entries import entry_embedding, entry_image
from .errors import ApiError
from .schemas import TextRequest
from .workers import Workers

NO_DETECTOR = (
    "this server has no text detector: start it with `segany serve --detector PATH_OR_NAME` "
    "(a zero-shot detector of transformers: Grounding DINO, OWLv2, OmDet-Turbo)"
)
HEAD_NAME = "the bundled model's text head"


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
    """The detector route over cached images, else the model's own text head (the bundled
    ``tiny`` has one); with neither, 400 with advice."""

    def __init__(
        self,
        predictor: Predictor,
        detector: Detector | None,
        workers: Workers,
        head: TextPromptHead | None = None,
    ) -> None:
        self.predictor = predictor
        self.detector = detector
        self.workers = workers
        self.head = head

    @property
    def name(self) -> str | None:
        if self.detector is not None:
            return self.detector.source
        return HEAD_NAME if self.head is not None else None

    async def masks(self, entry: CacheEntry, request: TextRequest) -> dict[str, Any]:
        """``{"masks": [record, ...], "phrases": [...], "message": why none, or null}``."""
        if self.detector is None and self.head is None:
            raise ApiError(400, NO_DETECTOR)
        try:
            phrases = split_phrases(request.text)
            if self.detector is None:
                for phrase in phrases:
                    phrase_words(phrase)  # the head knows the generator's words only
        except UnknownWordError as exc:
            raise ApiError(400, f"{exc}; for other words, {NO_DETECTOR}") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        image = await to_thread.run_sync(entry_image, entry)
        embedding = await to_thread.run_sync(entry_embedding, entry)
        if self.detector is None:
            found = await self.workers.compute(self._head_masks, image, phrases, embedding)
        else:
            found = await self.workers.compute(
                self._segment, self.detector, image, phrases, embedding, request
            )
        message = None if found else f"no object found for {', '.join(map(repr, phrases))}"
        return {"masks": [text_record(f) for f in found], "phrases": phrases, "message": message}

    def _head_masks(
        self, image: np.ndarray, phrases: list[str], embedding: Embedding
    ) -> list[TextMask]:
        assert self.head is not None
        found = self.head.segment_phrases(self.predictor, image, phrases, embedding)
        return [m for m in found if m.mask.any()]

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
