"""Small-region cleanup: fill small holes and drop small islands in each mask, then box NMS
preferring the masks that needed no change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch

from ..formats.boxes import masks_to_boxes
from ..formats.rle import mask_to_rle_pytorch, masks_to_rle_counts, rle_to_mask
from .filters import nms
from .table import MaskTable


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: Literal["holes", "islands"]
) -> tuple[np.ndarray, bool]:
    """Fill holes (``"holes"``) or drop islands (``"islands"``) smaller than ``area_thresh``
    (8-connected, OpenCV). If every island is small, the largest is kept. Returns the mask and
    whether it changed."""
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (mask ^ holes).astype(np.uint8)  # holes: components of the background
    _, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    if holes:  # label 0 is the mask itself: keep it and the small holes
        keep = np.concatenate([[True], small])
    else:
        keep = np.concatenate([[False], ~small])
        if not keep.any():
            keep[int(np.argmax(sizes)) + 1] = True
    return keep[labels], True


def clean_mask(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes, then drop islands, smaller than ``min_area`` in an ``(H, W)`` bool mask;
    returns the mask and whether it changed."""
    mask, filled = remove_small_regions(mask, min_area, "holes")
    mask, removed = remove_small_regions(mask, min_area, "islands")
    return mask, filled or removed


def clean_small_regions(
    table: MaskTable, size: tuple[int, int], min_area: int, nms_thresh: float
) -> MaskTable:
    """Fill holes and remove islands smaller than ``min_area`` in every mask, then box NMS at
    ``nms_thresh`` preferring masks that needed no change."""
    h, w = size
    counts, boxes, areas, unchanged = [], [], [], []
    for i, rle_counts in enumerate(table.counts):
        mask, changed = clean_mask(rle_to_mask({"size": [h, w], "counts": rle_counts}), min_area)
        if changed:
            tensor = torch.from_numpy(mask)[None]
            counts.append(masks_to_rle_counts(tensor)[0])
            boxes.append(masks_to_boxes(tensor)[0])
            areas.append(int(mask.sum()))
        else:
            counts.append(rle_counts)
            boxes.append(table.boxes[i])
            areas.append(int(table.areas[i]))
        unchanged.append(not changed)
    table = replace(
        table,
        counts=counts,
        boxes=torch.stack(boxes),
        areas=torch.tensor(areas, dtype=torch.int64),
    )
    scores = torch.tensor(unchanged, dtype=torch.float32)
    return table.select(nms(table.boxes, scores, nms_thresh))


def clean_mask_data(mask_data: Any, min_area: int, nms_thresh: float) -> Any:
    """The official generator's ``postprocess_small_regions``: the same cleanup on a
    ``MaskData`` (``segany.utils.amg``) with ``"rles"`` (uncompressed RLE) and ``"boxes"``
    columns; the changed masks that survive the NMS get their new RLE and box. Filters
    ``mask_data`` in place and returns it."""
    if len(mask_data["rles"]) == 0:
        return mask_data
    cleaned = [clean_mask(rle_to_mask(rle), min_area) for rle in mask_data["rles"]]
    masks = torch.stack([torch.from_numpy(mask) for mask, _ in cleaned])
    boxes = masks_to_boxes(masks)
    unchanged = torch.tensor([not changed for _, changed in cleaned], dtype=torch.float32)
    keep = nms(boxes, unchanged, nms_thresh)
    for i in keep.tolist():
        if cleaned[i][1]:
            mask_data["rles"][i] = mask_to_rle_pytorch(masks[i : i + 1])[0]
            mask_data["boxes"][i] = boxes[i]
    mask_data.filter(keep)
    return mask_data
