"""COCO run-length encoding through pycocotools, and mask boxes in the SA-1B convention."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..automatic.masks import box_xyxy_to_xywh, masks_to_boxes


def encode_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W)`` bool -> ``{"size": [H, W], "counts": str}`` (compressed COCO RLE)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_coco_rle(rle: dict[str, Any]) -> np.ndarray:
    """Compressed or uncompressed (list ``counts``) COCO RLE -> ``(H, W)`` bool."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """``[x, y, w, h]`` with ``w = x_max - x_min`` over inclusive indices (the SAM/SA-1B
    convention: a one-pixel mask has ``w = 0``); ``[0, 0, 0, 0]`` for an empty mask."""
    box = masks_to_boxes(torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)))
    return [int(v) for v in box_xyxy_to_xywh(box)]
