"""COCO instance datasets: one json for many images, masks as COCO RLE.

:class:`CocoDataset` builds the whole dataset in memory; :class:`CocoWriter` streams one to
disk image by image (for exports larger than memory). Both write the same records."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import StreamedOutput, atomic_write_text, commit_text, temporary_text_beside

OBJECT_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
INFO = {"description": "segany masks"}


def coco_annotation(ann_id: int, image_id: int, record: dict[str, Any]) -> dict[str, Any]:
    """A COCO annotation from a mask record (COCO-RLE ``segmentation``, ``bbox``, ``area`` and
    optional generator scores and a video's ``object_id``, kept as extra keys; ``score`` is
    the predicted IoU or 1)."""
    annotation = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": OBJECT_CATEGORY["id"],
        "iscrowd": 0,
        "segmentation": record["segmentation"],
        "bbox": record["bbox"],
        "area": record["area"],
    }
    for key in ("predicted_iou", "stability_score", "point_coords", "crop_box", "object_id",
                "phrase", "detector_score"):  # fmt: skip
        if key in record:
            annotation[key] = record[key]
    annotation["score"] = record.get("predicted_iou", 1.0)
    return annotation


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
            self.annotations.append(coco_annotation(len(self.annotations) + 1, image_id, record))
        return image_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": INFO,
            "images": self.images,
            "annotations": self.annotations,
            "categories": [OBJECT_CATEGORY],
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict()))


class CocoWriter(StreamedOutput):
    """Writes one COCO json image by image with the caller's ids, holding no more than one
    image's annotations in memory: annotations go straight to a temporary file beside
    ``path``, image entries to a second one, joined and renamed into place on :meth:`close`.
    Used as a context manager, a failure leaves no file (and no temporary one) behind."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._main, self._main_path = temporary_text_beside(self.path, "annotations")
        self._images, self._images_path = temporary_text_beside(self.path, "images")
        head = {"info": INFO, "categories": [OBJECT_CATEGORY]}
        self._main.write(json.dumps(head)[:-1] + ', "annotations": [')
        self.image_count = self.annotation_count = 0

    def add_image(
        self,
        image_id: int,
        file_name: str,
        height: int,
        width: int,
        records: list[tuple[int, dict[str, Any]]],
    ) -> None:
        """Add an image and its ``(annotation id, record)`` pairs (records as for
        :func:`coco_annotation`)."""
        entry = {"id": image_id, "file_name": file_name, "height": height, "width": width}
        self._images.write(("," if self.image_count else "") + json.dumps(entry))
        self.image_count += 1
        for ann_id, record in records:
            annotation = json.dumps(coco_annotation(ann_id, image_id, record))
            self._main.write(("," if self.annotation_count else "") + annotation)
            self.annotation_count += 1

    def close(self) -> None:
        """Join the parts, fsync, and rename the json into place."""
        self._images.close()
        with open(self._images_path, encoding="utf-8") as images:
            self._main.write('], "images": [')
            while chunk := images.read(1 << 20):
                self._main.write(chunk)
        self._main.write("]}")
        commit_text(self._main, self._main_path, self.path)
        self._images_path.unlink()

    def abort(self) -> None:
        for stream, path in ((self._main, self._main_path), (self._images, self._images_path)):
            stream.close()
            path.unlink(missing_ok=True)
