"""The data engine's loop: the simulated annotator (gears 1 and 2 through the annotation desk,
against SA-1B or COCO ground truth) and the retrain round (fine-tune, held-out mIoU, a new
model version that later gears use)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, update

from segany.checkpoints import load
from segany.cli import main
from segany.data.scenes import generate_scene
from segany.engine import AnnotationDesk, NewMask, Project, add_images
from segany.engine.ground_truth import match_ground_truth, open_ground_truth
from segany.engine.models import gear_model_version, load_gear_model
from segany.engine.retrain import HeldoutSamples, accepted_masks
from segany.engine.schema import ImageRow, ImageRunRow, MaskRow, ModelVersionRow, TrainingRoundRow
from segany.engine.simulate import AnnotatorModel, simulate
from segany.engine.store import row_mask, write_proposals
from segany.evaluate.protocol import evaluate, mask_iou
from segany.formats.coco import CocoDataset
from segany.formats.rle import encode_coco_rle
from segany.formats.sa1b import Sa1bAnnotation, Sa1bImage, write_sa1b
from segany.inference.predictor import Predictor

SEEDS = (1, 2, 3, 4)
TARGET = AnnotatorModel().target_iou


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Scene images, their ground truth as an SA-1B folder (with copies of the images) and as
    a COCO json (without them: matched by file name)."""
    root = tmp_path_factory.mktemp("scenes")
    for folder in ("images", "sa1b", "coco"):
        (root / folder).mkdir()
    coco = CocoDataset()
    for index, seed in enumerate(SEEDS):
        scene = generate_scene(seed)
        name = f"scene{seed}.png"
        Image.fromarray(scene.image).save(root / "images" / name)
        shutil.copy(root / "images" / name, root / "sa1b" / name)
        records = [Sa1bAnnotation.from_mask(j, m) for j, m in enumerate(scene.masks)]
        h, w = scene.image.shape[:2]
        write_sa1b(root / "sa1b" / f"scene{seed}.json", Sa1bImage(index, w, h, name), records)
        coco.add_image(name, h, w, [r.__dict__ for r in records])
    coco.write(root / "coco" / "instances.json")
    return root


@pytest.fixture
def project(tmp_path, dataset) -> Project:
    with Project.create(tmp_path / "project") as made, made.session() as session:
        add_images(session, dataset / "images")
    opened = Project.open(tmp_path / "project")
    yield opened
    opened.close()


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def simulate_sa1b(capsys, project: Project, dataset: Path, *options: str) -> tuple[int, str, str]:
    """``segany engine simulate`` against the SA-1B ground truth."""
    return cli(
        capsys, "engine", "simulate", project.path, "--ground-truth", dataset / "sa1b", *options
    )


def image_truth(project: Project, dataset: Path) -> dict[int, np.ndarray]:
    """Project image id -> its ``(M, H, W)`` ground truth (by file name)."""
    with project.session() as session:
        rows = session.scalars(select(ImageRow)).all()
    seeds = {f"scene{s}.png": s for s in SEEDS}
    return {row.id: generate_scene(seeds[Path(row.path).name]).masks for row in rows}


def masks_of(project: Project, **where) -> list[MaskRow]:
    with project.session() as session:
        query = select(MaskRow).filter_by(**where).order_by(MaskRow.id)
        return list(session.scalars(query))


def runs_of(project: Project) -> list[ImageRunRow]:
    with project.session() as session:
        return list(session.scalars(select(ImageRunRow).order_by(ImageRunRow.image_id)))


def truth_index(row: MaskRow) -> int:
    return int(row.client_key.rsplit(":", 1)[1])


# -- ground truth ------------------------------------------------------------------------------
def test_ground_truth_matches_by_hash_then_by_name_and_size(project, dataset):
    sa1b = open_ground_truth(dataset / "sa1b")
    coco = open_ground_truth(dataset / "coco" / "instances.json")
    assert [t.image_file is not None for t in sa1b] == [True] * len(SEEDS)
    assert [t.image_file for t in coco] == [None] * len(SEEDS)
    truth = image_truth(project, dataset)
    with project.session() as session:
        for truths in (sa1b, coco):
            matches = match_ground_truth(session, truths)
            assert sorted(matches.by_image) == sorted(truth) and not matches.unmatched
            for image_id, item in matches.by_image.items():
                assert np.array_equal(item.load_masks(), truth[image_id])
    # a same-named file of another size is not the same image
    shrunk = [t.__class__(t.file_name, None, t.height + 1, t.width, t.load_masks) for t in coco]
    with project.session() as session:
        assert not match_ground_truth(session, shrunk).by_image


