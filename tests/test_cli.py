"""The ``segany`` command end to end on generated images: outputs checked against the library,
and one clear ``error:`` line (exit status 2, no traceback) for each kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segany import Predictor, build_model, load, save_checkpoint
from segany.config import TINY, SamConfig
from segany.data import generate_scene
from segany.formats.polygons import Polygon, polygons_to_mask
from segany.testing import random_state_dict

CLI_MODEL = SamConfig(
    name="cli-test",
    encoder=TINY.with_encoder(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,)).encoder,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    model = build_model(CLI_MODEL)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
    save_checkpoint(model, folder / "model.safetensors")
    Image.fromarray(generate_scene(3).image).save(folder / "scene.png")
    return folder


def segany(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segany", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def expected_mask(workdir: Path, **prompt) -> np.ndarray:
    predictor = Predictor(load(workdir / "model.safetensors"))
    image = np.asarray(Image.open(workdir / "scene.png").convert("RGB"))
    prediction = predictor.predict(predictor.embed(image), **prompt)
    return prediction.best_masks()[0]


def test_segment_png_and_overlay(workdir):
    done = segany(
        "segment",
        "scene.png",
        "--point",
        "100,100",
        "--output",
        "m.png",
        "--model",
        "model.safetensors",
        "--overlay",
        "overlay.png",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    mask = np.asarray(Image.open(workdir / "m.png")) > 0
    np.testing.assert_array_equal(mask, expected_mask(workdir, points=[[100, 100]], labels=[1]))
    overlay = np.asarray(Image.open(workdir / "overlay.png"))
    assert overlay.shape == (256, 256, 3)


def test_segment_cutout_alpha_is_the_mask(workdir):
    done = segany(
        "segment",
        "scene.png",
        "--box",
        "10,10,120,90",
        "--output",
        "cut.png",
        "--format",
        "cutout",
        "--model",
        "model.safetensors",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    rgba = np.asarray(Image.open(workdir / "cut.png"))
    assert rgba.shape == (256, 256, 4)
    mask = expected_mask(workdir, boxes=[10, 10, 120, 90], multimask=False)
    np.testing.assert_array_equal(rgba[..., 3] > 0, mask)
    np.testing.assert_array_equal(rgba[..., :3], np.asarray(Image.open(workdir / "scene.png")))


def test_segment_coco_and_polygons(workdir):
    common = ["--point", "100,100", "--point", "30,30,0", "--model", "model.safetensors"]
    assert (
        segany(
            "segment", "scene.png", *common, "--output", "m.json", "--format", "coco", cwd=workdir
        ).returncode
        == 0
    )
    assert (
        segany(
            "segment",
            "scene.png",
            *common,
            "--output",
            "p.json",
            "--format",
            "polygons",
            cwd=workdir,
        ).returncode
        == 0
    )
    expected = expected_mask(workdir, points=[[100, 100], [30, 30]], labels=[1, 0], multimask=False)
    record = json.loads((workdir / "m.json").read_text())
    rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), expected)
    assert record["area"] == int(expected.sum())
    polygons = [
        Polygon.from_json(p) for p in json.loads((workdir / "p.json").read_text())["polygons"]
    ]
    back = polygons_to_mask(polygons, 256, 256)
    assert (back & expected).sum() / (back | expected).sum() >= 0.99


def test_embed_then_segment_reuses_the_embedding(workdir):
    assert (
        segany(
            "embed",
            "scene.png",
            "--output",
            "scene.emb",
            "--model",
            "model.safetensors",
            cwd=workdir,
        ).returncode
        == 0
    )
    done = segany(
        "segment",
        "scene.png",
        "--embedding",
        "scene.emb",
        "--point",
        "100,100",
        "--output",
        "e.png",
        "--model",
        "model.safetensors",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(
        np.asarray(Image.open(workdir / "e.png")), np.asarray(Image.open(workdir / "m.png"))
    )


def test_version_and_help(workdir):
    assert segany("--version", cwd=workdir).stdout.startswith("segany ")
    for command in ("segment", "embed", "train", "eval", "data"):
        done = segany(command, "--help", cwd=workdir)
        assert done.returncode == 0 and "example" in done.stdout.lower(), command


def _make_bad_inputs(folder: Path) -> None:
    (folder / "text.jpg").write_text("not an image at all")
    image = Image.fromarray(generate_scene(4).image)
    image.save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "resnet.pth").write_bytes(b"")
    import torch

    torch.save({"conv1.weight": torch.zeros(3)}, folder / "resnet.pth")


BAD = {
    "missing file": (
        ["segment", "nope.png", "--point", "1,1", "--output", "o.png"],
        "no such file",
    ),
    "not an image": (
        ["segment", "text.jpg", "--point", "1,1", "--output", "o.png"],
        "not an image",
    ),
    "truncated jpeg": (
        ["segment", "truncated.jpg", "--point", "1,1", "--output", "o.png"],
        "truncated",
    ),
    "point outside": (
        ["segment", "scene.png", "--point", "300,10", "--output", "o.png"],
        "outside",
    ),
    "malformed point": (
        ["segment", "scene.png", "--point", "3;4", "--output", "o.png"],
        "malformed",
    ),
    "wrong checkpoint": (
        ["segment", "scene.png", "--point", "1,1", "--output", "o.png", "--model", "resnet.pth"],
        "not a SAM model",
    ),
    "unwritable output": (
        ["segment", "scene.png", "--point", "1,1", "--output", "no/such/dir/o.png"],
        "does not exist",
    ),
    "empty prompt": (["segment", "scene.png", "--output", "o.png"], "empty prompt"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_error_line(workdir, case):
    _make_bad_inputs(workdir)
    args, message = BAD[case]
    if "--model" not in args:
        args = [*args, "--model", "model.safetensors"]
    done = segany(*args, cwd=workdir)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
