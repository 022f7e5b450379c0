"""The ``segany`` command: a thin shell over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .export.cli import add_export_parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print("segany demo: a generated sample scene, one click, with a SEEDED RANDOM model.")
    print("  (no trained model is bundled yet, so the mask shows the pipeline, not quality)")
    result = run_demo(Path(args.output))
    print(f"  mask: {result.mask_area} pixels, predicted IoU {result.score:.3f}")
    print(f"  wrote {result.overlay_path} and {result.mask_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segany", description="Segment Anything, from scratch.")
    parser.add_argument("--version", action="version", version=f"segany {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="segment a generated sample scene and write an overlay",
        description="Example: segany demo --output out/demo",
    )
    demo.add_argument("--output", default="out/demo", help="folder for overlay.png and mask.png")
    demo.set_defaults(func=_demo)
    add_export_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
