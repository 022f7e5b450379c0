"""Annotation mode over HTTP (FastAPI's test client, which re-raises any server error, so a
500 fails the test): the queue hands each image to one annotator at a time, accepted masks are
stored with who made them, their clicks, seconds and the model version, a reload shows them,
a lost lease is a 409, bad bodies 422s, and beyond localhost every request needs the token.
The model is the bundled architecture with seeded random weights (the API does not depend on
what the model learnt)."""

from __future__ import annotations

import io
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from segany.cli import main
from segany.data.scenes import generate_scene
from segany.engine import NewMask, Project, add_images, register_model
from segany.engine.schema import ImageRow, ImageRunRow, MaskRow
from segany.engine.store import write_proposals
from segany.formats.rle import decode_coco_rle, encode_coco_rle, mask_to_rle_pytorch
from segany.server import AnnotationService, SegmentService, create_app
from segany.server.auth import cookie_name, required_token

SEEDS = (11, 12, 13, 14)
SIZE = (256, 256)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A project of generated scenes, made once and copied for each test."""
    root = tmp_path_factory.mktemp("template")
    images = root / "images"
    images.mkdir()
    for seed in SEEDS:
        Image.fromarray(generate_scene(seed).image).save(images / f"scene-{seed}.png")
    with Project.create(root / "project") as project, project.session() as session:
        add_images(session, images)
    return root


@pytest.fixture()
def project(template, tmp_path) -> Project:
    shutil.copytree(template, tmp_path / "copy")
    project = Project.open(tmp_path / "copy" / "project")
    yield project
    project.close()


def make_app(project, model, decoder_file, cache, *, token=None, **options):
    with project.session() as session:
        version = register_model(session, "test-weights")
    segment = SegmentService(model, cache, decoder_path=decoder_file)
    annotation = AnnotationService(project, segment, version, **options)
    return create_app(segment, annotation=annotation, token=token, static_dir=None), annotation


@pytest.fixture()
def client(project, tiny_random, decoder_file, tmp_path):
    app, _ = make_app(project, tiny_random, decoder_file, tmp_path / "cache", ahead=0)
    with TestClient(app) as c:
        yield c


def checkout(client, annotator: str) -> dict:
    response = client.post("/api/annotate/next", json={"annotator": annotator})
    assert response.status_code == 200, response.text
    return response.json()


def square(top: int, left: int, side: int = 20) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def accept(client, image_id: int, annotator: str, mask: np.ndarray, **extra):
    body = {"annotator": annotator, "segmentation": encode_coco_rle(mask), "clicks": 3}
    return client.post(
        f"/api/annotate/images/{image_id}/accept", json={"seconds": 4.5, **body, **extra}
    )


def rows(project, image_id: int) -> list[MaskRow]:
    with project.session() as session:
        query = select(MaskRow).where(MaskRow.image_id == image_id).order_by(MaskRow.id)
        return list(session.scalars(query))


# --------------------------------------------------------------------------- the queue


def test_checkout_accept_undo_finish_with_attribution(client, project):
    info = client.get("/api/annotate/project").json()
    assert info["images"] == info["remaining"] == len(SEEDS) and info["model"] == "test-weights"
    task = checkout(client, "ann")["task"]
    image_id = task["image_id"]
    assert (task["height"], task["width"], task["gear"]) == (*SIZE, 1)
    assert task["name"].startswith("scene-") and task["accepted"] == task["proposals"] == []

    picture = client.get(task["image_url"])
    assert picture.headers["content-type"] == "image/png"
    assert np.asarray(Image.open(io.BytesIO(picture.content))).shape == (*SIZE, 3)
    embedding = client.get(task["embedding_url"])
    assert embedding.status_code == 200 and embedding.headers["x-original-size"] == "256,256"
    assert len(embedding.content) == 2 * np.prod(
        [int(v) for v in embedding.headers["x-embedding-shape"].split(",")]
    )

    first, second = square(10, 10), square(100, 150, 30)
    stored = accept(client, image_id, "ann", first, client_key="key-first-1").json()
    assert stored["annotator"] == "ann" and stored["area"] == 400
    # The page sends uncompressed runs: the same mask either way.
    runs = mask_to_rle_pytorch(torch.from_numpy(second)[None])[0]
    body = {"annotator": "ann", "segmentation": runs, "clicks": 1, "seconds": 2.0}
    second_id = client.post(f"/api/annotate/images/{image_id}/accept", json=body).json()["id"]
    retry = accept(client, image_id, "ann", first, client_key="key-first-1").json()
    assert retry["id"] == stored["id"]  # a retried request stores the mask once

    masks = rows(project, image_id)
    assert [m.id for m in masks] == [stored["id"], second_id]
    np.testing.assert_array_equal(decode_coco_rle(stored["segmentation"]), first)
    assert (masks[0].annotator, masks[0].clicks, masks[0].seconds) == ("ann", 3, 4.5)
    assert {m.model_version_id for m in masks} == {info["model_version_id"]}
    assert {m.gear for m in masks} == {1}

    undo = client.post(
        f"/api/annotate/images/{image_id}/masks/{second_id}/undo", json={"annotator": "ann"}
    )
    assert undo.status_code == 204
    assert [m.status for m in rows(project, image_id)] == ["accepted", "undone"]

    again = checkout(client, "ann")["task"]  # what a reload asks: the same image, its masks
    assert again["image_id"] == image_id
    assert [m["id"] for m in again["accepted"]] == [stored["id"]]

    done = client.post(f"/api/annotate/images/{image_id}/finish", json={"annotator": "ann"})
    assert done.json() == {"remaining": len(SEEDS) - 1}
    with project.session() as session:
        run = session.scalar(select(ImageRunRow).where(ImageRunRow.image_id == image_id))
        assert (run.annotator, run.gear) == ("ann", 1)
    assert checkout(client, "ann")["task"]["image_id"] != image_id
    late = accept(client, image_id, "ann", first)
    assert late.status_code == 409 and "finished" in late.json()["detail"]


def test_two_annotators_never_hold_the_same_image(client, project):
    names = [f"annotator-{i}" for i in range(len(SEEDS) + 2)]
    with ThreadPoolExecutor(len(names)) as pool:  # all at once, as racing browsers
        answers = dict(zip(names, pool.map(lambda n: checkout(client, n)["task"], names)))
    held = {n: t["image_id"] for n, t in answers.items() if t is not None}
    assert len(held) == len(SEEDS) and len(set(held.values())) == len(SEEDS)
    assert sum(t is None for t in answers.values()) == 2

    ann, bob = sorted(held)[:2]
    mine = accept(client, held[ann], ann, square(5, 5))
    assert mine.status_code == 200
    intruder = accept(client, held[ann], bob, square(50, 50))
    assert intruder.status_code == 409 and "someone else" in intruder.json()["detail"]
    undo = client.post(
        f"/api/annotate/images/{held[ann]}/masks/{mine.json()['id']}/undo",
        json={"annotator": bob},
    )
    assert undo.status_code == 409
    finish = client.post(f"/api/annotate/images/{held[ann]}/finish", json={"annotator": bob})
    assert finish.status_code == 409
    assert [(m.annotator, m.status) for m in rows(project, held[ann])] == [(ann, "accepted")]


def test_a_lost_lease_is_a_409_and_keeps_what_was_accepted(
    project, tiny_random, decoder_file, tmp_path
):
    app, _ = make_app(
        project, tiny_random, decoder_file, tmp_path / "cache", lease_seconds=0.5, ahead=0
    )
    with TestClient(app) as client:
        image_id = checkout(client, "ann")["task"]["image_id"]
        assert accept(client, image_id, "ann", square(0, 0)).status_code == 200
        time.sleep(0.6)  # the lease runs out; bob takes the image
        assert checkout(client, "bob")["task"]["image_id"] == image_id
        lost = accept(client, image_id, "ann", square(40, 40))
        assert lost.status_code == 409 and "someone else" in lost.json()["detail"]
        task = checkout(client, "bob")["task"]
        assert [m["annotator"] for m in task["accepted"]] == ["ann"]


def test_renewing_keeps_the_image_until_the_lease_runs_out(
    project, tiny_random, decoder_file, tmp_path
):
    app, _ = make_app(
        project, tiny_random, decoder_file, tmp_path / "cache", lease_seconds=0.6, ahead=0
    )
    with TestClient(app) as client:
        image_id = checkout(client, "ann")["task"]["image_id"]

        def renew(annotator: str):
            url = f"/api/annotate/images/{image_id}/renew"
            return client.post(url, json={"annotator": annotator})

        for _ in range(3):  # past the first lease's end, kept by renewing
            time.sleep(0.3)
            assert renew("ann").status_code == 200
        assert checkout(client, "bob")["task"]["image_id"] != image_id
        time.sleep(0.7)  # ann stops; the lease runs out, a third annotator takes the image
        assert checkout(client, "cat")["task"]["image_id"] == image_id
        lost = renew("ann")
        assert lost.status_code == 409 and "someone else" in lost.json()["detail"]


def test_released_image_goes_back_to_the_queue(client):
    image_id = checkout(client, "ann")["task"]["image_id"]
    assert accept(client, image_id, "ann", square(0, 0)).status_code == 200
    release = client.post(f"/api/annotate/images/{image_id}/release", json={"annotator": "ann"})
    assert release.status_code == 204
    task = checkout(client, "bob")["task"]
    assert task["image_id"] == image_id and len(task["accepted"]) == 1


def test_gear_two_proposals_reject_restore_correct_and_finish(client, project):
    scene = generate_scene(SEEDS[0])
    with project.session() as session:
        image_id = session.scalar(select(ImageRow.id).where(ImageRow.path.like("%-11.png")))
        proposals = [NewMask.from_mask(m, predicted_iou=0.9) for m in scene.masks[:3]]
        assert write_proposals(session, image_id, proposals, None)
    task = checkout(client, "ann")["task"]
    assert task["image_id"] == image_id and task["gear"] == 2
    first, second, third = (m["id"] for m in task["proposals"])

    def decide(mask_id: int, action: str) -> int:
        url = f"/api/annotate/images/{image_id}/masks/{mask_id}/{action}"
        return client.post(url, json={"annotator": "ann"}).status_code

    assert decide(first, "reject") == 204
    reloaded = checkout(client, "ann")["task"]
    assert [m["id"] for m in reloaded["rejected"]] == [first]
    assert [m["id"] for m in reloaded["proposals"]] == [second, third]
    assert decide(first, "restore") == 204 and decide(second, "reject") == 204
    assert decide(second, "reject") == 409  # not an open proposal any more
    corrected = accept(client, image_id, "ann", scene.masks[2], corrects_id=third)
    assert corrected.status_code == 200 and corrected.json()["gear"] == 2
    added = accept(client, image_id, "ann", square(200, 200, 10))
    assert added.status_code == 200
    assert client.post(
        f"/api/annotate/images/{image_id}/finish", json={"annotator": "ann", "seconds": 30}
    ).json() == {"remaining": len(SEEDS) - 1}
    status = {m.id: (m.status, m.annotator) for m in rows(project, image_id)}
    assert status[first] == ("accepted", None)  # open at "image done": accepted unchanged
    assert status[second] == ("rejected", None)
    assert status[third] == ("corrected", None)
    assert status[corrected.json()["id"]] == ("accepted", "ann")
    assert status[added.json()["id"]] == ("accepted", "ann")


def test_embeddings_are_computed_ahead(project, tiny_random, decoder_file, tmp_path):
    app, annotation = make_app(project, tiny_random, decoder_file, tmp_path / "cache", ahead=2)
    with TestClient(app) as client:
        image_id = checkout(client, "ann")["task"]["image_id"]
        with project.session() as session:
            shas = dict(session.execute(select(ImageRow.id, ImageRow.sha256)).all())
        wanted = {shas[image_id], *(shas[i] for i in annotation.desk.upcoming(2))}
        assert len(wanted) == 3
        deadline = time.monotonic() + 60
        while not all(s in annotation.segment.cache for s in wanted):
            assert time.monotonic() < deadline, "the next images were not embedded ahead"
            time.sleep(0.05)
        runs = annotation.segment.encoder_runs
        assert client.get(f"/api/annotate/images/{image_id}/embedding").status_code == 200
        assert annotation.segment.encoder_runs == runs  # served from the cache


def test_missing_or_changed_image_file(client, project):
    with project.session() as session:
        first, second = session.execute(select(ImageRow.id, ImageRow.path).limit(2)).all()
    Path(first.path).unlink()
    gone = client.get(f"/api/annotate/images/{first.id}/embedding")
    assert gone.status_code == 404 and "cannot be read" in gone.json()["detail"]
    Image.fromarray(generate_scene(99).image).save(second.path)
    changed = client.get(f"/api/annotate/images/{second.id}/image.png")
    assert changed.status_code == 409 and "changed" in changed.json()["detail"]


# --------------------------------------------------------------------------- bad input

GOOD = {"annotator": "ann", "clicks": 1, "seconds": 1.0}
BAD_BODIES = {
    "no annotator": ({"segmentation": "square", "clicks": 1, "seconds": 1}, 422, "annotator"),
    "blank annotator": ({**GOOD, "annotator": "  ", "segmentation": "square"}, 422, "annotator"),
    "control character": (
        {**GOOD, "annotator": "a\nb", "segmentation": "square"},
        422,
        "annotator",
    ),
    "long annotator": (
        {**GOOD, "annotator": "a" * 201, "segmentation": "square"},
        422,
        "annotator",
    ),
    "no mask": (GOOD, 422, "segmentation"),
    "wrong size": ({**GOOD, "segmentation": {"size": [3, 3], "counts": [9]}}, 422, "3x3"),
    "runs short": ({**GOOD, "segmentation": {"size": [256, 256], "counts": [5, 5]}}, 422, "sum"),
    "negative run": ({**GOOD, "segmentation": {"size": [256, 256], "counts": [-1]}}, 422, "counts"),
    "bad rle text": ({**GOOD, "segmentation": {"size": [256, 256], "counts": "0"}}, 422, "RLE"),
    "foreign rle": ({**GOOD, "segmentation": {"size": [256, 256], "counts": "zz"}}, 422, "RLE"),
    "empty mask": ({**GOOD, "segmentation": {"size": [256, 256], "counts": [65536]}}, 422, "empty"),
    "negative clicks": ({**GOOD, "clicks": -1, "segmentation": "square"}, 422, "clicks"),
    "text seconds": ({**GOOD, "seconds": "soon", "segmentation": "square"}, 422, "seconds"),
    "bad key": ({**GOOD, "client_key": "prefill:1:0", "segmentation": "square"}, 422, "client_key"),
    "extra field": ({**GOOD, "colour": "red", "segmentation": "square"}, 422, "colour"),
    "unknown proposal": ({**GOOD, "corrects_id": 999, "segmentation": "square"}, 409, "999"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_accept_bodies_are_4xx_with_a_clear_message(client, case):
    body, status, words = BAD_BODIES[case]
    image_id = checkout(client, "ann")["task"]["image_id"]
    if body.get("segmentation") == "square":
        body = {**body, "segmentation": encode_coco_rle(square(0, 0))}
    response = client.post(f"/api/annotate/images/{image_id}/accept", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("post", "/api/annotate/images/999/accept", None, 404),
        ("post", "/api/annotate/images/999/finish", {"annotator": "ann"}, 404),
        ("get", "/api/annotate/images/999/embedding", None, 404),
        ("get", "/api/annotate/images/abc/image.png", None, 422),
        ("get", "/api/annotate/images/0/image.png", None, 422),
        ("get", f"/api/annotate/images/{2**70}/image.png", None, 422),
        ("get", "/api/annotate/images/1/embedding?dtype=int8", None, 422),
        ("post", "/api/annotate/images/1/masks/1/explode", {"annotator": "ann"}, 422),
        ("post", "/api/annotate/next", "not json", 422),
        ("post", "/api/annotate/next", {}, 422),
    ],
)
def test_bad_requests_are_4xx(client, method, url, body, status):
    if body is None and method == "post":
        body = {**GOOD, "segmentation": encode_coco_rle(square(0, 0))}
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    response = getattr(client, method)(url, **({} if method == "get" else kwargs))
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str)


# --------------------------------------------------------------------------- the token


def test_the_token_is_required_beyond_localhost(project, tiny_random, decoder_file, tmp_path):
    token = project.token
    assert [required_token(h, token) for h in ("127.0.0.1", "localhost", "::1")] == [None] * 3
    assert required_token("0.0.0.0", token) == token
    assert required_token("192.168.1.20", token) == token
    app, _ = make_app(
        project,
        tiny_random,
        decoder_file,
        tmp_path / "cache",
        token=required_token("0.0.0.0", token),
    )
    with TestClient(app) as client:
        refused = client.get("/api/annotate/project")
        assert refused.status_code == 401 and "token" in refused.json()["detail"]
        assert client.post("/api/annotate/next", json={"annotator": "a"}).status_code == 401
        wrong = client.get("/api/annotate/project", headers={"x-segany-token": "guess"})
        assert wrong.status_code == 401
        assert client.get("/api/model").status_code == 401  # every route, not only annotation
        form = client.get("/annotate")
        assert form.status_code == 401 and "<form" in form.text
        assert client.get("/annotate?token=guess").status_code == 401

        header = client.get("/api/annotate/project", headers={"x-segany-token": token})
        assert header.status_code == 200
        login = client.get(f"/annotate?token={token}&x=1", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/annotate?x=1"
        assert client.cookies.get(cookie_name(token)) == token
        assert client.get("/api/annotate/project").status_code == 200  # the cookie carries it


def test_no_token_on_localhost(client):
    assert client.get("/api/annotate/project").status_code == 200


# --------------------------------------------------------------------------- the command


def test_command_errors_are_one_line(tmp_path, capsys, project):
    (tmp_path / "plain").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(project.path, broken)
    for name in ("project.db-wal", "project.db-shm"):
        (broken / name).unlink(missing_ok=True)
    (broken / "project.db").write_bytes(b"not a database at all" * 100)
    cases = [
        ([str(tmp_path / "plain")], "not a segany project"),
        ([str(tmp_path / "nowhere")], "no such project folder"),
        ([str(broken)], "cannot be used"),
        ([str(project.path), "--port", "70000"], "not a port number"),
        ([str(project.path), "--lease-seconds", "0"], "--lease-seconds"),
    ]
    for args, words in cases:
        assert main(["annotate", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