@pytest.mark.parametrize("kind", ["empty", "other-json", "text", "missing", "not-coco"])
def test_bad_ground_truth_is_one_error_line(project, tmp_path, capsys, kind):
    bad = tmp_path / "bad"
    bad.mkdir()
    if kind == "other-json":
        (bad / "x.json").write_text(json.dumps({"hello": 1}))
    elif kind == "text":
        bad = bad / "notes.txt"
        bad.write_text("masks")
    elif kind == "missing":
        bad = tmp_path / "nowhere"
    elif kind == "not-coco":
        bad = bad / "list.json"
        bad.write_text("[1, 2]")
    code, _, err = cli(
        capsys, "engine", "simulate", project.path, "--ground-truth", bad, "--gear", "1"
    )
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not masks_of(project)


# -- gear 1 ----------------------------------------------------------------------------------
def test_simulated_gear1_accepts_masks_through_the_desk(project, dataset, capsys):
    code, out, _ = cli(
        capsys, "engine", "simulate", project.path, "--ground-truth", dataset / "sa1b",
        "--gear", "1", "--clicks-per-mask", "8", "--images", "3", "--annotator", "sim-a",
    )  # fmt: skip
    assert code == 0, out
    runs = runs_of(project)
    assert len(runs) == 3 and {(r.gear, r.annotator) for r in runs} == {(1, "sim-a")}
    assert all(r.seconds > 0 for r in runs)
    version = gear_model_version(project)
    truth = image_truth(project, dataset)
    accepted = masks_of(project, status="accepted")
    assert {m.image_id for m in accepted} == {r.image_id for r in runs}
    ious = []
    for row in accepted:
        assert (row.gear, row.annotator, row.model_version_id) == (1, "sim-a", version.id)
        assert 1 <= row.clicks <= 8
        # modelled human time (4 s + 2 s per click) plus the measured compute
        assert row.seconds > 4.0 + 2.0 * row.clicks
        ious.append(mask_iou(row_mask(row), truth[row.image_id][truth_index(row)]))
    objects = sum(int(m.any()) for r in runs for m in truth[r.image_id])
    assert len(accepted) >= 0.8 * objects  # few objects skipped as hopeless
    assert min(ious) >= AnnotatorModel().min_iou
    # the bundled tiny model saturates near 0.85 on these scenes (a 64x64 low-res mask):
    # about half its masks reach the 0.9 target, most come close
    assert np.mean(ious) >= 0.8 and np.mean(np.array(ious) >= 0.85) >= 0.6
    assert np.mean(np.array(ious) >= TARGET) >= 0.3
    assert f"{len(accepted)}" in out and "clicks" in out

    # the rerun finishes the last image only; nothing annotated twice
    code, out, _ = cli(
        capsys, "engine", "simulate", project.path, "--ground-truth", dataset / "sa1b",
        "--gear", "1", "--clicks-per-mask", "8", "--annotator", "sim-a",
    )  # fmt: skip
    assert code == 0 and "1 images finished" in out
    assert len(runs_of(project)) == len(SEEDS)
    again = masks_of(project, status="accepted")
    assert [m.id for m in again[: len(accepted)]] == [m.id for m in accepted]
    code, out, _ = simulate_sa1b(capsys, project, dataset, "--gear", "1")
    assert code == 0 and "0 images finished" in out and len(masks_of(project)) == len(again)


def test_coco_ground_truth_matched_by_file_name(project, dataset, capsys):
    code, out, _ = cli(
        capsys, "engine", "simulate", project.path, "--ground-truth",
        dataset / "coco" / "instances.json", "--gear", "1", "--images", "1",
    )  # fmt: skip
    assert code == 0, out
    truth = image_truth(project, dataset)
    accepted = masks_of(project, status="accepted")
    assert accepted and len(runs_of(project)) == 1
    ious = [mask_iou(row_mask(m), truth[m.image_id][truth_index(m)]) for m in accepted]
    assert np.mean(ious) >= 0.8


def test_a_crash_before_finish_then_rerun_duplicates_nothing(project, dataset, monkeypatch):
    truths = {}
    with project.session() as session:
        truths = match_ground_truth(session, open_ground_truth(dataset / "sa1b")).by_image
    sam, version = load_gear_model(project)
    predictor = Predictor(sam)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the masks were accepted

    with monkeypatch.context() as patch:
        patch.setattr(AnnotationDesk, "finish", crash)
        with pytest.raises(KeyboardInterrupt):
            simulate(project, truths, predictor, version.id, gear=1, annotator="sim")
    first = masks_of(project)
    assert first and not runs_of(project)
    image_id = first[0].image_id
    report = simulate(project, truths, predictor, version.id, gear=1, annotator="sim", max_images=1)
    assert report.images == 1 and runs_of(project)[0].image_id == image_id  # the held image
    after = masks_of(project, image_id=image_id)
    assert [m.id for m in after[: len(first)]] == [m.id for m in first]
    keys = [m.client_key for m in after]
    assert len(keys) == len(set(keys))
    assert len(after) + report.skipped <= sum(m.any() for m in truths[image_id].load_masks())


