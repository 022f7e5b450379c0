"""``segany engine …``: the data engine's commands (init, prefill, auto, retrain, simulate,
stats, export). Options live here; each command's work is in its own module."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from .common import add_model_options
from .scale import add_ray_options

EXAMPLES = """the three gears on a folder of your own:
  segany engine init project --images photos/
  segany annotate project                         # gear 1: people click, the model helps
  segany engine retrain project --output models/r1
  segany engine prefill project                   # gear 2: confident masks pre-filled
  segany annotate project                         #   people add the missing objects
  segany engine auto project --preset sa1b        # gear 3: the model alone
  segany engine auto project --ray auto --workers 8 --gpus-per-worker 1 --device cuda
                                                  #   gear 3 on a Ray cluster
  segany engine stats project
  segany engine export project --output shards/ --format sa1b
"""


def _runner(module: str, name: str) -> Any:
    """Import the command's module only when it runs (the CLI starts fast)."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)

    return run


def _model_options(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    # Without --model the gears use the project's newest model version.
    parser.set_defaults(model=None)


# long: one block per subcommand, the options each takes
def register(sub: argparse._SubParsersAction) -> None:
    engine = sub.add_parser(
        "engine",
        help="the data engine: annotation projects, the three gears, retraining, statistics",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = engine.add_subparsers(
        dest="engine_command", required=True, parser_class=type(engine)
    )

    init = commands.add_parser("init", help="create a project, or add new images to one")
    init.add_argument("project", help="project folder")
    init.add_argument("--images", required=True, help="folder of images to add")
    init.add_argument(
        "--db",
        help="database URL (default: SQLite in the project folder), "
        "such as postgresql://user@host/dbname",
    )
    init.set_defaults(func=_runner("engine_store", "run_init"))

    prefill = commands.add_parser(
        "prefill",
        help="gear 2: pre-fill the confident masks",
        description="Gear 2: the automatic generator with strict filters (the prefill preset; "
        "prefill-tiny for the tiny architecture) stores each unfinished image's confident masks "
        "as proposals for annotators. Resumable: images with proposals are skipped.",
    )
    prefill.add_argument("project", help="project folder")
    _model_options(prefill)
    prefill.set_defaults(func=_runner("engine_gears", "run_prefill"))

    auto = commands.add_parser("auto", help="gear 3: segment every image not yet done")
    auto.add_argument("project", help="project folder")
    _model_options(auto)
    auto.add_argument(
        "--preset",
        default="sa1b",
        help="generator settings (default: sa1b). The tiny architecture (the bundled model, "
        "or one retrained from it) predicts lower IoUs than SAM, so it runs the preset's -tiny "
        "variant where there is one: sa1b's grid and crops with the tiny preset's filters",
    )
    auto.add_argument(
        "--workers", type=int, default=1, help="worker processes, or Ray workers (default 1)"
    )
    add_ray_options(auto, workers=False)
    auto.set_defaults(func=_runner("engine_gears", "run_auto"))

    retrain = commands.add_parser("retrain", help="fine-tune on the accepted masks")
    retrain.add_argument("project", help="project folder")
    retrain.add_argument("--output", required=True, help="folder for the new model")
    retrain.add_argument("--init", help="model to start from (default: the newest version)")
    retrain.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    retrain.add_argument("--device", default="cpu", help="cpu, cuda ...")
    retrain.set_defaults(func=_runner("engine_loop", "run_retrain"))

    simulate = commands.add_parser(
        "simulate", help="a simulated annotator for gear 1 or 2, against ground truth"
    )
    simulate.add_argument("project", help="project folder")
    simulate.add_argument(
        "--ground-truth", required=True, help="ground-truth masks: SA-1B json folder or COCO json"
    )
    simulate.add_argument("--gear", type=int, required=True, choices=(1, 2))
    simulate.add_argument(
        "--clicks-per-mask", type=int, default=5, help="most clicks spent on one mask (default 5)"
    )
    simulate.add_argument("--images", type=int, help="annotate at most this many images")
    simulate.add_argument("--annotator", default="simulated", help="name recorded as annotator")
    _model_options(simulate)
    simulate.set_defaults(func=_runner("engine_loop", "run_simulate"))

    stats = commands.add_parser("stats", help="the paper's table for this project")
    stats.add_argument("project", help="project folder")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_runner("engine_store", "run_stats"))

    export = commands.add_parser("export", help="write SA-1B shards or COCO instances")
    export.add_argument("project", help="project folder")
    export.add_argument(
        "--output", required=True, help="output folder (an earlier export there is replaced)"
    )
    export.add_argument("--format", choices=("sa1b", "coco"), default="sa1b")
    export.add_argument(
        "--gear",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="only masks of this gear (repeatable)",
    )
    export.add_argument(
        "--min-iou",
        type=float,
        help="drop model-made masks with predicted IoU below this (people's masks are kept)",
    )
    export.set_defaults(func=_runner("engine_store", "run_export"))
