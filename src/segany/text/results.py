"""The result every text route returns: one mask per object a phrase names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TextMask:
    """One object found for a phrase.

    ``mask`` is ``(H, W)`` bool at the original image size; ``box`` is XYXY in original-image
    pixels (the detector's box, or the mask's box for the text-head route); ``detector_score`` is
    the detector's confidence (``None`` when no detector was involved); ``predicted_iou`` is SAM's
    own estimate of the mask's quality.
    """

    phrase: str
    mask: np.ndarray
    box: tuple[float, float, float, float]
    detector_score: float | None
    predicted_iou: float
