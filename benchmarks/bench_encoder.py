"""Image encoder: the official fp32 encoder against segany's precision modes, on the same seeded
random weights and the same preprocessed photo, interleaved in one process, medians.

For each segany mode: speed-up over the official encoder, max |embedding difference| against
the official embedding, and the accuracy cost: mean IoU of the masks decoded (by segany's fp32
decoder) from that mode's embedding against those from segany's fp32 embedding, over a fixed set
of point prompts (every candidate of every prompt). Weights are ``random_state_dict`` with
``region_mask_head`` so that masks are regions rather than texture. Then peak memory of one
encoder call, each implementation in a fresh process: resident memory before the call (the model
loaded), the peak during it, and the process's ``ru_maxrss``.

Run: .venv/bin/python benchmarks/bench_encoder.py [--model vit_b] [--repeats 3]
     [--modes fp32,bf16,int8] [--compile] [--prompts 20] [--no-memory] [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch

from common import interleaved, machine, peak_rss_during, sample_image, seeded_model
from segany.fast.precision import optimize
from segany.inference.embedding import Embedding, prepare_image
from segany.inference.predictor import Predictor

OFFICIAL = "official fp32"


def encoder_input(model, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """The normalised, padded ``(1, 3, S, S)`` input every encoder gets, and the resized size."""
    tensor, input_size = prepare_image(model, image)
    return model.preprocess(tensor), input_size


def variant(name: str, mode: str, compile: bool) -> tuple[object, str]:
    """(model, label) for ``mode``: ``official`` or a segany precision."""
    if mode == "official":
        return seeded_model("official", name, region_head=True), OFFICIAL
    model = optimize(seeded_model("segany", name, region_head=True), mode, compile=compile)
    return model, f"segany {mode}" + (" compiled" if compile else "")


def prompt_points(image: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` fixed foreground clicks ``(count, 2)`` spread over the image."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    return rng.uniform((0.05 * w, 0.05 * h), (0.95 * w, 0.95 * h), (count, 2)).astype(np.float32)


def masks_for(
    predictor: Predictor, features: torch.Tensor, geometry: dict, points: np.ndarray
) -> np.ndarray:
    """``(P, 3, H, W)`` candidate masks of each point prompt on ``features``."""
    embedding = Embedding(features.float(), img_size=predictor.model.img_size, **geometry)
    labels = np.ones((len(points), 1))
    return predictor.predict(embedding, points=points[:, None], labels=labels).masks


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of paired boolean masks ``(..., H, W)`` (1 where both are empty)."""
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def child(name: str, mode: str, compile: bool, image_name: str) -> None:
    """One implementation, one encoder call after a warm-up; prints memory figures as JSON."""
    model, _ = variant(name, mode, compile)
    image, _ = sample_image(image_name)
    x, _ = encoder_input(seeded_model("segany", "vit_b") if mode == "official" else model, image)
    with torch.inference_mode():
        model.image_encoder(x)
        before, peak = peak_rss_during(lambda: model.image_encoder(x))
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak, "maxrss": maxrss}))


def memory(name: str, mode: str, compile: bool, image_name: str) -> dict[str, int]:
    command = [sys.executable, __file__, "--model", name, "--child", mode, "--image", image_name]
    result = subprocess.run(
        command + (["--compile"] if compile else []),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="fp32,bf16,int8", help="segany precisions to run")
    parser.add_argument("--compile", action="store_true", help="also each mode compiled")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--image", default="truck.jpg")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="segany.keep_freed_memory() first (process-wide: the official encoder gains too)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keep_freed_memory:
        from segany import keep_freed_memory

        print(f"keep_freed_memory applied: {keep_freed_memory()}")
    if args.child:
        child(args.model, args.child, args.compile, args.image)
        return

    image, image_name = sample_image(args.image)
    runs = [("official", False)] + [(m, False) for m in args.modes.split(",")]
    if args.compile:
        runs += [(m, True) for m in args.modes.split(",")]
    models = {}
    for mode, compile in runs:
        model, label = variant(args.model, mode, compile)
        models[label] = (model, mode, compile)
    print(f"machine: {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other jobs may share these cores)")
    print(
        f"model: {args.model}, seeded random weights with region_mask_head; image: {image_name} "
        f"{image.shape[1]}x{image.shape[0]}; median of {args.repeats}, interleaved\n"
    )

    reference = models["segany fp32"][0] if "segany fp32" in models else None
    segany_model = next(m for label, (m, *_) in models.items() if label != OFFICIAL)
    x, input_size = encoder_input(segany_model, image)
    outputs: dict[str, torch.Tensor] = {}

    def call(label: str):
        def run() -> None:
            with torch.inference_mode():
                outputs[label] = models[label][0].image_encoder(x)

        return run

    times = interleaved({label: call(label) for label in models}, repeats=args.repeats)
    print(f"load average at end: {os.getloadavg()[0]:.2f}\n")

    masks: dict[str, np.ndarray] = {}
    if reference is not None:
        predictor = Predictor(reference)
        geometry = {"original_size": image.shape[:2], "input_size": input_size}
        points = prompt_points(image, args.prompts)
        masks = {
            label: masks_for(predictor, out, geometry, points) for label, out in outputs.items()
        }
    memories = {}
    if not args.no_memory:
        for label, (_, mode, compile) in models.items():
            memories[label] = memory(args.model, mode, compile, args.image)

    gb = 1 << 30
    print(
        "| encoder | s | vs official | max abs diff vs official | mask IoU vs segany fp32 "
        "| RSS before (GB) | peak in call (GB) | ru_maxrss (GB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label in models:
        diff = (outputs[label].float() - outputs[OFFICIAL]).abs().max().item()
        iou = mean_iou(masks[label], masks["segany fp32"]) if masks else float("nan")
        mem = memories.get(label)
        mem_cells = (
            f"{mem['before'] / gb:.2f} | {mem['peak'] / gb:.2f} | {mem['maxrss'] / gb:.2f}"
            if mem
            else "- | - | -"
        )
        print(
            f"| {label} | {times[label]:.3f} | {times[OFFICIAL] / times[label]:.2f}x | "
            f"{diff:.2e} | {iou:.4f} | {mem_cells} |"
        )
    if masks:
        print(
            f"\nmask IoU: {args.prompts} fixed foreground clicks x 3 candidates, decoded by "
            "segany's fp32 decoder from each encoder's embedding (random weights: region masks)"
        )


if __name__ == "__main__":
    main()
