"""``segany everything``: every mask of an image or a folder of images, resumable."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import USAGE_ERROR, CliError, check_writable, describe
from .common import add_model_options, bundled_preset, model_spec
from .scale import add_ray_options, quiet_ray, scale_options
from .text import add_text_options, load_detector

if TYPE_CHECKING:
    import numpy as np

    from ..automatic import SamAutomaticMaskGenerator
    from ..distributed import ScaleOptions
    from ..distributed.workers import Segmented
    from ..formats.sa1b import Sa1bAnnotation

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
  segany everything photos/ --output masks/ --ray --workers 2      # on a local Ray instance
  segany everything photos/ --output masks/ --ray auto --workers 8 --gpus-per-worker 1 --device cuda
  segany everything photo.jpg --output dogs/ --text "dog" --detector ./grounding-dino-tiny
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
    add_text_options(parser, "keep (or label) only the masks that this phrase names ('dog . cat')")
    parser.add_argument(
        "--text-match",
        choices=("keep", "label"),
        default="keep",
        help="keep: write only the named masks; label: write all, the named ones with their "
        "phrase and detector score (json formats)",
    )
    parser.add_argument(
        "--match-iou",
        type=float,
        default=0.5,
        help="a mask is named by the detector box its box overlaps most, at least this IoU",
    )
    add_model_options(parser)
    add_ray_options(parser)
    parser.set_defaults(func=run)


def image_inputs(path: Path) -> list[Path]:
    """The image files of a folder (sorted), or the one file; names must differ in their stems
    (outputs are named after them)."""
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


def _write_png_folder(folder: Path, annotations: list[Sa1bAnnotation]) -> None:
    """``{i}.png`` per mask plus ``metadata.csv`` (the official ``scripts/amg.py`` layout),
    written to a hidden folder first and renamed into place when complete."""
    from ..formats.pictures import mask_png, write_png

    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    rows.write(PNG_METADATA_HEADER + "\n")
    for i, annotation in enumerate(annotations):
        write_png(staging / f"{i}.png", mask_png(annotation.mask()))
        writer.writerow(
            [
                i,
                annotation.area,
                *annotation.bbox,
                *annotation.point_coords[0],
                annotation.predicted_iou,
                annotation.stability_score,
                *annotation.crop_box,
            ]
        )
    (staging / "metadata.csv").write_text(rows.getvalue())
    os.replace(staging, folder)


def _write_coco_part(
    path: Path, image: Path, size: tuple[int, int], annotations: list[Sa1bAnnotation]
) -> None:
    """One image's share of the COCO json: its file name and size, and its records with the
    official generator's keys (what :meth:`CocoDataset.add_image` takes)."""
    from ..automatic.table import RECORD_KEYS
    from ..formats.files import atomic_write_text

    keys = (*RECORD_KEYS, "phrase", "detector_score")  # the last two only if a text named it
    records = [{k: getattr(a, k) for k in keys if hasattr(a, k)} for a in annotations]
    part = {"file_name": image.name, "height": size[0], "width": size[1], "records": records}
    atomic_write_text(path, json.dumps(part))


def _write_coco(output: Path, parts: list[Path]) -> None:
    """``annotations.json`` from the parts written so far, in image order."""
    from ..formats.coco import CocoDataset

    dataset = CocoDataset()
    for marker in parts:
        if marker.exists():
            part = json.loads(marker.read_text())
            dataset.add_image(part["file_name"], part["height"], part["width"], part["records"])
    dataset.write(output / "annotations.json")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The generator's keyword arguments the options ask for (the preset among them)."""
    settings = {k: getattr(args, k) for k in GENERATOR_OPTIONS if getattr(args, k) is not None}
    return {"preset": args.preset or bundled_preset(args), **settings}


