"""The generator's masks as typed columns (:class:`MaskTable`), and the records made from them:
the official generator's dicts, or :class:`~segany.formats.sa1b.Sa1bAnnotation` records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..formats.boxes import box_xyxy_to_xywh
from ..formats.rle import coco_encode_rle, rle_to_mask
from ..formats.sa1b import Sa1bAnnotation

RECORD_KEYS = (
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "point_coords",
    "stability_score",
    "crop_box",
)  # the official generator's records, in its order
# ``output_mode`` -> the record's ``segmentation`` from an uncompressed RLE dict
SEGMENTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "binary_mask": rle_to_mask,
    "uncompressed_rle": lambda rle: rle,
    "coco_rle": coco_encode_rle,
}


@dataclass
class MaskTable:
    """Candidate masks as typed columns, one row per mask.

    ``counts`` uncompressed RLE counts (int64 arrays) in the image frame, ``boxes`` ``(N, 4)``
    int64 XYXY and ``points`` in the crop frame until the crop is done, in the image frame after;
    ``areas`` ``(N,)`` int64, ``iou`` and ``stability`` ``(N,)`` float32, ``points`` ``(N, 2)``
    float64 prompt coordinates, ``crop_boxes`` ``(N, 4)`` int64 XYXY.
    """

    counts: list[np.ndarray]
    boxes: Tensor
    areas: Tensor
    iou: Tensor
    stability: Tensor
    points: Tensor
    crop_boxes: Tensor

    def __post_init__(self) -> None:
        # every column must describe the same masks: a misaligned row would pair one object's
        # mask with another's box and area
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise AssertionError(f"MaskTable columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.counts)

    def select(self, index: Tensor) -> MaskTable:
        """The rows ``index`` (bool mask or integer indices, in that order)."""
        index = index.cpu()
        if index.dtype == torch.bool:
            index = index.nonzero()[:, 0]
        rows = index.tolist()
        return MaskTable(
            counts=[self.counts[i] for i in rows],
            **{
                f.name: getattr(self, f.name)[index.to(getattr(self, f.name).device)]
                for f in fields(self)
                if f.name != "counts"
            },
        )

    @staticmethod
    def cat(tables: Sequence[MaskTable]) -> MaskTable:
        """Rows of all ``tables`` in order."""
        if not tables:
            return MaskTable.empty()
        return MaskTable(
            counts=[c for t in tables for c in t.counts],
            **{
                f.name: torch.cat([getattr(t, f.name) for t in tables])
                for f in fields(MaskTable)
                if f.name != "counts"
            },
        )

    @staticmethod
    def empty() -> MaskTable:
        """A table of no masks."""
        return MaskTable(
            counts=[],
            boxes=torch.zeros(0, 4, dtype=torch.int64),
            areas=torch.zeros(0, dtype=torch.int64),
            iou=torch.zeros(0),
            stability=torch.zeros(0),
            points=torch.zeros(0, 2, dtype=torch.float64),
            crop_boxes=torch.zeros(0, 4, dtype=torch.int64),
        )

    def records(
        self, size: tuple[int, int], encode: Callable[[dict[str, Any]], Any]
    ) -> list[dict[str, Any]]:
        """The official records (keys :data:`RECORD_KEYS`) of masks in an ``(H, W)`` image:
        ``segmentation`` is ``encode`` of the uncompressed RLE dict, boxes are XYWH."""
        h, w = size
        boxes = box_xyxy_to_xywh(self.boxes).tolist()
        crop_boxes = box_xyxy_to_xywh(self.crop_boxes).tolist()
        return [
            {
                "segmentation": encode({"size": [h, w], "counts": counts.tolist()}),
                "area": int(self.areas[i]),
                "bbox": boxes[i],
                "predicted_iou": float(self.iou[i]),
                "point_coords": [self.points[i].tolist()],
                "stability_score": float(self.stability[i]),
                "crop_box": crop_boxes[i],
            }
            for i, counts in enumerate(self.counts)
        ]

    def annotations(self, size: tuple[int, int]) -> list[Sa1bAnnotation]:
        """The records as SA-1B annotations (COCO RLE), ids from 0 in row order."""
        return [
            Sa1bAnnotation(id=i, **record)
            for i, record in enumerate(self.records(size, coco_encode_rle))
        ]
