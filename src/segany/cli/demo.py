"""``segany demo``: the bundled model segments a held-out generated scene from one click
(:func:`segany.evaluate.demo.run_demo`) and from a phrase (:func:`segany.text.demo.run_text_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="segment a generated scene with the bundled model",
        description="Example: segany demo --output out/demo",
    )
    parser.add_argument("--output", default="out/demo", help="folder for the pictures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.demo import run_demo
    from ..text.demo import run_text_demo

    result = run_demo(Path(args.output))
    print("segany demo: the bundled 'tiny' model (trained by segany on synthetic scenes) segments")
    print(f"  a held-out generated scene from one click at {result.click}:")
    print(
        f"  mask of {result.mask_area} pixels, predicted IoU {result.score:.3f}, "
        f"IoU with the true object mask {result.iou:.3f}"
    )
    print(f"  wrote {', '.join(str(f) for f in result.files)}")
    text = run_text_demo(Path(args.output))
    print(f"  and from the text prompt {text.phrase!r} (the bundled text head, see README):")
    print(
        f"  predicted IoU {text.predicted_iou:.3f}, IoU with the named object {text.iou:.3f}; "
        f"wrote {text.file}"
    )
    print("  (a demonstration model: for photographs use the official checkpoints, see README)")
    return 0
