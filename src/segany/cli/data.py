"""``segany data generate``: procedural scenes as SA-1B-format files; ``segany data clips``:
procedural video clips in the DAVIS layout."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="make training data",
        description="Example: segany data generate --output data/scenes --count 20000",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    generate = actions.add_parser(
        "generate",
        help="write generated scenes as SA-1B json + PNG (resumable)",
        description="Example: segany data generate --output data/scenes --count 20000 --seed 0",
    )
    generate.add_argument("--output", required=True, help="folder for sa_<seed>.png/.json")
    generate.add_argument("--count", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0, help="first scene seed")
    generate.set_defaults(func=run_generate)
    clips = actions.add_parser(
        "clips",
        help="write generated video clips with exact masks in the DAVIS layout (resumable)",
        description="Example: segany data clips --output heldout/ --count 10 --seed 1000000 "
        "(JPEGImages/<clip>/, Videos/<clip>.mp4, Annotations/<clip>/ palette PNGs)",
    )
    clips.add_argument("--output", required=True, help="the DAVIS-layout folder")
    clips.add_argument("--count", type=int, required=True)
    clips.add_argument("--seed", type=int, default=1_000_000, help="first clip seed")
    clips.add_argument("--frames", type=int, help="frames per clip (default 24)")
    clips.add_argument("--size", help="frame size WxH (default 320x256)")
    clips.set_defaults(func=run_clips)


def run_generate(args: argparse.Namespace) -> int:
    from ..data.shards import write_generated_shards

    if args.count < 1:
        raise ValueError("--count must be at least 1")
    written = write_generated_shards(args.output, args.seed, args.count)
    print(f"{written} new scenes written to {args.output} ({args.count - written} already there)")
    return 0


def run_clips(args: argparse.Namespace) -> int:
    from ..evaluate.clip_files import write_generated_clips
    from . import check_writable
    from .eval_video import clip_config

    if args.count < 1 or args.seed < 0:
        raise ValueError("--count must be at least 1 and --seed at least 0")
    config = clip_config(args.frames, args.size)
    check_writable(args.output, folder=True)
    seeds = range(args.seed, args.seed + args.count)
    written = write_generated_clips(args.output, seeds, config)
    print(f"{written} new clips written to {args.output} ({args.count - written} already there)")
    return 0
