"""Official vs segany on the same seeded ViT-B weights: image embedding and one-point predict.

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
    print("| step | official (s) | segany (s) | speed-up |\n|---|---|---|---|")
    for step, t in (("set_image (encoder)", enc), ("predict, 1 point", dec)):
        print(
            f"| {step} | {t['official']:.4f} | {t['segany']:.4f} | {t['official'] / t['segany']:.2f}x |"
        )
    print(f"max |embedding difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
