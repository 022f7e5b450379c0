"""The zero-shot interactive evaluation: per object, N simulated clicks, IoU after each; mIoU per
dataset; a per-object dump to redraw curves."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ..data.datasets import MaskSample
from ..inference.predictor import Prediction
from .clicks import centre_click, next_click

DEFAULT_CLICKS = (1, 2, 3, 5, 9)


class PromptablePredictor(Protocol):
    """What the protocol needs: :class:`segany.Predictor` satisfies it."""

    def embed(self, image: np.ndarray) -> Any: ...

    def predict(
        self,
        embedding: Any,
        *,
        points: Any = None,
        labels: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
    ) -> Prediction: ...


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(H, W)`` bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@dataclass(frozen=True)
class ObjectResult:
    """One object's IoU after 1..max clicks (``ious[k - 1]`` after k clicks) and the oracle
    (best of the 3 candidates) IoU after 1 click."""

    dataset: str
    image_id: str
    object_index: int
    area: int
    ious: tuple[float, ...]
    oracle_iou_1: float


@dataclass
class EvalReport:
    """mIoU per dataset at each click count, with the per-object results behind it."""

    clicks: tuple[int, ...]
    objects: list[ObjectResult] = field(default_factory=list)

    def miou(self, clicks: int, dataset: str | None = None) -> float:
        rows = [o for o in self.objects if dataset is None or o.dataset == dataset]
        return float(np.mean([o.ious[clicks - 1] for o in rows])) if rows else float("nan")

    def oracle_miou(self, dataset: str | None = None) -> float:
        rows = [o for o in self.objects if dataset is None or o.dataset == dataset]
        return float(np.mean([o.oracle_iou_1 for o in rows])) if rows else float("nan")

    @property
    def datasets(self) -> list[str]:
        return sorted({o.dataset for o in self.objects})

    def summary(self) -> dict[str, Any]:
        """Per dataset: objects, mIoU at each click count, oracle mIoU at 1 click; overall is
        the unweighted mean over datasets."""
        per = {
            name: {
                "objects": sum(o.dataset == name for o in self.objects),
                "miou": {str(k): self.miou(k, name) for k in self.clicks},
                "oracle_miou_1": self.oracle_miou(name),
            }
            for name in self.datasets
        }
        overall = {
            "miou": {
                str(k): float(np.mean([p["miou"][str(k)] for p in per.values()]))
                for k in self.clicks
            },
            "oracle_miou_1": float(np.mean([p["oracle_miou_1"] for p in per.values()])),
        }
        return {"clicks": list(self.clicks), "datasets": per, "overall": overall}

    def write_objects(self, path: str | os.PathLike[str]) -> None:
        """Per-object IoUs as CSV (``.csv``) or JSON lines (anything else)."""
        path = Path(path)
        if path.suffix == ".csv":
            with path.open("w", newline="") as stream:
                writer = csv.writer(stream)
                max_clicks = max(self.clicks)
                writer.writerow(
                    [
                        "dataset",
                        "image_id",
                        "object",
                        "area",
                        "oracle_iou_1",
                        *[f"iou_{k}" for k in range(1, max_clicks + 1)],
                    ]
                )
                for o in self.objects:
                    writer.writerow(
                        [
                            o.dataset,
                            o.image_id,
                            o.object_index,
                            o.area,
                            f"{o.oracle_iou_1:.6f}",
                            *[f"{v:.6f}" for v in o.ious],
                        ]
                    )
        else:
            path.write_text("".join(json.dumps(asdict(o)) + "\n" for o in self.objects))


def evaluate_object(
    predictor: PromptablePredictor,
    embedding: Any,
    truth: np.ndarray,
    max_clicks: int,
    feed_back_logits: bool = True,
) -> tuple[list[float], float]:
    """Click on one object ``max_clicks`` times; IoUs after each click and the 1-click oracle."""
    x, y = centre_click(truth)
    points, labels = [[x, y]], [1]
    clicked = np.zeros_like(truth)
    clicked[y, x] = True
    first = predictor.predict(embedding, points=points, labels=labels, multimask=True)
    candidates = first.masks[0]
    oracle = max(mask_iou(m, truth) for m in candidates)
    best = int(first.best_index()[0])
    prediction, logits = candidates[best], first.low_res_logits[0, best][None]
    ious = [mask_iou(prediction, truth)]
    for _ in range(1, max_clicks):
        click = next_click(truth, prediction, clicked)
        if click is None:  # perfect already: further clicks change nothing
            ious.append(ious[-1])
            continue
        x, y, label = click
        points.append([x, y])
        labels.append(label)
        clicked[y, x] = True
        result = predictor.predict(
            embedding,
            points=points,
            labels=labels,
            mask_input=logits if feed_back_logits else None,
            multimask=False,
        )
        prediction, logits = result.masks[0, 0], result.low_res_logits[0, 0][None]
        ious.append(mask_iou(prediction, truth))
    return ious, oracle


def evaluate(
    predictor: PromptablePredictor,
    datasets: dict[str, Sequence[MaskSample] | Iterable[MaskSample]],
    clicks: Sequence[int] = DEFAULT_CLICKS,
    feed_back_logits: bool = True,
    max_objects_per_image: int | None = None,
    progress: bool = True,
) -> EvalReport:
    """Run the protocol on every object of every dataset (objects evaluated independently)."""
    clicks = tuple(sorted(set(clicks)))
    if not clicks or clicks[0] < 1:
        raise ValueError(f"click counts must be >= 1, got {clicks}")
    report = EvalReport(clicks)
    for name, samples in datasets.items():
        for sample in tqdm(samples, desc=f"eval {name}", disable=not progress):
            masks = [m for m in sample.masks if m.any()]
            if max_objects_per_image is not None:
                masks = masks[:max_objects_per_image]
            if not masks:
                continue
            embedding = predictor.embed(sample.image)
            for index, truth in enumerate(masks):
                ious, oracle = evaluate_object(
                    predictor, embedding, truth, clicks[-1], feed_back_logits
                )
                report.objects.append(
                    ObjectResult(
                        name, sample.image_id, index, int(truth.sum()), tuple(ious), oracle
                    )
                )
    return report
