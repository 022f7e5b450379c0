"""Seeded random weights for tests and benchmarks: every tensor of a state dict filled with
values of a sensible scale, so parity checks exercise all parameters (the default init leaves
relative positions and absolute positions at zero)."""

from __future__ import annotations

import math

import torch


def random_state_dict(reference: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Same keys and shapes as ``reference``, filled deterministically from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name in sorted(reference):
        shape = reference[name].shape
        if not reference[name].is_floating_point():  # counters (batch norm's batches seen)
            out[name] = reference[name].clone()
            continue
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name.endswith("positional_encoding_gaussian_matrix"):
            value = noise
        elif "rel_pos" in name or name.endswith("pos_embed"):
            value = 0.1 * noise
        elif name.endswith("bias"):
            value = 0.02 * noise
        elif len(shape) == 1:  # norm weights
            value = 1.0 + 0.1 * noise
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            if "output_upscaling" in name and len(shape) == 4:  # ConvTranspose: (in, out, k, k)
                fan_in = shape[0]
            value = noise / math.sqrt(fan_in)
        out[name] = value
    return out


def region_mask_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the mask head's transposed-convolution kernels made constant over their
    2x2 positions (a copy). With fully random kernels every image token paints the same 4x4
    checker pattern, so every random-weight mask is texture spread over the whole image and box
    NMS leaves one survivor; with constant kernels masks are regions of varied size and place,
    which is what tests and benchmarks of the automatic mask generator need."""
    out = dict(state)
    for index in (0, 3):  # the two ConvTranspose2d layers of output_upscaling
        name = f"mask_decoder.output_upscaling.{index}.weight"
        out[name] = state[name][:, :, :1, :1].expand_as(state[name]).contiguous()
    return out
