"""``segany segment``: one object from point and box prompts, or the objects a text names."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import CliError, check_writable
from .common import add_model_options, load_predictor, parse_box, parse_point, point_arrays
from .text import add_text_options, nothing_found, text_masks

if TYPE_CHECKING:
    from ..inference.embedding import Embedding
    from ..inference.predictor import Predictor
    from ..text import TextMask

FORMATS = ("png", "cutout", "coco", "polygons")
NOTHING_FOUND = 1  # a run that worked and found nothing: not bad input (2)
EXAMPLES = """examples:
  segany segment photo.jpg --point 320,240 --output mask.png
  segany segment photo.jpg --point 320,240 --point 100,50,0 --output object.png --format cutout
  segany segment photo.jpg --box 40,60,400,380 --output mask.json --format coco --overlay check.png
  segany segment photo.jpg --embedding photo.emb --point 320,240 --output mask.json --format polygons
  segany segment photo.jpg --text "a dog" --detector ./grounding-dino-tiny --output dog.png
  segany segment photo.jpg --text "dog . cat" --detector IDEA-Research/grounding-dino-tiny \
      --output pets.json --format coco --max-objects 5
  # the bundled tiny model's own text head (a generated scene; its vocabulary only)
  segany segment scene.png --model tiny --text "red star" --output star.png --overlay check.png
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "segment",
        help="segment one object from points and/or a box",
        description="Points are X,Y in image pixels with label 1 (foreground, default) or 0.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="image file")
    parser.add_argument(
        "--point",
        type=parse_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a prompt point; repeatable",
    )
    parser.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box prompt")
    parser.add_argument(
        "--multimask",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask for 3 candidates and keep the best (default: only for a single click)",
    )
    parser.add_argument("--output", required=True, help="file to write")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="png: mask 0/255; cutout: RGBA object on transparency; coco: COCO RLE json; "
        "polygons: json of polygons with holes (with --text: the union of the objects' masks in "
        "png and cutout, one record per object in json)",
    )
    parser.add_argument("--crop", action="store_true", help="crop a cutout to the object's box")
    parser.add_argument("--overlay", help="also write the image with the mask and prompts drawn")
    parser.add_argument("--embedding", help="reuse an embedding written by `segany embed`")
    add_text_options(parser, "segment what the phrase names ('a dog'; several: 'dog . cat')")
    add_model_options(parser)
    parser.set_defaults(func=run)


# long: checks, the embedding, one decode and the four output formats in one readable flow
def run(args: argparse.Namespace) -> int:
    from ..formats.files import atomic_write_text
    from ..formats.images import read_image
    from ..formats.pictures import cutout, draw_overlay, mask_png, write_png

    if args.text is not None and (args.point or args.box is not None):
        raise CliError("give either --text or --point/--box prompts, not both")
    if args.text is None and (not args.point and args.box is None):
        raise CliError(
            "empty prompt: give at least one --point X,Y[,LABEL], a --box X0,Y0,X1,Y1 or --text"
        )
    check_writable(args.output)
    if args.overlay:
        check_writable(args.overlay)
    image = read_image(args.image)
    predictor = load_predictor(args)
    embedding = load_embedding(args, predictor, image) if args.embedding else None
    if args.text is not None:
        return write_text_masks(args, image, text_masks(args, predictor, image, embedding))
    if embedding is None:
        embedding = predictor.embed(image)
    points, labels = point_arrays(args.point)
    multimask = (
        args.multimask
        if args.multimask is not None
        else (len(args.point) == 1 and args.box is None)
    )
    prediction = predictor.predict(
        embedding, points=points, labels=labels, boxes=args.box, multimask=multimask
    )
    best = int(prediction.best_index()[0])
    mask, score = prediction.masks[0, best], float(prediction.scores[0, best])

    if args.format == "png":
        write_png(args.output, mask_png(mask))
    elif args.format == "cutout":
        write_png(args.output, cutout(image, mask, crop=args.crop))
    else:
        record = {**image_fields(args, image), **mask_fields(mask, score, args.format)}
        atomic_write_text(args.output, json.dumps(record))
    if args.overlay:
        write_png(args.overlay, draw_overlay(image, [mask], args.point, args.box))
    print(f"mask: {int(mask.sum())} pixels, predicted IoU {score:.3f} -> {args.output}")
    return 0


def load_embedding(args: argparse.Namespace, predictor: Predictor, image: np.ndarray) -> Embedding:
    """The ``--embedding`` file, checked against the model and the image."""
    from ..inference.embedding import Embedding

    height, width = image.shape[:2]
    embedding = Embedding.load(args.embedding, device=predictor.device)
    if embedding.original_size != (height, width):
        raise CliError(
            f"embedding {args.embedding} is of a {embedding.width}x{embedding.height} image, "
            f"not {args.image} ({width}x{height})"
        )
    return embedding


def image_fields(args: argparse.Namespace, image: np.ndarray) -> dict[str, Any]:
    return {"image": Path(args.image).name, "height": image.shape[0], "width": image.shape[1]}


def mask_fields(mask: np.ndarray, score: float, fmt: str) -> dict[str, Any]:
    """One mask's json record: its box (XYWH), area, predicted IoU and shape (RLE or polygons)."""
    from ..formats import encode_coco_rle, mask_bbox_xywh
    from ..formats.polygons import mask_to_polygons

    record: dict[str, Any] = {
        "bbox": mask_bbox_xywh(mask),
        "area": int(mask.sum()),
        "predicted_iou": score,
    }
    if fmt == "coco":
        record["segmentation"] = encode_coco_rle(mask)
    else:
        record["polygons"] = [p.to_json() for p in mask_to_polygons(mask)]
    return record


def write_text_masks(args: argparse.Namespace, image: np.ndarray, found: list[TextMask]) -> int:
    """``--text``'s outputs: the union of the masks (png, cutout) or one record per object
    (json, with its phrase, detector box and score); nothing is written when nothing is found."""
    from ..formats.files import atomic_write_text
    from ..formats.pictures import cutout, draw_overlay, mask_png, write_png

    if not found:
        print(nothing_found(args), file=sys.stderr)
        return NOTHING_FOUND
    union = np.logical_or.reduce([m.mask for m in found])
    if args.format == "png":
        write_png(args.output, mask_png(union))
    elif args.format == "cutout":
        write_png(args.output, cutout(image, union, crop=args.crop))
    else:
        objects = [
            {"phrase": m.phrase, "detector_score": m.detector_score, "box": list(m.box),
             **mask_fields(m.mask, m.predicted_iou, args.format)}
            for m in found
        ]  # fmt: skip
        record = {**image_fields(args, image), "text": args.text, "objects": objects}
        atomic_write_text(args.output, json.dumps(record))
    if args.overlay:
        write_png(args.overlay, draw_overlay(image, [m.mask for m in found]))
    for m in found:
        source = (
            "text head" if m.detector_score is None else f"detector score {m.detector_score:.3f}"
        )
        print(
            f"{m.phrase}: {source}, predicted IoU {m.predicted_iou:.3f}, {int(m.mask.sum())} pixels"
        )
    print(f"{len(found)} objects -> {args.output}")
    return 0
