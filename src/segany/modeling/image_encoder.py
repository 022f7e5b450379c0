"""ViTDet-style image encoder: patch embedding, windowed and global attention blocks with
decomposed relative positions, and a convolutional neck down to the prompt embedding width."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, partial

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EncoderConfig
from .common import LayerNorm2d, MLPBlock


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
        # every LayerNorm would copy it (ViT-B bf16: 32 copies and 25 strided adds, ~0.24 s)
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


# Largest relative-position bias (elements) materialised at once: 64M, 256 MB in fp32. A ViT-B
# global block's whole bias would be 12 x 4096 x 4096 (805 MB); blocks of query rows keep it
# bounded. Measured on a 2-core EPYC (ViT-B global block, fp32): one 805 MB bias 1.67 s,
# 64M-element blocks 1.03 s, 16M 1.25 s, 4M 2.31 s (each block is one more pass over the keys).
BIAS_CHUNK_ELEMENTS = 1 << 26


def decomposed_rel_pos_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the MViTv2 decomposed relative-position term.

    ``q`` is ``(B, heads, H*W, C)`` (unscaled queries). Returns ``(B, heads, H, W, H)`` (query
    row and column, key row) and ``(B, heads, H, W, W)`` (key column); the bias of query
    ``(i, j)`` and key ``(k, l)`` is ``rel_h[..., i, j, k] + rel_w[..., i, j, l]``.
    """
    h, w = size
    table_h = relative_position_table(h, h, rel_pos_h).to(q.dtype)  # (h, h, C)
    table_w = relative_position_table(w, w, rel_pos_w).to(q.dtype)  # (w, w, C)
    grid_q = q.unflatten(2, (h, w))  # (B, heads, h, w, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, table_h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, table_w)
    return rel_h, rel_w


