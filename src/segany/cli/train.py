"""``segany train``: flags map one to one onto :class:`TrainConfig` and :class:`SimulationConfig`."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from ..train.simulation import SimulationConfig
from ..train.trainer import PARTS, TrainConfig, Trainer

EXAMPLES = """examples:
  # the bundled tiny model's recipe (see README): generated scenes, from scratch
  segany data generate --output data/scenes --count 20000
  segany train --data data/scenes --output runs/tiny --steps 4000
  # decoder-only fine-tune of an official checkpoint on COCO
  segany train --init sam_vit_b_01ec64.pth --model vit_b --data instances_train.json \\
      --images train2017/ --freeze image_encoder --lr 1e-4 --output runs/coco
  # two processes of data parallelism
  torchrun --nproc_per_node 2 -m segany train --data data/scenes --output runs/ddp
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or fine-tune with the paper's interactive recipe",
        description="Train with 20*focal + dice + IoU MSE over simulated interactive sessions.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = TrainConfig(data=[], output="")
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        help="SA-1B folder, COCO json (with --images) or generated:START:COUNT; repeatable",
    )
    parser.add_argument(
        "--output", required=True, help="run folder: last.pt, model.safetensors, log.jsonl"
    )
    skip = ("data", "output", "simulation", "freeze", "milestones", "eval_clicks")
    add_field_flags(parser, defaults, skip)
    parser.add_argument(
        "--freeze",
        action="append",
        default=[],
        choices=PARTS,
        help="keep a part fixed; --freeze image_encoder is the decoder-only fine-tune",
    )
    parser.add_argument(
        "--milestones",
        type=float,
        nargs="+",
        default=defaults.milestones,
        help="lr decay points as fractions of --steps",
    )
    add_field_flags(parser, SimulationConfig())
    parser.set_defaults(func=run)


def add_field_flags(
    parser: argparse.ArgumentParser, defaults: Any, skip: tuple[str, ...] = ()
) -> None:
    """One ``--field-name`` flag per field of the dataclass instance ``defaults`` (booleans as
    ``--x/--no-x``), except the fields named in ``skip``."""
    for f in fields(defaults):
        if f.name in skip:
            continue
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            kind = type(value) if value is not None else str
            parser.add_argument(flag, type=kind, default=value, help=f"default: {value}")


def run(args: argparse.Namespace) -> int:
    values = vars(args)
    simulation = SimulationConfig(**{f.name: values[f.name] for f in fields(SimulationConfig)})
    config = TrainConfig(
        simulation=simulation,
        **{
            f.name: values[f.name]
            for f in fields(TrainConfig)
            if f.name in values and f.name != "simulation"
        },
    )
    log_path = None

    def log(record: dict[str, float]) -> None:
        nonlocal log_path
        if log_path is None:
            from pathlib import Path

            Path(config.output).mkdir(parents=True, exist_ok=True)
            log_path = Path(config.output) / "log.jsonl"
        with log_path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")

    result = Trainer(config, on_log=log).train()
    print(f"trained {result.steps_done} steps; weights in {config.output}/model.safetensors")
    return 0
