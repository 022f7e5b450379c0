"""Relative-position attention as one fused Triton kernel, the GPU's route.

Flash attention (online softmax over blocks of keys, scores never leave the chip) with the
decomposed relative-position bias added inside the kernel: the bias of query ``m`` and key
``n = (row, col)`` is ``rel_h[m, row] + rel_w[m, col]``, two small gathers from the
``(T, Hk)`` and ``(T, Wk)`` terms instead of a ``T x T`` bias in memory (512 MB per image for a
ViT-H global block in bfloat16). Inference only: autograd takes the SDPA route.

Triton ships with PyTorch's CUDA wheels; with ``TRITON_INTERPRET=1`` the same kernel runs on
the CPU, which is how CI checks its arithmetic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rel_pos_flash_kernel(
    q_ptr, k_ptr, v_ptr, rel_h_ptr, rel_w_ptr, out_ptr,
    scale, tokens, heads, head_dim,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_kt,
    stride_vb, stride_vh, stride_vt,
    KEY_ROWS: tl.constexpr, KEY_COLS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One block of ``BLOCK_M`` queries of one (batch, head) pair against all keys."""
    block = tl.program_id(0)
    pair = tl.program_id(1)
    b = pair // heads
    h = pair % heads
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    chans = tl.arange(0, BLOCK_C)
    row_ok = rows < tokens
    chan_ok = chans < head_dim
    q = tl.load(
        q_ptr + b * stride_qb + h * stride_qh + rows[:, None] * stride_qt + chans[None, :],
        mask=row_ok[:, None] & chan_ok[None, :],
        other=0.0,
    )
    rel_h_rows = rel_h_ptr + (pair * tokens + rows[:, None]) * KEY_ROWS
    rel_w_rows = rel_w_ptr + (pair * tokens + rows[:, None]) * KEY_COLS
    best = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_C], tl.float32)
    for start in range(0, tokens, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < tokens
        k = tl.load(
            k_ptr + b * stride_kb + h * stride_kh + keys[None, :] * stride_kt + chans[:, None],
            mask=key_ok[None, :] & chan_ok[:, None],
            other=0.0,
        )
        both = row_ok[:, None] & key_ok[None, :]
        bias = tl.load(rel_h_rows + (keys // KEY_COLS)[None, :], mask=both, other=0.0).to(
            tl.float32
        ) + tl.load(rel_w_rows + (keys % KEY_COLS)[None, :], mask=both, other=0.0).to(tl.float32)
        scores = tl.dot(q, k) * scale + bias
        scores = tl.where(key_ok[None, :], scores, float("-inf"))
        new_best = tl.maximum(best, tl.max(scores, 1))
        weights = tl.exp(scores - new_best[:, None])
        kept = tl.exp(best - new_best)
        total = total * kept + tl.sum(weights, 1)
        v = tl.load(
            v_ptr + b * stride_vb + h * stride_vh + keys[:, None] * stride_vt + chans[None, :],
            mask=key_ok[:, None] & chan_ok[None, :],
            other=0.0,
        )
        acc = acc * kept[:, None] + tl.dot(weights.to(v.dtype), v)
        best = new_best
    acc = acc / total[:, None]
    # out is (B, T, heads * C): the layout the projection reads
    out = out_ptr + (b * tokens + rows[:, None]) * heads * head_dim + h * head_dim + chans[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & chan_ok[None, :])


def block_sizes(head_dim: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """Queries and keys per block, and the channel block (a power of two >= 16, as ``tl.dot``
    wants; ViT-H's 80 channels are padded to 128 by masked loads)."""
    channels = max(16, triton.next_power_of_2(head_dim))
    keys = 64 if channels <= 64 or dtype != torch.float32 else 32
    return 64, keys, channels


def triton_rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """``softmax(scale q k^T + bias) v`` in one kernel launch.

    ``q``/``k``/``v`` are ``(B, heads, H*W, C)`` (views into the qkv projection are fine: the
    channel stride must be 1), ``rel_h``/``rel_w`` the ``(B, heads, H, W, Hk)`` and
    ``(B, heads, H, W, Wk)`` terms of
    :func:`~segany.modeling.image_encoder.decomposed_rel_pos_terms`; returns
    ``(B, H*W, heads * C)``.
    """
    b, heads, tokens, c = q.shape
    if not (q.stride(-1) == k.stride(-1) == v.stride(-1) == 1):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    key_rows, key_cols = rel_h.shape[-1], rel_w.shape[-1]
    if key_rows * key_cols != tokens:
        raise ValueError(f"keys on a {key_rows}x{key_cols} grid, but {tokens} tokens")
    rel_h = rel_h.reshape(b * heads, tokens, key_rows).contiguous()
    rel_w = rel_w.reshape(b * heads, tokens, key_cols).contiguous()
    out = q.new_empty(b, tokens, heads * c)
    block_m, block_n, block_c = block_sizes(c, q.dtype)
    grid = (triton.cdiv(tokens, block_m), b * heads)
    _rel_pos_flash_kernel[grid](
        q, k, v, rel_h, rel_w, out,
        scale, tokens, heads, c,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        KEY_ROWS=key_rows, KEY_COLS=key_cols,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_C=block_c,
    )  # fmt: skip
    return out
