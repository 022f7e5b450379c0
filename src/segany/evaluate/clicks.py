"""Simulated clicks of the zero-shot point protocol (as in RITM and the SAM paper): the first
click at the object's "centre", each next one at the centre of the larger error region."""

from __future__ import annotations

import cv2
import numpy as np


def _distance_inside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of ``region`` to the nearest pixel outside it; the image
    border counts as outside (the region is zero-padded by one pixel first)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _argmax_xy(distance: np.ndarray) -> tuple[int, int]:
    """First maximum in raster order, as (x, y)."""
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def centre_click(mask: np.ndarray) -> tuple[int, int]:
    """The point of ``(H, W)`` bool ``mask`` farthest from its boundary, as (x, y)."""
    if not mask.any():
        raise ValueError("cannot click on an empty mask")
    return _argmax_xy(_distance_inside(mask))


def next_click(
    truth: np.ndarray, prediction: np.ndarray, clicked: np.ndarray | None = None
) -> tuple[int, int, int] | None:
    """The corrective click for ``prediction`` of ``truth`` (both ``(H, W)`` bool): at the centre
    of the missed region (label 1) or of the spill-over region (label 0), whichever is larger
    (deeper). Pixels already ``clicked`` are excluded. ``None`` when there is no error left."""
    allowed = np.ones_like(truth) if clicked is None else ~clicked
    missed = _distance_inside(truth & ~prediction & allowed)
    spilled = _distance_inside(~truth & prediction & allowed)
    if missed.max() == 0 and spilled.max() == 0:
        return None
    positive = missed.max() > spilled.max()
    x, y = _argmax_xy(missed if positive else spilled)
    return x, y, int(positive)
