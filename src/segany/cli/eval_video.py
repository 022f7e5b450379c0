"""``segany eval-video``: J, F and J&F (the DAVIS measures) of the video tracker."""

from __future__ import annotations

import argparse
import sys

from . import check_writable
from .common import add_model_options, load_predictor

EXAMPLES = """examples:
  segany eval-video --data clips:1000000:10 --output video_report.json
  segany data clips --output heldout/ --count 10 --seed 1000000
  segany eval-video --data heldout/ --prompt point
  segany eval-video --data DAVIS/ --model vit_b --checkpoint sam_vit_b_01ec64.pth --device cuda

A folder is in the DAVIS layout: Annotations/<clip>/00000.png ... (palette-indexed, one per
frame) and the frames in JPEGImages/<clip>/ or Videos/<clip>.mp4.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval-video",
        help="score the video tracker: J, F and J&F per object (DAVIS measures)",
        description="Each object is prompted once, on its first visible frame, from its "
        "ground-truth mask (its box, or a point at its centre), and tracked through the clip. "
        "J (IoU) and F (boundary) are scored on every frame but the first and the last, as "
        "DAVIS does; J&F is the mean over objects.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", required=True, help="clips:START:COUNT (generated) or a DAVIS-layout folder"
    )
    parser.add_argument(
        "--prompt", choices=("box", "point"), default="box", help="what each object is given"
    )
    parser.add_argument("--frames", type=int, help="frames per generated clip (default 24)")
    parser.add_argument("--size", help="generated frame size WxH (default 320x256)")
    parser.add_argument("--output", help="write the report (json) here")
    add_model_options(parser)
    parser.set_defaults(func=run)


def clip_config(frames: int | None, size: str | None):
    """The generated clips' config from ``--frames`` and ``--size`` (bad values raise)."""
    from dataclasses import replace

    from ..data.clips import ClipConfig

    config = ClipConfig()
    if frames is not None:
        if frames < 1:
            raise ValueError(f"--frames must be at least 1, got {frames}")
        config = replace(config, frames=frames)
    if size is not None:
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise ValueError(
                f"--size {size!r} is malformed; expected WxH such as 320x256"
            ) from None
        if not (32 <= width <= 4096 and 32 <= height <= 4096):
            raise ValueError(f"--size {size}: each side must be within 32-4096 pixels")
        config = replace(config, width=width, height=height)
    return config


def run(args: argparse.Namespace) -> int:
    from ..evaluate.tracking import evaluate_tracker, open_cases

    if args.output:
        check_writable(args.output)
    cases = open_cases(args.data, clip_config(args.frames, args.size))
    first = next(cases, None)  # bad data fails here, before the model loads
    if first is None:
        raise ValueError(f"{args.data}: no clips")
    predictor = load_predictor(args)

    def everything():
        yield first
        yield from cases

    def progress(name: str, jf: float) -> None:
        print(f"{name}: J&F {jf:.3f}", file=sys.stderr)

    report = evaluate_tracker(predictor, everything(), args.prompt, progress=progress)
    report.settings.update(data=args.data, model=args.model, device=args.device)
    print(report.table())
    if args.output:
        report.write_json(args.output)
        print(f"report written to {args.output}")
    return 0
