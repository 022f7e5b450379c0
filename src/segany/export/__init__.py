"""ONNX export and the onnxruntime backend.

- :func:`export_onnx`: the decoder graph (official ``SamOnnxModel`` interface), optionally the
  encoder graph (with or without preprocessing) and int8 copies; ``segany export onnx`` is the
  same from the command line.
- :func:`load_onnx` / :class:`OnnxPredictor`: :class:`~segany.Predictor`'s API on onnxruntime.

``onnx`` and ``onnxruntime`` are optional (``pip install 'segany[onnx]'``); they are imported
only when a function needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..modeling.sam import Sam
from .common import DEFAULT_OPSET, check_output_path, read_metadata
from .decoder import OnnxDecoder, export_decoder
from .encoder import OnnxEncoder, export_encoder
from .quantize import quantize_onnx, quantized_path
from .runtime import OnnxPredictor, load_onnx


@dataclass(frozen=True)
class ExportedFiles:
    """Paths written by :func:`export_onnx` (``None`` where not asked for)."""

    decoder: Path
    encoder: Path | None = None
    decoder_int8: Path | None = None
    encoder_int8: Path | None = None


def export_onnx(
    model: Sam,
    output: str | os.PathLike[str],
    *,
    encoder_output: str | os.PathLike[str] | None = None,
    encoder_preprocess: bool = False,
    quantize: bool = False,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    gelu_approximate: bool = False,
    opset: int = DEFAULT_OPSET,
    hq_token_only: bool = False,
) -> ExportedFiles:
    """Export the decoder to ``output`` and, with ``encoder_output``, the image encoder
    (``encoder_preprocess``: resize/normalise/pad inside). ``quantize`` also writes
    ``<name>.int8.onnx`` copies. ``hq_token_only`` (HQ-SAM models): the graph's masks are the
    HQ mask alone. The other flags are the official export script's."""
    check_output_path(output)
    if encoder_output is not None:
        check_output_path(encoder_output)
    if quantize:
        check_output_path(quantized_path(output))
    decoder = export_decoder(
        model,
        output,
        return_single_mask=return_single_mask,
        use_stability_score=use_stability_score,
        return_extra_metrics=return_extra_metrics,
        gelu_approximate=gelu_approximate,
        opset=opset,
        hq_token_only=hq_token_only,
    )
    encoder = None
    if encoder_output is not None:
        encoder = export_encoder(
            model,
            encoder_output,
            preprocess=encoder_preprocess,
            gelu_approximate=gelu_approximate,
            opset=opset,
        )
    return ExportedFiles(
        decoder=decoder,
        encoder=encoder,
        decoder_int8=quantize_onnx(decoder) if quantize else None,
        encoder_int8=quantize_onnx(encoder) if (quantize and encoder is not None) else None,
    )


__all__ = [
    "ExportedFiles",
    "OnnxDecoder",
    "OnnxEncoder",
    "OnnxPredictor",
    "export_decoder",
    "export_encoder",
    "export_onnx",
    "load_onnx",
    "quantize_onnx",
    "read_metadata",
]