def test_two_simulated_annotators_never_share_an_image(project, dataset):
    desk = AnnotationDesk(project)
    first = desk.checkout("a")
    second = desk.checkout("b")
    assert first.image_id != second.image_id
    assert desk.checkout("c", among=[first.image_id, second.image_id]) is None
    assert desk.checkout("a", among=[first.image_id]).image_id == first.image_id
    desk.release("a", first.image_id)
    desk.release("b", second.image_id)

    with project.session() as session:
        truths = match_ground_truth(session, open_ground_truth(dataset / "sa1b")).by_image
    # Each annotator has its own database connection and model; they are opened one after
    # the other (Alembic's migration context is process-global, so opening a project in two
    # threads at once races), then annotate at the same time.
    people = {}
    for name in ("sim-a", "sim-b"):
        own = Project.open(project.path)
        sam, version = load_gear_model(own)
        people[name] = (own, Predictor(sam), version.id)
    barrier = threading.Barrier(2, timeout=60)
    reports, failures = {}, []

    def annotate(name: str) -> None:
        own, predictor, version_id = people[name]
        try:
            barrier.wait()
            reports[name] = simulate(own, truths, predictor, version_id, gear=1, annotator=name)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
            barrier.abort()
        finally:
            own.close()

    threads = [threading.Thread(target=annotate, args=(n,)) for n in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    runs = runs_of(project)
    assert sorted(r.image_id for r in runs) == sorted(truths)  # each image finished once
    assert sum(r.images for r in reports.values()) == len(SEEDS)
    assert all(r.images >= 1 for r in reports.values())  # both worked at the same time
    for run in runs:
        assert {m.annotator for m in masks_of(project, image_id=run.image_id)} == {run.annotator}


# -- gear 2 ----------------------------------------------------------------------------------
def _separate_objects(truth: np.ndarray) -> list[int]:
    """Objects overlapping no other ground-truth object, largest first."""
    flat = truth.reshape(len(truth), -1).astype(np.int64)
    overlap = flat @ flat.T
    alone = [i for i in range(len(truth)) if (overlap[i] > 0).sum() == 1]
    return sorted(alone, key=lambda i: -flat[i].sum())


def test_simulated_gear2_leaves_rejects_corrects_and_adds(project, dataset, capsys):
    truth = image_truth(project, dataset)
    version = gear_model_version(project)
    prefilled = sorted(truth)[:2]
    plan = {}
    with project.session() as session:
        for image_id in prefilled:
            masks = truth[image_id]
            good, poor = _separate_objects(masks)[:2]
            half = masks[poor].copy()
            xs = np.nonzero(half.any(0))[0]
            half[:, : (xs[0] + xs[-1]) // 2] = False  # the object's right half only
            assert 0.3 < mask_iou(half, masks[poor]) < 0.9
            bogus = np.zeros_like(masks[0])
            background = ~masks.any(0)
            ys, xs = np.nonzero(background)
            bogus[ys[:60], xs[:60]] = True  # background pixels: no object at all
            proposals = [masks[good], half, bogus]
            write_proposals(
                session, image_id, [NewMask.from_mask(m) for m in proposals], version.id
            )
            plan[image_id] = (good, poor)
    code, out, _ = cli(
        capsys, "engine", "simulate", project.path, "--ground-truth", dataset / "sa1b",
        "--gear", "2", "--clicks-per-mask", "8", "--annotator", "sim-2",
    )  # fmt: skip
    assert code == 0, out
    runs = runs_of(project)
    assert [(r.image_id, r.gear) for r in runs] == [
        (i, 2) for i in prefilled
    ]  # gear-1 images untouched
    for image_id, (good, poor) in plan.items():
        rows = masks_of(project, image_id=image_id)
        left, half, bogus = rows[:3]
        assert (left.status, left.annotator) == ("accepted", None)  # accepted unchanged
        assert bogus.status == "rejected" and half.status == "corrected"
        made = rows[3:]
        assert all((m.gear, m.annotator, m.status) == (2, "sim-2", "accepted") for m in made)
        correction = [m for m in made if m.corrects_id is not None]
        assert [m.corrects_id for m in correction] == [half.id]
        assert truth_index(correction[0]) == poor
        assert mask_iou(row_mask(correction[0]), truth[image_id][poor]) >= 0.5
        added = {truth_index(m) for m in made if m.corrects_id is None}
        assert good not in added and poor not in added
        objects = {i for i, m in enumerate(truth[image_id]) if m.any()} - {good, poor}
        assert added <= objects and len(added) >= 0.8 * len(objects)
    assert "rejected: 2" in out and "corrected: 2" in out and "left: 2" in out

    # gear 1 now takes only the images without proposals
    code, out, _ = simulate_sa1b(capsys, project, dataset, "--gear", "1")
    assert code == 0
    assert sorted((r.image_id, r.gear) for r in runs_of(project)) == sorted(
        [(i, 2) for i in prefilled] + [(i, 1) for i in truth if i not in prefilled]
    )


# -- retrain ---------------------------------------------------------------------------------
def test_retrain_registers_a_version_that_later_gears_use(project, dataset, tmp_path, capsys):
    with project.session() as session:
        heldout = session.scalar(select(ImageRow.id).order_by(ImageRow.id.desc()).limit(1))
        session.execute(update(ImageRow).values(split="train"))
        session.execute(update(ImageRow).where(ImageRow.id == heldout).values(split="heldout"))
        session.commit()
    code, _, _ = simulate_sa1b(capsys, project, dataset, "--gear", "1")
    assert code == 0
    base = gear_model_version(project)
    output = tmp_path / "r1"
    code, out, err = cli(
        capsys, "engine", "retrain", project.path, "--output", output, "--steps", "1"
    )
    assert code == 0, err
    with project.session() as session:
        version = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id)).all()[-1]
        rounds = session.scalars(select(TrainingRoundRow)).all()
        train = accepted_masks(session, "train")
        held = accepted_masks(session, "heldout")
    assert version.id != base.id and version.parent_id == base.id
    assert Path(version.weights) == (output / "model.safetensors").resolve()
    assert len(rounds) == 1
    row = rounds[0]
    assert (row.base_id, row.result_id, row.steps) == (base.id, version.id, 1)
    assert (row.train_images, row.heldout_images) == (len(SEEDS) - 1, 1)
    assert row.train_masks == sum(len(v) for v in train.values())
    assert row.finished_at is not None and row.heldout_miou == version.heldout_miou
    # the training folder holds the train images only: the held-out one is kept apart
    assert sorted(p.stem for p in (output / "data").glob("*.json")) == sorted(
        f"{image.id:08d}" for image in train
    )
    # both held-out figures are the point protocol's 1-click mIoU of the models
    samples = HeldoutSamples(held)
    for weights, stored in (
        (base.weights, row.base_heldout_miou),
        (version.weights, row.heldout_miou),
    ):
        report = evaluate(Predictor(load(weights)), {"h": samples}, (1,), progress=False)
        assert stored == pytest.approx(report.miou(1), abs=1e-6)
    new, old = load(version.weights), load(base.weights)
    assert any(
        not np.allclose(a.detach(), b.detach()) for a, b in zip(new.parameters(), old.parameters())
    )
    assert gear_model_version(project).id == version.id
    assert load_gear_model(project)[1].id == version.id
    assert "held-out mIoU" in out

    code, _, err = cli(
        capsys, "engine", "retrain", project.path, "--output", output, "--steps", "1"
    )
    assert code == 2 and err.startswith("error: ") and "finished training round" in err


