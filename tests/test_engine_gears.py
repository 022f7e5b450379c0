"""The data engine's automatic gears on a small project of generated scenes: gear 3
(``segany engine auto``: every pending image, resumable after kill -9, workers) and gear 2's
pre-fill (``segany engine prefill``), checked against the generator run directly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from segany.automatic import PRESETS, SamAutomaticMaskGenerator
from segany.automatic.settings import preset_for_model
from segany.checkpoints import load
from segany.cli import main
from segany.data.scenes import SceneConfig, generate_scene
from segany.engine import AnnotationDesk, NewMask, Project
from segany.engine.schema import ImageRow, ImageRunRow, MaskRow, ModelVersionRow
from segany.engine.store import row_mask, write_image_result
from segany.formats.images import read_image

SEEDS = (0, 1, 2, 3)
SCENE = SceneConfig(height=120, width=160)
# The official 32x32 grid without crops: the fastest named preset (seconds an image with tiny).
PRESET = "tiny"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def tiny():
    return load("tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for seed in SEEDS:
        Image.fromarray(generate_scene(seed, SCENE).image).save(folder / f"scene{seed}.png")
    return folder


def provenance(record: Any) -> tuple:
    """What a stored mask must hold for one generator record."""
    mask = NewMask.from_record(record)
    return (mask.rle["counts"], mask.bbox, mask.area, mask.predicted_iou, mask.stability_score,
            mask.point_coords, mask.crop_box)  # fmt: skip


def row_provenance(row: MaskRow) -> tuple:
    bbox = (row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h)
    return (row.counts, bbox, row.area, row.predicted_iou, row.stability_score,
            row.point_coords, row.crop_box)  # fmt: skip


def direct(images: Path, model, preset: str) -> dict[str, list]:
    """Each image's records from the generator run directly, by file name."""
    generator = SamAutomaticMaskGenerator(model, preset=preset_for_model(preset, model))
    return {
        path.name: generator.generate_annotations(read_image(path))
        for path in sorted(images.glob("*.png"))
    }


@pytest.fixture(scope="module")
def expected(images, tiny) -> dict[str, list]:
    return direct(images, tiny, PRESET)


def new_project(tmp_path: Path, images: Path) -> Path:
    project = tmp_path / "project"
    assert main(["engine", "init", str(project), "--images", str(images)]) == 0
    return project


def image_ids(project: Path) -> dict[str, int]:
    with Project.open(project) as p, p.session() as session:
        return {Path(row.path).name: row.id for row in session.scalars(select(ImageRow))}


def finish_by_gear_1(project: Path, name: str) -> None:
    """An annotator finished this image in gear 1 (one mask)."""
    mask = np.zeros((SCENE.height, SCENE.width), bool)
    mask[10:40, 20:60] = True
    with Project.open(project) as p, p.session() as session:
        done = write_image_result(
            session, image_ids(project)[name], 1, [NewMask.from_mask(mask)], None, annotator="ann"
        )
        assert done


def stored(project: Path, gear: int) -> dict[str, list[MaskRow]]:
    """Each image's masks of ``gear`` in the order written, by file name."""
    names = {i: name for name, i in image_ids(project).items()}
    out: dict[str, list[MaskRow]] = {name: [] for name in names.values()}
    with Project.open(project) as p, p.session() as session:
        for row in session.scalars(
            select(MaskRow).where(MaskRow.gear == gear).order_by(MaskRow.id)
        ):
            out[names[row.image_id]].append(row)
    return out


def runs(project: Path) -> list[tuple[int, int]]:
    """(image id, gear) of every image_runs row."""
    with Project.open(project) as p, p.session() as session:
        return sorted((r.image_id, r.gear) for r in session.scalars(select(ImageRunRow)))


def assert_matches(rows: list[MaskRow], records: list, version_id: int) -> None:
    assert [row_provenance(r) for r in rows] == [provenance(a) for a in records]
    for row, record in zip(rows, records):
        assert np.array_equal(row_mask(row), record.mask())
        assert row.model_version_id == version_id


def version_id(project: Path, name: str) -> int:
    with Project.open(project) as p, p.session() as session:
        row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
        assert row is not None
        return row.id


def test_auto_segments_every_pending_image_once(tmp_path, images, expected, capsys):
    project = new_project(tmp_path, images)
    finish_by_gear_1(project, "scene0.png")
    assert main(["engine", "auto", str(project), "--preset", PRESET]) == 0
    assert "3 images segmented" in capsys.readouterr().out
    masks = stored(project, gear=3)
    assert masks["scene0.png"] == []  # finished by gear 1: skipped
    tiny_id = version_id(project, "tiny")
    for name in ("scene1.png", "scene2.png", "scene3.png"):
        assert masks[name], "a scene with no mask proves nothing"
        assert_matches(masks[name], expected[name], tiny_id)
        assert all(r.status == "accepted" and r.annotator is None for r in masks[name])
    ids = image_ids(project)
    finished = [(ids["scene0.png"], 1)] + [(ids[f"scene{i}.png"], 3) for i in (1, 2, 3)]
    assert runs(project) == sorted(finished)
    with Project.open(project) as p, p.session() as session:
        for run in session.scalars(select(ImageRunRow).where(ImageRunRow.gear == 3)):
            assert run.model_version_id == tiny_id and run.seconds > 0
        count = session.scalar(select(func.count(MaskRow.id)))

    assert main(["engine", "auto", str(project), "--preset", PRESET]) == 0  # a no-op
    assert "nothing to segment" in capsys.readouterr().out
    with Project.open(project) as p, p.session() as session:
        assert session.scalar(select(func.count(MaskRow.id))) == count
    assert len(runs(project)) == len(SEEDS)


