"""``segany embed``: run the image encoder once and save the embedding."""

from __future__ import annotations

import argparse

from . import check_writable
from .common import add_model_options, load_predictor

EXAMPLES = """examples:
  segany embed photo.jpg --output photo.emb
  segany segment photo.jpg --embedding photo.emb --point 120,80 --output mask.png
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "embed",
        help="compute an image embedding once, for later segment runs",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="image file")
    parser.add_argument("--output", required=True, help="embedding file to write (safetensors)")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..formats.images import read_image

    check_writable(args.output)
    image = read_image(args.image)
    predictor = load_predictor(args)
    embedding = predictor.embed(image)
    embedding.save(args.output)
    print(f"embedded {args.image} ({image.shape[1]}x{image.shape[0]}) -> {args.output}")
    return 0
