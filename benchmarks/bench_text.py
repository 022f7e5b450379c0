"""The SAM part of the text detector route: K detector boxes → K masks on one embedding.

segany's ``segany.text.segment.masks_for_boxes`` (one ``Predictor.predict`` call for all boxes,
results as ``TextMask``) against the official Grounded-SAM recipe on the official predictor
(``apply_boxes_torch`` + ``predict_torch(boxes=…, multimask_output=False)``, masks to numpy), on
the same seeded ViT-B weights and image, interleaved, medians. The detector itself is not
timed: its weights cannot be fetched here, and a random tiny one says nothing about a real one.

Run: .venv/bin/python benchmarks/bench_text.py [--repeats 5] [--boxes 1,4,16]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from segment_anything import SamPredictor as OfficialPredictor

from common import interleaved, machine, official_and_ours, sample_image
from segany import Predictor
from segany.text.detectors import Detections
from segany.text.segment import masks_for_boxes


def detections(count: int, height: int, width: int) -> Detections:
    """``count`` seeded boxes of 10-50% of the image side, as a detector would give them."""
    rng = np.random.default_rng(count)
    size = rng.uniform(0.1, 0.5, (count, 2)) * [width, height]
    corner = rng.uniform(0, 1, (count, 2)) * ([width, height] - size)
    boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float32)
    return Detections(boxes, rng.uniform(0.3, 1, count).astype(np.float32), np.zeros(count, int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--boxes", default="1,4,16", help="box counts to time, comma-separated")
    args = parser.parse_args()
    image, image_name = sample_image()
    theirs, ours = official_and_ours("vit_b")
    official, predictor = OfficialPredictor(theirs), Predictor(ours)
    print(f"machine: {machine()}\nmodel: vit_b (seeded random weights), image: {image_name}")
    with torch.inference_mode():
        official.set_image(image)
        embedding = predictor.embed(image)

    def grounded_sam(boxes: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            prompt = official.transform.apply_boxes_torch(torch.from_numpy(boxes), image.shape[:2])
            masks, _, _ = official.predict_torch(None, None, boxes=prompt, multimask_output=False)
        return masks.cpu().numpy()

    print("| boxes | official Grounded-SAM recipe (s) | segany (s) | speed-up | masks differ |")
    print("|---|---|---|---|---|")
    for count in (int(v) for v in args.boxes.split(",")):
        found = detections(count, *image.shape[:2])
        times = interleaved(
            {
                "official": lambda found=found: grounded_sam(found.boxes),
                "segany": lambda found=found: masks_for_boxes(predictor, embedding, found, ["x"]),
            },
            repeats=args.repeats,
        )
        theirs_masks = grounded_sam(found.boxes)[:, 0]
        ours_masks = np.stack([m.mask for m in masks_for_boxes(predictor, embedding, found, ["x"])])
        differ = (theirs_masks != ours_masks).mean()
        print(
            f"| {count} | {times['official']:.4f} | {times['segany']:.4f} | "
            f"{times['official'] / times['segany']:.2f}x | {differ:.1e} of pixels |"
        )


if __name__ == "__main__":
    main()
