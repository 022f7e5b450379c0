"""Official vs segany on the same seeded ViT-B weights: image embedding, one-point predict and a
refinement click (a second point with the first click's low-res logits fed back).

Run: .venv/bin/python benchmarks/bench_predictor.py [--model vit_b] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from segment_anything import SamPredictor as OfficialPredictor

from common import interleaved, machine, official_and_ours, sample_image
from segany import SamPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    image, image_name = sample_image()
    theirs, ours = official_and_ours(args.model)
    a, b = OfficialPredictor(theirs), SamPredictor(ours)
    print(f"machine: {machine()}\nmodel: {args.model} (seeded random weights), image: {image_name}")

    with torch.inference_mode():
        enc = interleaved(
            {"official": lambda: a.set_image(image), "segany": lambda: b.set_image(image)},
            repeats=args.repeats,
        )
    diff = (a.features - b.features).abs().max().item()
    point = dict(
        point_coords=np.array([[image.shape[1] // 2, image.shape[0] // 2]]),
        point_labels=np.array([1]),
    )
    dec = interleaved(
        {"official": lambda: a.predict(**point), "segany": lambda: b.predict(**point)},
        repeats=10 * args.repeats,
    )
    # a refinement click: the first click's best low-res logits fed back with a second point
    _, scores, logits = a.predict(**point, multimask_output=True)
    refine = dict(
        point_coords=np.array(
            [point["point_coords"][0], [image.shape[1] // 3, image.shape[0] // 3]]
        ),
        point_labels=np.array([1, 0]),
        mask_input=logits[np.argmax(scores)][None],
        multimask_output=False,
    )
    ref = interleaved(
        {"official": lambda: a.predict(**refine), "segany": lambda: b.predict(**refine)},
        repeats=10 * args.repeats,
    )
    print("| step | official (s) | segany (s) | speed-up |\n|---|---|---|---|")
    steps = (
        ("set_image (encoder)", enc),
        ("predict, 1 point", dec),
        ("predict, refinement click (2 points + mask input)", ref),
    )
    for step, t in steps:
        print(
            f"| {step} | {t['official']:.4f} | {t['segany']:.4f} | {t['official'] / t['segany']:.2f}x |"
        )
    print(f"max |embedding difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
