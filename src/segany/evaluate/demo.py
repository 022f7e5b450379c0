"""The demo: the bundled model segments a generated scene from one click.

The scene is a held-out one (never seen in training) with exact object masks, so the demo can
report how well the predicted mask matches the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.scenes import Scene, generate_scene
from ..formats.pictures import cutout, draw_overlay, mask_png, write_png
from .clicks import centre_click
from .protocol import mask_iou

DEMO_SEED = 3_000_017  # held out: the bundled model was trained on seeds below 1,000,000
DEMO_FILES = ("scene.png", "overlay.png", "mask.png", "cutout.png")


@dataclass(frozen=True)
class DemoResult:
    files: tuple[Path, ...]
    click: tuple[int, int]
    score: float
    iou: float
    mask_area: int


def largest_whole_object(scene: Scene) -> int:
    """Index of the scene's largest object that is neither a part nor has parts: one click on
    it is not ambiguous between part and whole."""
    has_parts = {parent for parent in scene.parents if parent >= 0}
    areas = [
        int(mask.sum()) if parent < 0 and i not in has_parts else -1
        for i, (mask, parent) in enumerate(zip(scene.masks, scene.parents))
    ]
    return int(np.argmax(areas))


def run_demo(output_dir: Path, model_name: str = "tiny", seed: int = DEMO_SEED) -> DemoResult:
    """Click the centre of the scene's largest object without parts; write the scene, the
    overlay, the mask and the cut-out; return the predicted IoU and the IoU with the true
    mask."""
    from ..checkpoints import load
    from ..inference.predictor import Predictor

    predictor = Predictor(load(model_name))
    scene = generate_scene(seed)
    truth = scene.masks[largest_whole_object(scene)]
    x, y = centre_click(truth)
    prediction = predictor.predict(predictor.embed(scene.image), points=[[x, y]], labels=[1])
    best = int(prediction.best_index()[0])
    mask = prediction.masks[0, best]
    output_dir.mkdir(parents=True, exist_ok=True)
    files = tuple(output_dir / name for name in DEMO_FILES)
    write_png(files[0], scene.image)
    write_png(files[1], draw_overlay(scene.image, [mask], [(x, y, 1)]))
    write_png(files[2], mask_png(mask))
    write_png(files[3], cutout(scene.image, mask, crop=True))
    return DemoResult(
        files, (x, y), float(prediction.scores[0, best]), mask_iou(mask, truth), int(mask.sum())
    )