def _expand_bias(
    rel_h: torch.Tensor, rel_w: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, n, r, W, H)`` and ``(B, n, r, W, W)`` -> contiguous ``(B, n, r*W, H*W)`` bias,
    written into ``out`` (a buffer of that many elements) when given."""
    b, n, rows, w, kh = rel_h.shape
    shape = (b, n, rows, w, kh, rel_w.shape[-1])
    if out is None:
        bias = rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)
        bias = bias.contiguous()
    else:
        bias = torch.add(rel_h.unsqueeze(-1), rel_w.unsqueeze(-2), out=out.view(shape))
    return bias.view(b, n, rows * w, -1)


# Scores materialised at once by :func:`blockwise_rel_pos_attention` (bf16 inference): 1M
# elements (2 MB in bf16, split between the threads). Measured on a 2-core Zen 4, bf16, q/k/v
# laid out as views into qkv: ViT-B global attention (12 x 4096 x 4096; SDPA with the bias
# 0.45-0.53 s) 0.31 s in blocks of 256K elements, 0.28-0.29 s at 512K, 0.26-0.27 s at 1M,
# 0.25-0.28 s at 2M, 0.36 s at 4M, 0.49 s at 8M; the 25 windows (14 x 14) 0.025-0.043 s at 512K,
# 0.025-0.033 s at 1M, 0.023-0.034 s at 2M.
BLOCKWISE_SCORE_ELEMENTS = 1 << 20


# Bias materialised at once when bfloat16 global attention goes through SDPA (CPUs with AMX):
# 16M elements, 4 query grid rows of a ViT-B global block. Measured on 2 cores of a Xeon with
# AMX (torch 2.11, bf16, ViT-B global block): blockwise 0.22 s; SDPA with the bias in blocks of
# 1, 4, 16 and 64 rows 0.23, 0.19, 0.20, 0.38 s. On a 2-core Zen 4 (no AMX) the SDPA route is
# the slower one (benchmarks/bench_attention.py: a whole layer 0.77-0.92 s against 0.36-0.38 s).
AMX_BIAS_CHUNK_ELEMENTS = 1 << 24


@cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bf16 tiles (Sapphire Rapids and later), which make oneDNN's
    fused SDPA kernel faster than :func:`blockwise_rel_pos_attention` on large grids."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return bool(capabilities().get("amx_bf16", False))
    amx_tile = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(amx_tile is not None and amx_tile())


def _rows_per_block(h: int, per_row: int, limit: int) -> int:
    """The most query grid rows (a divisor of ``h``) whose ``per_row`` elements each fit in
    ``limit``; at least 1."""
    return max((d for d in range(1, h + 1) if h % d == 0 and d * per_row <= limit), default=1)


def blockwise_rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
    block_elements: int = BLOCKWISE_SCORE_ELEMENTS,
) -> torch.Tensor:
    """Inference-only :func:`rel_pos_attention` whose scores stay in cache: per group of (batch,
    head) pairs and block of query grid rows, ``S = scale q k^T + bias`` by one matmul, softmax,
    ``@ v`` into the output.

    ``q``/``k``/``v`` are ``(B, heads, H*W, C)``, ``rel_h``/``rel_w`` the terms of
    :func:`decomposed_rel_pos_terms`; returns ``(B, H*W, heads * C)``. The whole bias never
    exists: on small grids (``H + W <= C``, windows) it rides in the matmul as extra columns,
    ``[scale q, rel_h, rel_w] . [k, one-hot key row, one-hot key column]``; on large ones (where
    those columns would cost more) each block's bias ``rel_h + rel_w`` is written into the
    reused scores buffer and ``baddbmm`` accumulates ``scale q k^T`` onto it. The scores are
    kept in ``q``'s dtype: in bfloat16 a much faster route than SDPA with a materialised bias,
    in float32 a slower one (so only the bf16 path takes it).
    """
    b, heads, tokens, c = q.shape
    h, w, kh, kw = rel_h.shape[2], rel_h.shape[3], rel_h.shape[4], rel_w.shape[4]
    rows = _rows_per_block(h, w * tokens, block_elements)
    group = max(1, block_elements // (h * w * tokens)) if rows == h else 1
    pairs = b * heads
    # Measured (2-core Zen 4, bf16, ViT-B): folded, the 25 windows' attention (14 + 14 <= 64)
    # takes 0.024-0.029 s instead of 0.057-0.080 s (max error vs fp32 0.036 -> 0.026); a global
    # block's (64 + 64 > 64) would take 0.46 s instead of 0.33 s.
    fold = kh + kw <= c
    if fold:
        key_row = torch.eye(kh, dtype=k.dtype, device=k.device).repeat_interleave(kw, 0)
        key_col = torch.eye(kw, dtype=k.dtype, device=k.device).repeat(kh, 1)
        one_hot = torch.cat([key_row, key_col], 1).expand(b, heads, tokens, kh + kw)
        q = torch.cat([q * scale, rel_h.flatten(2, 3), rel_w.flatten(2, 3)], -1)
        k = torch.cat([k, one_hot], -1)
    else:
        q = q * scale
    # contiguous once: a strided operand (q, k, v are views into qkv) costs a copy in every bmm
    queries_all = q.reshape(pairs, tokens, -1).contiguous()
    keys = k.reshape(pairs, tokens, -1).contiguous().transpose(1, 2)
    v = v.reshape(pairs, tokens, c).contiguous()
    rel_h = rel_h.reshape(pairs, h, w, kh, 1)
    rel_w = rel_w.reshape(pairs, h, w, 1, kw)
    out = v.new_empty(b, heads, tokens, c)
    flat_out = out.view(pairs, tokens, c)
    buffer = v.new_empty(min(group, pairs), rows * w, tokens)  # the scores of every block
    for first in range(0, pairs, group):
        pair = slice(first, first + group)
        scores = buffer[: min(group, pairs - first)]  # (group, rows * W, H*W)
        for start in range(0, h, rows):
            queries = slice(start * w, (start + rows) * w)
            if fold:
                torch.bmm(queries_all[pair, queries], keys[pair], out=scores)
            else:  # the bias first, then the matmul accumulates onto it (one rounding less)
                bias = (rel_h[pair, start : start + rows], rel_w[pair, start : start + rows])
                torch.add(*bias, out=scores.view(-1, rows, w, kh, kw))
                torch.baddbmm(scores, queries_all[pair, queries], keys[pair], out=scores)
            torch.bmm(scores.softmax(-1), v[pair], out=flat_out[pair, queries])
    return out.transpose(1, 2).flatten(2)


def rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    scale: float,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """``softmax(scale * q k^T + bias) v`` with the decomposed relative-position bias.

    ``q``/``k``/``v`` are ``(B, heads, H*W, C)``; returns ``(B, H*W, heads * C)``. bfloat16
    inference (outside an export or a compile) goes through
    :func:`blockwise_rel_pos_attention`. Everything else, and a large bfloat16 grid
    (``H + W > C``) on a CPU with AMX, goes through ``scaled_dot_product_attention`` with the bias
    materialised: queries go in blocks of whole grid rows so that at most ``chunk_elements``
    (default :data:`BIAS_CHUNK_ELEMENTS`, :data:`AMX_BIAS_CHUNK_ELEMENTS` on that AMX route) of
    bias exist at once; without autograd (and outside a compile, whose tracer cannot follow the
    buffer's views) the blocks share one buffer.
    """
    b, heads, tokens, c = q.shape
    h, w = size
    rel_h, rel_w = decomposed_rel_pos_terms(q, rel_pos_h, rel_pos_w, size)
    reuse = not (torch.is_grad_enabled() and (q.requires_grad or rel_pos_h.requires_grad))
    graph = torch.jit.is_tracing() or torch.compiler.is_compiling()  # keep exported graphs small
    if q.dtype == torch.bfloat16 and reuse and not graph:
        if not (h + w > c and q.device.type == "cpu" and cpu_has_amx()):
            return blockwise_rel_pos_attention(q, k, v, rel_h, rel_w, scale)
        if chunk_elements is None:  # a global grid on an AMX CPU: SDPA in smaller blocks
            chunk_elements = AMX_BIAS_CHUNK_ELEMENTS
    per_row = b * heads * w * tokens
    chunk_elements = BIAS_CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    rows = _rows_per_block(h, per_row, chunk_elements)
    if rows == h or torch.jit.is_tracing():  # one call: the whole bias fits (or an export)
        bias = _expand_bias(rel_h, rel_w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        return out.transpose(1, 2).flatten(2)
    reuse = reuse and not graph  # a compile cannot trace the shared buffer's views
    buffer = q.new_empty(rows * per_row) if reuse else None
    out = q.new_empty(b, tokens, heads * c) if reuse else None
    pieces = []
    for start in range(0, h, rows):
        queries = slice(start * w, (start + rows) * w)
        bias = _expand_bias(
            rel_h[:, :, start : start + rows], rel_w[:, :, start : start + rows], buffer
        )
        piece = F.scaled_dot_product_attention(q[:, :, queries], k, v, attn_mask=bias, scale=scale)
        if out is None:
            pieces.append(piece.transpose(1, 2).flatten(2))  # (B, rows * W, heads * C)
        else:
            out[:, queries].unflatten(2, (heads, c)).copy_(piece.transpose(1, 2))
    return torch.cat(pieces, dim=1) if out is None else out


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
        if self.use_rel_pos:
            out = rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w), self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            out = out.transpose(1, 2).flatten(2)
        return out.view(b, h, w, -1)


def window_partition(
    x: torch.Tensor, window: int, fill: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B * nW, window, window, C)``, padding H and W up to
    multiples of ``window`` with zeros, or with the ``(C,)`` vector ``fill``; also returns the
    padded ``(Hp, Wp)``."""
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
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, window, window, C) -> (B, H, W, C)``."""
    hp, wp = padded
    h, w = size
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
        """``self.attn`` within windows of the normed ``(B, H, W, C)`` grid, as over its
        zero-padded windows, but with the projections on the real tokens only: the padding
        tokens' qkv is that of a zero token, and ``proj`` runs after the padding is cut."""
        attn, size = self.attn, (y.shape[1], y.shape[2])
        pad_qkv = attn.qkv(y.new_zeros(1, y.shape[-1]))[0]  # (3C,)
        windows, padded = window_partition(attn.qkv(y), self.window_size, pad_qkv)
        return attn.proj(window_unpartition(attn.attend(windows), self.window_size, padded, size))


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
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

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
