"""The annotation page (``segany annotate``) in Debian's Chromium, driven by Playwright, against
a server started here on a small project of generated scenes with the bundled model: two
annotators at once (two browser contexts) never hold the same image, every accepted mask is in
the project attributed to its annotator, a reload shows what was accepted; and a gear-2 image's
pre-filled masks are locked, with a toggle to reject each. Screenshots go to
``out/test-artifacts/annotation/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import cv2  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import select  # noqa: E402

from segany.checkpoints import bundled_weights_path  # noqa: E402
from segany.data.samples import SAMPLE_SEEDS  # noqa: E402
from segany.data.scenes import generate_scene  # noqa: E402
from segany.engine import NewMask, Project, add_images  # noqa: E402
from segany.engine.models import load_gear_model  # noqa: E402
from segany.engine.schema import ImageRow, ImageRunRow, MaskRow  # noqa: E402
from segany.engine.store import row_mask, write_proposals  # noqa: E402
from segany.server import AnnotationService, SegmentService, create_app  # noqa: E402
from segany.server.app import STATIC_DIR  # noqa: E402
from segany.server.live import PageDriver, chromium_path, live_server  # noqa: E402

pytestmark = pytest.mark.browser
if chromium_path() is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )
if not (STATIC_DIR / "annotate.html").is_file():
    pytest.skip("the pages are not built: run `make web`", allow_module_level=True)
if bundled_weights_path("tiny") is None:
    pytest.skip("the bundled model is not there", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts" / "annotation"
SEEDS = SAMPLE_SEEDS[:3]


def make_project(folder: Path, seeds: tuple[int, ...]) -> Project:
    images = folder / "images"
    images.mkdir(parents=True)
    for seed in seeds:
        Image.fromarray(generate_scene(seed).image).save(images / f"scene-{seed}.png")
    project = Project.create(folder / "project")
    with project.session() as session:
        add_images(session, images)
    return project


@pytest.fixture(scope="module")
def decoder_file(tmp_path_factory) -> Path:
    """The bundled model's decoder graph, exported once for the module's servers."""
    with make_project(tmp_path_factory.mktemp("graph"), ()) as project:
        model, _ = load_gear_model(project)
    return SegmentService(model, tmp_path_factory.mktemp("graph-cache")).ensure_decoder()


def serve(project: Project, decoder_file: Path, cache: Path):
    model, version = load_gear_model(project)
    segment = SegmentService(model, cache, decoder_path=decoder_file)
    annotation = AnnotationService(project, segment, version)
    return live_server(create_app(segment, annotation=annotation)), version


class Annotator:
    """One person at the page, in a browser context of their own (own storage, own name)."""

    def __init__(self, browser, url: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        tab = self.context.new_page()
        tab.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page = PageDriver(tab)
        self.page.open(url, "annotate")
        tab.fill("#annotator-name", name)
        tab.click("#annotator-save")
        self.wait_for_task()

    def wait_for_task(self) -> None:
        self.page.page.wait_for_function(
            "() => window.segany.state().imageId !== null || window.segany.state().error"
            " || window.segany.state().message.startsWith('No free image')"
        )
        self.page.idle()
        assert not self.state()["error"], self.state()["message"]

    def state(self) -> dict:
        return self.page.state()

    def press(self, key: str) -> None:
        self.page.page.keyboard.press(key)
        self.page.idle()

    def click_largest_object(self) -> tuple[float, float]:
        """Click deep inside the largest object of this annotator's scene."""
        seed = int(self.state()["name"].removeprefix("scene-").removesuffix(".png"))
        masks = generate_scene(seed).masks
        target = masks[int(np.argmax(masks.reshape(len(masks), -1).sum(1)))]
        depth = cv2.distanceTransform(np.pad(target, 1).astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(int(np.argmax(depth[1:-1, 1:-1])), target.shape)
        self.page.click(x + 0.5, y + 0.5)
        assert self.state()["area"] > 0
        return x, y

    def stroke(self, points: list[tuple[float, float]]) -> None:
        mouse = self.page.page.mouse
        mouse.move(*self.page.client_xy(*points[0]))
        mouse.down()
        for point in points[1:]:
            mouse.move(*self.page.client_xy(*point), steps=4)
        mouse.up()
        self.page.idle()

    def shot(self, step: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{step}.png"))

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"errors on {self.name}'s page: {self.errors}"


def accepted_rows(project: Project) -> list[MaskRow]:
    with project.session() as session:
        query = select(MaskRow).where(MaskRow.status == "accepted").order_by(MaskRow.id)
        return list(session.scalars(query))


def test_two_annotators_at_once(browser, decoder_file, tmp_path):
    project = make_project(tmp_path, SEEDS)
    server, version = serve(project, decoder_file, tmp_path / "cache")
    with server as url:
        ann, bob = Annotator(browser, url, "ann"), Annotator(browser, url, "bob")
        assert ann.state()["imageId"] != bob.state()["imageId"]  # never the same image
        masks: dict[int, np.ndarray] = {}

        x, y = ann.click_largest_object()
        bob.click_largest_object()
        # ann touches the mask up: a brush stroke far from the object is added
        ann.press("b")
        before = ann.state()["area"]
        ann.stroke([(4, 250), (40, 250)])
        painted = ann.state()["area"]
        assert painted > before and ann.state()["clicks"] == 2
        ann.press("e")  # and the eraser takes the stroke's end back
        ann.stroke([(36, 250), (44, 250)])
        assert ann.state()["area"] < painted and ann.state()["clicks"] == 3
        ann_mask = ann.page.mask()
        assert ann_mask[250, 15] and not ann_mask[250, 38] and ann_mask[int(y), int(x)]
        bob_mask = bob.page.mask()
        ann.press("Enter")
        bob.press("Enter")
        masks[ann.state()["accepted"][-1]["id"]] = ann_mask
        masks[bob.state()["accepted"][-1]["id"]] = bob_mask
        bob.click_largest_object()  # a second mask, taken back with z
        bob.press("Enter")
        undone = bob.state()["accepted"][-1]["id"]
        bob.press("z")
        assert [a["id"] for a in bob.state()["accepted"]] == [max(masks)]
        ann.shot("1-accepted")

        held = ann.state()["imageId"]
        ann.page.page.reload()  # a reload shows what was accepted
        ann.page.page.evaluate("() => window.segany.ready")
        ann.wait_for_task()
        assert ann.state()["imageId"] == held
        assert [a["id"] for a in ann.state()["accepted"]] == [min(masks)]
        ann.shot("2-reloaded")
        ann.page.page.screenshot(path="/tmp/segany-annotate-page.png")

        ann.press("d")
        assert ann.state()["imageId"] not in (None, held, bob.state()["imageId"])
        bob.press("d")
        assert bob.state()["imageId"] is None and "No free image" in bob.state()["message"]
        bob.shot("3-nothing-left")
        ann.close()
        bob.close()

    rows = accepted_rows(project)
    assert {r.id for r in rows} == set(masks)  # no accepted mask lost, the undone one gone
    for row in rows:
        np.testing.assert_array_equal(row_mask(row), masks[row.id])
        assert row.model_version_id == version.id and row.seconds > 0 and row.clicks >= 1
    by_id = {r.id: r for r in rows}
    assert by_id[min(masks)].annotator == "ann" and by_id[min(masks)].clicks == 3
    assert by_id[max(masks)].annotator == "bob"
    with project.session() as session:
        assert session.get(MaskRow, undone).status == "undone"
        runs = session.execute(select(ImageRunRow.image_id, ImageRunRow.annotator)).all()
    assert sorted(a for _, a in runs) == ["ann", "bob"]
    project.close()


def test_gear_two_proposals_are_locked_with_a_reject_toggle(browser, decoder_file, tmp_path):
    project = make_project(tmp_path, SEEDS[:1])
    scene = generate_scene(SEEDS[0])
    areas = scene.masks.reshape(len(scene.masks), -1).sum(1)
    largest = [int(i) for i in np.argsort(areas)[::-1]]
    with project.session() as session:
        image_id = session.scalar(select(ImageRow.id))
        proposals = [NewMask.from_mask(scene.masks[i], predicted_iou=0.95) for i in largest[1:3]]
        assert write_proposals(session, image_id, proposals, None)
    server, _ = serve(project, decoder_file, tmp_path / "cache")
    with server as url:
        cat = Annotator(browser, url, "cat")
        state = cat.state()
        assert state["gear"] == 2 and [p["rejected"] for p in state["proposals"]] == [False] * 2
        wrong = state["proposals"][0]["id"]
        cat.page.page.click(f"button[data-proposal='{wrong}']")
        cat.page.page.wait_for_function(
            f"() => window.segany.state().proposals.find(p => p.id === {wrong}).rejected"
        )
        cat.click_largest_object()  # the missing object
        cat.press("Enter")
        cat.shot("gear2")
        cat.press("d")
        cat.close()
    with project.session() as session:
        status = dict(session.execute(select(MaskRow.id, MaskRow.status)).all())
        mine = session.scalars(select(MaskRow).where(MaskRow.annotator == "cat")).all()
    kept = next(p["id"] for p in state["proposals"] if p["id"] != wrong)
    assert status[wrong] == "rejected" and status[kept] == "accepted"
    assert [(m.gear, m.status) for m in mine] == [(2, "accepted")]
    project.close()
