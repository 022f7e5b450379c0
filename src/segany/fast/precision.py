"""Inference precision and compilation: the one place a loaded model is made faster.

``fp32`` is the parity path (the model as built). ``bf16`` runs the image encoder with bfloat16
weights and activations (inputs cast on the way in, embeddings back to float32 on the way out;
on the CPU its linear layers run on oneDNN-packed weights, see :mod:`segany.fast.packed_linear`),
``int8`` replaces the encoder's linear layers with dynamically quantized int8 ones. The prompt
encoder and mask decoder always stay float32. ``compile`` wraps the image encoder in
``torch.compile`` with static shapes: every image reaches it as the same padded square, so it
compiles once. At every precision the model gets segany's speed routes
(:func:`segany.fast.model.install_fast_routes`); model code stays plain ``nn.Module``, this
module only converts, installs and wraps.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import torch
from torch import nn

from ..modeling.sam import Sam
from .model import install_fast_routes
from .packed_linear import pack_linear_layers
from .routes import packs_linear_layers

PRECISIONS = ("fp32", "bf16", "int8")


def check_precision(precision: str) -> None:
    """``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported; expected one of {PRECISIONS}")


def _to_dtype(dtype: torch.dtype) -> Any:
    """A forward pre-hook casting floating-point inputs to ``dtype``."""

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args
        )

    return hook


def _to_float32(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """A forward hook returning the output as float32 (embeddings are float32 at every edge);
    each of a tuple's tensors for an encoder with several outputs (HQ-SAM's)."""
    if isinstance(output, tuple):
        return tuple(t.float() for t in output)
    return output.float()


def encoder_id(model: Sam) -> str:
    """A short fingerprint of the encoder weights, to catch embeddings used with another model.
    A model converted to another precision keeps the fingerprint of its float32 weights."""
    kept = getattr(model.image_encoder, "segany_encoder_id", None)
    if isinstance(kept, str):
        return kept
    digest = hashlib.sha256()
    encoder = model.image_encoder
    neck = encoder.neck
    # the stem's first bias: the patch projection's (ViT), the first batch norm's (TinyViT)
    stem = next(p for n, p in encoder.patch_embed.named_parameters() if n.endswith("bias"))
    for tensor in (neck[3].weight, neck[3].bias, stem):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def quantize_linear_int8(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Linear`` replaced by a dynamically quantized int8 linear
    (int8 weights per output channel, activations quantized per call); in place."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )


def optimize(model: Sam, precision: str = "fp32", *, compile: bool = False) -> Sam:
    """Set ``model`` (in place, also returned) up for inference at ``precision``, with the speed
    routes installed; optionally compile its image encoder. Works on any :class:`Sam`, including
    ``sam_model_registry`` builds and plain ``segany.modeling`` ones. Call once, on a model used
    only for inference (``int8`` on the CPU only)."""
    check_precision(precision)
    encoder = model.image_encoder
    if getattr(encoder, "segany_precision", "fp32") != "fp32":
        raise ValueError(f"the model is already set up for {encoder.segany_precision}")
    install_fast_routes(model)
    model.eval()
    if precision != "fp32":  # embeddings stay interchangeable between precisions
        encoder.segany_encoder_id = encoder_id(model)
    if precision == "bf16":
        encoder.to(torch.bfloat16)
        if packs_linear_layers(model.device.type, compile):
            pack_linear_layers(encoder)
        encoder.register_forward_pre_hook(_to_dtype(torch.bfloat16))
        encoder.register_forward_hook(_to_float32)
    elif precision == "int8":
        if model.device.type != "cpu":
            raise ValueError("int8 precision runs on the CPU only")
        quantize_linear_int8(encoder)
    encoder.segany_precision = precision
    if compile:
        encoder.compile(dynamic=False)
    return model


__all__ = ["PRECISIONS", "check_precision", "encoder_id", "optimize", "quantize_linear_int8"]
