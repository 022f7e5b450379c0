"""The paper's mask losses: focal and dice on mask logits, MSE on the predicted IoU."""

from __future__ import annotations

import torch
from torchvision.ops import sigmoid_focal_loss


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Per-mask sigmoid focal loss (torchvision), mean over pixels: ``(..., H, W)`` -> ``(...)``."""
    loss = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss: ``(..., H, W)`` -> ``(...)``."""
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    overlap = (prob * targets).sum(-1)
    return 1 - (2 * overlap + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of binary masks ``(..., H, W)`` -> ``(...)``; 1 when both are empty."""
    pred, target = pred.flatten(-2).bool(), target.flatten(-2).bool()
    inter = (pred & target).sum(-1).float()
    union = (pred | target).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
