"""Click-by-click refinement: the small per-object state an interactive tool keeps, and a helper
that turns a binary mask into mask-prompt logits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .embedding import Embedding
from .predictor import Prediction, Predictor

DEFAULT_MASK_LOGIT = 10.0


def mask_to_logits(
    mask: np.ndarray, embedding: Embedding, magnitude: float = DEFAULT_MASK_LOGIT
) -> np.ndarray:
    """A binary ``(H, W)`` mask -> ``(1, 4h, 4w)`` float32 logits usable as ``mask_input``.

    The mask goes through the same geometry as the image (resize longest side, pad), is
    area-averaged to the low-res grid, and the coverage p becomes ``logit(p)`` clipped to
    +-``magnitude``. The model was trained on its own logits, so a mask prompt alone works less
    well than feeding back a previous prediction; combine it with a point or a box.
    """
    mask = np.asarray(mask)
    if mask.shape != embedding.original_size:
        raise ValueError(
            f"mask shape {mask.shape} must equal the image size {embedding.original_size}"
        )
    low_res = embedding.low_res_size
    tensor = torch.as_tensor(mask.astype(np.float32))[None, None]
    h, w = embedding.input_size
    resized = F.interpolate(tensor, (h, w), mode="bilinear", align_corners=False, antialias=True)
    padded = F.pad(resized, (0, embedding.img_size - w, 0, embedding.img_size - h))
    coverage = F.adaptive_avg_pool2d(padded, low_res).clamp(1e-6, 1 - 1e-6)
    logits = torch.logit(coverage).clamp(-magnitude, magnitude)
    return logits[0].numpy()


@dataclass(frozen=True)
class _Step:
    points: tuple[tuple[float, float, int], ...]
    box: tuple[float, float, float, float] | None
    prediction: Prediction | None


@dataclass
class InteractiveSession:
    """One object being segmented by clicks on one embedded image.

    Each click adds a point and re-predicts with every point so far, the box if any, and the
    previous best low-res logits as the mask prompt (as the official demo does). A single click
    with no box asks for 3 candidates; later steps ask for one mask.
    """

    predictor: Predictor
    embedding: Embedding
    feed_back_logits: bool = True
    _history: list[_Step] = field(default_factory=list)

    @property
    def points(self) -> tuple[tuple[float, float, int], ...]:
        return self._history[-1].points if self._history else ()

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return self._history[-1].box if self._history else None

    @property
    def prediction(self) -> Prediction | None:
        return self._history[-1].prediction if self._history else None

    @property
    def mask(self) -> np.ndarray | None:
        """The current best ``(H, W)`` mask, or ``None`` before the first prompt."""
        prediction = self.prediction
        return None if prediction is None else prediction.best_masks()[0]

    def click(self, x: float, y: float, positive: bool = True) -> Prediction:
        """Add a foreground (or background) point and re-predict."""
        return self._step((*self.points, (float(x), float(y), int(positive))), self.box)

    def set_box(self, box: tuple[float, float, float, float]) -> Prediction:
        """Set (or replace) the box prompt and re-predict."""
        return self._step(self.points, tuple(float(v) for v in box))  # type: ignore[arg-type]

    def undo(self) -> Prediction | None:
        """Forget the last step; returns the prediction now current (``None`` if none)."""
        if self._history:
            self._history.pop()
        return self.prediction

    def reset(self) -> None:
        self._history.clear()

    def _step(
        self,
        points: tuple[tuple[float, float, int], ...],
        box: tuple[float, float, float, float] | None,
    ) -> Prediction:
        previous = self.prediction
        mask_input = (
            previous.best_logits() if (previous is not None and self.feed_back_logits) else None
        )
        coords = np.array([p[:2] for p in points], dtype=np.float64) if points else None
        labels = np.array([p[2] for p in points], dtype=np.int64) if points else None
        ambiguous = len(points) + (2 if box is not None else 0) <= 1
        prediction = self.predictor.predict(
            self.embedding,
            points=coords,
            labels=labels,
            boxes=box,
            mask_input=mask_input,
            multimask=ambiguous,
        )
        self._history.append(_Step(points, box, prediction))
        return prediction
