"""The data engine's loop at scale, the paper's table (SAM §4) for a project of generated
scenes with ground truth, run with the same commands a user types:

  gear 1 (simulated annotator) → retrain, ``--rounds`` times; prefill + gear 2; gear 3 on the
  rest; then per model version the clicks per mask in gear 1, masks per image per gear, and how
  many of gear 3's masks match a ground-truth object at IoU ≥ 0.9.

Run: .venv/bin/python benchmarks/bench_engine_loop.py [--scenes 300] [--rounds 3]
     [--gear1-images 20] [--gear2-images 40] [--steps 40] [--folder out/bench-loop]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from sqlalchemy import select

from common import machine
from segany.checkpoints import load
from segany.cli import main
from segany.data.datasets import MaskSample
from segany.data.shards import write_generated_shards
from segany.engine import Project
from segany.engine.ground_truth import match_ground_truth, open_ground_truth
from segany.engine.retrain import heldout_miou
from segany.engine.schema import ImageRow, MaskRow, ModelVersionRow
from segany.engine.stats import project_stats
from segany.engine.store import row_rle
from segany.formats.images import read_image
from segany.formats.rle import encode_coco_rle


def segany(*argv: object) -> float:
    """Run one ``segany`` command in this process; its seconds."""
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"segany {' '.join(map(str, argv))} failed ({code})")
    return time.perf_counter() - start


def gear3_match(project: Project, scenes: Path, threshold: float = 0.9) -> tuple[int, int]:
    """(gear-3 masks whose best IoU with a ground-truth object of their image ≥ threshold,
    gear-3 masks)."""
    with project.session() as session:
        truths = match_ground_truth(session, open_ground_truth(scenes)).by_image
        matched = total = 0
        for image_id, truth in truths.items():
            rows = session.scalars(
                select(MaskRow).where(MaskRow.image_id == image_id, MaskRow.gear == 3)
            ).all()
            if not rows:
                continue
            objects = [encode_coco_rle(m) for m in truth.load_masks()]
            ious = mask_utils.iou([row_rle(r) for r in rows], objects, [0] * len(objects))
            best = np.asarray(ious).reshape(len(rows), -1).max(axis=1)
            matched += int((best >= threshold).sum())
            total += len(rows)
    return matched, total


def heldout_scores(project: Project, scenes: Path) -> dict[str, dict[int, float] | None]:
    """Every model version scored on the same images: the project's held-out images with their
    full ground truth (the point protocol, mIoU at 1 and 5 clicks), so rounds compare."""
    with project.session() as session:
        truths = match_ground_truth(session, open_ground_truth(scenes)).by_image
        rows = session.scalars(select(ImageRow).where(ImageRow.split == "heldout")).all()
        versions = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id)).all()
    samples = [
        MaskSample(read_image(row.path), truths[row.id].load_masks(), str(row.id))
        for row in rows
        if row.id in truths
    ]
    return {v.name: heldout_miou(load(v.weights), samples) for v in versions}


def version_table(stats: dict, heldout: dict[str, dict[int, float] | None]) -> list[str]:
    """Per model version: held-out mIoU, and gear 1's images, masks, clicks and seconds."""
    lines = [
        "| model version | held-out mIoU, 1 / 5 clicks | gear-1 images | masks | masks/image "
        "| clicks/mask | modelled s/mask |",
        "|---|---|---|---|---|---|---|",
    ]
    gear_1 = {row["model"]: row for g in stats["gears"] if g["gear"] == 1 for row in g["versions"]}
    for name, scores in heldout.items():
        miou = "—" if scores is None else f"{scores[1]:.3f} / {scores[5]:.3f}"
        row = gear_1.get(name)
        if row is None:
            lines.append(f"| {name} | {miou} | — | — | — | — | — |")
            continue
        lines.append(
            f"| {name} | {miou} | {row['images']} | {row['masks']} | {row['masks_per_image']:.1f} "
            f"| {row['clicks_per_mask']:.2f} | {row['seconds_per_mask']:.1f} |"
        )
    return lines


def gear_table(stats: dict, match: tuple[int, int]) -> list[str]:
    lines = [
        "| gear | images | masks | masks/image | clicks/mask | accepted unchanged "
        "| gear-3 masks matching an object at IoU ≥ 0.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for gear in stats["gears"]:
        row = gear["all"]
        clicks = row["clicks_per_mask"]
        unchanged = row["accepted_unchanged"]
        matched = f"{match[0]}/{match[1]} ({match[0] / max(1, match[1]):.0%})"
        lines.append(
            f"| {gear['gear']} | {row['images']} | {row['masks']} | {row['masks_per_image']:.1f} "
            f"| {'—' if clicks is None else f'{clicks:.2f}'} "
            f"| {'—' if unchanged is None else f'{unchanged:.0%}'} "
            f"| {matched if gear['gear'] == 3 else '—'} |"
        )
    return lines


def run_loop(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """The gears and retrains, command by command, in a fresh ``folder``; their seconds."""
    shutil.rmtree(folder, ignore_errors=True)
    scenes, project_dir = folder / "scenes", folder / "project"
    write_generated_shards(scenes, seed_start=10_000, count=args.scenes, progress=False)
    times: dict[str, float] = {}
    times["init"] = segany("engine", "init", project_dir, "--images", scenes)
    for round_ in range(1, args.rounds + 1):
        times[f"gear 1, round {round_}"] = segany(
            "engine", "simulate", project_dir, "--ground-truth", scenes, "--gear", 1,
            "--images", args.gear1_images,
        )  # fmt: skip
        times[f"retrain {round_}"] = segany(
            "engine", "retrain", project_dir, "--output", folder / f"r{round_}",
            "--steps", args.steps,
        )  # fmt: skip
    times["prefill"] = segany("engine", "prefill", project_dir)
    times["gear 2"] = segany(
        "engine", "simulate", project_dir, "--ground-truth", scenes, "--gear", 2,
        "--images", args.gear2_images,
    )  # fmt: skip
    times["gear 3"] = segany("engine", "auto", project_dir)
    return times


def run(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    times = {} if args.report_only else run_loop(args, folder)
    scenes, project_dir = folder / "scenes", folder / "project"
    with Project.open(project_dir) as project:
        with project.session() as session:
            stats = project_stats(session).to_dict()
        match = gear3_match(project, scenes)
        heldout = heldout_scores(project, scenes)
    report(args, stats, heldout, match, times)


def report(
    args: argparse.Namespace,
    stats: dict,
    heldout: dict[str, dict[int, float] | None],
    match: tuple[int, int],
    times: dict[str, float],
) -> None:
    lines: Sequence[str] = [
        f"machine: {machine()}",
        f"{args.scenes} generated scenes (256×256), bundled tiny model; gear 1 on "
        f"{args.gear1_images} images per round, {args.rounds} rounds, {args.steps} retrain steps "
        f"each; gear 2 on {args.gear2_images} images; gear 3 on the rest",
        "",
        *version_table(stats, heldout),
        "",
        *gear_table(stats, match),
        "",
        f"automatic share of all masks: {stats['automatic_share']:.1%}",
        "wall time: " + (", ".join(f"{k} {v:.0f} s" for k, v in times.items()) or "not run"),
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"stats": stats, "times": times}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gear1-images", type=int, default=20)
    parser.add_argument("--gear2-images", type=int, default=40)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--folder", default="out/bench-loop")
    parser.add_argument("--json", help="also write the stats and timings here")
    parser.add_argument(
        "--report-only", action="store_true", help="only the report, of the project in --folder"
    )
    run(parser.parse_args())
