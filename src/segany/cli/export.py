"""``segany export onnx``: a thin shell over :func:`segany.export.export_onnx`."""

from __future__ import annotations

import argparse
from typing import Any

from ..export.common import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_output_path


def register(subparsers: Any) -> None:
    """Register ``export onnx`` on the ``segany`` command's subparsers."""
    export = subparsers.add_parser("export", help="export the model to other formats")
    formats = export.add_subparsers(dest="format", required=True)
    _register_onnx(formats)
    _register_safetensors(formats)


def _register_onnx(formats: Any) -> None:
    onnx = formats.add_parser(
        "onnx",
        help="ONNX decoder (official interface), optional encoder, optional int8 copies",
        description=(
            "Example: segany export onnx --model vit_b --checkpoint sam_vit_b_01ec64.pth "
            "--output sam_decoder.onnx --encoder-output sam_encoder.onnx --quantize"
        ),
    )
    onnx.add_argument(
        "--model", required=True, help="model name (vit_b, vit_l, vit_h) or a weights file"
    )
    onnx.add_argument("--checkpoint", help="weights file for an official model name")
    onnx.add_argument("--output", required=True, help="decoder graph to write (.onnx)")
    onnx.add_argument("--encoder-output", help="also write the image encoder graph here")
    onnx.add_argument(
        "--encoder-preprocess",
        action="store_true",
        help="encoder graph takes an (H, W, 3) uint8 image: resize/normalise/pad inside",
    )
    onnx.add_argument(
        "--quantize", action="store_true", help="also write dynamic int8 copies (*.int8.onnx)"
    )
    onnx.add_argument(
        "--return-single-mask",
        action="store_true",
        help="decoder returns only the best mask (official select rule)",
    )
    onnx.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    onnx.add_argument(
        "--gelu-approximate",
        action="store_true",
        help="tanh GELU, for runtimes without an Erf operator",
    )
    onnx.add_argument(
        "--use-stability-score",
        action="store_true",
        help="return the stability score instead of the predicted IoU",
    )
    onnx.add_argument(
        "--return-extra-metrics",
        action="store_true",
        help="also return stability_scores and areas of the upscaled masks",
    )
    onnx.add_argument(
        "--hq-token-only",
        action="store_true",
        help="HQ-SAM models: the masks are the HQ token's alone",
    )
    onnx.set_defaults(func=run_export)


def _register_safetensors(formats: Any) -> None:
    weights = formats.add_parser(
        "safetensors",
        help="segany's own weights format, optionally in float16 (how the bundled model ships)",
        description="Example: segany export safetensors --model runs/tiny/model.safetensors "
        "--half --output tiny.safetensors",
    )
    weights.add_argument("--model", required=True, help="model name or weights file")
    weights.add_argument("--checkpoint", help="weights file for an official model name")
    weights.add_argument("--output", required=True, help="file to write (.safetensors)")
    weights.add_argument("--half", action="store_true", help="store float16 (half the size)")
    weights.set_defaults(func=run_export_weights)


def run_export_weights(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoints import load, save_checkpoint

    check_output_path(args.output)
    model = load(args.model, args.checkpoint)
    save_checkpoint(model, args.output, dtype=torch.float16 if args.half else torch.float32)
    print(f"wrote {args.output}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..checkpoints import load
    from ..export import export_onnx

    # Fail on unwritable outputs before spending time loading weights.
    check_output_path(args.output)
    if args.encoder_output:
        check_output_path(args.encoder_output)
    model = load(args.model, args.checkpoint)
    try:
        files = export_onnx(
            model,
            args.output,
            encoder_output=args.encoder_output,
            encoder_preprocess=args.encoder_preprocess,
            quantize=args.quantize,
            return_single_mask=args.return_single_mask,
            use_stability_score=args.use_stability_score,
            return_extra_metrics=args.return_extra_metrics,
            gelu_approximate=args.gelu_approximate,
            opset=args.opset,
            hq_token_only=args.hq_token_only,
        )
    except ImportError as exc:  # the optional onnx packages
        raise ValueError(str(exc)) from None
    for label, path in vars(files).items():
        if path is not None:
            print(f"wrote {label}: {path}")
    return 0
