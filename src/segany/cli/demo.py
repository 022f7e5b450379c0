"""``segany demo``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="segment a generated sample scene and write an overlay",
        description="Example: segany demo --output out/demo",
    )
    parser.add_argument("--output", default="out/demo", help="folder for overlay.png and mask.png")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    print("segany demo: a generated sample scene, one click, with a SEEDED RANDOM model.")
    print("  (no trained model is bundled yet, so the mask shows the pipeline, not quality)")
    result = run_demo(Path(args.output))
    print(f"  mask: {result.mask_area} pixels, predicted IoU {result.score:.3f}")
    print(f"  wrote {result.overlay_path} and {result.mask_path}")
    return 0
