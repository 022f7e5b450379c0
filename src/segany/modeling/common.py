"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.num_channels = num_channels  # a Python int, so traced graphs keep it constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        channels_last = x.permute(0, 2, 3, 1)
        normed = F.layer_norm(channels_last, (self.num_channels,), self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


def encoder_neck(in_dim: int, out_chans: int) -> nn.Sequential:
    """SAM's neck after any image encoder: ``(B, in_dim, h, w)`` -> ``(B, out_chans, h, w)``
    by a 1x1 and a 3x3 convolution, each layer-normed (keys ``neck.0``..``neck.3``)."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


class MLPBlock(nn.Module):
    """Two linear layers with an activation between: the transformer feed-forward block."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D) -> (..., D)``."""
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (hypernetworks and the IoU head)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., input_dim) -> (..., output_dim)``."""
        *hidden, last = self.layers
        for layer in hidden:
            x = F.relu(layer(x))
        x = last(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
