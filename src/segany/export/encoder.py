"""The image encoder as an ONNX graph, optionally with the preprocessing inside.

Without preprocessing the input is ``images`` ``(B, 3, S, S)`` float32, already resized,
normalised and padded (:func:`~segany.modeling.sam.normalize_and_pad`); with it, ``image``
``(H, W, 3)`` uint8 RGB of any size. The output is ``image_embeddings`` ``(B, 256, S/16, S/16)``.

The in-graph resize is PIL's antialiased bilinear filter (the PyTorch path resizes with PIL),
computed in float32 with PIL's rounding after each pass; a rare pixel may differ by one grey
level where PIL's fixed-point weights round the other way. Weights over 2 GB (ViT-H) go to ``<output>.data`` beside the graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..inference.embedding import encoder_id
from ..inference.transforms import preprocess_shape
from ..modeling.sam import Sam, normalize_and_pad
from .common import DEFAULT_OPSET, gelu_approximation, trace_to_onnx

DUMMY_IMAGE_SIZE = (600, 800)


PIL_PRECISION_BITS = 22  # PIL's fixed-point filter coefficients for 8-bit images


def bilinear_weights(size_in: torch.Tensor, size_out: torch.Tensor) -> torch.Tensor:
    """PIL's antialiased bilinear filter along one axis as a ``(size_out, size_in)`` float64
    matrix of its fixed-point coefficients (integers, scaled by ``2**22``).

    Output pixel ``i`` averages input pixels with a triangle of half-width
    ``max(size_in / size_out, 1)`` centred at ``(i + 0.5) * size_in / size_out``, normalised
    to sum 1. The sizes are 0-d int64 tensors, so the graph builds the matrix at run time.
    """
    # (1,) tensors, not 0-d ones: the ONNX exporter would compute 0-d scalars in float32.
    scale = size_in.reshape(1).to(torch.float64) / size_out.reshape(1).to(torch.float64)
    inverse_width = torch.ones_like(scale) / torch.clamp(scale, min=1.0)
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    pixels = torch.arange(size_in, dtype=torch.float64)
    weights = torch.relu(1.0 - ((pixels[None, :] - centres[:, None] + 0.5) * inverse_width).abs())
    # PIL sums the window left to right; a running sum (zeros outside the window are exact)
    # repeats that order, which decides the rounding where a coefficient is a tie.
    weights = weights / weights.cumsum(dim=1)[:, -1:]
    return torch.floor(weights * 2.0**PIL_PRECISION_BITS + 0.5)


def _round_fixed_point(sums: torch.Tensor) -> torch.Tensor:
    """Rounded fixed-point filter as PIL computes it: ``floor((sum + 2**21) / 2**22)``."""
    half = 2.0 ** (PIL_PRECISION_BITS - 1)
    return torch.floor((sums + half) / 2.0**PIL_PRECISION_BITS).clamp(0, 255)


def resize_like_pil(image: torch.Tensor, height: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` pixels 0-255 -> ``(3, height, width)`` float32, equal to PIL's bilinear
    resize of the uint8 image (the PyTorch path's resize): a horizontal pass, rounding to whole
    grey levels, a vertical pass, rounding, all in exact float64 integer arithmetic. Dense
    matrices keep it two ``MatMul`` nodes, cheap beside the encoder itself."""
    size = torch._shape_as_tensor(image)
    pixels = image.to(torch.float64)
    rows = _round_fixed_point(pixels @ bilinear_weights(size[2], width).T)  # (3, H, width)
    out = _round_fixed_point(bilinear_weights(size[1], height) @ rows)  # (3, height, width)
    return out.to(torch.float32)


class OnnxEncoder(nn.Module):
    """The image encoder, with resize/normalise/pad in front when ``preprocess``."""

    def __init__(self, model: Sam, preprocess: bool = False) -> None:
        super().__init__()
        self.model = model
        self.preprocess = preprocess

    @property
    def input_name(self) -> str:
        return "image" if self.preprocess else "images"

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB -> ``(1, 3, S, S)`` normalised, padded float32."""
        size = torch._shape_as_tensor(image)  # a tensor, so the graph keeps H and W dynamic
        height, width = preprocess_shape(size[0], size[1], self.model.img_size)
        resized = resize_like_pil(image.permute(2, 0, 1), height, width)
        return normalize_and_pad(
            resized.unsqueeze(0), self.model.pixel_mean, self.model.pixel_std, self.model.img_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``images`` ``(B, 3, S, S)`` or ``image`` ``(H, W, 3)`` -> ``(B, D, S/16, S/16)``."""
        if self.preprocess:
            x = self.prepare(x)
        return self.model.image_encoder(x)


def export_encoder(
    model: Sam,
    output: str | os.PathLike[str],
    *,
    preprocess: bool = False,
    gelu_approximate: bool = False,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
) -> Path:
    """Write the image encoder graph to ``output`` (see the module docstring).

    ``external_data``: force (or forbid) weights in ``<output>.data``; by default only graphs
    over 2 GB use it.
    """
    wrapper = OnnxEncoder(model.eval(), preprocess)
    grid = model.config.embedding_size if model.config is not None else model.img_size // 16
    out_chans = model.prompt_encoder.embed_dim
    if preprocess:
        dummy = torch.randint(0, 256, (*DUMMY_IMAGE_SIZE, 3), dtype=torch.uint8)
        dynamic = {"image": {0: "height", 1: "width"}}
        shapes: dict[str, list[int | str]] = {"image_embeddings": [1, out_chans, grid, grid]}
    else:
        dummy = torch.randn(1, 3, model.img_size, model.img_size)
        dynamic = {"images": {0: "batch"}, "image_embeddings": {0: "batch"}}
        shapes = {"image_embeddings": ["batch", out_chans, grid, grid]}
    metadata = {
        "kind": "encoder",
        "config": model.config.to_json() if model.config is not None else "",
        "encoder_id": encoder_id(model),
        "img_size": str(model.img_size),
        "preprocess": "1" if preprocess else "0",
        "options": {"gelu_approximate": gelu_approximate, "opset": opset},
    }
    with gelu_approximation(model, gelu_approximate):
        return trace_to_onnx(
            wrapper,
            (dummy,),
            output,
            input_names=[wrapper.input_name],
            output_names=["image_embeddings"],
            dynamic_axes=dynamic,
            opset=opset,
            metadata=metadata,
            output_shapes=shapes,
            external_data=external_data,
        )
