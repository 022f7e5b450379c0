"""TinyViT, MobileSAM's image encoder (Wu et al. 2022; Zhang et al. 2023, "Faster Segment
Anything"): a drop-in replacement for SAM's ViT that maps a ``(B, 3, S, S)`` image to the same
``(B, 256, S/16, S/16)`` embedding.

A convolutional stem (stride 4) and stage of inverted-residual blocks, then three stages of
transformer blocks whose attention runs in non-overlapping windows with a learned bias per
relative offset, each block followed by a depthwise convolution that mixes across windows.
Stages are joined by convolutional patch merging (stride 2, except into the last stage, which
SAM's variant keeps at 1/16 so the grid matches SAM's decoder). SAM's neck closes it.

Parameter names follow MobileSAM's released checkpoint (``patch_embed.seq``, ``layers.N``, the
``c``/``bn`` pairs, ``attention_biases``), so ``mobile_sam.pt`` loads strictly. Feature maps
travel channels-first ``(B, C, H, W)`` through the convolutions and channels-last
``(B, H, W, C)`` through the transformer blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TinyViTConfig
from .common import encoder_neck


class ConvBN(nn.Sequential):
    """A bias-free convolution then batch norm (``c``, ``bn``); 'same' padding.
    ``(B, C, H, W) -> (B, C', H / stride, W / stride)``."""

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: ``(B, 3, S, S) -> (B, D, S/4, S/4)``."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU.
    ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depthwise conv with ``stride``, 1x1 conv:
    ``(B, C, H, W) -> (B, C', H / stride, W / stride)``."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


def offset_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` index into the bias table for each pair of positions in a window:
    ``|dy| * w + |dx|`` (the table has one entry per absolute offset)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class WindowAttention(nn.Module):
    """Pre-norm multi-head attention over the tokens of one window, with a learned bias per
    head and absolute offset: ``softmax(q kᵀ / sqrt(d) + bias) v``.
    ``(N, w*w, C) -> (N, w*w, C)``."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # per head: q, k, v side by side
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("bias_index", offset_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(self.norm(x)).view(n, tokens, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).chunk(3, dim=-1)  # each (N, heads, w*w, d)
        bias = self.attention_biases[:, self.bias_index]  # (heads, w*w, w*w)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class FeedForward(nn.Module):
    """Pre-norm MLP (``norm``, ``fc1``, GELU, ``fc2``): ``(..., C) -> (..., C)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` zero-padded to multiples of ``window`` and cut into windows
    ``(B * nh * nw, window², C)``; also returns the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, -w % window, 0, -h % window))
    hp, wp = x.shape[1:3]
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c), (hp, wp)


def from_windows(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`to_windows`: ``(B * nh * nw, window², C) -> (B, H, W, C)``."""
    (hp, wp), (h, w) = padded, size
    c = windows.shape[-1]
    x = windows.view(-1, hp // window, wp // window, window, window, c).transpose(2, 3)
    return x.reshape(-1, hp, wp, c)[:, :h, :w]


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise convolution across the whole map, an MLP; residuals
    around attention and MLP. ``(B, H, W, C) -> (B, H, W, C)``."""

    def __init__(
        self, dim: int, num_heads: int, window: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[1], x.shape[2])
        windows, padded = to_windows(x, self.window)
        x = x + from_windows(self.attn(windows), self.window, padded, size)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class Stage(nn.Module):
    """A stage's blocks and the patch merging that follows it (``downsample``, absent after
    the last stage). ``(B, C, H, W) -> (B, C', H', W')``."""

    def __init__(self, blocks: list[nn.Module], downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.channels_last = not isinstance(blocks[0], MBConv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


def _stage(config: TinyViTConfig, i: int) -> Stage:
    dim, depth = config.embed_dims[i], config.depths[i]
    blocks: list[nn.Module]
    if i == 0:
        blocks = [MBConv(dim, config.mbconv_expand_ratio) for _ in range(depth)]
    else:
        heads, window = config.num_heads[i - 1], config.window_sizes[i - 1]
        blocks = [
            TinyViTBlock(dim, heads, window, config.mlp_ratio, config.local_conv_size)
            for _ in range(depth)
        ]
    last = len(config.depths) - 1
    downsample = None
    if i < last:
        stride = 1 if i + 1 == last else 2  # the last stage keeps the 1/16 grid
        downsample = PatchMerging(dim, config.embed_dims[i + 1], stride)
    return Stage(blocks, downsample)


class TinyViT(nn.Module):
    """MobileSAM's image encoder: ``(B, 3, S, S)`` normalised pixels ->
    ``(B, out_chans, S/16, S/16)`` embeddings."""

    def __init__(self, config: TinyViTConfig) -> None:
        super().__init__()
        self.img_size = config.img_size
        self.patch_embed = PatchEmbed(config.embed_dims[0])
        self.layers = nn.ModuleList(_stage(config, i) for i in range(len(config.depths)))
        self.neck = encoder_neck(config.embed_dims[-1], config.out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
