"""The page in Debian's Chromium (headless), driven by Playwright, against a server started
here on localhost. Screenshots of every step go to ``out/test-artifacts/browser/``.

Two servers: one with seeded random weights, for what does not depend on the model's quality
(the page's masks agree with :class:`~segany.Predictor` for the same clicks, refinement,
undo, downloads, errors); and one with the bundled ``tiny`` model for the acceptance checks on
generated scenes with known masks (IoU >= 0.9), skipped until the bundled weights exist. The
objects asked of the bundled model are chosen by a rule (:func:`demonstration_objects`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import cv2  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import random_image  # noqa: E402
from segany import InteractiveSession, Predictor  # noqa: E402
from segany.checkpoints import bundled_weights_path, load  # noqa: E402
from segany.data.samples import SAMPLE_SEEDS  # noqa: E402
from segany.data.scenes import generate_scene  # noqa: E402
from segany.formats.rle import decode_coco_rle, encode_coco_rle  # noqa: E402
from segany.server import SegmentService, create_app  # noqa: E402
from segany.server.app import STATIC_DIR  # noqa: E402
from segany.server.live import PageDriver, chromium_path, live_server  # noqa: E402

pytestmark = pytest.mark.browser
if chromium_path() is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )
if not (STATIC_DIR / "index.html").is_file():
    pytest.skip("the page is not built: run `make web`", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts" / "browser"
NO_TINY = (
    "the bundled model (segany/weights/tiny.safetensors) is not there yet; IoU >= 0.9 needs it"
)
# The random-weights tests click fixed points of the page's first sample scene.
RANDOM_SCENE = SAMPLE_SEEDS[0]
MIN_IOU = 0.9
# What the bundled (demonstration) model is asked to select, chosen by rule, not by result:
# large, compact, plainly coloured whole objects in one piece, in the page's sample scenes.
DEMO_MIN_AREA = 2000  # pixels of the 256 x 256 scene
# Scenes never seen in training (it used seeds below 1,000,000), searched for a real leak: a
# click whose mask takes in at least this share of a touching object.
LEAK_SEEDS = range(1_000_000, 1_000_200)
MIN_LEAK = 0.2
DEMO_MAX_STD = 8.0  # pixel spread inside the object; a flat colour after blur + noise is ~3
DEMO_SHAPES = ("ellipse", "polygon", "blob")  # no rings (holes), bars (thin), stars (spikes)


def in_one_piece(mask: np.ndarray) -> bool:
    return cv2.connectedComponents(mask.astype(np.uint8))[0] == 2  # background + one


def whole_objects(seed: int) -> list[int]:
    """Objects of a scene that are in one piece and neither a part nor made of parts."""
    scene = generate_scene(seed)
    return [
        i
        for i, parent in enumerate(scene.parents)
        if parent < 0 and i not in scene.parents and in_one_piece(scene.masks[i])
    ]


def plainly_coloured(image: np.ndarray, mask: np.ndarray) -> bool:
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return bool(inner.any()) and float(image[inner].std(axis=0).mean()) < DEMO_MAX_STD


@cache
def demonstration_objects() -> list[tuple[int, int]]:
    """(scene seed, object index) of every object that fits the rule, largest first."""
    found = []
    for seed in SAMPLE_SEEDS:
        scene = generate_scene(seed)
        for i in whole_objects(seed):
            mask = scene.masks[i]
            if (
                scene.shapes[i] in DEMO_SHAPES
                and mask.sum() >= DEMO_MIN_AREA
                and plainly_coloured(scene.image, mask)
            ):
                found.append((int(mask.sum()), seed, i))
    return [(seed, i) for _, seed, i in sorted(found, reverse=True)]


def click_target() -> tuple[int, int]:
    """The largest demonstration object."""
    return demonstration_objects()[0]


def box_target() -> tuple[int, int]:
    """The largest demonstration object in another scene than the click target's."""
    seed = click_target()[0]
    return next(target for target in demonstration_objects() if target[0] != seed)


