"""Label Studio's ML backend protocol (``segany serve --label-studio``) over FastAPI's test
client (which re-raises any server error, so a 500 fails the test): health, setup, predict
(keypoints and rectangles in, brush RLE out) and the webhook recording submitted masks in a
data-engine project. Images come from a small local HTTP server standing in for Label Studio's
``/data/upload`` (it wants the token). The model is the bundled architecture with seeded random
weights (the protocol does not depend on what the model learnt); the end-to-end test with a
real Label Studio is test_label_studio_e2e.py."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from conftest import random_image
from segany.engine import Project
from segany.engine.schema import ImageRunRow, MaskRow
from segany.engine.stats import project_stats
from segany.engine.store import row_mask
from segany.formats.ls_brush import decode_brush_rle, encode_brush_rle
from segany.server import SegmentService, create_app
from segany.server.label_studio_backend import LabelStudioBackend
from segany.server.label_studio_client import LabelStudioClient

TOKEN = "secret-token"
HEIGHT, WIDTH = 96, 128
IMAGE = random_image(HEIGHT, WIDTH, seed=3)
CONFIG = """<View><Image name="img" value="$picture"/>
<BrushLabels name="brush" toName="img"><Label value="cat"/><Label value="dog"/></BrushLabels>
<KeyPointLabels name="kp" toName="img" smart="true"><Label value="dog"/></KeyPointLabels>
<RectangleLabels name="box" toName="img" smart="true"><Label value="cat"/></RectangleLabels>
</View>"""
TASK = {"id": 7, "data": {"picture": "/data/upload/1/scene.png"}}


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class Files(BaseHTTPRequestHandler):
    """Label Studio's file serving, in short: one PNG, for the right token only."""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            self.send_error(401)
        elif self.path != TASK["data"]["picture"]:
            self.send_error(404)
        else:
            body = png(IMAGE)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def files_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def make_client(model, decoder_file, tmp_path, url=None, token=None, project=None):
    service = SegmentService(model, tmp_path / "cache", decoder_path=decoder_file)
    backend = LabelStudioBackend(service, LabelStudioClient(url, token), project)
    return TestClient(create_app(service, static_dir=None, label_studio=backend)), service


@pytest.fixture()
def client(tiny_random, decoder_file, tmp_path, files_url):
    app, _ = make_client(tiny_random, decoder_file, tmp_path, files_url, TOKEN)
    with app as c:
        yield c


def keypoint(x: float, y: float, positive: bool = True, label: str = "dog") -> dict:
    return {
        "type": "keypointlabels",
        "is_positive": positive,
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "value": {"x": 100 * x / WIDTH, "y": 100 * y / HEIGHT, "keypointlabels": [label]},
    }


def rectangle(x0: float, y0: float, x1: float, y1: float) -> dict:
    value = {"x": 100 * x0 / WIDTH, "y": 100 * y0 / HEIGHT, "rectanglelabels": ["cat"]}
    value.update(width=100 * (x1 - x0) / WIDTH, height=100 * (y1 - y0) / HEIGHT)
    return {"type": "rectanglelabels", "value": value}


def predict(client, context, tasks=(TASK,), config=CONFIG):
    body = {"tasks": list(tasks), "label_config": config, "params": {"context": context}}
    return client.post("/predict", json=body)


# --------------------------------------------------------------------------- protocol


def test_health_setup_and_versions(tiny_random, decoder_file, tmp_path, files_url):
    app, _ = make_client(tiny_random, decoder_file, tmp_path)  # no address, no token yet
    with app as client:
        health = client.get("/health").json()
        assert health["status"] == "UP" and health["model_class"] == "segany"
        version = health["model_version"]
        assert client.get("/versions").json()["versions"] == [version]
        bad = client.post("/setup", json={"project": "1.1", "schema": "<View><Image/></View>"})
        assert bad.status_code == 422 and "BrushLabels" in bad.json()["detail"]
        assert client.post("/setup", json={"schema": "<View"}).status_code == 422
        # Label Studio's address and the owner's token from setup fetch the images.
        assert predict(client, {"result": [keypoint(10, 10)]}).status_code == 422
        setup = {"project": "1.1", "schema": CONFIG, "hostname": files_url, "access_token": TOKEN}
        assert client.post("/setup", json=setup).json() == {"model_version": version}
        assert predict(client, {"result": [keypoint(10, 10)]}).status_code == 200


