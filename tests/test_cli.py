"""The ``segany`` command end to end on generated images: outputs checked against the library,
and one clear ``error:`` line (exit status 2, no traceback) for each kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
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


@pytest.fixture(scope="module")
def folder(workdir) -> Path:
    images = workdir / "images"
    images.mkdir(exist_ok=True)
    for seed in range(5):
        Image.fromarray(generate_scene(seed + 20).image[:128, :160]).save(images / f"img{seed}.png")
    return images


FAST = [
    "--model",
    "model.safetensors",
    "--points-per-side",
    "4",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
]


def test_everything_sa1b_matches_the_generator(workdir, folder):
    from segany import SamAutomaticMaskGenerator
    from segany.formats import read_sa1b

    done = segany("everything", "images/img0.png", "--output", "sa1b", *FAST, cwd=workdir)
    assert done.returncode == 0, done.stderr
    info, annotations = read_sa1b(workdir / "sa1b" / "img0.json")
    assert (info.width, info.height, info.file_name) == (160, 128, "img0.png")
    generator = SamAutomaticMaskGenerator(
        load(workdir / "model.safetensors"),
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
    )
    records = generator.generate(np.asarray(Image.open(folder / "img0.png").convert("RGB")))
    assert len(annotations) == len(records) > 0
    for annotation, record in zip(annotations, records):
        np.testing.assert_array_equal(annotation.mask(), record["segmentation"])
        assert annotation.bbox == record["bbox"] and annotation.area == record["area"]


def test_everything_coco_folder_loads_with_pycocotools(workdir, folder):
    from pycocotools.coco import COCO

    done = segany(
        "everything", "images", "--output", "coco", "--format", "coco", *FAST, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    coco = COCO(str(workdir / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 5
    sa1b_dir = workdir / "sa1b-all"
    assert (
        segany("everything", "images", "--output", "sa1b-all", *FAST, cwd=workdir).returncode == 0
    )
    from segany.formats import read_sa1b

    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        _, annotations = read_sa1b(sa1b_dir / f"{Path(info['file_name']).stem}.json")
        masks = [
            coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        ]
        assert len(masks) == len(annotations)
        for mask, annotation in zip(masks, annotations):
            np.testing.assert_array_equal(mask, annotation.mask())


def test_everything_png_layout(workdir, folder):
    done = segany(
        "everything", "images/img1.png", "--output", "pngs", "--format", "png", *FAST, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    rows = (workdir / "pngs" / "img1" / "metadata.csv").read_text().splitlines()
    assert rows[0].startswith("id,area,bbox_x0")
    for row in rows[1:]:
        index, area = row.split(",")[:2]
        mask = np.asarray(Image.open(workdir / "pngs" / "img1" / f"{index}.png")) > 0
        assert mask.sum() == int(area)


def test_everything_reports_bad_images_and_goes_on(workdir, folder):
    mixed = workdir / "mixed"
    mixed.mkdir(exist_ok=True)
    shutil.copy(folder / "img2.png", mixed / "good.png")
    (mixed / "broken.jpg").write_text("not an image")
    done = segany("everything", "mixed", "--output", "mixed-out", *FAST, cwd=workdir)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "Traceback" not in done.stderr
    assert (workdir / "mixed-out" / "good.json").is_file()
    assert not (workdir / "mixed-out" / "broken.json").exists()


def test_embed_a_folder_one_file_per_image_resumable(workdir, folder):
    from segany import Embedding

    mixed = workdir / "embed-in"
    mixed.mkdir(exist_ok=True)
    for name in ("img0", "img1"):
        shutil.copy(folder / f"{name}.png", mixed / f"{name}.png")
    (mixed / "broken.jpg").write_text("not an image")
    command = ["embed", "embed-in", "--output", "embs", "--model", "model.safetensors"]
    done = segany(*command, cwd=workdir)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "Traceback" not in done.stderr
    assert "2 images embedded, 0 already done, 1 failed" in done.stdout
    assert sorted(p.name for p in (workdir / "embs").iterdir()) == ["img0.emb", "img1.emb"]
    predictor = Predictor(load(workdir / "model.safetensors"))
    image = np.asarray(Image.open(mixed / "img1.png").convert("RGB"))
    saved = Embedding.load(workdir / "embs" / "img1.emb")
    assert torch.equal(saved.features, predictor.embed(image).features)

    (mixed / "broken.jpg").unlink()
    again = segany(*command, cwd=workdir)
    assert again.returncode == 0 and "0 images embedded, 2 already done" in again.stdout


def test_everything_resumes_after_being_killed(workdir, folder):
    import signal
    import time

    out = workdir / "resume"
    command = [
        sys.executable,
        "-m",
        "segany",
        "everything",
        "images",
        "--output",
        "resume",
        "--format",
        "coco",
        *FAST,
    ]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / ".parts").glob("*.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.name for p in (out / ".parts").glob("*.json"))
    assert 2 <= len(finished) < 5, finished  # killed part-way
    before = {name: (out / ".parts" / name).stat().st_mtime_ns for name in finished}
    done = segany(
        "everything", "images", "--output", "resume", "--format", "coco", *FAST, cwd=workdir
    )
    assert done.returncode == 0, done.stderr
    assert f"{5 - len(finished)} images segmented, {len(finished)} already done" in done.stdout
    for name, mtime in before.items():  # finished images were not redone
        assert (out / ".parts" / name).stat().st_mtime_ns == mtime
    for part in (out / ".parts").glob("*.json"):
        json.loads(part.read_text())  # every file complete
    assert not list(out.rglob("*.tmp"))
    annotations = json.loads((out / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in annotations["images"]) == [
        f"img{i}.png" for i in range(5)
    ]
