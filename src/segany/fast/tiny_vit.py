"""Speed routes for MobileSAM's TinyViT encoder (:mod:`segany.modeling.tiny_vit`).

- **Channels-last feature maps.** The reference hands its convolutions ``(B, C, H, W)``
  tensors in the default (channels-first) memory layout; on the CPU, oneDNN's depthwise
  convolutions are an order of magnitude faster on channels-last memory. :class:`FastTinyViT`
  makes the input channels-last once; convolutions, GELU and adds keep that layout, and the
  transformer stages' ``permute`` to ``(B, H, W, C)`` then costs no copy.
- **Batch norm folded into the convolution.** In eval mode batch norm is a fixed per-channel
  affine map, so ``bn(conv(x))`` is one convolution with weight ``w * s`` and bias
  ``beta - mean * s`` (``s = gamma / sqrt(var + eps)``): one pass over the activation instead of
  two. The fold is recomputed on each call from the module's own (small) parameters, so nothing
  is cached; in training mode, where batch norm uses the batch's statistics, the reference runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..modeling.tiny_vit import ConvBN, TinyViT


class FoldedConvBN(ConvBN):
    """:class:`~segany.modeling.tiny_vit.ConvBN` as one convolution in eval mode.
    ``(B, C, H, W) -> (B, C', H / stride, W / stride)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        conv, bn = self.c, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class FastTinyViT(TinyViT):
    """:class:`~segany.modeling.tiny_vit.TinyViT` on channels-last memory:
    ``(B, 3, S, S) -> (B, out_chans, S/16, S/16)`` (the output channels-last too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))