def _segment_here(
    args: argparse.Namespace, todo: list[Path]
) -> Iterator[tuple[Path, Segmented | Exception]]:
    """Each image's masks in this process; the model (and a --text detector) is loaded now, if
    anything is to do, so that one that cannot load fails before anything is written."""
    from ..automatic import SamAutomaticMaskGenerator
    from .common import load_model

    if not todo:
        return iter(())
    named = _text_filter(args) if args.text is not None else None
    generator = SamAutomaticMaskGenerator(load_model(args), **_settings(args))
    return _each_here(generator, todo, named)


def _text_filter(
    args: argparse.Namespace,
) -> Callable[[np.ndarray, list[Sa1bAnnotation]], list[Sa1bAnnotation]]:
    """The masks ``--text`` names in an image, from the detector's boxes (``--text-match``)."""
    from ..text import split_phrases
    from ..text.matching import match_annotations
    from ..text.segment import select_boxes

    if args.text_match == "label" and args.format == "png":
        raise CliError("--text-match label writes phrases into json: use --format sa1b or coco")
    detector, phrases = load_detector(args), split_phrases(args.text)

    def named(image: np.ndarray, annotations: list[Sa1bAnnotation]) -> list[Sa1bAnnotation]:
        found = detector.detect(image, phrases, args.box_threshold)
        found = select_boxes(found, image.shape[:2], args.nms_threshold, args.max_objects)
        return match_annotations(
            annotations, found, phrases, iou_threshold=args.match_iou,
            keep_unmatched=args.text_match == "label",
        )  # fmt: skip

    return named


def _each_here(
    generator: SamAutomaticMaskGenerator,
    todo: list[Path],
    named: Callable[[np.ndarray, list[Sa1bAnnotation]], list[Sa1bAnnotation]] | None = None,
) -> Iterator[tuple[Path, Segmented | Exception]]:
    from ..distributed.workers import Segmented
    from ..formats.images import read_image

    for path in todo:
        try:
            image = read_image(path)
            annotations = generator.generate_annotations(image)
            if named is not None:
                annotations = named(image, annotations)
        except (ValueError, OSError, RuntimeError, MemoryError) as exc:
            yield path, exc
            continue
        yield path, Segmented(image.shape[0], image.shape[1], annotations, 0.0)


def _segment_on_ray(
    args: argparse.Namespace, todo: list[Path], options: ScaleOptions
) -> Iterator[tuple[Path, Segmented | Exception]]:
    from ..distributed.jobs import segment_images
    from ..distributed.workers import Failed

    for path, result in segment_images(todo, model_spec(args), _settings(args), options):
        yield path, result.error if isinstance(result, Failed) else result  # type: ignore[misc]


# long: one loop for both paths, the three output formats and the report
def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..formats.sa1b import Sa1bImage, write_sa1b

    options = scale_options(args)
    if options and args.text is not None:
        raise CliError("--text runs in this process: drop --ray")
    images = image_inputs(Path(args.input))
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
    number = {path: i + 1 for i, path in enumerate(images)}  # SA-1B image ids
    failures = 0
    with quiet_ray(args) if options else nullcontext(sys.stderr) as terminal:
        results = _segment_on_ray(args, todo, options) if options else _segment_here(args, todo)
        if args.format == "coco":
            parts.mkdir(exist_ok=True)
        bar = tqdm(results, total=len(todo), desc="everything", unit="img", file=terminal,
                   disable=len(images) < 2)  # fmt: skip
        for path, result in bar:
            if isinstance(result, Exception):
                failures += 1
                tqdm.write(f"error: {path}: {describe(result)}", file=terminal)
                continue
            size = (result.height, result.width)
            if args.format == "sa1b":
                info = Sa1bImage(number[path], result.width, result.height, path.name)
                write_sa1b(done_marker(path), info, result.annotations)
            elif args.format == "png":
                _write_png_folder(done_marker(path), result.annotations)
            else:
                _write_coco_part(done_marker(path), path, size, result.annotations)
    if args.format == "coco":
        _write_coco(output, [done_marker(p) for p in images])
    processed = len(todo) - failures
    skipped = len(images) - len(todo)
    print(f"{processed} images segmented, {skipped} already done, {failures} failed -> {output}")
    return USAGE_ERROR if failures else 0
