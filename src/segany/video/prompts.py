"""What the video tracker takes and gives: a prompt for one object on one frame, the mask of one
object on one frame, the tracker's settings, and the checks of prompts against a frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class VideoInputError(ValueError):
    """Bad video input: an unreadable video, a frame index out of range, a prompt outside the
    frame. A ``ValueError``, so the CLI prints one ``error:`` line and exits 2."""


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class ObjectPrompt:
    """A prompt for one object on one frame, in original-frame pixels: ``points`` ``(N, 2)``
    float XY with ``labels`` ``(N,)`` (1 foreground, 0 background), and/or ``box`` ``(4,)``
    XYXY. A later prompt of the same object re-conditions it from that frame on."""

    object_id: int
    frame_index: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        points = None if self.points is None else np.asarray(self.points, dtype=np.float64)
        box = None if self.box is None else np.asarray(self.box, dtype=np.float64).reshape(-1)
        if points is not None:
            points = points.reshape(-1, 2) if points.size else None
        labels = self.labels
        if points is not None:
            labels = np.ones(len(points), np.int64) if labels is None else np.asarray(labels)
            labels = labels.astype(np.int64).reshape(-1)
            if len(labels) != len(points) or not np.isin(labels, (0, 1)).all():
                raise VideoInputError(
                    f"object {self.object_id}: labels must be one 0 or 1 per point"
                )
        if box is not None and box.shape != (4,):
            raise VideoInputError(f"object {self.object_id}: a box is 4 numbers X0,Y0,X1,Y1")
        if points is None and box is None:
            raise VideoInputError(f"object {self.object_id}: a prompt needs points or a box")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels if points is not None else None)
        object.__setattr__(self, "box", box)

    def check_frame(self, height: int, width: int) -> None:
        """:class:`VideoInputError` unless every point and the box lie inside a ``height`` x
        ``width`` frame."""
        where = f"object {self.object_id} on frame {self.frame_index}"
        if self.points is not None:
            for x, y in self.points:
                if not (0 <= x < width and 0 <= y < height):
                    raise VideoInputError(
                        f"{where}: point {x:g},{y:g} is outside the {width}x{height} frame"
                    )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise VideoInputError(
                    f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} is not a box inside the "
                    f"{width}x{height} frame"
                )


@dataclass(frozen=True, eq=False)
class TrackedMask:
    """One object on one frame: ``mask`` ``(H, W)`` bool, ``score`` the decoder's predicted IoU,
    ``lost`` when the object is judged absent or occluded here (then the mask is empty)."""

    object_id: int
    frame_index: int
    mask: np.ndarray
    score: float
    lost: bool


@dataclass(frozen=True)
class TrackSettings:
    """How objects are followed and when they count as lost.

    Following: the previous mask is looked for in the new frame within ``motion_search`` times
    its box size around where it was; the prompt box is the moved mask's box widened by
    ``box_margin`` of its size on each side.

    Judging: a result is kept when its predicted IoU is at least ``min_score`` (or
    ``score_drop`` times the object's usual predicted IoU, if lower: a shape the model is never
    sure of is not lost for that), it overlaps the previous mask moved by the motion by at
    least ``min_overlap`` IoU (a result that slid onto something else fails), its area within
    ``min_area_ratio``-``max_area_ratio`` times the object's reference area, and its mean
    colour within ``max_colour_distance`` (RGB units) of the reference's; each kept result
    moves the reference by ``reference_update`` towards itself.

    Re-acquiring: a lost object is searched for with ``search_points`` x ``search_points``
    point prompts over the region where it was last seen, grown by ``search_growth`` box sizes
    per lost frame up to the whole frame; a candidate must also have an outline within
    ``max_shape_distance`` (Hu moments) of the object's last mask.
    """

    min_score: float = 0.5
    score_drop: float = 0.75
    min_overlap: float = 0.2
    min_area_ratio: float = 0.35
    max_area_ratio: float = 2.5
    max_colour_distance: float = 45.0
    box_margin: float = 0.1
    motion_search: float = 0.5
    search_growth: float = 1.0
    search_points: int = 6
    max_shape_distance: float = 1.5
    reference_update: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must be within 0-1, got {self.min_score}")
        if not 0 < self.min_area_ratio < 1 < self.max_area_ratio:
            raise ValueError("area ratios must satisfy 0 < min_area_ratio < 1 < max_area_ratio")
        if self.search_points < 1:
            raise ValueError(f"search_points must be at least 1, got {self.search_points}")
