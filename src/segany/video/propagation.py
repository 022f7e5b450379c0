"""Offline tracking over a whole clip: every object followed forwards and backwards from the
frame it was first prompted on, re-conditioned by each later prompt.

Memory stays flat in the clip's length: one embedding lives at a time. The backward walk (from
the last first-prompt frame down to frame 0) runs first and keeps its masks as compressed RLE;
the forward walk then yields every frame in order with both walks' masks. Frames between the
first and the last first-prompt frame are embedded twice (once per walk), the price of
keeping no embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..formats.rle import decode_coco_rle, encode_coco_rle
from ..inference.predictor import Predictor
from .frames import FrameSource, as_frame_source, check_index
from .prompts import ObjectPrompt, TrackedMask, TrackSettings, VideoInputError
from .tracker import VideoTracker


@dataclass(frozen=True)
class _Packed:
    """A :class:`TrackedMask` held compactly (COCO RLE) until its frame is yielded."""

    rle: dict[str, Any]
    score: float
    lost: bool

    @classmethod
    def of(cls, tracked: TrackedMask) -> _Packed:
        return cls(encode_coco_rle(tracked.mask), tracked.score, tracked.lost)

    def unpack(self, object_id: int, frame_index: int) -> TrackedMask:
        return TrackedMask(object_id, frame_index, decode_coco_rle(self.rle), self.score, self.lost)


def merge_prompts(prompts: Sequence[ObjectPrompt]) -> list[ObjectPrompt]:
    """One prompt per object and frame: points joined in order, the last box kept."""
    merged: dict[tuple[int, int], ObjectPrompt] = {}
    for prompt in prompts:
        key = (prompt.object_id, prompt.frame_index)
        before = merged.get(key)
        if before is None:
            merged[key] = prompt
            continue
        parts = [p for p in (before, prompt) if p.points is not None]
        merged[key] = ObjectPrompt(
            prompt.object_id,
            prompt.frame_index,
            points=np.concatenate([p.points for p in parts]) if parts else None,
            labels=np.concatenate([p.labels for p in parts]) if parts else None,
            box=prompt.box if prompt.box is not None else before.box,
        )
    return sorted(merged.values(), key=lambda p: (p.frame_index, p.object_id))


def check_prompts(source: FrameSource, prompts: Sequence[ObjectPrompt]) -> None:
    """:class:`VideoInputError` for no prompts, a frame index out of range or a prompt outside
    its frame, before any model work."""
    if not prompts:
        raise VideoInputError("no prompts: give each object a point or a box on some frame")
    for prompt in prompts:
        check_index(prompt.frame_index, len(source))
        prompt.check_frame(*source[prompt.frame_index].shape[:2])


def track(
    predictor: Predictor,
    frames: FrameSource | Sequence[np.ndarray],
    prompts: Sequence[ObjectPrompt],
    settings: TrackSettings | None = None,
) -> Iterator[tuple[int, dict[int, TrackedMask]]]:
    """Follow each prompted object through the clip, forwards and backwards from its first
    prompt frame; yields ``(frame_index, {object_id: TrackedMask})`` for every frame in order
    (objects sorted by id)."""
    source = as_frame_source(frames)
    prompts = merge_prompts(prompts)
    check_prompts(source, prompts)
    first: dict[int, int] = {}
    for prompt in prompts:
        first.setdefault(prompt.object_id, prompt.frame_index)
    earlier = _backward(predictor, source, prompts, first, settings)
    forward = VideoTracker(predictor, settings, start_index=min(first.values()))
    for index in range(len(source)):
        masks = {o: packed.unpack(o, index) for o, packed in earlier.pop(index, {}).items()}
        if index >= forward.next_index:
            for prompt in prompts:
                if prompt.frame_index == index:
                    forward.add_prompt(prompt)
            masks.update(forward.step(source[index]))
        yield index, dict(sorted(masks.items()))


def _backward(
    predictor: Predictor,
    source: FrameSource,
    prompts: Sequence[ObjectPrompt],
    first: dict[int, int],
    settings: TrackSettings | None,
) -> dict[int, dict[int, _Packed]]:
    """Each object from its first prompt frame back to frame 0: ``{frame: {object: mask}}``
    for the frames before each object's first prompt."""
    out: dict[int, dict[int, _Packed]] = {}
    last = max(first.values())
    if last == 0:
        return out
    tracker = VideoTracker(predictor, settings, start_index=last, direction=-1)
    for index in range(last, -1, -1):
        for prompt in prompts:
            if prompt.frame_index == index == first[prompt.object_id]:
                tracker.add_prompt(prompt)
        for object_id, tracked in tracker.step(source[index]).items():
            if index < first[object_id]:
                out.setdefault(index, {})[object_id] = _Packed.of(tracked)
    return out
