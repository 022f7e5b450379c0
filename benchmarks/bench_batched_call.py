"""The official notebook's batched call, ``sam(batched_input, multimask_output=False)``: two
images with boxes, official vs segany on the same seeded weights; time, peak memory, and whether
the outputs are ready for numpy.

Run: .venv/bin/python benchmarks/bench_batched_call.py [--model vit_b] [--repeats 2]
"""

from __future__ import annotations

import argparse

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    first, first_name = sample_image("truck.jpg")
    second, second_name = sample_image("groceries.jpg")
    h, w = first.shape[:2]
    boxes = [
        np.array([[0.05 * w, 0.2 * h, 0.95 * w, 0.7 * h], [0.25 * w, 0.5 * h, 0.4 * w, 0.75 * h]]),
        np.array([[0.1, 0.1, 0.5, 0.6]]) * np.array([second.shape[1], second.shape[0]] * 2),
    ]
    theirs, ours = official_and_ours(args.model)
    inputs = {
        "official": batched_input(theirs, [first, second], boxes),
        "segany": batched_input(ours, [first, second], boxes),
    }
    models = {"official": theirs, "segany": ours}
    print(f"machine: {machine()}\nmodel: {args.model} (seeded random weights)")
    print(f"images: {first_name}, {second_name}; 2 + 1 boxes, multimask_output=False")

    outputs, memory = {}, {}
    for name, model in models.items():  # first call of each: its peak memory

        def call(name: str = name, model=model) -> None:
            outputs[name] = model(inputs[name], multimask_output=False)

        before, peak = peak_rss_during(call)
        memory[name] = (peak - before) / MB
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
