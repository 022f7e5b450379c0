"""The data engine end to end, as a user runs it: init → gear 1 (simulated annotator) →
retrain → prefill + gear 2 → gear 3 on the rest → stats and export, on generated scenes with
ground truth, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import func, select

from segany.cli import main
from segany.data.datasets import Sa1bFolder
from segany.data.shards import write_generated_shards
from segany.engine import Project
from segany.engine.schema import ImageRunRow, MaskRow, ModelVersionRow, TrainingRoundRow
from segany.engine.store import row_mask
from segany.formats.images import list_images
from segany.formats.sa1b import read_sa1b

SCENES = 12
GEAR_1_IMAGES = 4
GEAR_2_IMAGES = 3


def run(capsys, *argv: str) -> str:
    """One ``segany`` command in this process; its stdout (it must succeed)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, f"segany {' '.join(map(str, argv))} failed: {err}"
    return out


def simulate(capsys, project_dir: Path, scenes: Path, gear: int, *options: object) -> str:
    """``segany engine simulate`` of one gear against the scenes' ground truth."""
    return run(capsys, "engine", "simulate", project_dir, "--ground-truth", scenes, "--gear", gear,
               *options)  # fmt: skip


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Scene images with their ground truth beside them (sa_<seed>.png + sa_<seed>.json)."""
    folder = tmp_path_factory.mktemp("scenes")
    write_generated_shards(folder, seed_start=500, count=SCENES, progress=False)
    return folder


def accepted_in_db(project: Project) -> dict[int, np.ndarray]:
    """Every accepted mask of the project by id, decoded."""
    with project.session() as session:
        rows = session.scalars(select(MaskRow).where(MaskRow.status == "accepted")).all()
        return {row.id: row_mask(row) for row in rows}


# long: the whole loop, one command after another, checked as it goes
def test_the_three_gears_end_to_end(tmp_path, scenes, database_url, capsys):
    project_dir = tmp_path / "project"
    db = ["--db", database_url] if database_url else []
    run(capsys, "engine", "init", project_dir, "--images", scenes, *db)

    # Gear 1: a simulated annotator clicks the ground truth's objects on a few images.
    simulate(capsys, project_dir, scenes, 1, "--images", GEAR_1_IMAGES)
    # Retrain on them: a new version that the later gears use.
    run(capsys, "engine", "retrain", project_dir, "--output", tmp_path / "r1", "--steps", 2)
    with Project.open(project_dir) as project, project.session() as session:
        versions = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id)).all()
        assert len(versions) == 2 and versions[0].name == "tiny"
        retrained = versions[-1]
        assert retrained.parent_id == versions[0].id
        assert session.scalar(select(func.count(TrainingRoundRow.id))) == 1

    # Gear 2: proposals from the retrained model, then the annotator adds what is missing.
    run(capsys, "engine", "prefill", project_dir)
    with Project.open(project_dir) as project, project.session() as session:
        proposals = session.scalars(select(MaskRow).where(MaskRow.status == "proposal")).all()
        assert proposals, "the prefill found no confident mask on any scene"
        assert {p.model_version_id for p in proposals} == {retrained.id}
    simulate(capsys, project_dir, scenes, 2, "--images", GEAR_2_IMAGES)

    # Gear 3 on the rest (the 32x32 grid without crops, to keep the test short); every image is
    # then done by exactly one gear.
    run(capsys, "engine", "auto", project_dir, "--preset", "tiny")
    with Project.open(project_dir) as project, project.session() as session:
        runs = session.execute(select(ImageRunRow.image_id, ImageRunRow.gear)).all()
        gear_of = dict(runs)
        assert len(runs) == len(gear_of) == SCENES, "an image finished twice or not at all"
        by_gear = {g: sum(1 for v in gear_of.values() if v == g) for g in (1, 2, 3)}
        assert by_gear[1] == GEAR_1_IMAGES and by_gear[3] == SCENES - GEAR_1_IMAGES - by_gear[2]
        assert 1 <= by_gear[2] <= GEAR_2_IMAGES
        gear_3 = session.scalars(select(MaskRow).where(MaskRow.gear == 3)).all()
        assert gear_3 and {m.model_version_id for m in gear_3} == {retrained.id}

    # The statistics show every gear.
    stats = json.loads(run(capsys, "engine", "stats", project_dir, "--json"))
    rows = {g["gear"]: g["all"] for g in stats["gears"]}
    assert stats["images"]["pending"] == 0
    assert rows[1]["images"] == GEAR_1_IMAGES and rows[1]["masks"] > 0
    assert rows[1]["clicks_per_mask"] >= 1 and rows[1]["seconds_per_mask"] > 0
    assert rows[2]["images"] == by_gear[2] and rows[2]["proposals_decided"] > 0
    assert rows[3]["images"] == by_gear[3] and rows[3]["masks"] == len(gear_3)
    assert rows[3]["accepted_unchanged"] == 1.0

    # The exports hold exactly the accepted masks of the database, pixel for pixel.
    with Project.open(project_dir) as project:
        expected = accepted_in_db(project)
    assert stats["total"]["masks"] == len(expected)
    run(capsys, "engine", "export", project_dir, "--output", tmp_path / "sa1b", "--format", "sa1b")
    exported: dict[int, np.ndarray] = {}
    for path in sorted((tmp_path / "sa1b").glob("*.json")):
        _, annotations = read_sa1b(path)
        exported.update((a.id, a.mask()) for a in annotations)
    assert len(Sa1bFolder(tmp_path / "sa1b")) == len(list_images(tmp_path / "sa1b"))
    assert exported.keys() == expected.keys()
    assert all(np.array_equal(exported[k], expected[k]) for k in expected)

    run(capsys, "engine", "export", project_dir, "--output", tmp_path / "coco", "--format", "coco")
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert set(coco.getAnnIds()) == expected.keys()
    assert all(
        np.array_equal(coco.annToMask(coco.anns[k]).astype(bool), expected[k]) for k in expected
    )

    # Rerunning the gears changes nothing: everything is done, nothing is duplicated.
    run(capsys, "engine", "auto", project_dir)
    simulate(capsys, project_dir, scenes, 1)
    with Project.open(project_dir) as project:
        assert accepted_in_db(project).keys() == expected.keys()
