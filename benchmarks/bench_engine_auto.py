"""Throughput of gear 3, ``segany engine auto PROJECT --preset sa1b``, in images per minute:
the bundled tiny model (which runs ``sa1b-tiny``: sa1b's 32x32 grid and 2 crop layers with the
tiny filters) and ViT-B with seeded random weights (``random_state_dict`` + ``region_mask_head``,
saved to a file and named with ``--model``), each on a fresh project, as a subprocess.

Images: generated scenes (``generate_scene``, seeds 0.., ``--scene-size``, default 800x534, the
size of ``dog.jpg``) and the photos in ``../shared/images`` (skipped when absent). Figures:
images per minute end to end (the command's wall time: start-up, model load, database writes
included) and seconds per image of generation alone (``image_runs.seconds``, median), with
masks per image. Random ViT-B weights predict IoUs that sa1b's 0.88 filter mostly rejects, so its
masks per image say how much of the mask path ran.

Torch's threads are a run's own choice (``OMP_NUM_THREADS`` for the command; ``--workers`` splits
them): on a shared 2-core host two threads in one process stall whenever another job takes a core,
so the tiny rows compare 1 worker x 2 threads, 1 x 1 and 2 x 1.

Run: .venv/bin/python benchmarks/bench_engine_auto.py [--images 3] [--runs 1x2,1x1,2x2]
     [--vit-b-precision fp32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import SHARED_IMAGES, machine, seeded_model
from segany.checkpoints import save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


def write_scenes(folder: Path, count: int, size: tuple[int, int]) -> None:
    from PIL import Image

    from segany.data.scenes import SceneConfig, generate_scene

    folder.mkdir(parents=True)
    config = SceneConfig(width=size[0], height=size[1])
    for seed in range(count):
        Image.fromarray(generate_scene(seed, config).image).save(folder / f"scene{seed}.png")


def copy_photos(folder: Path, count: int) -> bool:
    photos = sorted(SHARED_IMAGES.glob("*.jpg"))[:count] if SHARED_IMAGES.is_dir() else []
    if not photos:
        return False
    folder.mkdir(parents=True)
    for photo in photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    return True


def segany(*args: str, threads: int | None = None) -> float:
    """Run ``segany ARGS`` as a subprocess (with ``threads`` torch threads in all); its wall
    time in seconds."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "segany", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"segany {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return wall


def gear_figures(project: Path) -> tuple[int, int, float]:
    """(images done, masks, median generation seconds per image) from the project."""
    from sqlalchemy import func, select

    from segany.engine import Project
    from segany.engine.schema import ImageRunRow, MaskRow

    with Project.open(project) as p, p.session() as session:
        seconds = list(session.scalars(select(ImageRunRow.seconds).where(ImageRunRow.gear == 3)))
        masks = session.scalar(select(func.count(MaskRow.id)).where(MaskRow.gear == 3)) or 0
    return len(seconds), masks, statistics.median(seconds)


def measure(
    work: Path, label: str, images: Path, model: list[str], workers: int, threads: int
) -> str:
    """One fresh project, one ``engine auto`` run; its table row."""
    project = work / f"project-{len(list(work.iterdir()))}"
    segany("engine", "init", str(project), "--images", str(images))
    options = ["--preset", "sa1b", "--workers", str(workers), *model]
    wall = segany("engine", "auto", str(project), *options, threads=threads)
    done, masks, per_image = gear_figures(project)
    split = f"{workers} x {max(1, threads // workers)}"
    row = (
        f"| {label} | {split} | {done} | {60 * done / wall:.2f} | {per_image:.1f} | "
        f"{masks / done:.1f} |"
    )
    print(row, flush=True)
    return row


# long: the options, then one measure() per row of the table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3, help="scenes, and photos, for tiny")
    parser.add_argument("--scene-size", default="800x534", help="WIDTHxHEIGHT")
    parser.add_argument("--vit-b-precision", default="fp32", choices=("fp32", "bf16", "int8"))
    parser.add_argument(
        "--runs", default="1x2,1x1,2x2", help="tiny on scenes: WORKERSxTHREADS (threads in all)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.scene_size.split("x"))
    threads = torch.get_num_threads()
    print(machine())
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        "| model, images | workers x threads | images | images/min (end to end) "
        "| s/image (generation) | masks/image |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenes, photos = work / "scenes", work / "photos"
        write_scenes(scenes, args.images, (width, height))
        have_photos = copy_photos(photos, args.images)
        scene_label = f"scenes {width}x{height}"
        for run in args.runs.split(","):
            workers, total = (int(v) for v in run.split("x"))
            measure(work, f"tiny, {scene_label}", scenes, [], workers, total)
        if have_photos:
            measure(work, "tiny, photos", photos, [], 1, threads)

        # ViT-B on one image: 21 encoder passes (sa1b's crops) of minutes together on 2 cores.
        one = work / "one"
        if have_photos:
            copy_photos(one, 1)
        else:
            write_scenes(one, 1, (width, height))
        weights = work / "vit_b_seeded.safetensors"
        save_checkpoint(seeded_model("segany", "vit_b", region_head=True), weights)
        vit_b = ["--model", str(weights), "--precision", args.vit_b_precision]
        label = f"ViT-B seeded {args.vit_b_precision}, {'dog.jpg' if have_photos else scene_label}"
        measure(work, label, one, vit_b, 1, threads)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
