"""``segany eval``: the zero-shot point protocol on SA-1B, COCO or generated data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluate.protocol import DEFAULT_CLICKS

EXAMPLES = """examples:
  segany eval --data generated:1000000:200 --model tiny
  segany eval --data sa1b_shard/ --model sam_vit_b_01ec64.pth --per-object objects.csv
  segany eval --data instances_val2017.json --images val2017/ --model vit_h \\
      --checkpoint sam_vit_h_4b8939.pth --clicks 1 2 3 5 9 --output report.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="score a model with the paper's interactive point protocol",
        description="First click at the object's centre, then at the centre of the larger error "
        "region; mIoU after N clicks, and the 1-click oracle (best of 3).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        help="SA-1B folder, COCO json (with --images) or generated:START:COUNT; repeatable",
    )
    parser.add_argument("--images", help="image folder for a COCO annotation file")
    parser.add_argument(
        "--model",
        default="tiny",
        help="tiny, vit_b/vit_l/vit_h (with --checkpoint), or a weights file",
    )
    parser.add_argument("--checkpoint", help="weights for an official model type")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, nargs="+", default=list(DEFAULT_CLICKS))
    parser.add_argument(
        "--no-mask-feedback",
        action="store_true",
        help="do not feed the previous low-res logits back as the mask prompt",
    )
    parser.add_argument("--max-objects", type=int, help="objects per image at most")
    parser.add_argument("--output", help="write the summary json here")
    parser.add_argument("--per-object", help="write per-object IoUs here (.csv, else json lines)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import load
    from ..data.datasets import open_dataset
    from ..evaluate.protocol import evaluate
    from ..inference.predictor import Predictor

    datasets = {Path(spec).name or spec: open_dataset(spec, args.images) for spec in args.data}
    predictor = Predictor(load(args.model, args.checkpoint, device=args.device))
    report = evaluate(
        predictor,
        datasets,
        args.clicks,
        feed_back_logits=not args.no_mask_feedback,
        max_objects_per_image=args.max_objects,
    )
    summary = report.summary()
    for name, result in summary["datasets"].items():
        scores = "  ".join(
            f"{k} click{'s' if k != '1' else ''}: {v:.3f}" for k, v in result["miou"].items()
        )
        print(
            f"{name}: {result['objects']} objects  mIoU  {scores}  oracle@1: {result['oracle_miou_1']:.3f}"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))
    if args.per_object:
        report.write_objects(args.per_object)
    return 0
