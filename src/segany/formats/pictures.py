"""Masks as pictures: binary PNGs, label maps, transparent cut-outs and overlays."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from .files import atomic_write_bytes

MASK_TINT = (30, 144, 255)
POSITIVE, NEGATIVE, BOX = (0, 220, 0), (230, 30, 30), (255, 200, 0)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` array (or uint16 gray)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(array))


def mask_png(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool -> uint8 0/255."""
    return mask.astype(np.uint8) * 255


def label_map(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """One ``(H, W)`` image with 0 for background and ``i + 1`` where mask ``i`` is (later masks
    on top); uint8 for up to 255 masks, else uint16."""
    dtype = np.uint8 if len(masks) <= 255 else np.uint16
    labels = np.zeros(shape, dtype=dtype)
    for index, mask in enumerate(masks):
        labels[mask] = index + 1
    return labels


def cutout(image: np.ndarray, mask: np.ndarray, crop: bool = False) -> np.ndarray:
    """RGBA ``(H, W, 4)``: the image with alpha 255 on the mask and 0 elsewhere; with ``crop``,
    cut to the mask's bounding box."""
    rgba = np.dstack([image, mask_png(mask)])
    if crop and mask.any():
        ys, xs = np.nonzero(mask)
        rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return np.ascontiguousarray(rgba)


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    points: Sequence[tuple[float, float, int]] = (),
    box: Sequence[float] | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """The image with each mask tinted (one colour each), foreground points green, background
    points red, the box yellow. ``(H, W, 3)`` uint8 RGB."""
    out = image.astype(np.float32).copy()
    rng = np.random.default_rng(0)
    for index, mask in enumerate(masks):
        colour = np.array(MASK_TINT if index == 0 else rng.integers(40, 255, 3), dtype=np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    canvas = np.ascontiguousarray(out.astype(np.uint8))
    radius = max(3, round(min(image.shape[:2]) / 100))
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX, max(1, radius // 2))
    for x, y, label in points:
        centre = (int(round(x)), int(round(y)))
        cv2.circle(canvas, centre, radius, POSITIVE if label == 1 else NEGATIVE, -1)
        cv2.circle(canvas, centre, radius, (255, 255, 255), 1)
    return canvas
