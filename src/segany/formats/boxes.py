"""Boxes of masks in the SAM/SA-1B convention: XYXY with an inclusive maximum (a one-pixel mask
at ``(x, y)`` has the box ``[x, y, x, y]``), and XYWH with ``w = x1 - x0``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(..., H, W)`` bool -> ``(..., 4)`` int64 XYXY boxes, inclusive max; ``[0, 0, 0, 0]``
    for an empty mask."""
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)

    def first_last(hit: Tensor, size: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(size, device=hit.device)
        first = torch.where(hit, index, size).amin(dim=-1)
        last = torch.where(hit, index, -1).amax(dim=-1)
        return first, last

    y0, y1 = first_last(rows, h)
    x0, x1 = first_last(cols, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(rows.any(dim=-1, keepdim=True), boxes, 0)


def box_xyxy_to_xywh(box_xyxy: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``(..., 4)`` XYXY -> XYWH (a copy; width is ``x1 - x0``)."""
    box = box_xyxy.clone() if isinstance(box_xyxy, Tensor) else np.array(box_xyxy, copy=True)
    box[..., 2] = box[..., 2] - box[..., 0]
    box[..., 3] = box[..., 3] - box[..., 1]
    return box


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` of an ``(H, W)`` bool mask, ``w = x_max - x_min`` over inclusive indices
    (a one-pixel mask has ``w = 0``); ``[0, 0, 0, 0]`` for an empty mask."""
    box = masks_to_boxes(torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)))
    return [int(v) for v in box_xyxy_to_xywh(box)]
