"""``segany engine stats`` and ``segany engine export`` on a project filled through the real
writers (the annotation desk for gears 1 and 2, the store for gear 3) with known masks: the
table's numbers recomputed here from what was written, and exports read back with the SA-1B
reader and pycocotools holding exactly the database's masks."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from segany.cli import main
from segany.data.datasets import CocoInstances, Sa1bFolder
from segany.data.scenes import SceneConfig, generate_scene
from segany.engine import AnnotationDesk, NewMask, Project, register_model
from segany.engine.schema import ImageRow, MaskRow
from segany.engine.stats import project_stats
from segany.engine.store import row_mask, write_image_result, write_proposals
from segany.formats.sa1b import read_sa1b

SCENE = SceneConfig(height=48, width=64, min_objects=4, max_objects=6, min_visible_pixels=20)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def trimmed(mask: np.ndarray, fraction: float) -> np.ndarray:
    """A proposal missing ``fraction`` of the mask's pixels (what a person then corrects): its
    IoU with the mask is ``1 - fraction``, up to rounding."""
    out = mask.copy()
    pixels = np.flatnonzero(mask)
    out.flat[pixels[: int(len(pixels) * fraction)]] = False
    return out


@dataclass
class Built:
    """The project and what the test wrote into it (the expected values' inputs)."""

    path: Path
    images: dict[int, Path]  # image id -> source file
    ids: list[int]  # image ids in file order
    v1: int
    v2: int
    gear1_clicks: list[int]
    gear1_seconds: list[float]
    gear2_clicks: list[int]
    gear2_seconds: list[float]
    gear3_scores: list[float]
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (fix, proposal)


def _scene_files(folder: Path, count: int) -> list[np.ndarray]:
    folder.mkdir()
    masks = []
    for i in range(count):
        scene = generate_scene(100 + i, SCENE)
        Image.fromarray(scene.image).save(folder / f"img{i}.png")
        masks.append(scene.masks)
    (folder / "zbroken.png").write_bytes(b"not an image")
    return masks


def _gear1(desk: AnnotationDesk, image_id: int, masks: np.ndarray, v1: int, built: Built) -> None:
    task = desk.checkout("alice")
    assert task is not None and task.image_id == image_id and task.gear == 1
    for mask, clicks, seconds in zip(masks, built.gear1_clicks, built.gear1_seconds):
        desk.accept(
            "alice",
            image_id,
            NewMask.from_mask(mask),
            clicks=clicks,
            seconds=seconds,
            model_version_id=v1,
        )
    taken_back = desk.accept(
        "alice", image_id, NewMask.from_mask(masks[-1]), clicks=9, seconds=99.0, model_version_id=v1
    )
    desk.undo("alice", image_id, taken_back)
    desk.finish("alice", image_id, seconds=60.0)


def _gear2(desk: AnnotationDesk, project: Project, image_id: int, masks: np.ndarray, built: Built):
    """Proposals 0..3 (v1): 0 accepted unchanged at finish, 1 corrected, 2 rejected, 3 corrected
    once, undone, corrected again; plus one mask the person adds (v2)."""
    proposed = [masks[0], trimmed(masks[1], 0.05), masks[2], trimmed(masks[3], 0.2)]
    scores = [0.95, 0.6, 0.7, 0.92]
    with project.session() as session:
        news = [NewMask.from_mask(m, predicted_iou=s) for m, s in zip(proposed, scores)]
        assert write_proposals(session, image_id, news, built.v1)
    task = desk.checkout("bob")
    assert task is not None and task.image_id == image_id and task.gear == 2
    p = [row.id for row in task.proposals]
    desk.reject("bob", image_id, p[2])

    def correct(proposal: int, mask: np.ndarray, clicks: int, seconds: float, **scores) -> int:
        return desk.accept(
            "bob",
            image_id,
            NewMask.from_mask(mask, **scores),
            clicks=clicks,
            seconds=seconds,
            model_version_id=built.v2,
            corrects_id=proposal,
        )

    # a person's mask with a low model score: --min-iou never drops it
    correct(p[1], masks[1], built.gear2_clicks[0], built.gear2_seconds[0], predicted_iou=0.5)
    first_try = correct(p[3], masks[0], 1, 1.0)
    desk.undo("bob", image_id, first_try)
    correct(p[3], masks[3], built.gear2_clicks[1], built.gear2_seconds[1])
    desk.accept(
        "bob",
        image_id,
        NewMask.from_mask(masks[4]),
        clicks=built.gear2_clicks[2],
        seconds=built.gear2_seconds[2],
        model_version_id=built.v2,
    )
    desk.finish("bob", image_id, seconds=40.0)
    built.pairs += [(masks[1], proposed[1]), (masks[3], proposed[3])]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("engine")
    scenes = _scene_files(root / "images", 5)
    path = root / "project"
    assert main(["engine", "init", str(path), "--images", str(root / "images")]) == 0
    project = Project.open(path)
    with project.session() as session:
        rows = session.query(ImageRow).filter(ImageRow.error.is_(None)).order_by(ImageRow.id)
        images = {row.id: Path(row.path) for row in rows}
        v1 = register_model(session, "tiny").id
        v2 = register_model(session, "models/r1.safetensors", name="r1", parent_id=v1).id
    ids = sorted(images)
    built = Built(
        path=path,
        images=images,
        ids=ids,
        v1=v1,
        v2=v2,
        gear1_clicks=[3, 5, 2],
        gear1_seconds=[10.0, 20.0, 6.5],
        gear2_clicks=[4, 2, 6],
        gear2_seconds=[8.0, 4.0, 12.0],
        gear3_scores=[0.99, 0.85, 0.93, 0.8],
    )
    needed = [3, 5, len(built.gear3_scores), 0, 1]  # objects each image's writes below use
    assert all(len(masks) >= n for masks, n in zip(scenes, needed))
    desk = AnnotationDesk(project)
    _gear1(desk, ids[0], scenes[0][:3], v1, built)  # image 0: gear 1
    _gear2(desk, project, ids[1], scenes[1], built)  # image 1: gear 2
    with project.session() as session:  # image 2: gear 3 (v2); image 3: gear 3 (v1), no masks
        auto = [
            NewMask.from_mask(
                m,
                predicted_iou=s,
                stability_score=0.9,
                crop_box=[0, 0, 64, 48],
                point_coords=[[float(k), 5.0]],
            )
            for k, (m, s) in enumerate(zip(scenes[2], built.gear3_scores))
        ]
        assert write_image_result(session, ids[2], 3, auto, built.v2)
        assert write_image_result(session, ids[3], 3, [], built.v1)
    task = desk.checkout("carol")  # image 4: in progress, one mask accepted
    assert task is not None and task.image_id == ids[4]
    desk.accept(
        "carol", ids[4], NewMask.from_mask(scenes[4][0]), clicks=1, seconds=2.0, model_version_id=v2
    )
    project.close()
    return built


# -- stats ------------------------------------------------------------------------------------
def stats_of(built: Built) -> dict:
    with Project.open(built.path) as project, project.session() as session:
        return project_stats(session).to_dict()


def test_image_and_status_counts(built):
    stats = stats_of(built)
    assert stats["images"] == {"total": 6, "done": 4, "pending": 1, "unreadable": 1}
    assert stats["masks_by_status"] == {
        "proposal": 0,
        "accepted": 3 + 4 + len(built.gear3_scores) + 1,
        "rejected": 1,
        "corrected": 2,
        "undone": 2,
    }


def test_gear_rows(built):
    stats = stats_of(built)
    gears = {g["gear"]: g for g in stats["gears"]}
    assert sorted(gears) == [1, 2, 3]
    one = gears[1]["all"]
    assert (one["images"], one["masks"], one["masks_per_image"]) == (1, 3, 3.0)
    assert one["clicks_per_mask"] == pytest.approx(np.mean(built.gear1_clicks))
    assert one["seconds_per_mask"] == pytest.approx(np.mean(built.gear1_seconds))
    assert (one["undone"], one["proposals_decided"], one["accepted_unchanged"]) == (1, 0, None)
    two = gears[2]["all"]
    assert (two["images"], two["masks"], two["human_masks"]) == (1, 4, 3)
    assert two["clicks_per_mask"] == pytest.approx(np.mean(built.gear2_clicks))
    assert two["seconds_per_mask"] == pytest.approx(np.mean(built.gear2_seconds))
    # four proposals decided: one accepted unchanged, one rejected, two corrected
    assert (two["proposals_decided"], two["rejected"], two["corrected"]) == (4, 1, 2)
    assert two["accepted_unchanged"] == pytest.approx(1 / 4)
    three = gears[3]["all"]
    n3 = len(built.gear3_scores)
    assert (three["images"], three["masks"], three["masks_per_image"]) == (2, n3, n3 / 2)
    assert (three["human_masks"], three["clicks_per_mask"], three["accepted_unchanged"]) == (
        0,
        None,
        1.0,
    )


def test_version_rows_within_gears(built):
    gears = {g["gear"]: g for g in stats_of(built)["gears"]}
    by_model = {g: {r["model"]: r for r in gears[g]["versions"]} for g in gears}
    assert list(by_model[1]) == ["tiny"]
    two = by_model[2]
    assert (two["tiny"]["masks"], two["r1"]["masks"]) == (1, 3)  # proposal kept | person's masks
    assert (two["tiny"]["proposals_decided"], two["r1"]["proposals_decided"]) == (4, 0)
    assert (two["tiny"]["images"], two["r1"]["images"]) == (1, 1)
    assert two["r1"]["undone"] == 1 and two["tiny"]["iou_pairs"] == 2
    three = by_model[3]  # v1 finished one image without masks: it counts, at 0 masks per image
    assert (three["tiny"]["images"], three["tiny"]["masks"], three["tiny"]["masks_per_image"]) == (
        1,
        0,
        0.0,
    )
    assert (three["r1"]["images"], three["r1"]["masks"]) == (1, len(built.gear3_scores))


def test_agreement_of_corrections_with_proposals(built):
    stats = stats_of(built)
    expected = [iou(fixed, proposed) for fixed, proposed in built.pairs]
    assert 0.75 < min(expected) <= 0.9 < max(expected) < 1  # one pair on each side of 0.9
    gear2 = next(g for g in stats["gears"] if g["gear"] == 2)["all"]
    for row in (gear2, stats["total"]):
        assert row["iou_pairs"] == 2
        assert row["iou_mean"] == pytest.approx(np.mean(expected))
        assert row["iou_over_90"] == pytest.approx(np.mean([v > 0.9 for v in expected]))
        assert row["iou_over_75"] == pytest.approx(np.mean([v > 0.75 for v in expected]))


def test_total_row_and_automatic_share(built):
    stats = stats_of(built)
    total = stats["total"]
    masks = 3 + 4 + len(built.gear3_scores)
    assert (total["images"], total["masks"]) == (4, masks)
    assert total["masks_per_image"] == pytest.approx(masks / 4)
    clicks = built.gear1_clicks + built.gear2_clicks
    assert (total["human_masks"], total["clicks_per_mask"]) == (6, pytest.approx(np.mean(clicks)))
    assert stats["automatic_share"] == pytest.approx(len(built.gear3_scores) / masks)


def test_stats_command(built, capsys):
    assert main(["engine", "stats", str(built.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats_of(built)
    assert main(["engine", "stats", str(built.path)]) == 0
    table = capsys.readouterr().out
    assert "images: 6 (4 done, 1 pending, 1 unreadable)" in table
    assert any(line.startswith("total") for line in table.splitlines())


# -- export -----------------------------------------------------------------------------------
def db_masks(built: Built, keep=lambda row: True) -> dict[int, dict[int, np.ndarray]]:
    """Accepted masks of finished images in the database: image id -> mask id -> pixels."""
    out: dict[int, dict[int, np.ndarray]] = {}
    with Project.open(built.path) as project, project.session() as session:
        for image_id in built.ids[:4]:
            rows = session.query(MaskRow).filter_by(image_id=image_id, status="accepted")
            masks = {row.id: row_mask(row) for row in rows if keep(row)}
            if masks:
                out[image_id] = masks
    return out


def export(built: Built, output: Path, *options: str) -> int:
    return main(["engine", "export", str(built.path), "--output", str(output), *options])


def read_sa1b_folder(folder: Path) -> dict[int, dict[int, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        info, annotations = read_sa1b(path)
        assert path.name == f"sa_{info.image_id}.json"
        out[info.image_id] = {a.id: a.mask() for a in annotations}
    return out


def assert_same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for image_id, masks in expected.items():
        assert found[image_id].keys() == masks.keys()
        for mask_id, mask in masks.items():
            np.testing.assert_array_equal(found[image_id][mask_id], mask)


def test_sa1b_export_holds_the_databases_masks(built, tmp_path):
    out = tmp_path / "sa1b"
    assert export(built, out, "--format", "sa1b") == 0
    expected = db_masks(built)
    assert sorted(expected) == built.ids[:3]  # the image gear 3 left empty has nothing to export
    assert_same(read_sa1b_folder(out), expected)
    for image_id in expected:  # the images, byte for byte, named by the json
        info, annotations = read_sa1b(out / f"sa_{image_id}.json")
        assert info.file_name == f"sa_{image_id}.png"
        assert (out / info.file_name).read_bytes() == built.images[image_id].read_bytes()
        for a in annotations:  # the official schema's fields, boxes as SA-1B draws them
            mask = a.mask()
            assert a.area == mask.sum()
            ys, xs = np.nonzero(mask)
            assert a.bbox == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
            assert len(a.crop_box) == 4 and 0 <= a.predicted_iou <= 1
    dataset = Sa1bFolder(out)  # the training reader takes it as it is
    assert len(dataset) == 3
    for sample in dataset:
        masks = expected[int(sample.image_id)]
        np.testing.assert_array_equal(sample.masks, np.stack(list(masks.values())))


def test_sa1b_fields_of_people_and_generator_masks(built, tmp_path):
    out = tmp_path / "sa1b"
    assert export(built, out) == 0
    _, people = read_sa1b(out / f"sa_{built.ids[0]}.json")
    assert {(a.predicted_iou, a.stability_score) for a in people} == {(1.0, 1.0)}
    assert all(a.crop_box == [0, 0, 64, 48] and a.point_coords == [] for a in people)
    _, generated = read_sa1b(out / f"sa_{built.ids[2]}.json")
    assert [a.predicted_iou for a in generated] == pytest.approx(built.gear3_scores)
    assert [a.point_coords for a in generated] == [[[float(k), 5.0]] for k in range(4)]


def test_filters_by_gear_and_predicted_iou(built, tmp_path):
    out = tmp_path / "filtered"
    assert export(built, out, "--gear", "3", "--gear", "2", "--min-iou", "0.9") == 0

    def keep(row: MaskRow) -> bool:  # people's masks stay whatever their score
        person = row.gear == 2 and row.annotator is not None
        return row.gear in (2, 3) and (person or row.predicted_iou >= 0.9)

    expected = db_masks(built, keep)
    gear3 = sum(s >= 0.9 for s in built.gear3_scores)
    assert [len(expected[i]) for i in built.ids[1:3]] == [1 + 3, gear3]
    assert_same(read_sa1b_folder(out), expected)


def test_coco_export_read_with_pycocotools(built, tmp_path):
    out = tmp_path / "coco"
    assert export(built, out, "--format", "coco", "--gear", "1", "--gear", "3") == 0
    expected = db_masks(built, lambda row: row.gear in (1, 3))
    coco = COCO(str(out / "annotations.json"))
    assert sorted(coco.getImgIds()) == sorted(expected)
    found = {}
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        source = built.images[image_id].read_bytes()
        assert (out / "images" / info["file_name"]).read_bytes() == source
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        found[image_id] = {a["id"]: coco.annToMask(a).astype(bool) for a in anns}
        for a in anns:  # COCO boxes: width = columns covered
            ys, xs = np.nonzero(found[image_id][a["id"]])
            assert a["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
    assert_same(found, expected)
    assert len(CocoInstances(out / "annotations.json", out / "images")) == len(expected)


def test_rerun_replaces_an_export_whole(built, tmp_path):
    out = tmp_path / "out"
    assert export(built, out) == 0
    assert export(built, out, "--gear", "3") == 0  # the gear-1 and gear-2 files are gone
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"sa_{built.ids[2]}.json",
        f"sa_{built.ids[2]}.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


def test_a_crash_mid_export_keeps_the_previous_one(built, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert export(built, out, "--gear", "3") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from segany.engine import exporting

    original, calls = exporting.write_sa1b, []

    def crash_on_second(*args):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(args)
        original(*args)

    monkeypatch.setattr(exporting, "write_sa1b", crash_on_second)
    with pytest.raises(OSError), Project.open(built.path) as project:
        exporting.export_project(project, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_changed_image_is_skipped_and_reported(tmp_path, capsys):
    images = tmp_path / "images"
    _scene_files(images, 2)
    project = tmp_path / "project"
    assert main(["engine", "init", str(project), "--images", str(images)]) == 0
    with Project.open(project) as opened, opened.session() as session:
        for row in session.query(ImageRow).filter(ImageRow.error.is_(None)):
            scene = generate_scene(100 + int(Path(row.path).stem[3:]), SCENE)
            masks = [NewMask.from_mask(m, predicted_iou=0.9) for m in scene.masks]
            assert write_image_result(session, row.id, 3, masks, None)
    (images / "img1.png").write_bytes(b"changed")
    capsys.readouterr()
    code = main(["engine", "export", str(project), "--output", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2 and "img1.png" in captured.err and "changed" in captured.err
    assert [p.name for p in (tmp_path / "out").glob("*.json")] == ["sa_1.json"]


def test_an_exif_rotated_photo_is_written_upright(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    pixels = np.zeros((30, 50, 3), dtype=np.uint8)
    pixels[:, :10] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", exif=exif, quality=95)
    (images / "photo.jpg").write_bytes(buffer.getvalue())
    with Project.create(tmp_path / "project") as project, project.session() as session:
        from segany.engine import add_images

        add_images(session, images)
        row = session.query(ImageRow).one()
        assert (row.height, row.width) == (50, 30)  # the upright frame the masks are drawn in
        mask = np.zeros((50, 30), dtype=bool)
        mask[:10, :] = True  # the white band, at the top once upright
        assert write_image_result(session, row.id, 3, [NewMask.from_mask(mask)], None)
    out = tmp_path / "out"
    assert main(["engine", "export", str(tmp_path / "project"), "--output", str(out)]) == 0
    sample = Sa1bFolder(out)[0]
    assert sample.image.shape[:2] == (50, 30)
    assert sample.image[mask].mean() > 200 and sample.image[~mask].mean() < 50
    np.testing.assert_array_equal(sample.masks, mask[None])


@pytest.mark.parametrize(
    "args, message",
    [
        (["stats", "{tmp}"], "not a segany project"),
        (["export", "{tmp}", "--output", "{tmp}/out"], "not a segany project"),
        (["export", "{project}", "--output", "{tmp}/file/out"], "cannot write"),
        (["export", "{project}", "--output", "{tmp}/file"], "not a folder"),
        (["export", "{project}", "--output", "{tmp}/full"], "not a segany export"),
        (["export", "{project}", "--output", "{tmp}/o", "--min-iou", "nan"], "min-iou"),
    ],
)
def test_bad_input_is_one_error_line(built, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("a file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("someone's notes")
    argv = [a.format(tmp=tmp_path, project=built.path) for a in args]
    assert main(["engine", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "full" / "notes.txt").read_text() == "someone's notes"
