"""The video API (FastAPI test client) with the bundled model: open a short mp4, click an
object on one frame, track it forwards and backwards, read every frame's masks (they follow
the moving object), download them; and every bad input answered 4xx with a message."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("av")
from fastapi.testclient import TestClient

from segany.checkpoints import load
from segany.formats.rle import decode_coco_rle
from segany.server import Limits, SegmentService, create_app
from segany.server.video_sessions import VideoSessions
from video_helpers import (
    FRAMES,
    HEIGHT,
    WIDTH,
    bundled_decoder,
    deepest_point,
    iou,
    moving_clip,
)

MIN_IOU = 0.85  # the bundled model on the moving object, on every frame


@pytest.fixture(scope="module")
def model():
    return load("tiny")


@pytest.fixture(scope="module")
def clip():
    return moving_clip()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("video-cache"), bundled_decoder(tmp_path_factory)


def make_client(model, cache, **limits) -> TestClient:
    folder, decoder = cache
    service = SegmentService(model, folder, Limits(**limits), decoder_path=decoder)
    return TestClient(create_app(service, static_dir=None))


@pytest.fixture(scope="module")
def client(model, cache):
    with make_client(model, cache) as c:
        yield c


def open_clip(client: TestClient, data: bytes, name: str = "clip.mp4") -> dict:
    response = client.post("/api/videos", params={"name": name}, content=data)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_tracking(client: TestClient, video_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(f"/api/videos/{video_id}/track").json()
        if status["state"] != "running":
            return status
        time.sleep(0.05)
    raise AssertionError("tracking did not finish in 60 s")


def masks_by_frame(client: TestClient, video_id: str) -> dict[int, dict[int, np.ndarray]]:
    page = client.get(f"/api/videos/{video_id}/masks").json()
    return {
        f["frame_index"]: {o["object_id"]: decode_coco_rle(o["mask"]) for o in f["objects"]}
        for f in page["frames"]
    }


def assert_error(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.json()["detail"]


# --------------------------------------------------------------------------- the main path


def test_click_track_and_read_masks_that_follow_the_object(client, clip):
    info = open_clip(client, clip.mp4)
    assert (info["frames"], info["height"], info["width"]) == (FRAMES, HEIGHT, WIDTH)
    assert info["fps"] == pytest.approx(8.0)
    video = f"/api/videos/{info['id']}"
    jpeg = client.get(info["frame_url"].format(index=5))
    assert jpeg.headers["content-type"] == "image/jpeg"

    # a click on frame 3: that frame's mask at once
    x, y = deepest_point(clip.truth[3])
    answer = client.post(
        f"{video}/prompts",
        json={"object_id": 1, "frame_index": 3, "points": [[x, y]], "labels": [1]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["frame_index"] == 3
    clicked = decode_coco_rle(answer.json()["mask"])
    assert iou(clicked, clip.truth[3]) >= 0.9
    # a second object: a box around the still one on frame 6
    ys, xs = np.nonzero(clip.still[6])
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    answer = client.post(f"{video}/prompts", json={"object_id": 2, "frame_index": 6, "box": box})
    assert answer.status_code == 200, answer.text

    started = client.post(f"{video}/track")
    assert started.status_code == 202 and started.json()["objects"] == [1, 2]
    status = wait_for_tracking(client, info["id"])
    assert status["state"] == "done" and status["done"] == status["total"] == FRAMES
    # embedded: frames 6 back to 0 (object 2's first prompt), then 3 forwards to 7
    assert status["steps_done"] == status["steps_total"] == 7 + 5
    masks = masks_by_frame(client, info["id"])
    assert sorted(masks) == list(range(FRAMES))
    for index in range(FRAMES):  # backwards from 3 (and 6), then forwards
        assert sorted(masks[index]) == [1, 2]
        for object_id, truth in ((1, clip.truth[index]), (2, clip.still[index])):
            value = iou(masks[index][object_id], truth)
            assert value >= MIN_IOU, f"object {object_id}, frame {index}: IoU {value:.2f}"
    np.testing.assert_array_equal(masks[3][1], clicked)  # tracking starts from what was shown
    assert client.get(f"{video}/masks?start=5").json()["frames"][0]["frame_index"] == 5
    assert client.post(f"{video}/track").json()["state"] == "done"  # same prompts: kept

    exported = client.get(f"{video}/export")
    assert exported.status_code == 200
    assert "clip.masklets.json" in exported.headers["content-disposition"]
    document = exported.json()
    assert document["video"]["frame_count"] == FRAMES and document["objects"] == [1, 2]
    assert len(document["masklets"]) == 2 * FRAMES
    for record in document["masklets"]:
        mask = decode_coco_rle(record["segmentation"])
        np.testing.assert_array_equal(mask, masks[record["frame_index"]][record["object_id"]])

    # a new prompt makes the tracked masks stale: they are dropped until tracked again
    x, y = deepest_point(clip.truth[0])
    client.post(f"{video}/prompts", json={"object_id": 1, "frame_index": 0, "points": [[x, y]]})
    assert client.get(f"{video}/track").json()["state"] == "idle"
    assert client.get(f"{video}/masks").json()["frames"] == []
    assert client.delete(f"{video}/objects/2").status_code == 204
    assert client.post(f"{video}/track").json()["objects"] == [1]
    wait_for_tracking(client, info["id"])


# --------------------------------------------------------------------------- bad input


def test_uploads_that_are_not_short_videos_are_refused(model, cache, clip):
    with make_client(model, cache) as client:
        assert_error(client.post("/api/videos", content=b"not a video at all"), 415, "not")
        assert_error(client.post("/api/videos", content=b""), 400, "empty upload")
        truncated = client.post("/api/videos", content=clip.mp4[: len(clip.mp4) // 2])
        assert_error(truncated, 415, "not a readable video")
        assert str(cache[0]) not in truncated.json()["detail"]  # no server paths in answers
    with make_client(model, cache, max_video_frames=5) as client:
        assert_error(client.post("/api/videos", content=clip.mp4), 422, "8 frames, the limit is 5")
    with make_client(model, cache, max_video_seconds=0.5) as client:
        assert_error(client.post("/api/videos", content=clip.mp4), 422, "1.0 s, the limit is 0.5 s")
    with make_client(model, cache, max_video_pixels=100 * 100) as client:
        assert_error(client.post("/api/videos", content=clip.mp4), 413, "224x160 pixels")
    with make_client(model, cache, max_upload_bytes=1000) as client:
        assert_error(client.post("/api/videos", content=clip.mp4), 413, "larger than the limit")


def test_bad_prompts_and_sessions_get_4xx(client, clip):
    info = open_clip(client, clip.mp4)
    video = f"/api/videos/{info['id']}"

    def prompt(**body):
        return client.post(f"{video}/prompts", json={"object_id": 1, "frame_index": 0, **body})

    assert_error(prompt(frame_index=FRAMES, points=[[5, 5]]), 422, "past the last frame (7)")
    assert_error(prompt(points=[[WIDTH + 3, 5]]), 422, "outside the 224x160 frame")
    assert_error(prompt(points=[[5, 5]], labels=[1, 0]), 422, "one 0 or 1 per point")
    assert_error(prompt(), 422, "needs points or a box")
    assert_error(prompt(box=[50, 50, 10, 10]), 422, "not a box inside")
    assert_error(prompt(object_id=-1, points=[[5, 5]]), 422, "object_id")
    assert_error(prompt(points=[[5, 5, 5]]), 422, "points.0")
    assert_error(prompt(box=[1, 2, 3]), 422, "box")
    assert_error(client.get(f"{video}/frames/{FRAMES}.jpg"), 404, "no frame 8")
    assert_error(client.post(f"{video}/track"), 409, "nothing to track")
    assert_error(client.get(f"{video}/export"), 409, "track")
    assert_error(client.delete(f"{video}/objects/4"), 404, "object 4 has no prompts")
    unknown = "/api/videos/" + "0" * 32
    assert_error(client.get(unknown), 404, "unknown video session")
    assert_error(
        client.post(f"{unknown}/prompts", json={"object_id": 1, "frame_index": 0}), 404, "unknown"
    )
    assert_error(client.get(f"{unknown}/masks"), 404, "unknown video session")
    assert_error(client.get("/api/videos/not-a-session/track"), 422, "session_id")
    assert client.delete(video).status_code == 204
    assert_error(client.get(f"{video}/frames/0.jpg"), 404, "unknown video session")


def test_the_least_recently_used_video_is_closed_past_the_limit(model, cache, clip):
    with make_client(model, cache, max_video_sessions=1) as client:
        first = open_clip(client, clip.mp4)
        second = open_clip(client, clip.mp4)
        assert_error(client.get(f"/api/videos/{first['id']}"), 404, "unknown video session")
        assert client.get(f"/api/videos/{second['id']}").status_code == 200


def test_without_pyav_the_answer_says_what_to_install(client, clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` fails as if not installed
    assert_error(client.post("/api/videos", content=clip.mp4), 501, "pip install 'segany[video]'")


def test_a_cancelled_job_stops_and_can_be_run_again(client, clip):
    info = open_clip(client, clip.mp4, name='my "clip"\n.mp4')
    video = f"/api/videos/{info['id']}"
    x, y = deepest_point(clip.truth[-1])
    last = {"object_id": 1, "frame_index": FRAMES - 1, "points": [[x, y]]}
    assert client.post(f"{video}/prompts", json=last).status_code == 200
    client.post(f"{video}/track")  # the walk back from the last frame comes first: ~1 s
    assert client.post(f"{video}/track/cancel").json()["state"] == "cancelled"
    time.sleep(0.5)
    status = client.get(f"{video}/track").json()
    assert status["state"] == "cancelled" and status["done"] < FRAMES
    assert_error(client.get(f"{video}/export"), 409, "track the objects first")
    assert client.post(f"{video}/track").json()["state"] == "running"
    assert wait_for_tracking(client, info["id"])["done"] == FRAMES
    exported = client.get(f"{video}/export")
    assert exported.status_code == 200
    assert 'filename="my_clip.masklets.json"' in exported.headers["content-disposition"]


def test_session_folders_left_by_a_crash_are_removed_a_day_later(tmp_path):
    old, recent = tmp_path / "videos-crashed", tmp_path / "videos-running"
    for folder in (old, recent):
        (folder / ("0" * 32)).mkdir(parents=True)
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    mine = VideoSessions(tmp_path, Limits()).folder()
    assert not old.exists() and recent.exists() and mine.is_dir()