def test_setup_never_sends_a_given_token_to_an_address_it_names():
    client = LabelStudioClient(None, "mine")
    client.configure("http://elsewhere:8080", "theirs")
    assert (client.url, client.token) == (None, "mine")
    client = LabelStudioClient()
    client.configure("http://studio:8080/", "owner")
    assert (client.url, client.token) == ("http://studio:8080", "owner")


def test_a_click_gives_the_predictors_mask_as_a_brush(client, tiny_random):
    from segany import Predictor

    response = predict(client, {"result": [keypoint(40, 30), keypoint(90, 70, positive=False)]})
    assert response.status_code == 200, response.text
    answer = response.json()
    (prediction,) = answer["results"]
    (region,) = prediction["result"]
    assert region["type"] == "brushlabels" and region["from_name"] == "brush"
    assert region["to_name"] == "img" and region["value"]["brushlabels"] == ["dog"]
    assert (region["original_width"], region["original_height"]) == (WIDTH, HEIGHT)
    mask = decode_brush_rle(region["value"]["rle"], HEIGHT, WIDTH)
    predictor = Predictor(tiny_random)
    expected = predictor.predict(
        predictor.embed(IMAGE), points=[[40, 30], [90, 70]], labels=[1, 0], multimask=False
    )
    assert np.array_equal(mask, expected.masks[0, 0])
    assert prediction["score"] == pytest.approx(float(expected.scores[0, 0]), abs=1e-5)
    assert prediction["model_version"] == answer["model_version"]


def test_a_box_prompt_and_the_embedding_cache(client, tiny_random):
    from segany import Predictor

    first = predict(client, {"result": [rectangle(20, 10, 100, 80)]})
    assert first.status_code == 200, first.text
    region = first.json()["results"][0]["result"][0]
    assert region["value"]["brushlabels"] == ["cat"]
    predictor = Predictor(tiny_random)
    expected = predictor.predict(predictor.embed(IMAGE), boxes=[20, 10, 100, 80], multimask=False)
    assert np.array_equal(
        decode_brush_rle(region["value"]["rle"], HEIGHT, WIDTH), expected.masks[0, 0]
    )
    assert predict(client, {"result": [keypoint(5, 5)]}).status_code == 200
    assert client.app.state.service.encoder_runs == 1  # the image was embedded once


