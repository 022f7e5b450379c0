"""Where the prompts go: point grids on [0, 1]^2, the crop boxes of each crop layer, and moving
boxes, points and masks from a crop to the image frame. Boxes are XYXY."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import torch
from torch import Tensor

Box = list[int]  # XYXY


@dataclass(frozen=True)
class Crop:
    """One crop of the image: its XYXY box, crop layer, and the ``(H, W)`` image size."""

    box: Box
    layer: int
    image_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """``(h, w)`` of the crop."""
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 points at cell centres of an ``n x n`` grid on [0, 1]^2, x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer: ``int(n / scale**i)`` points per side in layer ``i``."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, ...], n_layers: int, overlap_ratio: float
) -> tuple[list[Box], list[int]]:
    """XYXY crop boxes and their layer: the whole image, then ``(2**i)**2`` overlapping crops
    in layer ``i`` (x outer, y inner). Layer 1 overlaps by ``overlap_ratio`` of the short side,
    deeper layers proportionally less."""
    im_h, im_w = im_size[:2]
    short_side = min(im_h, im_w)
    boxes: list[Box] = [[0, 0, im_w, im_h]]
    layers = [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + im_w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + im_h) / per_side)
        starts_x = [int((crop_w - overlap) * i) for i in range(per_side)]
        starts_y = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(starts_x, starts_y):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def _offset(crop_box: Sequence[int], like: Tensor, width: int) -> Tensor:
    x0, y0 = crop_box[0], crop_box[1]
    values = [x0, y0] * (width // 2)
    return torch.tensor(values, device=like.device, dtype=like.dtype)


def uncrop_boxes_xyxy(boxes: Tensor, crop_box: Sequence[int]) -> Tensor:
    """``(..., 4)`` boxes in a crop -> the image frame."""
    return boxes + _offset(crop_box, boxes, 4)


def uncrop_points(points: Tensor, crop_box: Sequence[int]) -> Tensor:
    """``(..., 2)`` points in a crop -> the image frame."""
    return points + _offset(crop_box, points, 2)


def uncrop_masks(masks: Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> Tensor:
    """``(..., h, w)`` masks in a crop -> ``(..., H, W)``, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return torch.nn.functional.pad(masks, pad, value=0)


def batch_iterator(batch_size: int, *args: Sequence[Any]) -> Iterator[list[Any]]:
    """Slices of ``batch_size`` along the first axis of equally long sequences."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator needs one or more sequences of the same length")
    for start in range(0, len(args[0]), batch_size):
        yield [a[start : start + batch_size] for a in args]
