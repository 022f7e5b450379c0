"""Official vs segany automatic mask generator: same seeded ViT-B weights, same photo, fp32,
interleaved in one process, medians; then peak memory of a default run, each in a fresh process.

Weights: ``random_state_dict`` with ``region_mask_head`` (constant transposed-convolution
kernels, so masks are regions rather than texture), loaded into both models. Settings:
``default`` (the official defaults) and ``lowered`` (pred_iou_thresh=0.7,
stability_score_thresh=0.8: several times more masks reach the mask head, the upscaling and the
stability filter). For each, the masks that pass the IoU and stability filters (before NMS) are
counted with a separate segany run, as random-weight masks mostly cover the whole image and
box NMS then leaves few of them.

Run: .venv/bin/python benchmarks/bench_automatic.py [--repeats 3] [--image dog.jpg] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from common import interleaved, machine, official_and_ours, peak_rss_during, sample_image

SETTINGS: dict[str, dict[str, float]] = {
    "default": {},
    "lowered": {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.8},
}


def child(which: str, image_name: str) -> None:
    """One default run of one implementation; prints its memory figures as JSON."""
    from segment_anything import SamAutomaticMaskGenerator as Official

    from segany import SamAutomaticMaskGenerator

    theirs, ours = official_and_ours("vit_b", region_head=True)
    generator = Official(theirs) if which == "official" else SamAutomaticMaskGenerator(ours)
    del theirs, ours
    image, _ = sample_image(image_name)
    before, peak = peak_rss_during(lambda: generator.generate(image))
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak, "maxrss": maxrss}))


def memory(image_name: str) -> dict[str, dict[str, int]]:
    out = {}
    for which in ("official", "segany"):
        result = subprocess.run(
            [sys.executable, __file__, "--child", which, "--image", image_name],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        out[which] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def stability_report(image: np.ndarray, ours, points_per_side: int = 16) -> None:
    """How the low-res shortcuts compare with the exact full-resolution stability filter, on
    every mask of a ``points_per_side`` grid: the provable bound (never wrong, by design; how
    many upscales it saves) and plain low-res stability (how often it would decide otherwise)."""
    from segany.automatic.filters import UpscaleFootprint, stability_score
    from segany.fast.upscale import upscale_logits
    from segany.inference.embedding import Embedding
    from segany.inference.predictor import Predictor
    from segany.inference.transforms import scale_coords

    predictor = Predictor(ours)
    embedding: Embedding = predictor.embed(image)
    h, w = embedding.original_size
    side = np.linspace(0.5 / points_per_side, 1 - 0.5 / points_per_side, points_per_side)
    points = np.stack(np.meshgrid(side * w, side * h), -1).reshape(-1, 1, 2)
    with torch.inference_mode():
        coords = scale_coords(torch.as_tensor(points, dtype=torch.float32), (h, w), ours.img_size)
        labels = torch.ones(coords.shape[:2], dtype=torch.int64)
        low_res = torch.cat(
            [
                ours.decode(embedding.features, points=(xy, lab), multimask_output=True)[0]
                for xy, lab in zip(coords.split(16), labels.split(16))
            ]
        ).flatten(0, 1)
        exact = torch.cat(
            [
                stability_score(
                    upscale_logits(chunk[:, None], ours.img_size, embedding.input_size, (h, w))[
                        :, 0
                    ],
                    0.0,
                    1.0,
                )
                for chunk in low_res.split(16)
            ]
        )
        in_h, in_w = embedding.input_size
        scale = low_res.shape[-1] / ours.img_size
        valid = low_res[:, : round(in_h * scale), : round(in_w * scale)]
        approximate = stability_score(valid, 0.0, 1.0)
        footprint = UpscaleFootprint.of(low_res.shape[-1], ours.img_size, (in_h, in_w), (h, w))
        bound = footprint.stability_upper_bound(low_res, 0.0, 1.0)
    print(
        f"\nstability filter on {len(exact)} masks ({points_per_side}x{points_per_side} points, 3 each):"
    )
    print("| threshold | pass (exact) | skipped by the bound | low-res stability disagrees |")
    print("|---|---|---|---|")
    for threshold in (0.95, 0.9, 0.8, 0.5):
        passes = exact >= threshold
        skipped = bound < threshold
        assert not bool((skipped & passes).any()), "the bound rejected a passing mask"
        disagree = (approximate >= threshold) != passes
        print(
            f"| {threshold} | {int(passes.sum())} | {int(skipped.sum())} ({skipped.float().mean():.0%}) | "
            f"{int(disagree.sum())} ({disagree.float().mean():.1%}) |"
        )


def same_records(a: list[dict], b: list[dict]) -> bool:
    key = lambda r: (tuple(r["point_coords"][0]), tuple(r["bbox"]), r["area"])  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", default="dog.jpg")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-stability", action="store_true")
    parser.add_argument("--child", choices=["official", "segany"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.image)
        return

    from segment_anything import SamAutomaticMaskGenerator as Official

    from segany import SamAutomaticMaskGenerator

    image, image_name = sample_image(args.image)
    theirs, ours = official_and_ours("vit_b", region_head=True)
    print(f"machine: {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other jobs share these cores)")
    print(
        f"model: vit_b, seeded random weights with region_mask_head, fp32; image: {image_name} "
        f"{image.shape[1]}x{image.shape[0]}"
    )
    print("segany mode: SamAutomaticMaskGenerator defaults (the exact path the parity tests run)\n")
    print(
        "| setting | masks out | pass IoU+stability (before NMS) | official (s) | segany (s) | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.settings.split(","):
        settings = SETTINGS[name]
        official = Official(theirs, **settings)
        native = SamAutomaticMaskGenerator(ours, **settings)
        results: dict[str, list] = {}

        def run(which, generator, results=results):
            return lambda: results.__setitem__(which, generator.generate(image))

        with torch.inference_mode():
            times = interleaved(
                {"official": run("official", official), "segany": run("segany", native)},
                repeats=args.repeats,
                warmup=0,
            )
        survivors = len(
            SamAutomaticMaskGenerator(ours, box_nms_thresh=1.0, **settings).generate_table(image)
        )
        same = same_records(results["official"], results["segany"])
        print(
            f"| {name} {settings or ''} | {len(results['segany'])} (official {len(results['official'])}, "
            f"{'same' if same else 'DIFFERENT'}) | {survivors} | {times['official']:.1f} | "
            f"{times['segany']:.1f} | {times['official'] / times['segany']:.1f}x |",
            flush=True,
        )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if not args.no_stability:
        stability_report(image, ours)
    if not args.no_memory:
        mib = 1024 * 1024
        figures = memory(args.image)
        print(
            "\n| default run, fresh process | RSS before generate (MiB) | peak RSS during generate (MiB) | increase (MiB) | process max RSS (MiB) |"
        )
        print("|---|---|---|---|---|")
        for which, f in figures.items():
            print(
                f"| {which} | {f['before'] / mib:.0f} | {f['peak'] / mib:.0f} | "
                f"{(f['peak'] - f['before']) / mib:.0f} | {f['maxrss'] / mib:.0f} |"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    np.set_printoptions(precision=3)
    main()
