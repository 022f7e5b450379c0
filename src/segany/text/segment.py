"""The detector route: a phrase → a zero-shot detector's boxes → SAM's masks (Grounded-SAM)."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import clip_boxes_to_image, nms

from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from .detectors import Detections, Detector, split_phrases
from .results import TextMask


def select_boxes(
    found: Detections,
    size: tuple[int, int],
    nms_threshold: float = 0.5,
    max_objects: int | None = None,
) -> Detections:
    """The boxes to segment: clipped to the image ``size`` ``(H, W)``; one box of any two that
    overlap by more than ``nms_threshold`` IoU, whatever their phrases (a box claimed by "dog"
    and by "cat" is the better-scoring one's); at most ``max_objects``, best first."""
    if not 0.0 <= nms_threshold <= 1.0:
        raise ValueError(f"NMS threshold {nms_threshold} is not between 0 and 1")
    if max_objects is not None and max_objects < 1:
        raise ValueError(f"max objects must be at least 1, not {max_objects}")
    boxes = clip_boxes_to_image(torch.from_numpy(found.boxes), size)
    keep = nms(boxes, torch.from_numpy(found.scores), nms_threshold)[:max_objects].numpy()
    return Detections(boxes.numpy()[keep], found.scores[keep], found.phrases[keep])


def masks_for_boxes(
    predictor: Predictor, embedding: Embedding, found: Detections, phrases: list[str]
) -> list[TextMask]:
    """One mask per box, all boxes in one predict call (the box prompts of a batch)."""
    if not len(found):
        return []
    prediction = predictor.predict(embedding, boxes=found.boxes, multimask=False)
    return [
        TextMask(
            phrase=phrases[int(found.phrases[i])],
            mask=prediction.masks[i, 0],
            box=tuple(float(v) for v in found.boxes[i]),  # type: ignore[arg-type]
            detector_score=float(found.scores[i]),
            predicted_iou=float(prediction.scores[i, 0]),
        )
        for i in range(len(found))
    ]


def segment_text(
    predictor: Predictor,
    detector: Detector,
    image: np.ndarray,
    text: str | list[str],
    *,
    box_threshold: float | None = None,
    nms_threshold: float = 0.5,
    max_objects: int | None = None,
    embedding: Embedding | None = None,
) -> list[TextMask]:
    """The masks of the objects ``text`` names in an ``(H, W, 3)`` uint8 RGB image, best
    detector score first (``box_threshold`` default: the detector family's); several phrases are separated by ``"."`` (``"dog . cat"``) or given
    as a list. Empty when the detector finds nothing above ``box_threshold``. ``embedding``
    (of this image) saves the encoder pass."""
    phrases = split_phrases(text)
    size = (int(image.shape[0]), int(image.shape[1]))
    if embedding is not None and embedding.original_size != size:
        raise ValueError(f"the embedding is of a {embedding.original_size} image, not {size}")
    found = select_boxes(
        detector.detect(image, phrases, box_threshold), size, nms_threshold, max_objects
    )
    if not len(found):
        return []
    return masks_for_boxes(predictor, embedding or predictor.embed(image), found, phrases)
