"""The image encoder's attention with relative positions, by the route
:func:`~segany.fast.routes.choose_attention_route` picks (see :mod:`segany.fast.routes` for why
each exists). Every route computes the plain formula of
:class:`segany.modeling.image_encoder.Attention`, ``softmax(scale q k^T + bias) v``, up to
float rounding.

:class:`FastAttention` and :class:`FastBlock` are the encoder's modules with these routes; they
add no parameters, so :func:`segany.fast.model.install_fast_routes` swaps them in by class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..modeling.image_encoder import (
    Attention,
    Block,
    decomposed_rel_pos_terms,
    rel_pos_bias,
    window_partition,
    window_unpartition,
)
from . import routes


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
    block_elements: int | None = None,
) -> torch.Tensor:
    """Inference-only relative-position attention whose scores stay in cache: per group of
    (batch, head) pairs and block of query grid rows (at most ``block_elements`` scores,
    default :data:`~segany.fast.routes.BLOCKWISE_SCORE_ELEMENTS`), ``S = scale q k^T + bias`` by
    one matmul, softmax, ``@ v`` into the output.

    ``q``/``k``/``v`` are ``(B, heads, H*W, C)``, ``rel_h``/``rel_w`` the terms of
    :func:`~segany.modeling.image_encoder.decomposed_rel_pos_terms`; returns
    ``(B, H*W, heads * C)``. The whole bias never exists: on small grids (``H + W <= C``,
    windows) it rides in the matmul as extra columns,
    ``[scale q, rel_h, rel_w] . [k, one-hot key row, one-hot key column]``; on large ones (where
    those columns would cost more than they save) each block's bias ``rel_h + rel_w`` is written
    into the reused scores buffer and ``baddbmm`` accumulates ``scale q k^T`` onto it.
    """
    if block_elements is None:
        block_elements = routes.BLOCKWISE_SCORE_ELEMENTS
    b, heads, tokens, c = q.shape
    h, w, kh, kw = rel_h.shape[2], rel_h.shape[3], rel_h.shape[4], rel_w.shape[4]
    rows = _rows_per_block(h, w * tokens, block_elements)
    group = max(1, block_elements // (h * w * tokens)) if rows == h else 1
    pairs = b * heads
    fold = kh + kw <= c  # folded, windows are both faster and closer to float32
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


def sdpa_in_row_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
    route: routes.AttentionRoute,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` with the bias ``rel_h + rel_w`` materialised for blocks
    of whole query grid rows, at most ``route.bias_elements`` at once (in one buffer shared by
    the blocks with ``route.shared_buffer``). Shapes as in :func:`blockwise_rel_pos_attention`.
    """
    b, heads, tokens, c = q.shape
    h, w = rel_h.shape[2], rel_h.shape[3]
    per_row = b * heads * w * tokens
    rows = _rows_per_block(h, per_row, route.bias_elements)
    if rows == h:  # one call: the whole bias fits
        bias = rel_pos_bias(rel_h, rel_w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
        return out.transpose(1, 2).flatten(2)
    buffer = q.new_empty(rows * per_row) if route.shared_buffer else None
    out = q.new_empty(b, tokens, heads * c) if route.shared_buffer else None
    pieces = []
    for start in range(0, h, rows):
        queries = slice(start * w, (start + rows) * w)
        block = (rel_h[:, :, start : start + rows], rel_w[:, :, start : start + rows])
        if buffer is None:
            bias = rel_pos_bias(*block)
        else:  # (B, heads, rows, W, H, W) written into the buffer
            shape = (*block[0].shape, block[1].shape[-1])
            bias = torch.add(block[0][..., None], block[1][..., None, :], out=buffer.view(shape))
            bias = bias.view(b, heads, rows * w, tokens)
        piece = F.scaled_dot_product_attention(q[:, :, queries], k, v, attn_mask=bias, scale=scale)
        if out is None:
            pieces.append(piece.transpose(1, 2).flatten(2))  # (B, rows * W, heads * C)
        else:
            out[:, queries].unflatten(2, (heads, c)).copy_(piece.transpose(1, 2))
    return torch.cat(pieces, dim=1) if out is None else out


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
    """``softmax(scale * q k^T + bias) v`` with the decomposed relative-position bias, by the
    route :func:`~segany.fast.routes.choose_attention_route` picks for these tensors;
    ``chunk_elements`` overrides the route's bias limit (on the SDPA routes).

    ``q``/``k``/``v`` are ``(B, heads, H*W, C)``, ``rel_pos_h``/``rel_pos_w`` the ``(L, C)``
    tables; returns ``(B, H*W, heads * C)``.
    """
    h, w = size
    rel_h, rel_w = decomposed_rel_pos_terms(q, rel_pos_h, rel_pos_w, size)
    route = routes.choose_attention_route(
        q.device.type,
        q.dtype,
        grad=torch.is_grad_enabled() and (q.requires_grad or rel_pos_h.requires_grad),
        tracing=torch.jit.is_tracing(),
        compiling=torch.compiler.is_compiling(),
        large_grid=h + w > q.shape[-1],
    )
    if route.kind == "blockwise":
        return blockwise_rel_pos_attention(q, k, v, rel_h, rel_w, scale)
    if route.kind == "triton":
        from .triton_attention import triton_rel_pos_attention  # imports Triton: GPUs only

        return triton_rel_pos_attention(q, k, v, rel_h, rel_w, scale)
    if chunk_elements is not None:
        route = routes.AttentionRoute(route.kind, chunk_elements, route.shared_buffer)
    return sdpa_in_row_blocks(q, k, v, rel_h, rel_w, scale, route)


class FastAttention(Attention):
    """:class:`~segany.modeling.image_encoder.Attention` with relative positions by
    :func:`rel_pos_attention`'s routes."""

    def attend_heads(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``(B, heads, H*W, C)`` queries, keys, values -> ``(B, H*W, heads * C)``."""
        if not self.use_rel_pos:
            return super().attend_heads(q, k, v, size)
        return rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, size, self.scale)


class FastBlock(Block):
    """:class:`~segany.modeling.image_encoder.Block` whose windowed attention projects only the
    real tokens: a padding token's qkv is that of a zero token, and ``proj`` runs after the
    padding is cut."""

    def windowed_attention(self, y: torch.Tensor) -> torch.Tensor:
        """``self.attn`` within zero-padded windows of the normed ``(B, H, W, C)`` grid."""
        attn, size = self.attn, (y.shape[1], y.shape[2])
        pad_qkv = attn.qkv(y.new_zeros(1, y.shape[-1]))[0]  # (3C,)
        windows, padded = window_partition(attn.qkv(y), self.window_size, pad_qkv)
        return attn.proj(window_unpartition(attn.attend(windows), self.window_size, padded, size))
