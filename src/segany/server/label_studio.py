"""Label Studio's ML backend protocol, without HTTP: the labeling config (which tags to read
and write), the annotator's smart-tool prompts in a prediction request's context, and the
``brushlabels`` regions of an answer.

Label Studio gives coordinates in percent of the image (x, y from the top-left corner);
prompts become pixels here, masks go back in Label Studio's own brush RLE
(:mod:`segany.formats.ls_brush`).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats.ls_brush import BrushRleError, decode_brush_rle, encode_brush_rle
from .errors import ApiError

PROMPT_TYPES = ("keypointlabels", "rectanglelabels")
CONFIG_EXAMPLE = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="mask" toName="image"><Label value="object"/></BrushLabels>'
    '<KeyPointLabels name="point" toName="image" smart="true"><Label value="object"/>'
    "</KeyPointLabels></View>"
)


@dataclass(frozen=True)
class LabelConfig:
    """What a project's labeling config tells the backend: the BrushLabels tag to answer with
    (``from_name``, ``to_name``, its labels) and the task data key of that Image."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]

    @classmethod
    def parse(cls, xml: str | None) -> LabelConfig:
        """From the config's XML; 422 when there is none to work with."""
        if not xml or not isinstance(xml, str):
            raise ApiError(422, f"no labeling config was sent; use one like {CONFIG_EXAMPLE}")
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as exc:
            raise ApiError(422, f"the labeling config is not valid XML: {exc}") from None
        images = {tag.get("name"): tag.get("value", "") for tag in root.iter("Image")}
        for brush in root.iter("BrushLabels"):
            target = brush.get("toName", "")
            value = images.get(target)
            if brush.get("name") and value and value.startswith("$"):
                labels = tuple(
                    str(label.get("value")) for label in brush.iter("Label") if label.get("value")
                )
                return cls(str(brush.get("name")), target, value[1:], labels)
        raise ApiError(
            422,
            "the labeling config has no BrushLabels tag on an Image with a $variable value; "
            f"use one like {CONFIG_EXAMPLE}",
        )

    def label_for(self, chosen: str | None) -> list[str]:
        """The brush label of a mask: the one the annotator chose on the prompt when the brush
        tag has it, else the brush tag's first label."""
        if chosen is not None and chosen in self.labels:
            return [chosen]
        return list(self.labels[:1])


@dataclass
class Prompts:
    """The annotator's smart-tool input, in image pixels: points (x, y) with labels (1 in,
    0 out), at most one box XYXY, and the label chosen on them."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None
    label: str | None = None

    @property
    def count(self) -> int:
        """Clicks: points, and a box as one."""
        return len(self.points) + (self.box is not None)


def _number(value: dict[str, Any], key: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ApiError(422, f"context.result: value.{key} must be a number (percent)")
    if not 0 <= number <= 100:
        raise ApiError(422, f"context.result: value.{key} = {number} is outside 0-100 percent")
    return float(number)


def parse_prompts(context: Any, width: int, height: int) -> Prompts:
    """The prompts of a request's ``context`` (``{"result": [...]}``, regions of type
    ``keypointlabels`` and ``rectanglelabels``) for a ``width`` x ``height`` image."""
    prompts = Prompts()
    if context is None:
        return prompts
    items = context.get("result") if isinstance(context, dict) else None
    if not isinstance(items, list):
        raise ApiError(422, "context.result must be a list of keypoint or rectangle regions")
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if kind not in PROMPT_TYPES or not isinstance(value, dict):
            raise ApiError(422, f"context.result: regions of type {' or '.join(PROMPT_TYPES)} only")
        x, y = _number(value, "x") * width / 100, _number(value, "y") * height / 100
        chosen = value.get(kind)
        if isinstance(chosen, list) and chosen and isinstance(chosen[0], str):
            prompts.label = chosen[0]
        if kind == "keypointlabels":
            prompts.points.append([x, y])
            prompts.labels.append(0 if item.get("is_positive") in (False, 0) else 1)
        else:
            w, h = _number(value, "width") * width / 100, _number(value, "height") * height / 100
            prompts.box = [x, y, x + w, y + h]  # the newest box counts
    return prompts


def brush_region(
    config: LabelConfig, mask: np.ndarray, label: list[str], score: float
) -> dict[str, Any]:
    """A ``brushlabels`` result region for an ``(H, W)`` bool mask."""
    height, width = mask.shape
    return {
        "id": secrets.token_hex(5),
        "from_name": config.from_name,
        "to_name": config.to_name,
        "type": "brushlabels",
        "origin": "prediction",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush_rle(mask), "brushlabels": label},
        "score": float(score),
        "readonly": False,
    }


@dataclass(frozen=True)
class BrushMask:
    """A ``brushlabels`` region of an annotation: its id, mask and label."""

    region_id: str
    mask: np.ndarray
    labels: tuple[str, ...]


def annotation_brushes(results: Any, width: int, height: int) -> list[BrushMask]:
    """The brush masks of an annotation's ``result`` list on a ``width`` x ``height`` image
    (other regions are skipped; a brush drawn on another image size is refused)."""
    if not isinstance(results, list):
        raise ApiError(422, "annotation.result must be a list of regions")
    brushes = []
    for item in results:
        if not isinstance(item, dict) or item.get("type") != "brushlabels":
            continue
        value = item.get("value") or {}
        size = (item.get("original_width"), item.get("original_height"))
        if size != (width, height):
            raise ApiError(
                422, f"a brush region is {size[0]}x{size[1]}; the image {width}x{height}"
            )
        try:
            mask = decode_brush_rle(value.get("rle") or [], height, width)
        except BrushRleError as exc:
            raise ApiError(422, f"brush region {item.get('id')}: {exc}") from None
        labels = tuple(str(v) for v in value.get("brushlabels") or ())
        brushes.append(BrushMask(str(item.get("id")), mask, labels))
    return brushes


def prompt_points(results: Any, width: int, height: int) -> list[tuple[float, float]]:
    """Where the smart-tool prompts kept in an annotation sit, in pixels (a box by its
    centre): each counts as a click on the brush mask that holds it."""
    points = []
    for item in results if isinstance(results, list) else ():
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict) or item.get("type") not in PROMPT_TYPES:
            continue
        try:
            x, y = _number(value, "x"), _number(value, "y")
            if item["type"] == "rectanglelabels":
                x += _number(value, "width") / 2
                y += _number(value, "height") / 2
        except ApiError:
            continue
        points.append((x * width / 100, y * height / 100))
    return points
