"""``segany everything``: every mask of an image or a folder of images, resumable."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from . import USAGE_ERROR, CliError, check_writable, describe
from .common import add_model_options, bundled_preset

OUTPUTS = ("sa1b", "coco", "png")
GENERATOR_OPTIONS: dict[str, type] = {
    "points_per_side": int,
    "points_per_batch": int,
    "pred_iou_thresh": float,
    "stability_score_thresh": float,
    "stability_score_offset": float,
    "box_nms_thresh": float,
    "crop_n_layers": int,
    "crop_nms_thresh": float,
    "crop_overlap_ratio": float,
    "crop_n_points_downscale_factor": int,
    "min_mask_region_area": int,
    "max_mask_area_fraction": float,
}
PNG_METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)
EXAMPLES = """examples:
  segany everything photo.jpg --output masks/                  # masks/photo.json (SA-1B)
  segany everything photos/ --output masks/ --format coco       # masks/annotations.json
  segany everything photos/ --output masks/ --format png        # masks/<name>/{i}.png + metadata.csv
  segany everything photos/ --output sa1b/ --preset sa1b --model vit_h --checkpoint sam_vit_h_4b8939.pth
An interrupted run loses nothing: run the same command again and finished images are skipped.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "everything",
        help="segment everything in an image or a folder of images",
        description="Automatic mask generation over a point grid (and crops), as SA-1B json, a "
        "COCO dataset json, or PNG masks.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--format", choices=OUTPUTS, default="sa1b")
    parser.add_argument(
        "--preset",
        choices=("sa1b", "tiny"),
        help="sa1b: the paper's SA-1B settings; tiny: filters for the bundled model "
        "(default with --model tiny)",
    )
    group = parser.add_argument_group("generator settings (default: the official defaults)")
    for name, kind in GENERATOR_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    add_model_options(parser)
    parser.set_defaults(func=run)


def _inputs(path: Path) -> list[Path]:
    from ..formats.images import list_images

    if path.is_dir():
        images = list_images(path)
        if not images:
            raise CliError(f"{path}: no image files in this folder")
    elif path.is_file():
        images = [path]
    else:
        raise CliError(f"{path}: no such file or folder")
    stems = [p.stem for p in images]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise CliError(f"images share a name with different extensions: {', '.join(duplicates)}")
    return images


def _sa1b_annotations(records: list[dict[str, Any]]) -> list[Any]:
    from ..formats.sa1b import Sa1bAnnotation

    return [
        Sa1bAnnotation(
            id=i,
            segmentation=r["segmentation"],
            bbox=r["bbox"],
            area=r["area"],
            predicted_iou=r["predicted_iou"],
            stability_score=r["stability_score"],
            crop_box=r["crop_box"],
            point_coords=r["point_coords"],
        )
        for i, r in enumerate(records)
    ]


def _write_png_folder(folder: Path, records: list[dict[str, Any]]) -> None:
    """``{i}.png`` per mask plus ``metadata.csv`` (the official ``scripts/amg.py`` layout),
    written to a hidden folder first and renamed into place when complete."""
    from ..formats.pictures import mask_png, write_png
    from ..formats.rle import decode_coco_rle

    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    rows.write(PNG_METADATA_HEADER + "\n")
    for i, record in enumerate(records):
        write_png(staging / f"{i}.png", mask_png(decode_coco_rle(record["segmentation"])))
        writer.writerow(
            [
                i,
                record["area"],
                *record["bbox"],
                *record["point_coords"][0],
                record["predicted_iou"],
                record["stability_score"],
                *record["crop_box"],
            ]
        )
    (staging / "metadata.csv").write_text(rows.getvalue())
    os.replace(staging, folder)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..automatic.generator import SamAutomaticMaskGenerator
    from ..formats.coco import CocoDataset
    from ..formats.files import atomic_write_text
    from ..formats.images import read_image
    from ..formats.sa1b import Sa1bImage, write_sa1b
    from .common import load_predictor

    images = _inputs(Path(args.input))
    output = Path(args.output)
    check_writable(output, folder=True)
    parts = output / ".parts"
    for stale in output.glob(".*.tmp"):  # left by a run killed mid-write
        stale.unlink()

    def done_marker(image: Path) -> Path:
        return {
            "sa1b": output / f"{image.stem}.json",
            "png": output / image.stem,
            "coco": parts / f"{image.stem}.json",
        }[args.format]

    todo = [p for p in images if not done_marker(p).exists()]
    skipped = len(images) - len(todo)
    settings = {k: getattr(args, k) for k in GENERATOR_OPTIONS if getattr(args, k) is not None}
    generator = None
    if todo:
        model = load_predictor(args).model
        generator = SamAutomaticMaskGenerator(
            model, output_mode="coco_rle", preset=args.preset or bundled_preset(args), **settings
        )
    if args.format == "coco":
        parts.mkdir(exist_ok=True)
    failures = 0
    for path in tqdm(todo, desc="everything", unit="img", disable=len(images) < 2):
        try:
            image = read_image(path)
            records = generator.generate(image)  # type: ignore[union-attr]
        except (ValueError, OSError, RuntimeError, MemoryError) as exc:
            failures += 1
            tqdm.write(f"error: {path}: {describe(exc)}", file=sys.stderr)
            continue
        height, width = image.shape[:2]
        if args.format == "sa1b":
            info = Sa1bImage(images.index(path) + 1, width, height, path.name)
            write_sa1b(done_marker(path), info, _sa1b_annotations(records))
        elif args.format == "png":
            _write_png_folder(done_marker(path), records)
        else:
            part = {"file_name": path.name, "height": height, "width": width, "records": records}
            atomic_write_text(done_marker(path), json.dumps(part))
    if args.format == "coco":
        dataset = CocoDataset()
        for path in images:
            marker = done_marker(path)
            if marker.exists():
                part = json.loads(marker.read_text())
                dataset.add_image(part["file_name"], part["height"], part["width"], part["records"])
        dataset.write(output / "annotations.json")
    processed = len(todo) - failures
    print(f"{processed} images segmented, {skipped} already done, {failures} failed -> {output}")
    return USAGE_ERROR if failures else 0
