"""Video object segmentation scores, the DAVIS protocol's measures, written from its definitions.

- **J**, region similarity: the IoU of the predicted and true masks; 1 when both are empty.
- **F**, boundary accuracy: the F-measure of boundary precision and recall, where a boundary
  pixel counts as matched when the other mask's boundary lies within a disk of radius
  ``ceil(0.008 × image diagonal)`` pixels; 1 when both boundaries are empty, 0 when only one is.
- Per object, over the scored frames: the mean (M), the recall (O, the share of frames above 0.5)
  and the decay (D, the mean of the first quarter of the frames minus that of the last).
- As DAVIS's semi-supervised evaluation, the first and the last frame of every clip are left out;
  J&F is the mean over all objects of J's mean and of F's mean, averaged.
- Pixels marked void in the ground truth (DAVIS's label 255) count for neither.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..formats.files import atomic_write_text

BOUNDARY_TOLERANCE = 0.008


def region_similarity(
    truth: np.ndarray, prediction: np.ndarray, void: np.ndarray | None = None
) -> float:
    """J of two ``(H, W)`` bool masks: intersection over union outside ``void``."""
    keep = np.ones_like(truth, dtype=bool) if void is None else ~void
    union = np.count_nonzero((truth | prediction) & keep)
    return float(np.count_nonzero(truth & prediction & keep) / union) if union else 1.0


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose right, lower or lower-right neighbour is on the other
    side of the mask's edge (a one-pixel-wide boundary; the image's own edge is not one)."""
    padded = np.pad(mask.astype(bool), ((0, 1), (0, 1)), mode="edge")
    here = padded[:-1, :-1]
    return (here ^ padded[:-1, 1:]) | (here ^ padded[1:, :-1]) | (here ^ padded[1:, 1:])


def boundary_tolerance(shape: tuple[int, int], fraction: float = BOUNDARY_TOLERANCE) -> int:
    """The matching radius in pixels: ``ceil(fraction × diagonal)``."""
    return int(math.ceil(fraction * math.hypot(*shape)))


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def boundary_f_measure(
    truth: np.ndarray,
    prediction: np.ndarray,
    void: np.ndarray | None = None,
    fraction: float = BOUNDARY_TOLERANCE,
) -> float:
    """F of two ``(H, W)`` bool masks (module docstring)."""
    if void is not None:
        truth, prediction = truth & ~void, prediction & ~void
    true_edge, predicted_edge = boundary_map(truth), boundary_map(prediction)
    n_true, n_predicted = np.count_nonzero(true_edge), np.count_nonzero(predicted_edge)
    if n_true == 0 or n_predicted == 0:
        return 1.0 if n_true == n_predicted else 0.0
    disk = _disk(boundary_tolerance(truth.shape, fraction))
    near_true = cv2.dilate(true_edge.astype(np.uint8), disk).astype(bool)
    near_predicted = cv2.dilate(predicted_edge.astype(np.uint8), disk).astype(bool)
    precision = np.count_nonzero(predicted_edge & near_true) / n_predicted
    recall = np.count_nonzero(true_edge & near_predicted) / n_true
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


@dataclass(frozen=True)
class Statistics:
    """DAVIS's per-object summary of per-frame values: mean, recall (> 0.5) and decay."""

    mean: float
    recall: float
    decay: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Statistics:
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0:
            return cls(math.nan, math.nan, math.nan)
        # four bins sharing their edge frames, cut as DAVIS cuts them
        edges = np.floor(np.linspace(0, array.size - 1, 5) + 0.5).astype(int)  # halves up
        first, last = array[edges[0] : edges[1] + 1], array[edges[3] : edges[4] + 1]
        return cls(
            float(array.mean()), float((array > 0.5).mean()), float(first.mean() - last.mean())
        )


def scored_frames(count: int, skip_ends: bool = True) -> range:
    """The frame indices DAVIS scores: all but the first and the last (all if under 3)."""
    return range(1, count - 1) if skip_ends and count >= 3 else range(count)


@dataclass(frozen=True)
class ObjectScore:
    """One object of one clip: J and F on each scored frame (``frames`` holds their indices)."""

    clip: str
    object_id: int
    frames: tuple[int, ...]
    j: tuple[float, ...]
    f: tuple[float, ...]

    @property
    def j_stats(self) -> Statistics:
        return Statistics.of(self.j)

    @property
    def f_stats(self) -> Statistics:
        return Statistics.of(self.f)

    @property
    def jf(self) -> float:
        return (self.j_stats.mean + self.f_stats.mean) / 2


