"""Masks as polygons with holes (OpenCV contour hierarchy), and back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Polygon:
    """One connected region: its outer ring and the rings of its holes, as ``(K, 2)`` (x, y)
    integer pixel coordinates (the centres of boundary pixels)."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    def to_json(self) -> dict:
        return {"exterior": self.exterior.tolist(), "holes": [h.tolist() for h in self.holes]}

    @classmethod
    def from_json(cls, data: dict) -> Polygon:
        return cls(
            np.asarray(data["exterior"]), tuple(np.asarray(h) for h in data.get("holes", []))
        )


def mask_to_polygons(mask: np.ndarray) -> list[Polygon]:
    """Every region of an ``(H, W)`` bool mask, holes included (two-level contour tree)."""
    contours, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for index, contour in enumerate(contours):
        if hierarchy[index][3] != -1:  # a hole: collected under its parent
            continue
        holes = []
        child = hierarchy[index][2]
        while child != -1:
            holes.append(contours[child][:, 0, :])
            child = hierarchy[child][0]
        polygons.append(Polygon(contour[:, 0, :], tuple(holes)))
    return polygons


def polygons_to_mask(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """Rasterise polygons back to an ``(H, W)`` bool mask (boundary pixels included)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    for polygon in polygons:
        cv2.fillPoly(canvas, [polygon.exterior.astype(np.int32)], 1)
        cv2.polylines(canvas, [polygon.exterior.astype(np.int32)], True, 1)
        for hole in polygon.holes:
            cv2.fillPoly(canvas, [hole.astype(np.int32)], 0)
            cv2.polylines(canvas, [hole.astype(np.int32)], True, 1)  # hole rings are mask pixels
    return canvas.astype(bool)
