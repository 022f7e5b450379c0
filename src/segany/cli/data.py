"""``segany data generate``: write procedural scenes as SA-1B-format files."""

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


def run_generate(args: argparse.Namespace) -> int:
    from ..data.shards import write_generated_shards

    if args.count < 1:
        raise ValueError("--count must be at least 1")
    written = write_generated_shards(args.output, args.seed, args.count)
    print(f"{written} new scenes written to {args.output} ({args.count - written} already there)")
    return 0
