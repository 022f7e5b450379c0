"""HQ-SAM: the official ``segment_anything_hq`` package vs segany on the same seeded ViT-B
weights: image embedding, one click (``hq_token_only`` off and on), a refinement click (a second
point with the first click's low-res logits fed back) and segment-everything on a small grid.

Run: .venv/bin/python benchmarks/bench_hq.py [--model vit_b] [--repeats 3] [--side 8]
"""

from __future__ import annotations

import argparse

import numpy as np
import segment_anything_hq as official
import torch

import segany
from common import interleaved, machine, sample_image
from segany.testing import random_state_dict


def seeded_pair(name: str, seed: int = 0):
    """The official HQ model and segany's, both holding the same seeded random weights."""
    theirs = official.sam_model_registry[name]()
    ours = segany.sam_hq_model_registry[name]()
    state = random_state_dict(theirs.state_dict(), seed)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    return theirs.eval(), ours.eval()


def row(step: str, times: dict[str, float]) -> None:
    """Print one table row as soon as it is measured."""
    a, b = times["official"], times["segany"]
    print(f"| {step} | {a:.4f} | {b:.4f} | {a / b:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--side", type=int, default=8, help="segment-everything grid side (0: skip)"
    )
    args = parser.parse_args()
    image, image_name = sample_image()
    theirs, ours = seeded_pair(args.model)
    a, b = official.SamPredictor(theirs), segany.SamPredictor(ours)
    print(
        f"machine: {machine()}\nmodel: HQ {args.model} (seeded random weights), image: {image_name}"
    )
    print("| step | official HQ (s) | segany (s) | speed-up |\n|---|---|---|---|", flush=True)
    with torch.inference_mode():
        enc = interleaved(
            {"official": lambda: a.set_image(image), "segany": lambda: b.set_image(image)},
            repeats=args.repeats,
            warmup=0,  # a pass takes seconds: nothing left to warm
        )
    row("set_image (encoder + early features)", enc)
    point = dict(
        point_coords=np.array([[image.shape[1] // 2, image.shape[0] // 2]]),
        point_labels=np.array([1]),
    )
    for only in (False, True):
        flags = dict(point, hq_token_only=only)
        times = interleaved(
            {
                "official": lambda f=flags: a.predict(**f),
                "segany": lambda f=flags: b.predict(**f),
            },
            repeats=5 * args.repeats,
        )
        row(f"predict, 1 point, hq_token_only={only}", times)
    _, _, logits = a.predict(**point)
    refine = dict(
        point_coords=np.array(
            [point["point_coords"][0], [image.shape[1] // 3, image.shape[0] // 3]]
        ),
        point_labels=np.array([1, 0]),
        mask_input=logits,
        multimask_output=False,
    )
    times = interleaved(
        {"official": lambda: a.predict(**refine), "segany": lambda: b.predict(**refine)},
        repeats=5 * args.repeats,
    )
    row("predict, refinement click (2 points + mask input)", times)
    check = [p.predict(**point)[2] for p in (a, b)]
    print(f"max |low-res logit difference| of a click = {np.abs(check[0] - check[1]).max():.2e}")
    if args.side <= 0:
        return
    settings = {"points_per_side": args.side, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    generators = {
        "official": official.SamAutomaticMaskGenerator(theirs, **settings),
        "segany": segany.SamAutomaticMaskGenerator(ours, **settings),
    }
    times = interleaved(
        {k: (lambda g=g: g.generate(image)) for k, g in generators.items()}, 1, warmup=0
    )
    row(f"segment everything, {args.side}x{args.side} points", times)


if __name__ == "__main__":
    main()