def test_retrain_needs_accepted_masks(project, tmp_path, capsys):
    code, _, err = cli(capsys, "engine", "retrain", project.path, "--output", tmp_path / "r")
    assert code == 2 and err.startswith("error: ") and "no accepted" in err
    with project.session() as session:
        assert not session.scalars(select(TrainingRoundRow)).all()


def test_retrain_without_heldout_masks_stores_none(project, dataset, tmp_path, capsys):
    with project.session() as session:
        session.execute(update(ImageRow).values(split="train"))
        session.commit()
    desk = AnnotationDesk(project)
    task = desk.checkout("person")
    mask = image_truth(project, dataset)[task.image_id][0]
    desk.accept("person", task.image_id, NewMask.from_mask(mask), clicks=1, seconds=5.0,
                model_version_id=None)  # fmt: skip
    desk.finish("person", task.image_id)
    code, out, err = cli(
        capsys, "engine", "retrain", project.path, "--output", tmp_path / "r", "--steps", "1"
    )
    assert code == 0, err
    assert "no held-out image" in out
    with project.session() as session:
        row = session.scalars(select(TrainingRoundRow)).one()
        version = session.get(ModelVersionRow, row.result_id)
    assert row.heldout_images == 0 and row.heldout_miou is None and version.heldout_miou is None
    assert row.train_masks == 1


def test_proposal_rle_iou_agrees_with_pixels():
    from segany.engine.simulate import iou_matrix

    masks = generate_scene(7).masks
    rles = [encode_coco_rle(m) for m in masks]
    ious = iou_matrix(rles[:3], rles)
    expected = np.array([[mask_iou(a, b) for b in masks] for a in masks[:3]])
    assert np.allclose(ious, expected)
