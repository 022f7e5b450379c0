"""MobileSAM's ``mobile_sam.pt``: a TinyViT image encoder (``image_encoder.patch_embed.seq``,
``image_encoder.layers.N``, ``image_encoder.neck``) with SAM's prompt encoder and mask decoder
under their official keys.

The released encoder also carries TinyViT's ImageNet classifier (``image_encoder.norm_head``,
``image_encoder.head``), which SAM never runs; it is dropped on loading, every other key loads
strictly. The image size is not in the weights (the attention biases are per window): it is
MobileSAM's 1024.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..config import TinyViTConfig
from .base import CheckpointError, StateDict, count_indices

ENCODER_PREFIX = "image_encoder.layers."
CLASSIFIER_PREFIXES = ("image_encoder.norm_head.", "image_encoder.head.")


def is_mobile_sam(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` has a TinyViT image encoder (MobileSAM's layout)."""
    return any(k.startswith(ENCODER_PREFIX) for k in state)


def from_mobile_sam(state: Mapping[str, torch.Tensor]) -> StateDict:
    """MobileSAM's state dict without the unused classifier head (segany's keys otherwise)."""
    return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}


def tiny_vit_config(state: Mapping[str, torch.Tensor], img_size: int = 1024) -> TinyViTConfig:
    """The TinyViT encoder's architecture, read from tensor shapes."""
    enc = "image_encoder."
    try:
        stem = state[f"{enc}patch_embed.seq.2.c.weight"]
        stages = count_indices(state, r"image_encoder\.layers\.(\d+)\.")
        depths = tuple(
            count_indices(state, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.")
            for i in range(stages)
        )
        dims, heads, windows = [stem.shape[0]], [], []
        for i in range(1, stages):
            block = f"{enc}layers.{i}.blocks.0."
            dims.append(state[f"{block}attn.norm.weight"].shape[0])
            biases = state[f"{block}attn.attention_biases"]
            heads.append(biases.shape[0])
            windows.append(math.isqrt(biases.shape[1]))
        first = f"{enc}layers.1.blocks.0."
        return TinyViTConfig(
            img_size=img_size,
            embed_dims=tuple(dims),
            depths=depths,
            num_heads=tuple(heads),
            window_sizes=tuple(windows),
            mlp_ratio=state[f"{first}mlp.fc1.weight"].shape[0] / dims[1],
            mbconv_expand_ratio=state[f"{enc}layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0],
            local_conv_size=state[f"{first}local_conv.c.weight"].shape[-1],
            out_chans=state[f"{enc}neck.0.weight"].shape[0],
        )
    except KeyError as exc:
        raise CheckpointError(f"an incomplete TinyViT encoder: {exc.args[0]} is missing") from None
