"""Score a video tracker as DAVIS's semi-supervised task does, with SAM-style prompts: each
object is prompted once, on its first visible frame, from its ground-truth mask (its box, or
one point at its centre), then followed through the clip by :func:`segany.video.track`; every
frame's masks are scored by :mod:`.video`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.clips import CLIPS_PREFIX, ClipConfig, generate_clip, parse_clips_spec
from ..inference.predictor import Predictor
from ..video import FrameSource, ObjectPrompt, TrackedMask, TrackSettings, open_frames, track
from .clicks import centre_click
from .clip_files import davis_clips, read_clip_truth
from .video import VideoReport, score_object

PROMPT_KINDS = ("box", "point")


@dataclass(frozen=True)
class ClipCase:
    """A clip to score: its frames, ``masks[object_id]`` ``(T, H, W)`` bool, ``void`` or None."""

    name: str
    frames: FrameSource | Sequence[np.ndarray]
    masks: dict[int, np.ndarray]
    void: np.ndarray | None = None


def first_prompts(masks: dict[int, np.ndarray], kind: str = "box") -> list[ObjectPrompt]:
    """One prompt per object on its first non-empty frame: the mask's box (XYXY, pixel edges:
    ``x1`` is one past the last column) or its centre point (farthest from the boundary)."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt must be one of {', '.join(PROMPT_KINDS)}, got {kind!r}")
    prompts = []
    for object_id, stack in masks.items():
        shown = np.flatnonzero(stack.any(axis=(1, 2)))
        if not len(shown):
            continue  # never visible: nothing to prompt; scored against empty predictions
        frame = int(shown[0])
        if kind == "point":
            prompt = ObjectPrompt(object_id, frame, points=np.array([centre_click(stack[frame])]))
        else:
            ys, xs = np.nonzero(stack[frame])
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
            prompt = ObjectPrompt(object_id, frame, box=box)
        prompts.append(prompt)
    return prompts


def generated_cases(seeds: range, config: ClipConfig = ClipConfig()) -> Iterator[ClipCase]:
    """The generated clips of ``seeds``, rendered one at a time."""
    for seed in seeds:
        clip = generate_clip(seed, config)
        yield ClipCase(clip.name, list(clip.frames), clip.masks)


def folder_cases(root: str | Path) -> Iterator[ClipCase]:
    """The clips of a DAVIS-layout folder (all annotations are checked before the first runs)."""
    names = davis_clips(root)
    truths = [read_clip_truth(root, name) for name in names]
    for truth in truths:
        frames = open_frames(truth.frames)
        shape = next(iter(truth.masks.values())).shape
        if len(frames) != shape[0]:
            raise ValueError(
                f"{truth.name}: {len(frames)} frames but {shape[0]} annotations (every frame "
                "needs one)"
            )
        if frames[0].shape[:2] != shape[1:]:
            raise ValueError(
                f"{truth.name}: frames are {frames[0].shape[1]}x{frames[0].shape[0]}, "
                f"annotations {shape[2]}x{shape[1]}"
            )
        void = truth.void if truth.void.any() else None
        yield ClipCase(truth.name, frames, truth.masks, void)


def open_cases(spec: str, config: ClipConfig = ClipConfig()) -> Iterator[ClipCase]:
    """``clips:START:COUNT`` (generated) or a DAVIS-layout folder."""
    if spec.startswith(CLIPS_PREFIX):
        return generated_cases(parse_clips_spec(spec), config)
    return folder_cases(spec)


Tracker = Callable[..., Iterator[tuple[int, dict[int, TrackedMask]]]]


def _predicted(
    tracker: Tracker,
    predictor: Predictor,
    case: ClipCase,
    prompts: list[ObjectPrompt],
    settings: TrackSettings | None,
) -> dict[int, np.ndarray]:
    """Every object's ``(T, H, W)`` predicted masks (empty where the tracker gives none)."""
    stacks = {i: np.zeros_like(m) for i, m in case.masks.items()}
    for index, tracked in tracker(predictor, case.frames, prompts, settings):
        for object_id, result in tracked.items():
            if object_id in stacks:
                stacks[object_id][index] = result.mask
    return stacks


def evaluate_tracker(
    predictor: Predictor,
    cases: Iterator[ClipCase],
    prompt: str = "box",
    settings: TrackSettings | None = None,
    progress: Callable[[str, float], None] | None = None,
    tracker: Tracker = track,
) -> VideoReport:
    """Track and score every clip; the report's speed counts the tracker's time only.
    ``tracker`` is :func:`segany.video.track` or anything called and answering as it does."""
    report = VideoReport(settings={"prompt": prompt, "prompt_frame": "first visible"})
    for case in cases:
        prompts = first_prompts(case.masks, prompt)
        started = time.perf_counter()
        predicted = _predicted(tracker, predictor, case, prompts, settings)
        report.seconds += time.perf_counter() - started
        report.frames += len(case.frames)
        scores = [
            score_object(case.name, i, case.masks[i], predicted[i], case.void) for i in case.masks
        ]
        report.objects.extend(scores)
        if progress:
            progress(case.name, float(np.mean([s.jf for s in scores])))
    return report
