"""The demo job: embed a generated sample scene, prompt it with a click, write the results.

Until the bundled model exists it runs a seeded *random* model and says so: the masks show the
pipeline working end to end, not segmentation quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import VIT_B
from .formats.pictures import draw_overlay
from .modeling import build_model
from .predictor import Predictor
from .testing import random_state_dict

DEMO_CONFIG = VIT_B.with_encoder(
    img_size=512, embed_dim=192, depth=4, num_heads=3, global_attn_indexes=(1, 3)
)


@dataclass(frozen=True)
class DemoResult:
    overlay_path: Path
    mask_path: Path
    score: float
    mask_area: int


def sample_scene(
    height: int = 384, width: int = 512, seed: int = 0
) -> tuple[np.ndarray, tuple[int, int]]:
    """A simple synthetic RGB scene (a few filled shapes on a gradient) and a point on an object."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([40 + 60 * xx / width, 60 + 40 * yy / height, 90 + 0 * xx], -1).astype(
        np.uint8
    )
    image = np.ascontiguousarray(image)
    cv2.circle(image, (150, 180), 80, (220, 60, 40), -1)
    cv2.rectangle(image, (300, 80), (460, 300), (40, 180, 90), -1)
    cv2.ellipse(image, (380, 190), (40, 60), 30, 0, 360, (240, 220, 60), -1)
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), (150, 180)


def run_demo(output_dir: Path) -> DemoResult:
    """Embed the sample scene, click the red disc, write ``overlay.png`` and ``mask.png``."""
    model = build_model(DEMO_CONFIG)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
    predictor = Predictor(model)
    image, point = sample_scene()
    embedding = predictor.embed(image)
    prediction = predictor.predict(embedding, points=[point], labels=[1])
    best = int(prediction.best_index()[0])
    mask = prediction.masks[0, best]
    output_dir.mkdir(parents=True, exist_ok=True)
    overlay_path, mask_path = output_dir / "overlay.png", output_dir / "mask.png"
    cv2.imwrite(
        str(overlay_path),
        cv2.cvtColor(draw_overlay(image, [mask], [(*point, 1)]), cv2.COLOR_RGB2BGR),
    )
    cv2.imwrite(str(mask_path), mask.astype(np.uint8) * 255)
    return DemoResult(overlay_path, mask_path, float(prediction.scores[0, best]), int(mask.sum()))
