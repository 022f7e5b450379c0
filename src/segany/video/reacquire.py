"""Loss handling: is a decoded mask still the object, and where is an object that was lost.

A lost object (left the frame, occluded, or a result that stopped looking like it) is searched
for on every following frame: a grid of single-point prompts over the region around where it
was last seen, growing with each lost frame until it spans the whole frame (then the search is
a segment-everything pass, matched against the object). Every candidate is judged with
:func:`~segany.video.follow.mismatch` (predicted IoU, area, colour against the object's
reference); the closest match that passes brings the object back.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from .follow import Followed, ObjectState, mismatch, score_floor
from .motion import grow_box
from .prompts import TrackSettings

POINTS_PER_BATCH = 16  # point prompts decoded at once: bounds the (K, 3, H, W) masks held


def search_region(
    state: ObjectState, settings: TrackSettings, height: int, width: int
) -> np.ndarray:
    """``(4,)`` XYXY region searched after ``state.lost_frames`` lost frames."""
    return grow_box(state.last_box, settings.search_growth * state.lost_frames, height, width)


def grid_points(region: np.ndarray, side: int) -> np.ndarray:
    """``(side², 2)`` XY points at the centres of a ``side`` x ``side`` grid over ``region``."""
    x0, y0, x1, y1 = region
    steps = (np.arange(side) + 0.5) / side
    xs, ys = x0 + steps * (x1 - x0), y0 + steps * (y1 - y0)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def outline_distance(first: np.ndarray, second: np.ndarray) -> float:
    """How unlike two ``(H, W)`` bool masks' outlines are (OpenCV's Hu-moment distance, 0 for
    the same shape at any position, size or rotation)."""
    return float(
        cv2.matchShapes(first.astype(np.uint8), second.astype(np.uint8), cv2.CONTOURS_MATCH_I2, 0)
    )


def search(
    predictor: Predictor,
    embedding: Embedding,
    image: np.ndarray,
    state: ObjectState,
    settings: TrackSettings,
    taken: np.ndarray | None = None,
) -> Followed | None:
    """The best candidate for a lost object on this frame, or ``None``. ``taken`` ``(H, W)``
    bool: pixels other objects hold on this frame; a candidate mostly inside them is another
    object, not this one. Candidates are also compared by outline with the object's last mask
    (Hu moments: blind to position, size and rotation), which tells a look-alike colour of
    another shape apart."""
    height, width = image.shape[:2]
    points = grid_points(search_region(state, settings, height, width), settings.search_points)
    best: tuple[float, Followed] | None = None
    floor = score_floor(state, settings)
    for start in range(0, len(points), POINTS_PER_BATCH):
        chunk = points[start : start + POINTS_PER_BATCH]
        prediction = predictor.predict(
            embedding,
            points=chunk[:, None],
            labels=np.ones((len(chunk), 1), np.int64),
            multimask=True,
        )
        for k, c in zip(*np.nonzero(prediction.scores >= floor), strict=True):
            mask = prediction.masks[k, c]
            if taken is not None and (mask & taken).sum() > 0.5 * mask.sum():
                continue
            cost = mismatch(state, image, mask, float(prediction.scores[k, c]), settings)
            if cost is None:
                continue
            shape = outline_distance(state.mask, mask)
            if shape > settings.max_shape_distance:
                continue
            cost += shape / settings.max_shape_distance
            if best is None or cost < best[0]:
                logits = prediction.low_res_logits[k, c][None]
                best = (cost, Followed(mask, logits, float(prediction.scores[k, c])))
    return None if best is None else best[1]
