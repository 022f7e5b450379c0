"""A short clip for the video page's tests: the largest whole object of a generated scene
(:mod:`segany.data.scenes`) moving right across another scene, with its exact mask per frame
and that of a still object of the scene behind it (the largest in one piece, without parts),
written as an mp4 with the tracker's own :class:`~segany.video.VideoWriter`; and the bundled
model's decoder graph, exported once for both test modules of the video page."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from segany.data.scenes import generate_scene

FRAMES = 8
HEIGHT, WIDTH = 160, 224
STEP = 8  # pixels the object moves per frame
FPS = 8.0


@dataclass(frozen=True)
class MovingClip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    truth: list[np.ndarray]  # (H, W) bool: the moving object on each frame
    still: list[np.ndarray]  # (H, W) bool: what shows of the still object on each frame
    mp4: bytes


def moving_frames(
    frames: int = FRAMES, step: int = STEP
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The frames and the moving object's masks."""
    background = generate_scene(7).image[:HEIGHT, :WIDTH]
    scene = generate_scene(3)
    areas = [m.sum() if parent < 0 else 0 for m, parent in zip(scene.masks, scene.parents)]
    mask = scene.masks[int(np.argmax(areas))]
    ys, xs = np.nonzero(mask)
    window = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    sprite, shape = scene.image[window], mask[window]
    images, truth = [], []
    for t in range(frames):
        image, where = background.copy(), np.zeros((HEIGHT, WIDTH), bool)
        y0, x0 = 30, 10 + step * t
        h, w = min(shape.shape[0], HEIGHT - y0), min(shape.shape[1], WIDTH - x0)
        inside = shape[:h, :w]
        image[y0 : y0 + h, x0 : x0 + w][inside] = sprite[:h, :w][inside]
        where[y0 : y0 + h, x0 : x0 + w] = inside
        images.append(image)
        truth.append(where)
    return images, truth


def mp4_bytes(frames: list[np.ndarray], fps: float = FPS) -> bytes:
    from segany.video import VideoWriter

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        writer = VideoWriter(path, fps, frames[0].shape[1], frames[0].shape[0])
        for frame in frames:
            writer.write(frame)
        writer.close()
        return path.read_bytes()


@cache
def still_object() -> np.ndarray:
    """``(H, W)`` bool: the background scene's largest whole object in one piece, without
    parts, as far as it lies in the clip's window."""
    scene = generate_scene(7)
    best = np.zeros((HEIGHT, WIDTH), bool)
    for index, (mask, parent) in enumerate(zip(scene.masks, scene.parents)):
        window = mask[:HEIGHT, :WIDTH]
        pieces = cv2.connectedComponents(window.astype(np.uint8))[0] - 1
        if parent < 0 and index not in scene.parents and pieces == 1 and window.sum() > best.sum():
            best = window
    return best


def moving_clip(frames: int = FRAMES) -> MovingClip:
    images, truth = moving_frames(frames)
    still = [still_object() & ~moving for moving in truth]  # the moving object passes in front
    return MovingClip(images, truth, still, mp4_bytes(images))


def deepest_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel centre farthest inside ``mask``."""
    depth = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(x) + 0.5, float(y) + 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


_decoder: list[Path] = []


def bundled_decoder(tmp_path_factory) -> Path:
    """The bundled model's decoder graph (the page's), exported once per test session."""
    from segany.checkpoints import load
    from segany.server import SegmentService

    if not _decoder:
        folder = tmp_path_factory.mktemp("video-decoder")
        _decoder.append(SegmentService(load("tiny"), folder).ensure_decoder())
    return _decoder[0]
