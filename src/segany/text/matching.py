"""Segment-everything masks named by a phrase: each mask against a detector's boxes."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torchvision.ops import box_iou

from ..formats.sa1b import Sa1bAnnotation
from .detectors import Detections


@dataclass(frozen=True)
class LabelledAnnotation(Sa1bAnnotation):
    """A generator mask that a phrase matched: the phrase and the detector's score of the box
    it matched are written beside the record's other keys (readers of SA-1B ignore them)."""

    phrase: str = ""
    detector_score: float = 0.0


def mask_boxes_xyxy(annotations: list[Sa1bAnnotation]) -> np.ndarray:
    """``(N, 4)`` float XYXY boxes around the masks' pixels (their XYWH ``bbox`` holds an
    inclusive maximum, so the far edge is one pixel further), the frame of detector boxes."""
    boxes = np.array([a.bbox for a in annotations], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2] + 1.0
    return boxes


def match_annotations(
    annotations: list[Sa1bAnnotation],
    found: Detections,
    phrases: list[str],
    *,
    iou_threshold: float = 0.5,
    keep_unmatched: bool = False,
) -> list[Sa1bAnnotation]:
    """The masks a phrase names: a mask matches the detector box its own box overlaps most, if
    that IoU is at least ``iou_threshold``; matched masks come back as
    :class:`LabelledAnnotation` with the box's phrase and score. Unmatched masks are dropped, or
    kept unchanged with ``keep_unmatched`` (label, don't filter)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"match IoU {iou_threshold} is not in (0, 1]")
    if not annotations:
        return []
    if not len(found):
        return list(annotations) if keep_unmatched else []
    iou = box_iou(torch.from_numpy(mask_boxes_xyxy(annotations)), torch.from_numpy(found.boxes))
    best_iou, best = iou.max(dim=1)
    out: list[Sa1bAnnotation] = []
    for annotation, overlap, index in zip(annotations, best_iou.tolist(), best.tolist()):
        if overlap >= iou_threshold:
            values = {f.name: getattr(annotation, f.name) for f in fields(Sa1bAnnotation)}
            phrase = phrases[int(found.phrases[index])]
            score = float(found.scores[index])
            out.append(LabelledAnnotation(**values, phrase=phrase, detector_score=score))
        elif keep_unmatched:
            out.append(annotation)
    return out
