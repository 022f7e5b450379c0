"""The video page in Debian's Chromium (headless), driven by Playwright, against a server with the
bundled model: open a short mp4, click the moving object on one frame, track it, and see its
mask painted on frames before and after; play the clip; download the masks; a bad upload shows
the server's message. Screenshots go to ``out/test-artifacts/browser/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("av")
sync_api = pytest.importorskip("playwright.sync_api")

from segany.checkpoints import load  # noqa: E402
from segany.formats.rle import decode_coco_rle  # noqa: E402
from segany.server import SegmentService, create_app  # noqa: E402
from segany.server.app import STATIC_DIR  # noqa: E402
from segany.server.live import PageDriver, chromium_path, live_server  # noqa: E402
from video_helpers import FRAMES, bundled_decoder, deepest_point, iou, moving_clip  # noqa: E402

pytestmark = pytest.mark.browser
if chromium_path() is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
if not (STATIC_DIR / "video.html").is_file():
    pytest.skip("the page is not built: run `make web`", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("video-page-cache")
    service = SegmentService(load("tiny"), folder, decoder_path=bundled_decoder(tmp_path_factory))
    with live_server(create_app(service)) as url:
        yield url


@pytest.fixture()
def page(browser, server) -> Iterator[PageDriver]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(f"{server}/video.html")
    tab.evaluate("() => window.segany.ready")
    yield PageDriver(tab)
    context.close()
    assert not errors, f"errors on the page: {errors}"


def shot(page: PageDriver, step: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / f"video-{step}.png"))


def show(page: PageDriver, index: int) -> None:
    page.page.evaluate("(i) => window.segany.showFrame(i)", index)
    assert page.state()["frame"] == index


def shown_mask(page: PageDriver, object_id: int):
    state = page.state()
    runs = page.page.evaluate("(o) => window.segany.maskRuns(o)", object_id)
    assert runs is not None, f"no mask of object {object_id} on frame {state['frame']}"
    return decode_coco_rle({"size": [state["height"], state["width"]], "counts": runs})


def test_click_track_and_play_the_masks(page, tmp_path):
    clip = moving_clip()
    page.upload("clip.mp4", clip.mp4, mime="video/mp4")
    page.page.wait_for_function("() => window.segany.state().videoId !== null")
    page.idle()
    assert page.state()["frames"] == FRAMES
    assert page.page.evaluate("() => window.segany.overlayPixels()") == 0

    show(page, 3)
    page.click(*deepest_point(clip.truth[3]))
    shot(page, "1-clicked")
    painted = page.page.evaluate("() => window.segany.overlayPixels()")
    assert painted == pytest.approx(clip.truth[3].sum(), rel=0.15)
    assert iou(shown_mask(page, 1), clip.truth[3]) >= 0.9
    page.page.click("#add-object")  # a second object, in its own colour: a box on the still one
    ys, xs = np.nonzero(clip.still[3])
    page.drag(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert page.state()["objects"] == [1, 2] and page.state()["current"] == 2
    assert iou(shown_mask(page, 2), clip.still[3]) >= 0.85
    assert iou(shown_mask(page, 1), clip.truth[3]) >= 0.9  # the first one is still shown

    page.page.click("#track")
    page.page.wait_for_function("() => window.segany.state().track === 'done'", timeout=60_000)
    page.idle()
    assert page.state()["trackedFrames"] == FRAMES
    for index in (FRAMES - 1, 0):  # after the clicked frame and before it
        show(page, index)
        assert page.page.evaluate("() => window.segany.overlayPixels()") > 0
        assert iou(shown_mask(page, 1), clip.truth[index]) >= 0.85
        assert iou(shown_mask(page, 2), clip.still[index]) >= 0.85
    shot(page, "2-tracked-first-frame")
    page.page.keyboard.press("ArrowRight")
    page.idle()
    assert page.state()["frame"] == 1

    page.page.click("#play")
    page.page.wait_for_function(
        f"() => !window.segany.state().playing && window.segany.state().frame === {FRAMES - 1}"
    )
    shot(page, "3-played")

    with page.page.expect_download() as download:
        page.page.click("#download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(str(path))
    assert path.name == "clip.masklets.json"
    records = json.loads(path.read_text())["masklets"]
    last = next(r for r in records if r["frame_index"] == FRAMES - 1)
    assert iou(decode_coco_rle(last["segmentation"]), clip.truth[-1]) >= 0.85


def test_a_bad_upload_shows_the_server_message(page):
    page.upload("notes.mp4", b"these are notes, not frames", mime="video/mp4")
    state = page.state()
    assert state["error"] and "not a readable video" in state["message"]
    shot(page, "4-bad-upload")
