"""One object from one frame to the next: the state kept per object, its start from a user's
prompt, and each following frame's prompt built from the previous result.

The prompt for frame t is the previous frame's result moved by the object's motion
(:func:`~segany.video.motion.estimate_shift`): its low-res logits as the mask prompt (what the
decoder was trained to refine), the box of the moved mask widened by a margin (room for the
object to change shape), and one foreground point at the moved mask's most interior pixel (so
the decoder is asked about this object, not a neighbour inside the box). A result is kept if it
looks like the object (:func:`judge`); otherwise the object is lost on this frame and
:mod:`~segany.video.reacquire` searches for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from .motion import estimate_shift, grow_box, interior_point, mask_box, shift_logits, shift_mask
from .prompts import ObjectPrompt, TrackSettings


@dataclass
class ObjectState:
    """What is kept of one object between frames: the last kept result (``mask`` ``(H, W)``,
    ``logits`` ``(1, 4h, 4w)``), the reference it is judged against (area, mean RGB colour,
    predicted IoU),
    where it was last seen, and for how many frames it has been lost."""

    object_id: int
    mask: np.ndarray
    logits: np.ndarray
    reference_area: float
    reference_colour: np.ndarray
    reference_score: float
    last_box: np.ndarray
    lost_frames: int = 0

    @property
    def lost(self) -> bool:
        return self.lost_frames > 0


class Followed(NamedTuple):
    """An object's result on a frame: ``mask`` ``(H, W)`` bool, ``logits`` ``(1, 4h, 4w)``,
    ``score`` the predicted IoU, ``overlap`` its IoU with the previous mask moved by the
    estimated motion (1 for a result not followed from a previous one)."""

    mask: np.ndarray
    logits: np.ndarray
    score: float
    overlap: float = 1.0


def mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(3,)`` mean RGB of the mask's pixels."""
    return image[mask].reshape(-1, 3).mean(axis=0) if mask.any() else np.zeros(3)


def score_floor(state: ObjectState, settings: TrackSettings) -> float:
    """The least predicted IoU a result of this object may have."""
    return min(settings.min_score, settings.score_drop * state.reference_score)


def mismatch(
    state: ObjectState, image: np.ndarray, mask: np.ndarray, score: float, settings: TrackSettings
) -> float | None:
    """How unlike the object a candidate mask is (0 for its twin, lower is better), or ``None``
    when it fails a limit: predicted IoU below ``min_score`` (or, for an object whose masks
    were never that confident, below ``score_drop`` times its own usual score), area collapsed
    or exploded against the reference, or mean colour too far from it."""
    area = float(mask.sum())
    ratio = area / max(state.reference_area, 1.0)
    if (
        score < score_floor(state, settings)
        or not settings.min_area_ratio <= ratio <= settings.max_area_ratio
    ):
        return None
    distance = float(np.linalg.norm(mean_colour(image, mask) - state.reference_colour))
    if distance > settings.max_colour_distance:
        return None
    return (1 - score) + distance / settings.max_colour_distance + abs(np.log(ratio))


def start(
    predictor: Predictor, embedding: Embedding, image: np.ndarray, prompt: ObjectPrompt
) -> tuple[ObjectState, np.ndarray, float]:
    """Decode a user's prompt: the object's new state, its ``(H, W)`` mask and score. A single
    click asks for 3 candidates and keeps the best (as the image tools do)."""
    points, box = prompt.points, prompt.box
    ambiguous = box is None and points is not None and len(points) == 1
    prediction = predictor.predict(
        embedding, points=points, labels=prompt.labels, boxes=box, multimask=ambiguous
    )
    best = int(prediction.best_index()[0])
    mask = prediction.masks[0, best]
    state = ObjectState(
        object_id=prompt.object_id,
        mask=mask,
        logits=prediction.low_res_logits[0, best][None],
        reference_area=float(mask.sum()),
        reference_colour=mean_colour(image, mask),
        reference_score=float(prediction.scores[0, best]),
        last_box=_prompt_box(prompt) if mask_box(mask) is None else mask_box(mask),
        lost_frames=0 if mask.any() else 1,
    )
    return state, mask, float(prediction.scores[0, best])


def _prompt_box(prompt: ObjectPrompt) -> np.ndarray:
    if prompt.box is not None:
        return prompt.box
    x0, y0 = prompt.points.min(axis=0)  # type: ignore[union-attr]
    x1, y1 = prompt.points.max(axis=0)  # type: ignore[union-attr]
    return np.array([x0, y0, x1 + 1, y1 + 1])


def propagate(
    predictor: Predictor,
    embedding: Embedding,
    image: np.ndarray,
    previous_image: np.ndarray,
    state: ObjectState,
    settings: TrackSettings,
    others: np.ndarray | None = None,
) -> Followed:
    """Decode the object on a new frame from its previous result (not yet judged). ``others`` ``(M, 2)``: XY
    inside the other objects; those near this one become background points, so two alike
    objects side by side are not merged into one mask."""
    height, width = state.mask.shape
    dx, dy = estimate_shift(previous_image, image, state.mask, settings.motion_search)
    moved = shift_mask(state.mask, dx, dy)
    if not moved.any():  # carried out of the frame: the last box is all there is to go on
        moved = state.mask
        dx = dy = 0
    cells = embedding.low_res_size / max(height, width)  # low-res cells per frame pixel
    logits = shift_logits(state.logits, dx * cells, dy * cells)
    box = grow_box(mask_box(moved), settings.box_margin, height, width)  # type: ignore[arg-type]
    points = interior_point(moved)[None]  # type: ignore[index]
    if others is not None and len(others):
        x0, y0, x1, y1 = grow_box(box, 0.5, height, width)
        near = (
            (others[:, 0] >= x0) & (others[:, 0] < x1) & (others[:, 1] >= y0) & (others[:, 1] < y1)
        )
        inside = moved[others[:, 1].astype(int), others[:, 0].astype(int)]
        points = np.concatenate([points, others[near & ~inside]])
    labels = (np.arange(len(points)) == 0).astype(np.int64)
    prediction = predictor.predict(
        embedding,
        points=points,
        labels=labels,
        boxes=box,
        mask_input=logits,
        multimask=False,
    )
    mask = prediction.masks[0, 0]
    overlap = float((mask & moved).sum() / max((mask | moved).sum(), 1))
    return Followed(
        mask, prediction.low_res_logits[0, 0][None], float(prediction.scores[0, 0]), overlap
    )


def keep(
    state: ObjectState,
    image: np.ndarray,
    result: Followed,
    settings: TrackSettings,
) -> None:
    """Take a judged result as the object's latest, moving its reference a little towards it
    (objects change size and lighting slowly; a sudden change is what loss looks like)."""
    rate, (mask, logits, score) = settings.reference_update, result[:3]
    state.mask, state.logits = mask, logits
    state.reference_area = (1 - rate) * state.reference_area + rate * float(mask.sum())
    state.reference_colour = (1 - rate) * state.reference_colour + rate * mean_colour(image, mask)
    state.reference_score = (1 - rate) * state.reference_score + rate * score
    state.last_box = mask_box(mask)  # type: ignore[assignment]
    state.lost_frames = 0