def test_no_prompt_gives_an_empty_prediction_per_task(client):
    two = [TASK, {"id": 8, "data": {"picture": "/data/upload/1/other.png"}}]
    for context in (None, {"result": []}):
        answer = predict(client, context, tasks=two).json()
        assert [r["result"] for r in answer["results"]] == [[], []]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"tasks": [TASK], "params": {}}, 422, "no labeling config"),
        ({"tasks": [TASK], "label_config": "<View><Image name='i' value='$i'/></View>"}, 422, "BrushLabels"),
        ({"tasks": [], "label_config": CONFIG}, 422, "non-empty list"),
        ({"tasks": [{"id": 3, "data": {}}], "label_config": CONFIG}, 422, "data.picture"),
        ({"tasks": [{"id": 3, "data": {"picture": "s3://b/k.png"}}], "label_config": CONFIG, "params": {"context": {"result": [keypoint(1, 1)]}}}, 422, "cloud storage"),
        ({"tasks": [{"id": 3, "data": {"picture": "/data/upload/9.png"}}], "label_config": CONFIG, "params": {"context": {"result": [keypoint(1, 1)]}}}, 404, "HTTP 404"),
        ({"tasks": [TASK], "label_config": CONFIG, "params": {"context": {"result": [{"type": "polygonlabels", "value": {}}]}}}, 422, "keypointlabels or rectanglelabels"),
        ({"tasks": [TASK], "label_config": CONFIG, "params": {"context": {"result": [{"type": "keypointlabels", "value": {"x": 120, "y": 3}}]}}}, 422, "outside 0-100"),
        ({"tasks": [TASK], "label_config": CONFIG, "params": {"context": {"result": "x"}}}, 422, "must be a list"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_with_a_reason(client, body, status, words):
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_wrong_token_is_a_403(tiny_random, decoder_file, tmp_path, files_url):
    app, _ = make_client(tiny_random, decoder_file, tmp_path, files_url, "wrong")
    with app as client:
        response = predict(client, {"result": [keypoint(10, 10)]})
    assert response.status_code == 403 and "token" in response.json()["detail"]


# --------------------------------------------------------------------------- webhook


def blob(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def brush(region_id: str, mask: np.ndarray) -> dict:
    return {
        "id": region_id,
        "type": "brushlabels",
        "from_name": "brush",
        "to_name": "img",
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "value": {"format": "rle", "rle": encode_brush_rle(mask), "brushlabels": ["dog"]},
    }


def event(action: str, result: list, annotation_id: int = 5) -> dict:
    annotation = {"id": annotation_id, "result": result, "completed_by": 3, "lead_time": 20.0}
    project = {"label_config": CONFIG}
    return {"action": action, "annotation": annotation, "task": TASK, "project": project}


def masks_of(project: Project) -> list[MaskRow]:
    with project.session() as session:
        return list(session.scalars(select(MaskRow).order_by(MaskRow.id)))


def test_webhook_records_submitted_masks_in_the_project(
    tiny_random, decoder_file, tmp_path, files_url
):
    project = Project.create(tmp_path / "project")
    app, _ = make_client(tiny_random, decoder_file, tmp_path, files_url, TOKEN, project)
    first, second = blob(40, 40, 15), blob(95, 60, 12)
    with app as client:
        ignored = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {}})
        assert ignored.status_code == 200 and ignored.json()["recorded"] is False
        created = [brush("a1", first), brush("b2", second), keypoint(40, 40), keypoint(45, 38)]
        answer = client.post("/webhook", json=event("ANNOTATION_CREATED", created)).json()
        assert (answer["added"], answer["kept"], answer["undone"]) == (2, 0, 0)
        again = client.post("/webhook", json=event("ANNOTATION_CREATED", created)).json()
        assert (again["added"], again["kept"]) == (0, 2)
        rows = masks_of(project)
        assert [(r.gear, r.status, r.annotator, r.clicks, r.seconds) for r in rows] == [
            (1, "accepted", "label-studio:3", 2, 10.0),  # both clicks fall in the first mask
            (1, "accepted", "label-studio:3", None, 10.0),  # drawn by hand
        ]
        assert np.array_equal(row_mask(rows[0]), first)
        # An edit of the second mask replaces it; a deletion withdraws the annotation.
        edited = [brush("a1", first), brush("b2", blob(95, 60, 8))]
        answer = client.post("/webhook", json=event("ANNOTATION_UPDATED", edited)).json()
        assert (answer["added"], answer["kept"], answer["undone"]) == (1, 1, 1)
        with project.session() as session:
            stats = project_stats(session).to_dict()
            runs = session.scalars(select(ImageRunRow)).all()
        assert len(runs) == 1 and runs[0].gear == 1
        assert stats["total"]["masks"] == 2 and stats["total"]["images"] == 1
        assert [r.status for r in masks_of(project)] == ["accepted", "undone", "accepted"]
        skipped = event("ANNOTATION_CREATED", created, 7)
        skipped["annotation"]["was_cancelled"] = True
        assert client.post("/webhook", json=skipped).json()["recorded"] is False
        deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 5}]}
        assert client.post("/webhook", json=deleted).json()["undone"] == 2
        wrong_size = [{**brush("c3", first), "original_width": WIDTH + 1}]
        response = client.post("/webhook", json=event("ANNOTATION_CREATED", wrong_size, 6))
        assert response.status_code == 422 and "the image" in response.json()["detail"]
    project.close()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--project", "nowhere"], "--project goes with --label-studio"),
        (["--label-studio", "--project", "nowhere"], "no such project folder"),
        (["--label-studio", "--label-studio-url", "ftp://host"], "expected http://host:port"),
    ],
)
def test_serve_refuses_bad_label_studio_options(argv, words, capsys, tmp_path):
    from segany.cli import main

    assert main(["serve", "--cache-dir", str(tmp_path), *argv]) == 2
    assert words in capsys.readouterr().err
