"""J&F of the video tracker with the bundled model on held-out generated clips, and its speed.

The clips are ``clips:START:COUNT`` (default seeds 1,000,000..1,000,009: 24 frames of 320x256,
2-4 objects that move, turn, scale, pass behind each other and leave and re-enter the frame).
Each object is prompted once on its first visible frame from its ground-truth mask, and scored
with the DAVIS measures (``segany.evaluate.video``; first and last frames left out).

Rows, all on the same clips and the same model in this run:
- the tracker (``segany.video.track``) with a box prompt, and with a one-point prompt;
- *first mask held*: the prompt frame's mask repeated on every frame (what no tracking scores);
- *box on every frame (oracle)*: SAM prompted on each frame with the true box of each visible
  object, empty where it is hidden; a box-driven tracker can at best match it.

Frames per second count the tracker's own time (embedding included), not clip generation.

Run: .venv/bin/python benchmarks/bench_video.py [--clips 10] [--start 1000000] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import torch

from common import machine
from segany.checkpoints import load
from segany.data.clips import ClipConfig, generate_clip
from segany.evaluate.tracking import ClipCase, evaluate_tracker, first_prompts
from segany.inference.predictor import Predictor
from segany.video import ObjectPrompt, TrackedMask


def cases(seeds: range, config: ClipConfig) -> list[ClipCase]:
    clips = [generate_clip(seed, config) for seed in seeds]
    return [ClipCase(c.name, list(c.frames), c.masks) for c in clips]


def held_first_mask(predictor: Predictor, frames, prompts: list[ObjectPrompt], settings=None):
    """The prompt frame's mask (best of SAM's candidates) on every frame."""
    held = {}
    for prompt in prompts:
        embedding = predictor.embed(frames[prompt.frame_index])
        points = None if prompt.points is None else prompt.points[None]
        labels = None if prompt.labels is None else prompt.labels[None]
        boxes = None if prompt.box is None else prompt.box[None]
        prediction = predictor.predict(embedding, points=points, labels=labels, boxes=boxes)
        held[prompt.object_id] = prediction.masks[0, prediction.best_index()[0]]
    for index in range(len(frames)):
        yield index, {o: TrackedMask(o, index, m, 1.0, False) for o, m in held.items()}


def oracle_boxes(truth: dict[int, np.ndarray]):
    """SAM with each visible object's true box on every frame (not a tracker: an upper bound)."""

    def run(predictor: Predictor, frames, prompts, settings=None) -> Iterator:
        for index in range(len(frames)):
            embedding = predictor.embed(frames[index])
            out = {}
            for object_id, stack in truth.items():
                mask = np.zeros_like(stack[index])
                if stack[index].any():
                    (box,) = [p.box for p in first_prompts({object_id: stack[index : index + 1]})]
                    mask = predictor.predict(embedding, boxes=box[None], multimask=False).masks[
                        0, 0
                    ]
                out[object_id] = TrackedMask(object_id, index, mask, 1.0, False)
            yield index, out

    return run


def row(name: str, report) -> str:
    s = report.summary()
    fps = f"{s['frames_per_second']:.2f}" if s["frames_per_second"] else "-"
    return (
        f"| {name} | {s['J&F']:.3f} | {s['J']['mean']:.3f} | {s['F']['mean']:.3f} "
        f"| {s['J']['recall']:.3f} | {s['J']['decay']:+.3f} | {fps} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--start", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    config = ClipConfig()
    seeds = range(args.start, args.start + args.clips)
    clips = cases(seeds, config)
    predictor = Predictor(load("tiny", device=args.device))
    objects = sum(len(c.masks) for c in clips)
    frames = sum(len(c.frames) for c in clips)
    print(
        f"{machine()}, device {args.device}; {len(clips)} clips, {objects} objects, {frames} frames"
    )
    print("| run | J&F | J | F | J recall | J decay | frames/s |")
    print("|---|---|---|---|---|---|---|")
    for prompt in ("box", "point"):
        started = time.perf_counter()
        report = evaluate_tracker(predictor, iter(clips), prompt)
        print(
            row(f"tracker, {prompt} prompt", report),
            f"<!-- {time.perf_counter() - started:.0f} s -->",
        )
    report = evaluate_tracker(predictor, iter(clips), "box", tracker=held_first_mask)
    print(row("first mask held (box prompt)", report))
    oracle = [
        evaluate_tracker(predictor, iter([c]), "box", tracker=oracle_boxes(c.masks)) for c in clips
    ]
    merged = oracle[0]
    for other in oracle[1:]:
        merged.objects.extend(other.objects)
        merged.frames += other.frames
        merged.seconds += other.seconds
    print(row("box on every frame (oracle)", merged))
    if args.device.startswith("cuda"):
        print(torch.cuda.get_device_name())


if __name__ == "__main__":
    main()
