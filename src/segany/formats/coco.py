"""COCO instance datasets: one json for many images, masks as COCO RLE."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .files import atomic_write_text

OBJECT_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


@dataclass
class CocoDataset:
    """Accumulates images and annotations, then writes one COCO json."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def add_image(
        self, file_name: str, height: int, width: int, records: list[dict[str, Any]]
    ) -> int:
        """Add an image and its mask records (with COCO-RLE ``segmentation``, ``bbox``,
        ``area`` and optional scores); returns the image id."""
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "height": height, "width": width}
        )
        for record in records:
            annotation = {
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": OBJECT_CATEGORY["id"],
                "iscrowd": 0,
                "segmentation": record["segmentation"],
                "bbox": record["bbox"],
                "area": record["area"],
            }
            for key in ("predicted_iou", "stability_score", "point_coords", "crop_box"):
                if key in record:
                    annotation[key] = record[key]
            annotation["score"] = record.get("predicted_iou", 1.0)
            self.annotations.append(annotation)
        return image_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": {"description": "segany masks"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [OBJECT_CATEGORY],
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict()))