def score_object(
    clip: str,
    object_id: int,
    truth: np.ndarray,
    prediction: np.ndarray,
    void: np.ndarray | None = None,
    skip_ends: bool = True,
) -> ObjectScore:
    """Score ``(T, H, W)`` bool ``prediction`` against ``truth`` frame by frame."""
    if truth.shape != prediction.shape:
        raise ValueError(
            f"{clip} object {object_id}: prediction {prediction.shape} vs truth {truth.shape}"
        )
    frames = tuple(scored_frames(len(truth), skip_ends))
    voids = [None if void is None else void[t] for t in frames]
    j = tuple(region_similarity(truth[t], prediction[t], v) for t, v in zip(frames, voids))
    f = tuple(boundary_f_measure(truth[t], prediction[t], v) for t, v in zip(frames, voids))
    return ObjectScore(clip, object_id, frames, j, f)


def _stats_dict(stats: Statistics) -> dict[str, float]:
    return {"mean": stats.mean, "recall": stats.recall, "decay": stats.decay}


@dataclass
class VideoReport:
    """Scores of every object of every clip, and the tracker's speed."""

    objects: list[ObjectScore] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def _mean(self, rows: Sequence[ObjectScore], what: str) -> dict[str, float]:
        stats = [getattr(r, f"{what}_stats") for r in rows]
        keys = ("mean", "recall", "decay")
        return {k: float(np.mean([getattr(s, k) for s in stats])) for k in keys}

    @property
    def clips(self) -> list[str]:
        return list(dict.fromkeys(o.clip for o in self.objects))

    def summary(self) -> dict[str, Any]:
        """DAVIS's global figures (means over all objects), then per clip and per object."""
        if not self.objects:
            raise ValueError("no object was scored")
        j, f = self._mean(self.objects, "j"), self._mean(self.objects, "f")
        clips = {}
        for name in self.clips:
            rows = [o for o in self.objects if o.clip == name]
            jm, fm = self._mean(rows, "j")["mean"], self._mean(rows, "f")["mean"]
            clips[name] = {
                "J&F": (jm + fm) / 2,
                "J": jm,
                "F": fm,
                "objects": {
                    str(o.object_id): {
                        "J&F": o.jf,
                        "J": _stats_dict(o.j_stats),
                        "F": _stats_dict(o.f_stats),
                        "frames_scored": len(o.frames),
                    }
                    for o in rows
                },
            }
        return {
            "J&F": (j["mean"] + f["mean"]) / 2,
            "J": j,
            "F": f,
            "objects": len(self.objects),
            "clips": clips,
            "frames": self.frames,
            "seconds": self.seconds,
            "frames_per_second": self.frames / self.seconds if self.seconds > 0 else None,
            "protocol": {
                "first_and_last_frames_scored": False,
                "boundary_tolerance": f"ceil({BOUNDARY_TOLERANCE} x image diagonal) pixels",
                **self.settings,
            },
        }

    def table(self) -> str:
        """A text table: one row per object, one per clip, and the global row."""
        summary = self.summary()
        lines = [f"{'clip':<24} {'object':>6} {'J&F':>6} {'J':>6} {'F':>6}"]
        for name, clip in summary["clips"].items():
            for object_id, row in clip["objects"].items():
                j, f = row["J"]["mean"], row["F"]["mean"]
                lines.append(f"{name:<24} {object_id:>6} {row['J&F']:6.3f} {j:6.3f} {f:6.3f}")
            lines.append(
                f"{name:<24} {'all':>6} {clip['J&F']:6.3f} {clip['J']:6.3f} {clip['F']:6.3f}"
            )
        j, f = summary["J"]["mean"], summary["F"]["mean"]
        objects = f"{summary['objects']} obj"
        lines.append(f"{'mean':<24} {objects:>6} {summary['J&F']:6.3f} {j:6.3f} {f:6.3f}")
        if summary["frames_per_second"]:
            lines.append(
                f"{summary['frames']} frames at {summary['frames_per_second']:.2f} frames/s"
            )
        return "\n".join(lines)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.summary(), indent=2) + "\n")
