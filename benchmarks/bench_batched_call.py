"""The official notebook's batched call, ``sam(batched_input, multimask_output=False)``: two
images with boxes, official vs segany on the same seeded weights; time, peak memory, and whether
the outputs are ready for numpy.

Run: .venv/bin/python benchmarks/bench_batched_call.py [--model vit_b] [--repeats 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import torch

from common import interleaved, machine, official_and_ours, peak_rss_during, sample_image

MB = 2**20


def batched_input(model, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[dict]:
    """The notebook's records: resized images ``(3, h, w)`` and boxes in the resized frame."""
    from segment_anything.utils.transforms import ResizeLongestSide

    resize = ResizeLongestSide(model.image_encoder.img_size)
    records = []
    for image, image_boxes in zip(images, boxes):
        resized = torch.as_tensor(resize.apply_image(image)).permute(2, 0, 1).contiguous()
        box_tensor = torch.as_tensor(image_boxes, dtype=torch.float)
        records.append(
            {
                "image": resized,
                "boxes": resize.apply_boxes_torch(box_tensor, image.shape[:2]),
                "original_size": image.shape[:2],
            }
        )
    return records


def ready_for_numpy(outputs: list[dict]) -> bool:
    try:
        for record in outputs:
            for value in record.values():
                value.numpy()
    except RuntimeError:
        return False
    return True


def scene() -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """The two images, their boxes (2 and 1) and a description."""
    first, first_name = sample_image("truck.jpg")
    second, second_name = sample_image("groceries.jpg")
    h, w = first.shape[:2]
    boxes = [
        np.array([[0.05 * w, 0.2 * h, 0.95 * w, 0.7 * h], [0.25 * w, 0.5 * h, 0.4 * w, 0.75 * h]]),
        np.array([[0.1, 0.1, 0.5, 0.6]]) * np.array([second.shape[1], second.shape[0]] * 2),
    ]
    return [first, second], boxes, f"{first_name}, {second_name}"


def peak_memory_of(name: str, model_name: str) -> float:
    """MiB the first call of ``name``'s model adds at its peak, in a fresh process of its own
    (so that neither package reuses memory the other freed)."""
    command = [sys.executable, __file__, "--model", model_name, "--memory-of", name]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-of", choices=["official", "segany"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    images, boxes, names = scene()
    theirs, ours = official_and_ours(args.model)
    if args.memory_of:
        model = theirs if args.memory_of == "official" else ours
        records = batched_input(model, images, boxes)
        before, peak = peak_rss_during(lambda: model(records, multimask_output=False))
        print((peak - before) / MB)
        return
    inputs = {
        "official": batched_input(theirs, images, boxes),
        "segany": batched_input(ours, images, boxes),
    }
    models = {"official": theirs, "segany": ours}
    print(f"machine: {machine()}\nmodel: {args.model} (seeded random weights)")
    print(f"images: {names}; 2 + 1 boxes, multimask_output=False")
    memory = {name: peak_memory_of(name, args.model) for name in models}
    outputs = {name: m(inputs[name], multimask_output=False) for name, m in models.items()}
    times = interleaved(
        {
            name: (lambda m=m, n=name: m(inputs[n], multimask_output=False))
            for name, m in models.items()
        },
        repeats=args.repeats,
        warmup=0,
    )
    agree = min(
        float((a["masks"] & b["masks"]).sum() / max(1, int((a["masks"] | b["masks"]).sum())))
        for a, b in zip(outputs["official"], outputs["segany"])
    )
    print("| | official | segany | ratio |\n|---|---|---|---|")
    print(
        f"| time per call (s) | {times['official']:.2f} | {times['segany']:.2f} | "
        f"{times['official'] / times['segany']:.2f}x |"
    )
    print(
        f"| peak memory increase (MiB) | {memory['official']:.0f} | {memory['segany']:.0f} | "
        f"{memory['official'] / max(memory['segany'], 1):.2f}x less |"
    )
    print(
        f"| outputs ready for numpy | {ready_for_numpy(outputs['official'])} | "
        f"{ready_for_numpy(outputs['segany'])} | |"
    )
    print(f"lowest mask IoU, segany vs official: {agree:.4f}")


if __name__ == "__main__":
    main()
