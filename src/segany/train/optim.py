"""Optimiser parameter groups (layer-wise lr decay for the ViT, no weight decay on norms,
biases, positions and embeddings) and the warmup + step-decay schedule."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

_NO_DECAY = re.compile(
    r"(bias$|norm|pos_embed|rel_pos|embed\.weight|_embeddings\.|mask_tokens|iou_token|neck\.[13]\.)"
)


def encoder_layer_id(name: str, depth: int) -> int:
    """BEiT/MAE layer numbering: patch embedding and positions 0, block i is i + 1, the neck
    ``depth + 1``. Parameters outside the encoder count as the top layer too."""
    if not name.startswith("image_encoder."):
        return depth + 1
    if ".patch_embed." in name or name.endswith("pos_embed"):
        return 0
    match = re.search(r"\.blocks\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else depth + 1


def parameter_groups(
    model: nn.Module, weight_decay: float, layer_decay: float, depth: int
) -> list[dict]:
    """AdamW groups; each carries ``lr_scale = layer_decay ** (depth + 1 - layer_id)``."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = encoder_layer_id(name, depth)
        decay = param.ndim > 1 and not _NO_DECAY.search(name)
        key = (layer, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - layer),
            }
        groups[key]["params"].append(param)
    return list(groups.values())


@dataclass(frozen=True)
class Schedule:
    """Linear warmup to ``lr``, then multiply by ``decay_factor`` at each milestone step."""

    lr: float
    warmup_steps: int
    milestones: tuple[int, ...]
    decay_factor: float = 0.1

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        passed = sum(step >= m for m in self.milestones)
        return self.lr * self.decay_factor**passed
