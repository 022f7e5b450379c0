"""``segany serve --label-studio``: the model as a Label Studio ML backend.

``/predict`` answers the annotator's smart tools (keypoints, rectangles) with a brush mask;
each image is fetched from Label Studio once and embedded once (the service's cache, keyed by
the bytes' SHA-256), so every further click costs one decoder run. With a data-engine project,
``/webhook`` records submitted brush masks in the project (:mod:`segany.engine.external`).
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread
from sqlalchemy.exc import OperationalError

from ..engine import NewMask, Project
from ..engine.external import ExternalMask, Recorded, record_group, withdraw_group
from ..engine.store import file_sha256
from ..formats.files import atomic_write_bytes
from ..formats.images import decode_image
from .errors import ApiError, upload_error
from .label_studio import (
    LabelConfig,
    Prompts,
    annotation_brushes,
    brush_region,
    parse_prompts,
    prompt_points,
)
from .label_studio_client import LabelStudioClient
from .service import SegmentService

RECORDED_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
IMAGES_FOLDER = "label-studio-images"  # in the project: the images masks were recorded on
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
log = logging.getLogger(__name__)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(422, f"{what} must be an object")
    return value


def _image_location(task: Any, config: LabelConfig) -> str:
    data = _dict(_dict(task, "each task").get("data"), "task.data")
    location = data.get(config.data_key)
    if not isinstance(location, str) or not location:
        raise ApiError(422, f"task {task.get('id')} has no image URL in data.{config.data_key}")
    return location


class LabelStudioBackend:
    """The ML backend over ``segment``; ``project`` (optional) records submitted masks with
    ``model_version_id`` as the model they were clicked with."""

    def __init__(
        self,
        segment: SegmentService,
        client: LabelStudioClient,
        project: Project | None = None,
        model_version_id: int | None = None,
    ) -> None:
        self.segment = segment
        self.client = client
        self.project = project
        self.model_version_id = model_version_id

    @property
    def model_version(self) -> str:
        return f"segany-{self.segment.name}-{self.segment.encoder_id[:12]}"

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": "segany",
            "model_version": self.model_version,
            "project": self.project is not None,
        }

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        """Label Studio connects a project: check its config, note its address and token."""
        LabelConfig.parse(body.get("schema"))
        self.client.configure(body.get("hostname"), body.get("access_token"))
        return {"model_version": self.model_version}

    # ----------------------------------------------------------------------- predict
    async def _image(self, location: str) -> tuple[bytes, Any]:
        data = await self.client.fetch(location)
        _, embedding, _ = await self.segment.upload(data)
        return data, embedding

    async def _segment(self, embedding: Any, prompts: Prompts) -> tuple[np.ndarray, float]:
        def run() -> tuple[np.ndarray, float]:
            prediction = self.segment.predictor.predict(
                embedding,
                points=prompts.points or None,
                labels=prompts.labels or None,
                boxes=prompts.box,
                # one click is ambiguous (part or whole?): the best of 3, as SAM's demo does
                multimask=len(prompts.points) == 1 and prompts.box is None,
            )
            best = int(prediction.best_index()[0])
            return prediction.masks[0, best], float(prediction.scores[0, best])

        return await self.segment.workers.compute(run)

    async def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """A brush mask for the prompts in ``params.context`` on the (one) task; tasks
        without prompts get an empty prediction (nothing was asked)."""
        config = LabelConfig.parse(body.get("label_config"))
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise ApiError(422, "tasks must be a non-empty list")
        locations = [_image_location(task, config) for task in tasks]
        params = body.get("params") or {}
        context = params.get("context") if isinstance(params, dict) else None
        empty = {"result": [], "score": 0.0, "model_version": self.model_version}
        if not context or (isinstance(context, dict) and not context.get("result")):
            return {"results": [empty for _ in tasks], "model_version": self.model_version}
        _, embedding = await self._image(locations[0])
        prompts = parse_prompts(context, embedding.width, embedding.height)
        mask, score = await self._segment(embedding, prompts)
        region = brush_region(config, mask, config.label_for(prompts.label), score)
        prediction = {"result": [region], "score": score, "model_version": self.model_version}
        return {
            "results": [prediction] + [empty for _ in tasks[1:]],
            "model_version": self.model_version,
        }

    # ----------------------------------------------------------------------- webhook
    async def webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record submitted (or updated, or deleted) annotations in the project; other
        events, or any event without a project, are acknowledged and ignored."""
        action = body.get("action")
        if self.project is None:
            return {"action": action, "recorded": False, "reason": "no --project was given"}
        if action == "ANNOTATIONS_DELETED":
            ids = [a.get("id") for a in body.get("annotations") or () if isinstance(a, dict)]
            ids = [i for i in ids if isinstance(i, int)]
            undone = sum([await self._db(withdraw_group, self.project, f"ls:{i}:") for i in ids])
            return {"action": action, "recorded": True, "undone": undone}
        if action not in RECORDED_ACTIONS:
            return {"action": action, "recorded": False}
        if isinstance(body.get("annotation"), dict) and body["annotation"].get("was_cancelled"):
            return {"action": action, "recorded": False, "reason": "the task was skipped"}
        recorded = await self._record(body)
        return {"action": action, "recorded": True, **recorded.__dict__}

    async def _db(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await to_thread.run_sync(lambda: work(*args, **kwargs))
        except OperationalError as exc:
            log.warning("project database: %s", exc)
            raise ApiError(503, "the project database is busy or unreachable") from None
        except ValueError as exc:  # an unreadable image
            raise ApiError(422, str(exc)) from None

    def _save(self, location: str, data: bytes) -> tuple[Path, tuple[int, int]]:
        """The image file in the project (named by its hash), and its (height, width)."""
        assert self.project is not None
        try:
            height, width = decode_image(data, max_pixels=self.segment.limits.max_pixels).shape[:2]
        except ValueError as exc:
            raise upload_error(exc) from None
        suffix = Path(urllib.parse.urlsplit(location).path).suffix.lower()
        name = file_sha256(data) + (suffix if suffix in IMAGE_SUFFIXES else "")
        path = self.project.path / IMAGES_FOLDER / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        return path, (height, width)

    async def _record(self, body: dict[str, Any]) -> Recorded:
        annotation = _dict(body.get("annotation"), "annotation")
        if not isinstance(annotation.get("id"), int):
            raise ApiError(422, "annotation.id must be an integer")
        schema = _dict(body.get("project"), "project").get("label_config")
        location = _image_location(body.get("task"), LabelConfig.parse(schema))
        data = await self.client.fetch(location)
        path, (height, width) = await self.segment.workers.decode(self._save, location, data)
        results = annotation.get("result")
        brushes = annotation_brushes(results, width, height)
        points = prompt_points(results, width, height)
        masks = []
        for brush in brushes:
            inside = sum(
                bool(brush.mask[min(int(y), height - 1), min(int(x), width - 1)]) for x, y in points
            )
            masks.append(
                ExternalMask(brush.region_id, NewMask.from_mask(brush.mask), inside or None)
            )
        seconds = annotation.get("lead_time")
        return await self._db(
            record_group,
            self.project,
            path,
            f"ls:{annotation.get('id')}:",
            [m for m in masks if m.mask.area > 0],
            annotator=f"label-studio:{annotation.get('completed_by')}",
            seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
            model_version_id=self.model_version_id,
        )
