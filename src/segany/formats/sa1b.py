"""SA-1B json: one file per image, ``{"image": {...}, "annotations": [...]}`` with COCO RLE."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import mask_bbox_xywh
from .files import atomic_write_text
from .rle import decode_coco_rle, encode_coco_rle


@dataclass(frozen=True)
class Sa1bImage:
    image_id: int
    width: int
    height: int
    file_name: str


@dataclass(frozen=True)
class Sa1bAnnotation:
    """One mask record; ``segmentation`` is COCO RLE, boxes are XYWH."""

    id: int
    segmentation: dict[str, Any]
    bbox: list[int]
    area: int
    predicted_iou: float = 1.0
    stability_score: float = 1.0
    crop_box: list[int] = field(default_factory=list)
    point_coords: list[list[float]] = field(default_factory=list)

    def mask(self) -> np.ndarray:
        """The decoded ``(H, W)`` bool mask."""
        return decode_coco_rle(self.segmentation)

    @classmethod
    def from_mask(cls, ann_id: int, mask: np.ndarray, **fields: Any) -> Sa1bAnnotation:
        """A record for a binary mask (ground truth when no scores are given)."""
        h, w = mask.shape
        fields.setdefault("crop_box", [0, 0, int(w), int(h)])
        return cls(ann_id, encode_coco_rle(mask), mask_bbox_xywh(mask), int(mask.sum()), **fields)


def _fields(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without :func:`dataclasses.asdict`'s deep copy (ten
    times slower on the nested RLE and point lists, and needless for json.dumps)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def write_sa1b(
    path: str | os.PathLike[str], image: Sa1bImage, annotations: list[Sa1bAnnotation]
) -> None:
    """Write one SA-1B json file atomically."""
    payload = {"image": asdict(image), "annotations": [_fields(a) for a in annotations]}
    atomic_write_text(path, json.dumps(payload))


def read_sa1b(path: str | os.PathLike[str]) -> tuple[Sa1bImage, list[Sa1bAnnotation]]:
    """Read one SA-1B json file; ``ValueError`` naming the file if it is malformed."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        image = Sa1bImage(
            **{k: payload["image"][k] for k in ("image_id", "width", "height", "file_name")}
        )
        known = set(Sa1bAnnotation.__dataclass_fields__)
        annotations = [
            Sa1bAnnotation(**{k: v for k, v in record.items() if k in known})
            for record in payload["annotations"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an SA-1B json file ({exc})") from None
    return image, annotations
