"""``segany serve --label-studio`` with a real Label Studio (tests/label_studio_server.py):
a project with a brush and smart keypoint/rectangle config and one generated scene, the
backend connected through Label Studio's API, a click and a box sent the way the labeling page
sends them (``/api/ml/{id}/interactive-annotating``), the brush answered decoded by Label
Studio's own SDK and compared with the scene's true mask; then the submitted annotation lands
in the data-engine project through the webhook Label Studio calls, where the engine's
statistics count it.

The bundled ``tiny`` model segments the scene; the floors sit below the measured IoUs
(a click 0.907, a box 0.938) with a margin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from segany.checkpoints import bundled_weights_path
from segany.data.scenes import generate_scene
from segany.engine import Project
from segany.engine.schema import MaskRow
from segany.engine.stats import project_stats
from segany.evaluate.clicks import centre_click
from segany.evaluate.demo import DEMO_SEED, largest_whole_object
from segany.evaluate.protocol import mask_iou
from segany.formats.boxes import mask_bbox_xywh
from segany.formats.pictures import write_png

pytestmark = pytest.mark.skipif(
    bundled_weights_path("tiny") is None, reason="the bundled tiny weights are not there"
)
IOU_FLOOR = 0.8
CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="mask" toName="image"><Label value="object"/></BrushLabels>
<KeyPointLabels name="point" toName="image" smart="true"><Label value="object"/></KeyPointLabels>
<RectangleLabels name="box" toName="image" smart="true"><Label value="object"/></RectangleLabels>
</View>"""


def start_segany(port: int, cache, project) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "segany", "serve", "--label-studio", "--port", str(port)]
    command += ["--cache-dir", str(cache), "--project", str(project)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"segany serve exited ({process.returncode})"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout:.0f} s")


@pytest.fixture(scope="module")
def stack(label_studio_python, tmp_path_factory):
    """Label Studio and segany, started side by side (Label Studio's first start migrates its
    database); both stopped at the end."""
    from label_studio_server import free_port, start_label_studio

    folder = tmp_path_factory.mktemp("label-studio-e2e")
    Project.create(folder / "project").close()
    port = free_port()
    studio = start_label_studio()
    segany = start_segany(port, folder / "cache", folder / "project")
    try:
        wait_for(f"http://127.0.0.1:{port}/health", segany)
        studio.wait_ready()
        yield studio, f"http://127.0.0.1:{port}", folder
    finally:
        if segany.poll() is None:
            os.killpg(segany.pid, signal.SIGTERM)
            segany.wait(10)
        studio.stop()


def percent(value: float, size: int) -> float:
    return 100.0 * value / size


def smart_prompts(truth: np.ndarray) -> tuple[dict, dict]:
    """What the labeling page sends for a smart keypoint at the object's centre and a smart
    rectangle 2 pixels around it: regions in percent of the image."""
    height, width = truth.shape
    x, y = (int(v) for v in centre_click(truth))
    x0, y0, w, h = mask_bbox_xywh(truth)  # a box 2 pixels around, inside the image
    x0, y0, x1, y1 = max(x0 - 2, 0), max(y0 - 2, 0), min(x0 + w + 2, width), min(y0 + h + 2, height)
    size = {"original_width": width, "original_height": height, "image_rotation": 0}
    click = {
        "id": "click1",
        "type": "keypointlabels",
        "from_name": "point",
        "to_name": "image",
        "is_positive": True,
        **size,
        "value": {
            "x": percent(x, width),
            "y": percent(y, height),
            "width": 0.5,
            "keypointlabels": ["object"],
        },
    }
    box = {
        "id": "box1",
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        **size,
        "value": {
            "x": percent(x0, width),
            "y": percent(y0, height),
            "width": percent(x1 - x0, width),
            "height": percent(y1 - y0, height),
            "rectanglelabels": ["object"],
        },
    }
    return click, box


def test_label_studio_gets_brush_masks_and_submitted_ones_count(stack, label_studio_python):
    from label_studio_server import label_studio_sdk

    studio, backend_url, folder = stack
    scene = generate_scene(DEMO_SEED)
    truth = scene.masks[largest_whole_object(scene)]
    height, width = truth.shape
    write_png(folder / "scene.png", scene.image)

    project = studio.api(
        "POST", "/api/projects", json={"title": "segany e2e", "label_config": CONFIG}
    )
    with open(folder / "scene.png", "rb") as image:
        files = {"file": ("scene.png", image, "image/png")}
        studio.api("POST", f"/api/projects/{project['id']}/import", files=files)
    (task,) = studio.api("GET", f"/api/tasks?project={project['id']}")["tasks"]
    assert task["data"]["image"].startswith("/data/upload/")
    connect = {
        "project": project["id"],
        "url": backend_url,
        "title": "segany",
        "is_interactive": True,
    }
    backend = studio.api("POST", "/api/ml", json=connect)
    assert backend["readable_state"] == "Connected", backend

    click, box = smart_prompts(truth)
    regions = []
    for prompt in (click, box):
        body = {"task": task["id"], "context": {"result": [prompt]}}
        answer = studio.api("POST", f"/api/ml/{backend['id']}/interactive-annotating", json=body)
        assert "errors" not in answer, answer
        (region,) = answer["data"]["result"]
        assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["object"]
        regions.append(region)
    jobs = [{"rle": r["value"]["rle"], "height": height, "width": width} for r in regions]
    decoded = label_studio_sdk(label_studio_python, jobs)
    ious = [mask_iou(np.array(d["mask"], bool), truth) for d in decoded]
    assert min(ious) > IOU_FLOOR, ious

    # Submitting the annotation calls the backend's webhook: the mask is recorded.
    annotation = {"result": [regions[0], click], "lead_time": 7.5}
    studio.api("POST", f"/api/tasks/{task['id']}/annotations", json=annotation)
    with Project.open(folder / "project") as engine, engine.session() as session:
        (row,) = session.scalars(select(MaskRow)).all()
        stats = project_stats(session).to_dict()
    assert (row.gear, row.status, row.clicks, row.seconds) == (1, "accepted", 1, 7.5)
    assert row.annotator.startswith("label-studio:")
    assert stats["total"]["masks"] == 1 and stats["total"]["clicks_per_mask"] == 1.0
