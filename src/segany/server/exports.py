"""Accepted masks as a file: a cut-out PNG, a mask PNG or a COCO instance json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.coco import CocoDataset
from ..formats.pictures import cutout, mask_png, png_bytes
from ..formats.rle import decode_coco_rle, encode_coco_rle, mask_bbox_xywh
from .errors import ApiError
from .limits import Limits
from .schemas import ExportRequest


def check_export(request: ExportRequest, limits: Limits) -> None:
    """413 for too many masks, 400 for a score list of another length."""
    if len(request.masks) > limits.max_export_masks:
        raise ApiError(
            413, f"too many masks: {len(request.masks)} (limit {limits.max_export_masks})"
        )
    if request.scores is not None and len(request.scores) != len(request.masks):
        raise ApiError(400, f"{len(request.scores)} scores for {len(request.masks)} masks")


def export_file(image: np.ndarray, request: ExportRequest) -> tuple[bytes, str, str]:
    """The file of ``request``'s masks over ``image`` ``(H, W, 3)``: (content, media type,
    file name). One mask is decoded at a time: memory stays at a few image-sized arrays
    whatever the number of masks."""
    height, width = image.shape[:2]
    scores = request.scores or [1.0] * len(request.masks)
    union = np.zeros((height, width), dtype=bool)
    records = []
    for index, (rle, score) in enumerate(zip(request.masks, scores)):
        mask = _decode_uncompressed(rle.size, rle.counts, (height, width), index)
        union |= mask
        if request.format == "coco":
            records.append(_coco_record(mask, score))
    if request.format == "cutout":
        return png_bytes(cutout(image, union, crop=request.crop)), "image/png", "cutout.png"
    if request.format == "mask":
        return png_bytes(mask_png(union)), "image/png", "mask.png"
    dataset = CocoDataset()
    dataset.add_image(Path(request.file_name).name or "image.png", height, width, records)
    return json.dumps(dataset.to_dict()).encode(), "application/json", "masks.coco.json"


def _coco_record(mask: np.ndarray, score: float) -> dict[str, Any]:
    return {
        "segmentation": encode_coco_rle(mask),
        "bbox": mask_bbox_xywh(mask),
        "area": int(mask.sum()),
        "predicted_iou": float(score),
    }


def _decode_uncompressed(
    size: list[int], counts: list[int], shape: tuple[int, int], index: int
) -> np.ndarray:
    """Check an uncompressed COCO RLE against the image, then decode it (pycocotools trusts
    the counts, so they are checked here first)."""
    height, width = shape
    if list(size) != [height, width]:
        raise ApiError(
            400, f"mask {index}: size {list(size)} is not the image's [{height}, {width}]"
        )
    if min(counts) < 0:
        raise ApiError(400, f"mask {index}: negative run length")
    if sum(counts) != height * width:
        raise ApiError(
            400, f"mask {index}: run lengths add up to {sum(counts)}, not {height * width} pixels"
        )
    return decode_coco_rle({"size": [height, width], "counts": list(counts)})
