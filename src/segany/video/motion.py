"""Where an object moved between two frames: the previous mask's pixels matched in the new frame
(OpenCV's masked template matching), and the previous result shifted by that motion so the
next frame's prompt lands on the object even when it moves farther than its own size."""

from __future__ import annotations

import cv2
import numpy as np

LOW_LOGIT = -20.0  # what a shifted low-res logit map gets where nothing was: clearly outside


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """``(4,)`` float XYXY box of a ``(H, W)`` bool mask (pixel edges), ``None`` if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def grow_box(box: np.ndarray, factor: float, height: int, width: int) -> np.ndarray:
    """``box`` widened by ``factor`` times its size on each side, clipped to the frame."""
    x0, y0, x1, y1 = box
    dx, dy = factor * (x1 - x0), factor * (y1 - y0)
    return np.array(
        [
            max(0.0, x0 - dx),
            max(0.0, y0 - dy),
            min(float(width), x1 + dx),
            min(float(height), y1 + dy),
        ]
    )


def estimate_shift(
    previous: np.ndarray, current: np.ndarray, mask: np.ndarray, search: float
) -> tuple[int, int]:
    """``(dx, dy)`` pixels that best carry the masked pixels of ``previous`` onto ``current``
    (both ``(H, W, 3)`` uint8), looked for within ``search`` times the mask's box size around
    where it was. ``(0, 0)`` when the mask is too small to match."""
    box = mask_box(mask)
    if box is None or mask.sum() < 16:
        return 0, 0
    height, width = mask.shape
    x0, y0, x1, y1 = box.astype(int)
    sx0, sy0, sx1, sy1 = grow_box(box, search, height, width).astype(int)
    template = previous[y0:y1, x0:x1].astype(np.float32)
    window = current[sy0:sy1, sx0:sx1].astype(np.float32)
    if window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
        return 0, 0
    weight = np.repeat(mask[y0:y1, x0:x1, None], 3, axis=2).astype(np.float32)
    # Squared differences over the object's own pixels only: the background inside its box
    # (which stays put while the object moves) does not pull the match back.
    cost = cv2.matchTemplate(window, template, cv2.TM_SQDIFF, mask=weight)
    cost[~np.isfinite(cost)] = np.inf
    here = (x0 - sx0, y0 - sy0)
    best = np.unravel_index(int(np.argmin(cost)), cost.shape)
    # Ties (a flat object on a flat background) keep the object where it was.
    if cost[best] >= cost[here[1], here[0]]:
        return 0, 0
    return int(best[1] - here[0]), int(best[0] - here[1])


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``(H, W)`` bool mask moved by whole pixels; what leaves the frame is dropped."""
    if dx == 0 and dy == 0:
        return mask
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    height, width = mask.shape
    moved = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST)
    return moved.astype(bool)


def shift_logits(logits: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``(1, 4h, 4w)`` low-res logits moved by ``(dx, dy)`` low-res cells."""
    if dx == 0 and dy == 0:
        return logits
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    side_h, side_w = logits.shape[-2:]
    moved = cv2.warpAffine(
        logits[0].astype(np.float32),
        matrix,
        (side_w, side_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=LOW_LOGIT,
    )
    return moved[None]


def interior_point(mask: np.ndarray) -> np.ndarray | None:
    """``(2,)`` XY of the mask pixel farthest from its edge (inside even for a ring or a
    crescent, unlike the centroid), ``None`` if empty."""
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([x + 0.5, y + 0.5])