def touching(masks: np.ndarray, target: int, other: int) -> bool:
    grown = cv2.dilate(masks[target].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return bool((grown & masks[other]).any())


def leak_case(model) -> tuple[int, int, int]:
    """(scene seed, object, neighbour): a wrongly included part the bundled model really makes.
    In held-out scenes, taken in order, each demonstration-shaped whole object is clicked at
    its centre (as the page does); the first whose mask takes in at least ``MIN_LEAK`` of a
    touching whole object is the case, with the neighbour it leaks into most."""
    predictor = Predictor(model)
    for seed in LEAK_SEEDS:
        scene = generate_scene(seed)
        embedding = None
        objects = whole_objects(seed)
        for index in objects:
            target = scene.masks[index]
            if scene.shapes[index] not in DEMO_SHAPES or target.sum() < DEMO_MIN_AREA:
                continue
            if embedding is None:
                embedding = predictor.embed(scene.image)
            session = InteractiveSession(predictor, embedding)
            session.click(*interior_points(target)[0])
            leaks = {
                other: (session.mask & scene.masks[other]).sum() / scene.masks[other].sum()
                for other in objects
                if other != index and touching(scene.masks, index, other)
            }
            if leaks and max(leaks.values()) >= MIN_LEAK:
                return seed, index, max(leaks, key=leaks.__getitem__)
    raise LookupError("the bundled model leaks into no neighbour in the held-out scenes")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def interior_points(mask: np.ndarray, count: int = 1) -> list[tuple[float, float]]:
    """Pixel centres deep inside ``mask``: the deepest point, then the deepest one away from
    the points before it."""
    work = mask.astype(np.uint8).copy()
    points = []
    for _ in range(count):
        depth = cv2.distanceTransform(np.pad(work, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        points.append((x + 0.5, y + 0.5))
        cv2.circle(work, (int(x), int(y)), int(depth[y, x] * 0.9), 0, -1)
    return points


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def serve(model, cache_dir: Path, **everything: object) -> Iterator[str]:
    options = {"points_per_side": 8, **everything}
    service = SegmentService(model, cache_dir, everything_options=options)
    with live_server(create_app(service)) as url:
        yield url


@pytest.fixture(scope="module")
def random_server(tiny_random, tmp_path_factory) -> Iterator[str]:
    # random weights predict low IoU: keep every mask for "segment everything"
    cache = tmp_path_factory.mktemp("random-cache")
    yield from serve(tiny_random, cache, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def tiny_model():
    if bundled_weights_path("tiny") is None:
        pytest.skip(NO_TINY)
    return load("tiny")


@pytest.fixture(scope="module")
def tiny_server(tiny_model, tmp_path_factory) -> Iterator[str]:
    yield from serve(tiny_model, tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture()
def page(browser, request) -> Iterator[PageDriver]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda error: errors.append(str(error)))
    driver = PageDriver(tab)
    driver.name = request.node.name  # type: ignore[attr-defined]
    yield driver
    context.close()
    assert not errors, f"errors on the page: {errors}"


def shot(page: PageDriver, step: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = page.name.replace("[", "-").replace("]", "")  # type: ignore[attr-defined]
    page.page.screenshot(path=str(ARTIFACTS / f"{name}-{step}.png"))


def download(page: PageDriver, button: str, folder: Path) -> Path:
    with page.page.expect_download() as info:
        page.page.click(button)
    path = folder / info.value.suggested_filename
    info.value.save_as(str(path))
    page.idle()
    return path


def agreement(page_mask: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of pixels where two masks differ."""
    return float((page_mask != reference).mean())


# --------------------------------------------------------------------------- random weights


def test_page_decodes_like_the_predictor(page, random_server, tiny_random):
    """Same clicks, same masks: the page's coordinate mapping, candidates, logit feedback and
    box prompt against segany.InteractiveSession, on a non-square image with exact float32
    embeddings."""
    image = random_image(200, 300, seed=3)
    page.open(random_server, "?embedding=float32")
    page.upload("random.png", png(image))
    shot(page, "1-loaded")
    session = InteractiveSession(Predictor(tiny_random), Predictor(tiny_random).embed(image))

    steps = [
        ("click", (100.3, 60.7, 1)),
        ("click", (220.5, 150.2, 0)),
        ("box", (40.0, 30.0, 180.0, 140.0)),
        ("click", (90.0, 120.0, 1)),
    ]
    masks = []
    for number, (kind, args) in enumerate(steps, start=2):
        if kind == "box":
            page.drag(*args)
            box = page.state()["box"]
            np.testing.assert_allclose(box, args, atol=0.5)
            prediction = session.set_box(box)
        else:
            page.click(args[0], args[1], label=args[2])
            x, y, label = (page.state()["points"][-1][k] for k in ("x", "y", "label"))
            assert (x, y, label) == pytest.approx(args, abs=0.5)
            prediction = session.click(x, y, positive=bool(label))
        shot(page, f"{number}-{kind}")
        state = page.state()
        np.testing.assert_allclose(state["scores"], prediction.scores[0], atol=2e-3)
        assert state["chosen"] == int(prediction.best_index()[0])
        assert 0.01 < session.mask.mean() < 0.99  # a mask with a boundary to agree on
        assert agreement(page.mask(), session.mask) < 1e-3
        masks.append(page.mask())
    assert len(page.state()["scores"]) == 1  # later steps: one mask

    page.page.click("#undo")
    assert page.state()["steps"] == 3
    np.testing.assert_array_equal(page.mask(), masks[-2])
    page.page.keyboard.press("Escape")
    assert page.state()["steps"] == 0 and page.state()["area"] == 0
    shot(page, "6-reset")


def test_compact_float16_embedding_gives_the_same_masks(page, random_server, tiny_random):
    scene = generate_scene(RANDOM_SCENE)
    predictor = Predictor(tiny_random)
    embedding = predictor.embed(scene.image)
    page.open(random_server)
    page.load_sample(f"scene-{RANDOM_SCENE}")
    (x, y), *_ = interior_points(scene.masks[1])
    page.click(x, y)
    reference = predictor.predict(embedding, points=[[x, y]], labels=[1])
    assert iou(page.mask(), reference.best_masks()[0]) >= 0.98
    np.testing.assert_allclose(page.state()["scores"], reference.scores[0], atol=2e-2)


def test_candidates_alt_click_and_hover(page, random_server):
    page.open(random_server)
    page.load_sample(f"scene-{RANDOM_SCENE}")
    cx, cy = page.client_xy(60.5, 50.5)
    page.page.mouse.move(cx, cy)
    page.page.wait_for_function("() => window.segany.state().hoverArea > 0")
    shot(page, "1-hover")
    page.click(60.5, 50.5)
    state = page.state()
    assert len(state["scores"]) == 3
    assert page.page.locator("#candidates button").count() == 3
    other = (state["chosen"] + 1) % 3
    page.page.click(f"#candidates button[data-candidate='{other}']")
    assert page.state()["chosen"] == other
    shot(page, "2-candidate")
    page.click(200.5, 200.5, label=0, how="alt")
    assert [p["label"] for p in page.state()["points"]] == [1, 0]
    page.click(150.5, 40.5, label=0, how="right")
    assert [p["label"] for p in page.state()["points"]] == [1, 0, 0]
    shot(page, "3-background")


def test_downloads_are_the_page_masks(page, random_server, tmp_path):
    scene = generate_scene(RANDOM_SCENE)
    page.open(random_server)
    page.load_sample(f"scene-{RANDOM_SCENE}")
    page.click(60.5, 50.5)
    first = page.mask()
    cutout = np.asarray(Image.open(download(page, "#download-cutout", tmp_path)))
    assert cutout.shape == (*first.shape, 4)
    np.testing.assert_array_equal(cutout[..., 3] > 0, first)
    np.testing.assert_array_equal(cutout[..., :3][first], scene.image[first])
    mask_png = np.asarray(Image.open(download(page, "#download-mask", tmp_path)))
    np.testing.assert_array_equal(mask_png > 0, first)

    page.page.click("#accept")
    page.click(200.5, 180.5)
    page.click(120.5, 60.5, label=0)
    second = page.mask()
    page.page.keyboard.press("Enter")
    assert page.state()["accepted"] == 2 and page.state()["steps"] == 0
    shot(page, "1-accepted")
    coco = json.loads(download(page, "#download-coco", tmp_path).read_text())
    decoded = [decode_coco_rle(a["segmentation"]) for a in coco["annotations"]]
    assert len(decoded) == 2
    np.testing.assert_array_equal(decoded[0], first)
    np.testing.assert_array_equal(decoded[1], second)
    assert coco["images"][0]["file_name"] == f"scene-{RANDOM_SCENE}.png"


def test_bad_upload_shows_the_server_message(page, random_server):
    page.open(random_server)
    page.upload("notes.png", b"these are notes, not pixels", mime="image/png")
    state = page.state()
    assert state["error"] and "not an image" in state["message"]
    assert page.page.locator("#message.error").is_visible()
    shot(page, "1-error")


def test_rle_decoder_matches_pycocotools(page, random_server):
    page.open(random_server)
    rng = np.random.default_rng(0)
    masks = [
        np.zeros((7, 5), bool),
        np.ones((7, 5), bool),
        rng.random((31, 17)) > 0.5,
        cv2.GaussianBlur(rng.random((120, 90)), (0, 0), 4) > 0.5,
    ]
    for mask in masks:
        rle = encode_coco_rle(mask)
        runs = page.page.evaluate(
            "([c, h, w]) => window.segany.decodeCompressed(c, h, w)",
            [rle["counts"], *mask.shape],
        )
        np.testing.assert_array_equal(decode_coco_rle({"size": rle["size"], "counts": runs}), mask)


def test_page_is_cross_origin_isolated_and_multithreaded(page, random_server):
    page.open(random_server)
    assert page.page.evaluate("() => window.segany.isolated()") is True
    assert page.page.evaluate("() => window.segany.threads()") >= min(
        2, page.page.evaluate("() => navigator.hardwareConcurrency")
    )


def test_segment_everything_then_pick(page, random_server):
    import httpx

    page.open(random_server)
    page.load_sample(f"scene-{RANDOM_SCENE}")
    page.page.click("#everything")
    page.idle()
    count = page.state()["everything"]
    shot(page, "1-everything")
    records = httpx.post(f"{random_server}/api/images/{page.state()['imageId']}/everything").json()
    assert count == len(records["masks"]) > 0
    smallest = min(records["masks"], key=lambda r: r["area"])
    y, x = np.argwhere(decode_coco_rle(smallest["segmentation"]))[0]
    page.click(x + 0.5, y + 0.5)
    assert page.state()["accepted"] == 1
    shot(page, "2-picked")
    page.click(x + 0.5, y + 0.5)  # picking it again drops it
    assert page.state()["accepted"] == 0


# --------------------------------------------------------------------------- bundled model


def assert_iou(mask: np.ndarray, truth: np.ndarray, minimum: float = MIN_IOU) -> None:
    value = iou(mask, truth)
    assert value >= minimum, f"IoU with the true mask {value:.3f} < {minimum}"


def test_click_on_an_object_selects_it(page, tiny_server, tiny_model):
    seed, index = click_target()
    scene = generate_scene(seed)
    truth = scene.masks[index]
    page.open(tiny_server)
    page.load_sample(f"scene-{seed}")
    shot(page, "1-loaded")
    (x, y), *_ = interior_points(truth)
    page.click(x, y)
    shot(page, "2-clicked")
    assert_iou(page.mask(), truth)
    predictor = Predictor(tiny_model)
    reference = predictor.predict(predictor.embed(scene.image), points=[[x, y]], labels=[1])
    assert iou(page.mask(), reference.best_masks()[0]) >= 0.98


def test_background_click_removes_a_wrongly_included_part(page, tiny_server, tiny_model):
    seed, index, neighbour = leak_case(tiny_model)
    scene = generate_scene(seed)
    target, wrong = scene.masks[index], scene.masks[neighbour]
    page.open(tiny_server)
    page.upload(f"scene-{seed}.png", png(scene.image))
    page.click(*interior_points(target)[0])
    shot(page, "1-wrong-part-included")
    leaked = page.mask() & wrong
    assert leaked.sum() >= MIN_LEAK * wrong.sum(), "precondition: the click leaks as in Python"
    before = iou(page.mask(), target)
    page.click(*interior_points(leaked)[0], label=0)
    shot(page, "2-background-click")
    mask = page.mask()
    left = (mask & wrong).sum() / wrong.sum()
    assert left < 0.1, f"{left:.0%} of the other object is still in the mask"
    assert iou(mask, target) > before
    assert_iou(mask, target)


def test_drawn_box_selects_the_object_inside(page, tiny_server):
    seed, index = box_target()
    truth = generate_scene(seed).masks[index]
    ys, xs = np.nonzero(truth)
    page.open(tiny_server)
    page.load_sample(f"scene-{seed}")
    page.drag(xs.min() - 3, ys.min() - 3, xs.max() + 4, ys.max() + 4)
    shot(page, "1-box")
    assert page.state()["box"] is not None
    assert_iou(page.mask(), truth)


def test_downloaded_cutout_has_the_object_alpha(page, tiny_server, tmp_path):
    seed, index = click_target()
    scene = generate_scene(seed)
    truth = scene.masks[index]
    page.open(tiny_server)
    page.load_sample(f"scene-{seed}")
    page.click(*interior_points(truth)[0])
    shot(page, "1-clicked")
    cutout = np.asarray(Image.open(download(page, "#download-cutout", tmp_path)))
    alpha = cutout[..., 3] > 0
    np.testing.assert_array_equal(alpha, page.mask())
    assert_iou(alpha, truth)
    np.testing.assert_array_equal(cutout[..., :3][alpha], scene.image[alpha])
