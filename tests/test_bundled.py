"""The bundled ``tiny`` model, end to end on held-out generated scenes.

The model was trained by ``segany train`` on scene seeds below 1,000,000 (README, "The bundled
model"); these tests use seeds from 3,000,000 on, never seen in training. The thresholds sit
below the measured figures (BENCHMARKS.md) with a margin, so a broken file, a wrong
preprocessing step or a loading regression fails them, while they stay deterministic.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from segany import Predictor, SamAutomaticMaskGenerator, build_model, load
from segany.checkpoints import bundled_weights_path
from segany.config import get_config
from segany.data.datasets import open_dataset
from segany.data.scenes import generate_scene
from segany.evaluate.clicks import centre_click
from segany.evaluate.demo import largest_whole_object
from segany.evaluate.protocol import evaluate, mask_iou
from segany.formats import read_sa1b
from segany.formats.pictures import write_png
from segany.formats.rle import decode_coco_rle

pytestmark = pytest.mark.skipif(
    bundled_weights_path("tiny") is None, reason="the bundled tiny weights are not there"
)
HELD_OUT = 3_000_000
SEGANY = (sys.executable, "-m", "segany")
# measured (float16 weights, this CPU): 20-scene protocol oracle 0.745, 1 click 0.677, 5 clicks
# 0.802; demo IoU 0.844; everything mean best IoU 0.764 over 21 large objects
ORACLE_FLOOR, ONE_CLICK_FLOOR, FIVE_CLICK_FLOOR = 0.70, 0.62, 0.75
DEMO_FLOOR = 0.75
EVERYTHING_FLOOR = 0.65


@pytest.fixture(scope="module")
def tiny():
    return load("tiny")


def test_bundled_model_is_the_tiny_architecture(tiny):
    """The float16 file loads strictly into the tiny architecture, as float32 for inference."""
    reference = build_model(get_config("tiny"))
    assert tiny.config == reference.config
    assert tiny.state_dict().keys() == reference.state_dict().keys()
    assert all(p.dtype == torch.float32 for p in tiny.parameters())


def test_zero_shot_clicks_on_held_out_scenes(tiny):
    """The paper's point protocol on 20 held-out scenes (the 200-scene figures: BENCHMARKS.md)."""
    report = evaluate(
        Predictor(tiny),
        {"held-out": open_dataset(f"generated:{HELD_OUT}:20")},
        clicks=(1, 5),
        progress=False,
    )
    assert len(report.objects) >= 60
    assert report.oracle_miou() >= ORACLE_FLOOR
    assert report.miou(1) >= ONE_CLICK_FLOOR
    assert report.miou(5) >= FIVE_CLICK_FLOOR
    assert report.miou(5) > report.miou(1)  # refinement clicks help


def test_demo_segments_the_largest_object(tmp_path):
    result = subprocess.run(
        [*SEGANY, "demo", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "IoU with the true object mask" in result.stdout
    iou = float(result.stdout.split("IoU with the true object mask")[1].split()[0])
    assert iou >= DEMO_FLOOR
    for name in ("scene.png", "overlay.png", "mask.png", "cutout.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_everything_finds_the_large_objects(tiny):
    """Large objects of held-out scenes are among the generated masks (with the filters of the
    ``tiny`` preset: README, "The bundled model")."""
    generator = SamAutomaticMaskGenerator(tiny, points_per_side=16, preset="tiny")
    best = []
    for seed in range(HELD_OUT + 7, HELD_OUT + 13):
        scene = generate_scene(seed)
        records = generator.generate(scene.image)
        for truth in (m for m in scene.masks if m.sum() >= 0.02 * m.size):
            best.append(max([mask_iou(r["segmentation"], truth) for r in records] or [0.0]))
    assert len(best) >= 10
    assert np.mean(best) >= EVERYTHING_FLOOR, best


def test_segment_cli_with_the_bundled_model(tmp_path):
    scene = generate_scene(HELD_OUT + 11)
    image = tmp_path / "scene.png"
    write_png(image, scene.image)
    truth = scene.masks[largest_whole_object(scene)]
    x, y = centre_click(truth)
    out = tmp_path / "mask.json"
    subprocess.run(
        [
            *SEGANY,
            "segment",
            str(image),
            "--point",
            f"{x},{y}",
            "--format",
            "coco",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    record = json.loads(out.read_text())
    mask = decode_coco_rle(record["segmentation"])
    assert mask_iou(mask, truth) >= DEMO_FLOOR


def test_everything_cli_with_the_bundled_model(tmp_path):
    """``segany everything`` with the default model picks the ``tiny`` preset by itself, and its
    SA-1B json holds the generator's masks for that preset."""
    scene = generate_scene(HELD_OUT + 21)
    write_png(tmp_path / "scene.png", scene.image)
    subprocess.run(
        [*SEGANY, "everything", "scene.png", "--output", "sa1b", "--points-per-side", "16"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    _, annotations = read_sa1b(tmp_path / "sa1b" / "scene.json")
    records = SamAutomaticMaskGenerator(load("tiny"), points_per_side=16, preset="tiny").generate(
        scene.image
    )
    assert len(annotations) == len(records) > 0
    for annotation, record in zip(annotations, records):
        np.testing.assert_array_equal(annotation.mask(), record["segmentation"])
