"""Options and parsing shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fast.precision import PRECISIONS
from ..inference.predictor import Predictor
from ..modeling.sam import Sam

if TYPE_CHECKING:
    from ..distributed.workers import ModelSpec


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="tiny",
        help="tiny (bundled), vit_b / vit_l / vit_h / vit_t (with --checkpoint), a weights file "
        "(official .pth, mobile_sam.pt, segany .safetensors) or a Hugging Face SAM folder",
    )
    group.add_argument("--checkpoint", help="weights file for an official model type")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    group.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="image encoder precision: fp32 (exact), bf16 or int8 (faster on CPUs)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="compile the image encoder with torch.compile (pays off over many images)",
    )


def load_model(args: argparse.Namespace) -> Sam:
    """The model the ``--model``/``--checkpoint``/``--device``/``--precision``/``--compile``
    options name."""
    from ..checkpoints import load

    return load(
        args.model,
        args.checkpoint,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
    )


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """What the model options name, for workers that load it themselves."""
    from ..distributed.workers import ModelSpec

    model, checkpoint = _absolute(args.model), _absolute(args.checkpoint)
    return ModelSpec(model, checkpoint, args.device, args.precision, args.compile)


def _absolute(name: str | None) -> str | None:
    """A weights path made absolute (workers run in folders of their own); names as they are."""
    from ..checkpoints import BUNDLED_WEIGHTS
    from ..config import CONFIGS

    if not name or name in BUNDLED_WEIGHTS or name in CONFIGS or not Path(name).exists():
        return name
    return str(Path(name).absolute())


def load_predictor(args: argparse.Namespace) -> Predictor:
    return Predictor(load_model(args))


def bundled_preset(args: argparse.Namespace) -> str | None:
    """The generator preset for the bundled model (its IoU predictions need lower filters)."""
    return "tiny" if args.model == "tiny" and args.checkpoint is None else None


def _numbers(text: str, count: tuple[int, ...], what: str, example: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is malformed; expected {example}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``X,Y`` or ``X,Y,LABEL`` (1 foreground, default; 0 background)."""
    values = _numbers(text, (2, 3), "point", "X,Y or X,Y,LABEL such as 120,80 or 40,60,0")
    label = int(values[2]) if len(values) == 3 else 1
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"point {text!r} has label {values[2]:g}; expected 1 or 0")
    return values[0], values[1], label


def point_arrays(
    points: list[tuple[float, float, int]],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Parsed ``--point`` values as the predictor's ``(N, 2)`` coordinates and ``(N,)`` labels
    (both ``None`` for no point)."""
    if not points:
        return None, None
    return np.array([p[:2] for p in points]), np.array([p[2] for p in points])


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1``."""
    x0, y0, x1, y1 = _numbers(text, (4,), "box", "X0,Y0,X1,Y1 such as 10,20,200,180")
    return x0, y0, x1, y1
