"""A tracked clip on disk, written frame by frame as results arrive (nothing is held for the
whole clip) and atomically (a killed run leaves complete files or none):

- ``masklets.json``, always: SA-V-like records, one per object and frame (``object_id``,
  ``frame_index``, COCO RLE ``segmentation``, ``score``, ``lost``, ``area``, ``bbox``);
- ``png``: ``masks/<object_id>/<frame:05d>.png``, 0/255;
- ``overlay``: ``overlay.mp4``, the frames with every object tinted;
- ``sa1b``: ``sa1b/<frame:05d>.json``, one SA-1B file per frame (objects seen on it);
- ``coco``: ``coco.json``, frames as images, each object seen as an annotation with its
  ``object_id``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.boxes import mask_bbox_xywh
from ..formats.coco import CocoWriter
from ..formats.files import StreamedOutput, commit_text, temporary_text_beside
from ..formats.pictures import draw_overlay, mask_png, write_png
from ..formats.rle import encode_coco_rle
from ..formats.sa1b import Sa1bAnnotation, Sa1bImage, write_sa1b
from .frames import VideoWriter
from .prompts import TrackedMask

FORMATS = ("png", "overlay", "sa1b", "coco")
MASKLETS = "masklets.json"


class MaskletWriter(StreamedOutput):
    """Streams ``masklets.json``: records go to a temporary file beside it, renamed into place
    by :meth:`close` (with the header written first, so nothing is held in memory)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._stream, self._tmp = temporary_text_beside(path)
        self._stream.write(json.dumps(header)[:-1] + ', "masklets": [')
        self.count = 0

    def add(self, tracked: TrackedMask, rle: dict[str, Any]) -> None:
        record = {
            "object_id": tracked.object_id,
            "frame_index": tracked.frame_index,
            "segmentation": rle,
            "score": round(tracked.score, 5),
            "lost": tracked.lost,
            "area": int(tracked.mask.sum()),
            "bbox": mask_bbox_xywh(tracked.mask),
        }
        self._stream.write(("," if self.count else "") + json.dumps(record))
        self.count += 1

    def close(self) -> None:
        self._stream.write("]}")
        commit_text(self._stream, self._tmp, self.path)

    def abort(self) -> None:
        self._stream.close()
        self._tmp.unlink(missing_ok=True)


class TrackOutputs(StreamedOutput):
    """The files of one tracked clip in ``folder``; a context manager that completes them on
    success and removes the unfinished ones on failure."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        formats: tuple[str, ...],
        *,
        video_name: str,
        size: tuple[int, int],
        frame_count: int,
        fps: float,
        object_ids: list[int],
    ) -> None:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown output format(s) {unknown}; expected some of {FORMATS}")
        self.folder, self.formats, self.size = Path(folder), formats, size
        self.object_ids = object_ids
        self.folder.mkdir(parents=True, exist_ok=True)
        height, width = size
        header = {
            "video": {
                "file_name": video_name,
                "height": height,
                "width": width,
                "frame_count": frame_count,
                "fps": fps,
            },
            "objects": object_ids,
        }
        self._masklets = MaskletWriter(self.folder / MASKLETS, header)
        self._video = (
            VideoWriter(self.folder / "overlay.mp4", fps, width, height)
            if "overlay" in formats
            else None
        )
        self._coco = CocoWriter(self.folder / "coco.json") if "coco" in formats else None
        self._streamed = [w for w in (self._masklets, self._video, self._coco) if w is not None]
        for object_id in object_ids if "png" in formats else ():
            (self.folder / "masks" / str(object_id)).mkdir(parents=True, exist_ok=True)
        if "sa1b" in formats:
            (self.folder / "sa1b").mkdir(exist_ok=True)

    def add(self, index: int, image: np.ndarray | None, masks: dict[int, TrackedMask]) -> None:
        """Write one frame's results (``image``, the frame, is needed for the overlay only)."""
        height, width = self.size
        empty = np.zeros(self.size, dtype=bool)
        records = []
        for object_id in self.object_ids:
            tracked = masks.get(object_id)
            mask = empty if tracked is None else tracked.mask
            if "png" in self.formats:
                write_png(
                    self.folder / "masks" / str(object_id) / f"{index:05d}.png", mask_png(mask)
                )
            if tracked is None:
                continue
            rle = encode_coco_rle(tracked.mask)
            self._masklets.add(tracked, rle)
            if tracked.mask.any():
                records.append((tracked, rle))
        if self._video is not None:
            if image is None:
                raise ValueError("the overlay video needs each frame's image")
            tinted = [masks[o].mask if o in masks else empty for o in self.object_ids]
            self._video.write(draw_overlay(image, tinted))
        if "sa1b" in self.formats:
            annotations = [
                Sa1bAnnotation.from_mask(t.object_id, t.mask, predicted_iou=t.score)
                for t, _ in records
            ]
            image_entry = Sa1bImage(index, width, height, f"{index:05d}.png")
            write_sa1b(self.folder / "sa1b" / f"{index:05d}.json", image_entry, annotations)
        if self._coco is not None:
            numbered = [(self._coco.annotation_count + n + 1, r) for n, r in enumerate(records)]
            self._coco.add_image(index + 1, f"{index:05d}.png", height, width, _coco(numbered))

    def close(self) -> None:
        for writer in self._streamed:
            writer.close()

    def abort(self) -> None:
        for writer in self._streamed:
            writer.abort()


def _coco(
    records: list[tuple[int, tuple[TrackedMask, dict[str, Any]]]],
) -> list[tuple[int, dict[str, Any]]]:
    """COCO ``(annotation id, record)`` pairs of one frame's objects."""
    return [
        (
            ann_id,
            {
                "segmentation": rle,
                "bbox": mask_bbox_xywh(t.mask),
                "area": int(t.mask.sum()),
                "predicted_iou": t.score,
                "object_id": t.object_id,
            },
        )
        for ann_id, (t, rle) in records
    ]
