"""ViTDet-style image encoder: patch embedding, windowed and global attention blocks with
decomposed relative positions, and a convolutional neck down to the prompt embedding width.

The reference model: attention is the plain formula. Faster routes for the same modules (the
bias in blocks, blockwise bfloat16 attention, projections of real tokens only in windows) live
in :mod:`segany.fast.attention`, installed by :func:`segany.optimize`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EncoderConfig
from .common import LayerNorm2d, MLPBlock, encoder_neck  # noqa: F401 (LayerNorm2d: the official module path has it)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to channels-last tokens: ``(B, 3, H, W) -> (B, H/p, W/p, C)``."""

    def __init__(
        self,
        kernel_size: tuple[int, int] = (16, 16),
        stride: tuple[int, int] = (16, 16),
        padding: tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous: a permuted view would carry its strides through every residual add, and
        # every LayerNorm would copy it
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Embeddings for every (query, key) offset along one axis.

    ``rel_pos`` is ``(L, C)``; it is linearly resized when ``L != 2 * max(q, k) - 1``.
    Returns ``(q_size, k_size, C)``.
    """
    span = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != span:
        resized = F.interpolate(rel_pos.T.unsqueeze(0), size=span, mode="linear")
        rel_pos = resized.squeeze(0).T
    q_stride = max(k_size / q_size, 1.0)
    k_stride = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_stride
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_stride
    offsets = q_coords - k_coords + (k_size - 1) * k_stride
    return rel_pos[offsets.long()]


def decomposed_rel_pos_terms(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    key_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the MViTv2 decomposed relative-position term.

    ``q`` is ``(B, heads, H*W, C)`` (unscaled queries on an ``H x W`` grid; keys on a
    ``key_size`` grid, by default the same). Returns ``(B, heads, H, W, Hk)`` (query row and
    column, key row) and ``(B, heads, H, W, Wk)`` (key column); the bias of query ``(i, j)`` and
    key ``(k, l)`` is ``rel_h[..., i, j, k] + rel_w[..., i, j, l]``.
    """
    h, w = size
    key_h, key_w = size if key_size is None else key_size
    table_h = relative_position_table(h, key_h, rel_pos_h).to(q.dtype)  # (h, Hk, C)
    table_w = relative_position_table(w, key_w, rel_pos_w).to(q.dtype)  # (w, Wk, C)
    grid_q = q.unflatten(2, (h, w))  # (B, heads, h, w, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, table_h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, table_w)
    return rel_h, rel_w


def rel_pos_bias(rel_h: torch.Tensor, rel_w: torch.Tensor) -> torch.Tensor:
    """The attention bias of rows of queries: ``(B, n, r, W, H)`` and ``(B, n, r, W, W)`` terms
    (see :func:`decomposed_rel_pos_terms`) -> ``(B, n, r*W, H*W)``."""
    b, n, rows, w, _ = rel_h.shape
    bias = rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)  # (B, n, r, W, H, W)
    return bias.contiguous().view(b, n, rows * w, -1)


# the official helpers' names and signatures, for code that imports them
get_rel_pos = relative_position_table


def add_decomposed_rel_pos(
    attn: torch.Tensor,
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """``attn`` ``(B, q_h*q_w, k_h*k_w)`` plus the decomposed relative-position bias of the
    queries ``q`` ``(B, q_h*q_w, C)``."""
    terms = decomposed_rel_pos_terms(q[:, None], rel_pos_h, rel_pos_w, q_size, k_size)
    return attn + rel_pos_bias(*terms)[:, 0]


class Attention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` grid, with optional relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos=True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """The attention between the two projections: ``(B, H, W, 3C)`` output of ``qkv`` ->
        ``(B, H, W, C)`` input of ``proj``."""
        b, h, w, _ = qkv.shape
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, H*W, head_dim)
        return self.attend_heads(q, k, v, (h, w)).view(b, h, w, -1)

    def attend_heads(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``softmax(scale q k^T + bias) v`` per head, the bias from relative positions (if
        used): ``(B, heads, H*W, C)`` queries, keys, values -> ``(B, H*W, heads * C)``."""
        bias = None
        if self.use_rel_pos:
            terms = decomposed_rel_pos_terms(q, self.rel_pos_h, self.rel_pos_w, size)
            bias = rel_pos_bias(*terms)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return out.transpose(1, 2).flatten(2)


def window_partition(
    x: torch.Tensor, window_size: int, fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B * nW, window, window, C)``, padding H and W up to
    multiples of ``window_size`` with zeros, or with the ``(C,)`` vector ``fill``; also returns
    the padded ``(Hp, Wp)``."""
    window = window_size
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    hp, wp = h + pad_h, w + pad_w
    if pad_h or pad_w:
        value = 0.0 if fill is None else fill
        grid = x.new_empty(b, hp, wp, c)
        grid[:, h:] = value
        grid[:, :h, w:] = value
        grid[:, :h, :w] = x
        x = grid
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.transpose(2, 3).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, window, window, C) -> (B, H, W, C)``
    for the padded ``pad_hw`` and original ``hw`` grid sizes."""
    window = window_size
    (hp, wp), (h, w) = pad_hw, hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.transpose(2, 3).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp > h or wp > w) else x


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size > 0``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        y = self.norm1(x)
        y = self.windowed_attention(y) if self.window_size > 0 else self.attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def windowed_attention(self, y: torch.Tensor) -> torch.Tensor:
        """``self.attn`` within windows of the normed ``(B, H, W, C)`` grid, zero-padded up to
        whole windows, the padding cut away after."""
        windows, padded = window_partition(y, self.window_size)
        size = (y.shape[1], y.shape[2])
        return window_unpartition(self.attn(windows), self.window_size, padded, size)


class ImageEncoderViT(nn.Module):
    """``(B, 3, S, S)`` normalised, padded images -> ``(B, out_chans, S/p, S/p)`` embeddings."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        global_attn_indexes: Sequence[int] = (),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(
            (patch_size, patch_size),
            (patch_size, patch_size),
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
                drop_path=drop_path_rate * i / max(depth - 1, 1),
            )
            for i in range(depth)
        )
        self.neck = encoder_neck(embed_dim, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2)).contiguous()


def encoder_from_config(cfg: EncoderConfig, drop_path_rate: float = 0.0) -> ImageEncoderViT:
    """Build the encoder described by an :class:`~segany.config.EncoderConfig`."""
    return ImageEncoderViT(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        out_chans=cfg.out_chans,
        qkv_bias=cfg.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=cfg.layer_norm_eps),  # type: ignore[arg-type]
        use_abs_pos=cfg.use_abs_pos,
        use_rel_pos=cfg.use_rel_pos,
        window_size=cfg.window_size,
        global_attn_indexes=cfg.global_attn_indexes,
        drop_path_rate=drop_path_rate,
    )
