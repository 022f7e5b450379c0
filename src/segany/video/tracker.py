"""The streaming tracker: frames one at a time (a file, a webcam, a stream), each frame embedded
once and shared by every object on it."""

from __future__ import annotations

import numpy as np

from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..inference.prompts import check_image
from .follow import Followed, ObjectState, keep, mismatch, propagate, start
from .motion import interior_point
from .prompts import ObjectPrompt, TrackedMask, TrackSettings, VideoInputError
from .reacquire import search


class VideoTracker:
    """Follows prompted objects through frames given one at a time.

    ``add_prompt`` takes a prompt for the next frame to be stepped (starting or re-conditioning
    its object there) or for the frame just stepped (decoded at once on its embedding; see
    :attr:`masks`). ``step`` embeds a frame once and returns every object's mask on it.
    Frame indices count from ``start_index`` by ``direction`` (``-1`` walks a clip backwards,
    as :func:`~segany.video.propagation.track` does before a prompt frame).
    """

    def __init__(
        self,
        predictor: Predictor,
        settings: TrackSettings | None = None,
        *,
        start_index: int = 0,
        direction: int = 1,
    ) -> None:
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {direction}")
        self.predictor = predictor
        self.settings = settings or TrackSettings()
        self.direction = direction
        self.next_index = start_index
        self._pending: dict[int, ObjectPrompt] = {}
        self._states: dict[int, ObjectState] = {}
        self._image: np.ndarray | None = None
        self._embedding: Embedding | None = None
        self._masks: dict[int, TrackedMask] = {}

    @property
    def frame_index(self) -> int | None:
        """Index of the frame last stepped (``None`` before the first)."""
        return None if self._image is None else self.next_index - self.direction

    @property
    def masks(self) -> dict[int, TrackedMask]:
        """Every object's mask on the frame last stepped, by object id."""
        return dict(self._masks)

    @property
    def object_ids(self) -> list[int]:
        return sorted({*self._states, *self._pending})

    def add_prompt(self, prompt: ObjectPrompt) -> None:
        """Start or re-condition an object on the next frame, or on the current one."""
        if prompt.frame_index == self.next_index:
            self._pending[prompt.object_id] = prompt
        elif self._image is not None and prompt.frame_index == self.frame_index:
            assert self._embedding is not None
            self._masks[prompt.object_id] = self._start(prompt, self._image, self._embedding)
        else:
            now = "" if self.frame_index is None else f"the current frame {self.frame_index} or "
            raise VideoInputError(
                f"object {prompt.object_id}: a prompt on frame {prompt.frame_index}, but the "
                f"tracker takes prompts for {now}the next frame {self.next_index}"
            )

    def remove_object(self, object_id: int) -> None:
        """Stop following an object (from the next frame; its pending prompt is dropped)."""
        self._states.pop(object_id, None)
        self._pending.pop(object_id, None)
        self._masks.pop(object_id, None)

    def step(self, frame: np.ndarray) -> dict[int, TrackedMask]:
        """Embed one ``(H, W, 3)`` uint8 RGB frame and return every object's mask on it."""
        check_image(frame)
        if self._image is not None and frame.shape != self._image.shape:
            raise VideoInputError(
                f"frame {self.next_index} is {frame.shape[1]}x{frame.shape[0]}, but the earlier "
                f"frames are {self._image.shape[1]}x{self._image.shape[0]}"
            )
        for prompt in self._pending.values():
            prompt.check_frame(*frame.shape[:2])
        pending, self._pending = self._pending, {}
        embedding = self.predictor.embed(frame)
        previous = self._image
        self._image, self._embedding = frame, embedding
        masks = {p.object_id: self._start(p, frame, embedding) for p in pending.values()}
        if previous is not None:
            masks.update(self._follow_all(frame, previous, embedding, masks))
        self._masks = dict(sorted(masks.items()))
        self.next_index += self.direction
        return self.masks

    def _start(self, prompt: ObjectPrompt, image: np.ndarray, embedding: Embedding) -> TrackedMask:
        prompt.check_frame(*image.shape[:2])
        state, mask, score = start(self.predictor, embedding, image, prompt)
        self._states[prompt.object_id] = state
        return TrackedMask(prompt.object_id, prompt.frame_index, mask, score, state.lost)

    def _follow_all(
        self,
        image: np.ndarray,
        previous: np.ndarray,
        embedding: Embedding,
        prompted: dict[int, TrackedMask],
    ) -> dict[int, TrackedMask]:
        """Every object not prompted on this frame: followed from its last result, the results
        claimed (one object per thing), then the lost ones searched for among the pixels no
        other object holds."""
        results, missing = self._propagate_all(image, previous, embedding, prompted)
        masks: dict[int, TrackedMask] = {}
        held = [m.mask for m in prompted.values()]
        for object_id in self._claim_order(results):
            mask, _, score, _ = results[object_id]
            if any((mask & other).sum() > 0.5 * min(mask.sum(), other.sum()) for other in held):
                missing[object_id] = score  # another object holds it: this one is not there
                continue
            keep(self._states[object_id], image, results[object_id], self.settings)
            masks[object_id] = TrackedMask(object_id, self.next_index, mask, score, False)
            held.append(mask)
        for object_id, score in missing.items():
            held = [m.mask for o, m in {**prompted, **masks}.items() if o != object_id]
            masks[object_id] = self._search(object_id, score, image, embedding, held)
        return masks

    def _propagate_all(
        self,
        image: np.ndarray,
        previous: np.ndarray,
        embedding: Embedding,
        prompted: dict[int, TrackedMask],
    ) -> tuple[dict[int, Followed], dict[int, float]]:
        """Each followed object decoded from its last result: the results that look like their
        object, and the objects lost (with the predicted IoU of the result that failed)."""
        anchors = {o: interior_point(s.mask) for o, s in self._states.items() if not s.lost}
        results: dict[int, Followed] = {}
        missing: dict[int, float] = {}
        for object_id, state in self._states.items():
            if object_id in prompted:
                continue
            if state.lost:
                missing[object_id] = 0.0
                continue
            others = [a for o, a in anchors.items() if o != object_id and a is not None]
            result = propagate(
                self.predictor,
                embedding,
                image,
                previous,
                state,
                self.settings,
                np.array(others).reshape(-1, 2),
            )
            judged = mismatch(state, image, result.mask, result.score, self.settings)
            if judged is None or result.overlap < self.settings.min_overlap:
                missing[object_id] = result.score
            else:
                results[object_id] = result
        return results, missing

    def _search(
        self,
        object_id: int,
        score: float,
        image: np.ndarray,
        embedding: Embedding,
        held: list[np.ndarray],
    ) -> TrackedMask:
        """A lost object searched for outside ``held`` (other objects' masks on this frame)."""
        state = self._states[object_id]
        state.lost_frames += 1
        taken = _union(held, image.shape[:2])
        found = search(self.predictor, embedding, image, state, self.settings, taken)
        if found is None:
            empty = np.zeros(image.shape[:2], dtype=bool)
            return TrackedMask(object_id, self.next_index, empty, score, True)
        keep(state, image, found, self.settings)
        return TrackedMask(object_id, self.next_index, found.mask, found.score, False)

    def _claim_order(self, results: dict[int, Followed]) -> list[int]:
        """Objects by how much their new mask overlaps their own last one, most first: when two
        objects' results are one thing, it belongs to the one that was there."""

        def overlap(object_id: int) -> float:
            before, now = self._states[object_id].mask, results[object_id][0]
            return float((before & now).sum() / max((before | now).sum(), 1))

        return sorted(results, key=overlap, reverse=True)


def _union(masks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for mask in masks:
        out |= mask
    return out
