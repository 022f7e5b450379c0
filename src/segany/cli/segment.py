"""``segany segment``: one object from point and box prompts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import CliError, check_writable
from .common import add_model_options, load_predictor, parse_box, parse_point

FORMATS = ("png", "cutout", "coco", "polygons")
EXAMPLES = """examples:
  segany segment photo.jpg --point 320,240 --output mask.png
  segany segment photo.jpg --point 320,240 --point 100,50,0 --output object.png --format cutout
  segany segment photo.jpg --box 40,60,400,380 --output mask.json --format coco --overlay check.png
  segany segment photo.jpg --embedding photo.emb --point 320,240 --output mask.json --format polygons
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
        "polygons: json of polygons with holes",
    )
    parser.add_argument("--crop", action="store_true", help="crop a cutout to the object's box")
    parser.add_argument("--overlay", help="also write the image with the mask and prompts drawn")
    parser.add_argument("--embedding", help="reuse an embedding written by `segany embed`")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..formats import encode_coco_rle, mask_bbox_xywh
    from ..formats.files import atomic_write_text
    from ..formats.images import read_image
    from ..formats.pictures import cutout, draw_overlay, mask_png, write_png
    from ..formats.polygons import mask_to_polygons
    from ..inference.embedding import Embedding

    if not args.point and args.box is None:
        raise CliError("empty prompt: give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    check_writable(args.output)
    if args.overlay:
        check_writable(args.overlay)
    image = read_image(args.image)
    height, width = image.shape[:2]
    predictor = load_predictor(args)
    if args.embedding:
        embedding = Embedding.load(args.embedding, device=predictor.device)
        if embedding.original_size != (height, width):
            raise CliError(
                f"embedding {args.embedding} is of a {embedding.width}x{embedding.height} image, "
                f"not {args.image} ({width}x{height})"
            )
    else:
        embedding = predictor.embed(image)
    points = np.array([p[:2] for p in args.point]) if args.point else None
    labels = np.array([p[2] for p in args.point]) if args.point else None
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
        record = {
            "image": Path(args.image).name,
            "height": height,
            "width": width,
            "bbox": mask_bbox_xywh(mask),
            "area": int(mask.sum()),
            "predicted_iou": score,
        }
        if args.format == "coco":
            record["segmentation"] = encode_coco_rle(mask)
        else:
            record["polygons"] = [p.to_json() for p in mask_to_polygons(mask)]
        atomic_write_text(args.output, json.dumps(record))
    if args.overlay:
        write_png(args.overlay, draw_overlay(image, [mask], args.point, args.box))
    print(f"mask: {int(mask.sum())} pixels, predicted IoU {score:.3f} -> {args.output}")
    return 0
