"""How well a text-prompt head names objects on held-out generated scenes.

Every phrase of one or two words that names something in a scene (:func:`scene_phrases`) is
prompted. A phrase naming exactly one object scores the IoU of the mask with that object; a
phrase naming several scores whether the one mask lands on one of them (IoU ≥ 0.5 with the
best of them) and how much of all of them it covers (IoU with their union).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..data.names import COLOURS, scene_phrases
from ..data.scenes import generate_scene
from ..inference.predictor import Predictor
from .prompt import TextPromptHead

HELD_OUT_SEED = 1_000_000  # training scenes use seeds below this
HIT_IOU = 0.5


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def phrase_kind(phrase: str) -> str:
    """``colour+shape``, ``shape`` or ``colour``: which words a phrase has."""
    words = phrase.split()
    if len(words) == 2:
        return "colour+shape"
    return "colour" if words[0] in COLOURS else "shape"


@dataclass
class TextReport:
    """IoUs per phrase kind for unique phrases; per ambiguous phrase: best IoU against the
    objects it names and IoU against their union."""

    scenes: int = 0
    unique: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ambiguous_best: list[float] = field(default_factory=list)
    ambiguous_union: list[float] = field(default_factory=list)

    def miou(self, kind: str | None = None) -> float:
        values = (
            [v for vs in self.unique.values() for v in vs] if kind is None else self.unique[kind]
        )
        return float(np.mean(values)) if values else float("nan")

    def count(self, kind: str | None = None) -> int:
        return sum(map(len, self.unique.values())) if kind is None else len(self.unique[kind])

    def ambiguous_hit_rate(self) -> float:
        hits = [v >= HIT_IOU for v in self.ambiguous_best]
        return float(np.mean(hits)) if hits else float("nan")


def evaluate_text_head(
    predictor: Predictor,
    head: TextPromptHead,
    count: int,
    start: int = HELD_OUT_SEED,
    route: str = "proposals",
) -> TextReport:
    """Prompt every naming phrase of scenes ``start .. start+count-1`` by ``route``."""
    report = TextReport(scenes=count)
    for seed in range(start, start + count):
        scene = generate_scene(seed)
        phrases = scene_phrases(scene)
        if not phrases:
            continue
        results = head.segment_phrases(predictor, scene.image, [p for p, _ in phrases], route=route)
        if not results:
            results = [None] * len(phrases)
        for (phrase, named), result in zip(phrases, results):
            found = result.mask if result is not None else np.zeros_like(scene.masks[0])
            ious = [mask_iou(found, scene.masks[i]) for i in named]
            if len(named) == 1:
                report.unique[phrase_kind(phrase)].append(ious[0])
            else:
                report.ambiguous_best.append(max(ious))
                union = np.any(scene.masks[named], axis=0)
                report.ambiguous_union.append(mask_iou(found, union))
    return report