def test_two_workers_store_what_one_does(tmp_path, images, expected, capsys):
    # One worker's rows equal `expected` (the test above and the kill test), so equal rows
    # here mean the same rows as one worker. One image goes bad after it was added: it is
    # reported and left pending, and the others are done regardless.
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    project = new_project(tmp_path, folder)
    (folder / "scene2.png").write_bytes(b"truncated")
    capsys.readouterr()
    assert main(["engine", "auto", str(project), "--preset", PRESET, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"warning: {(folder / 'scene2.png').resolve()}: " in out and "1 unreadable" in out
    masks = stored(project, gear=3)
    tiny_id = version_id(project, "tiny")
    assert masks.pop("scene2.png") == []
    for name, rows in masks.items():
        assert_matches(rows, expected[name], tiny_id)
    ids = image_ids(project)
    assert runs(project) == sorted((ids[name], 3) for name in masks)  # scene2 still pending


def test_auto_killed_halfway_finishes_on_rerun(tmp_path, images, expected):
    project = new_project(tmp_path, images)
    command = [sys.executable, "-m", "segany", "engine", "auto", str(project), "--preset", PRESET]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    with Project.open(project) as p:
        deadline = time.monotonic() + 300
        done = 0
        while done == 0:
            assert process.poll() is None, f"ended before the kill: {process.stderr.read()}"
            assert time.monotonic() < deadline, "no image finished in time"
            time.sleep(0.05)
            with p.session() as session:
                done = session.scalar(select(func.count(ImageRunRow.id)))
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert 0 < len(runs(project)) < len(SEEDS), "the kill landed halfway"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    ids = image_ids(project)
    assert runs(project) == sorted((i, 3) for i in ids.values())  # each image done once
    masks = stored(project, gear=3)
    tiny_id = version_id(project, "tiny")
    for name, records in expected.items():  # every mask once: nothing duplicated
        assert_matches(masks[name], records, tiny_id)


def test_prefill_proposes_on_unfinished_images_once(tmp_path, images, tiny, capsys):
    project = new_project(tmp_path, images)
    finish_by_gear_1(project, "scene0.png")
    with Project.open(project) as p:  # an annotator holds the next image: left to them
        task = AnnotationDesk(p).checkout("ann")
        assert task is not None and task.image_id == image_ids(project)["scene1.png"]
    assert main(["engine", "prefill", str(project)]) == 0
    assert "2 images pre-filled" in capsys.readouterr().out
    proposals = stored(project, gear=2)
    assert proposals["scene0.png"] == [] and proposals["scene1.png"] == []
    confident = direct(images, tiny, "prefill")
    tiny_id = version_id(project, "tiny")
    assert sum(len(proposals[n]) for n in proposals) > 0, "no proposal proves nothing"
    for name in ("scene2.png", "scene3.png"):
        assert_matches(proposals[name], confident[name], tiny_id)
        assert all(r.status == "proposal" for r in proposals[name])
    # Strict: everything proposed passes filters tighter than gear 3's for this model.
    rows = [r for name in proposals for r in proposals[name]]
    assert min(r.predicted_iou for r in rows) > 0.5 and min(r.stability_score for r in rows) >= 0.9
    assert [gear for _, gear in runs(project)] == [1]  # proposals finish nothing

    assert main(["engine", "prefill", str(project)]) == 0  # idempotent
    again = stored(project, gear=2)
    assert {n: [r.id for r in rows] for n, rows in again.items()} == {
        n: [r.id for r in rows] for n, rows in proposals.items()
    }


@pytest.mark.parametrize("command", ["auto", "prefill"])
def test_not_a_project(tmp_path, command, capsys):
    assert main(["engine", command, str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")


@pytest.mark.parametrize("command", ["auto", "prefill"])
def test_a_model_that_cannot_load_writes_nothing(tmp_path, images, command, capsys):
    project = new_project(tmp_path, images)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["engine", command, str(project), "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    with Project.open(project) as p, p.session() as session:
        assert session.scalar(select(func.count(ModelVersionRow.id))) == 0
        assert session.scalar(select(func.count(MaskRow.id))) == 0
    assert runs(project) == []


def test_bad_options(tmp_path, images, capsys):
    project = new_project(tmp_path, images)
    capsys.readouterr()
    assert main(["engine", "auto", str(project), "--workers", "0"]) == 2
    assert main(["engine", "auto", str(project), "--preset", "nonsense"]) == 2
    assert capsys.readouterr().err.count("error:") == 2


def test_presets_for_the_tiny_architecture(tiny):
    vit_b = SimpleNamespace(config=SimpleNamespace(name="vit_b"))
    assert preset_for_model("sa1b", vit_b) == "sa1b"
    assert preset_for_model("prefill", vit_b) == "prefill"
    assert preset_for_model("sa1b", tiny) == "sa1b-tiny"
    assert preset_for_model("prefill", tiny) == "prefill-tiny"
    assert preset_for_model(None, tiny) == preset_for_model("tiny", tiny) == "tiny"
    generator = SamAutomaticMaskGenerator(tiny, preset="sa1b-tiny")
    for name, value in {**PRESETS["sa1b"], **PRESETS["tiny"]}.items():
        assert getattr(generator, name) == value
    for name in ("pred_iou_thresh", "stability_score_thresh"):  # strict: above gear 3's
        assert PRESETS["prefill"][name] > getattr(SamAutomaticMaskGenerator(tiny), name)
        assert PRESETS["prefill-tiny"][name] > PRESETS["tiny"][name]
