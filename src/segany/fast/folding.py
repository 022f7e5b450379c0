"""The shared-image decoder's attention weights folded per head (see
:mod:`segany.fast.shared_decoder`, rearrangement 2) and the attention products that use them.

Attention between thousands of image tokens and a handful of prompt tokens never projects the
image tokens: per head, the projections are folded into the small token side (logits
``x.(W_q^T W_k).y`` with the product of the two weights precomputed; values and output
projection likewise as one ``W_v^T W_o^T``). The key bias of token->image attention is dropped
(it adds a constant to every logit of a softmax row); value biases are carried through the
output projection (every head's attention row sums to one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..modeling.transformer import Attention


@dataclass(frozen=True)
class FoldedAttention:
    """One attention layer's weights, folded per head for a few tokens against many image tokens.

    Token->image (prompt tokens ``y`` attend to image tokens ``x``): ``qk`` ``(D, H*D)`` and
    ``qk_bias`` ``(H*D,)`` turn ``y`` into per-head vectors ``u`` with logits ``u.x`` (scaled);
    ``vo`` ``(H*D, D)`` and ``vo_bias`` map the per-head attention-weighted image tokens to the
    output. Image->token (image tokens query prompt tokens): ``kq`` ``(D, H*D + H)`` turns token
    keys into per-head vectors (and logit offsets) against the image side, ``ov`` ``(D, H*D)``
    turns token values into per-head output rows (the output bias spread over the heads).
    """

    heads: int
    qk: Tensor
    qk_bias: Tensor
    vo: Tensor
    vo_bias: Tensor
    kq: Tensor
    kq_bias: Tensor
    ov: Tensor
    ov_bias: Tensor

    @staticmethod
    def of(attn: Attention) -> FoldedAttention:
        heads = attn.num_heads
        scale = 1.0 / math.sqrt(attn.internal_dim // heads)

        def per_head(linear: torch.nn.Linear) -> tuple[Tensor, Tensor]:
            return linear.weight.unflatten(0, (heads, -1)), linear.bias.unflatten(0, (heads, -1))

        w_q, b_q = per_head(attn.q_proj)  # (H, d, D), (H, d)
        w_k, b_k = per_head(attn.k_proj)
        w_v, b_v = per_head(attn.v_proj)
        w_o = attn.out_proj.weight.unflatten(1, (heads, -1)).permute(1, 2, 0)  # (H, d, D)
        b_o = attn.out_proj.bias
        # token->image: logits_h = (W_q y + b_q).(W_k x) per head; value path W_o,h W_v,h x
        qk = torch.einsum("hdi,hde->ihe", w_q, w_k).flatten(1) * scale
        qk_bias = torch.einsum("hd,hde->he", b_q, w_k).flatten() * scale
        vo = torch.einsum("hde,hdo->heo", w_v, w_o).flatten(0, 1)
        vo_bias = torch.einsum("hd,hdo->o", b_v, w_o) + b_o
        # image->token: logits_h = (W_q x + b_q).(W_k y + b_k); values W_o,h (W_v,h y + b_v,h)
        kq = torch.einsum("hdi,hde->ihe", w_k, w_q).flatten(1)
        kq_offset = torch.einsum("hdi,hd->ih", w_k, b_q)
        kq_bias = torch.cat([torch.einsum("hd,hde->he", b_k, w_q).flatten(), (b_k * b_q).sum(1)])
        ov = torch.einsum("hdi,hdo->iho", w_v, w_o).flatten(1)
        ov_bias = (torch.einsum("hd,hdo->ho", b_v, w_o) + b_o / heads).flatten()
        return FoldedAttention(
            heads=heads,
            qk=qk,
            qk_bias=qk_bias,
            vo=vo,
            vo_bias=vo_bias,
            kq=torch.cat([kq, kq_offset], dim=1) * scale,
            kq_bias=kq_bias * scale,
            ov=ov,
            ov_bias=ov_bias,
        )


@dataclass(frozen=True)
class MaskFold:
    """How a mask input changes the first block's image side, folded through the last (1x1)
    convolution of the prompt encoder's mask embedding. With ``z`` ``(P, N, c)`` that
    convolution's input, the image tokens change by ``z @ weight + bias`` ``(P, N, D)`` (the
    mask embedding minus the no-mask embedding it replaces), and the first block's three
    image-side projections (token->image keys and values, image->token queries, scaled) by
    ``z @ projections + projection_bias`` ``(P, N, 3*H*d)``: c-wide products, not D-wide."""

    weight: Tensor
    bias: Tensor
    projections: Tensor
    projection_bias: Tensor

    @staticmethod
    def of(last: torch.nn.Conv2d, no_mask: Tensor, t2i: Attention, i2t: Attention) -> MaskFold:
        weight = last.weight.flatten(1).T  # (c, D)
        bias = (last.bias if last.bias is not None else 0) - no_mask.flatten()
        scale = 1.0 / math.sqrt(i2t.internal_dim // i2t.num_heads)
        stacked = torch.cat([t2i.k_proj.weight, t2i.v_proj.weight, i2t.q_proj.weight * scale])
        return MaskFold(weight, bias, weight @ stacked.T, stacked @ bias)


@dataclass(frozen=True)
class FoldedWeights:
    """Every folded attention layer of a two-way transformer, and the mask input's fold."""

    t2i: list[FoldedAttention]
    i2t: list[FoldedAttention]
    final: FoldedAttention
    mask: MaskFold | None


def token_to_image(
    folded: FoldedAttention,
    q_in: Tensor,
    keys: Tensor,
    keys_pe: Tensor | None = None,
    pe: Tensor | None = None,
) -> Tensor:
    """Prompt tokens ``(P, T, D)`` attend to per-prompt image tokens ``(P, N, D)``: ``(P, T, D)``
    out (before the residual). Keys are ``keys_pe`` or, for a few tokens, ``keys`` plus the
    shared ``pe`` ``(N, D)`` (one product against ``pe`` instead of a pass over ``keys``)."""
    batch, tokens, dim = q_in.shape
    heads = folded.heads
    u = torch.addmm(folded.qk_bias, q_in.flatten(0, 1), folded.qk)  # (P*T, H*D)
    u = u.view(batch, tokens * heads, dim)  # rows (t, h)
    if keys_pe is not None:
        logits = torch.bmm(u, keys_pe.transpose(1, 2))  # (P, T*H, N)
    else:
        assert pe is not None
        from_pe = (u.view(-1, dim) @ pe.T).view(batch, tokens * heads, -1)
        logits = from_pe.baddbmm_(u, keys.transpose(1, 2))
    context = torch.bmm(logits.softmax(dim=-1), keys).view(batch * tokens, heads * dim)
    return torch.addmm(folded.vo_bias, context, folded.vo).view(batch, tokens, dim)


def image_to_token(
    folded: FoldedAttention, keys: Tensor, keys_pe: Tensor, k_in: Tensor, v_in: Tensor
) -> Tensor:
    """Per-prompt image tokens ``(P, N, D)`` attend to the prompt tokens; adds the attention
    output to ``keys`` in place (the residual sum, before the norm) and returns it."""
    batch, tokens, dim = k_in.shape
    heads = folded.heads
    kq = torch.addmm(folded.kq_bias, k_in.flatten(0, 1), folded.kq).view(batch, tokens, -1)
    vectors = kq[..., : heads * dim].reshape(batch, tokens, heads, dim).transpose(1, 2)
    offsets = kq[..., heads * dim :].transpose(1, 2)  # (P, H, T)
    logits = torch.baddbmm(  # (P, H*T, N), softmax over the T tokens of each head
        offsets.reshape(batch, heads * tokens, 1),
        vectors.reshape(batch, -1, dim),
        keys_pe.transpose(1, 2),
    )
    attn = logits.view(batch, heads, tokens, -1).softmax(dim=2).view(batch, heads * tokens, -1)
    values = torch.addmm(folded.ov_bias, v_in.flatten(0, 1), folded.ov)  # (P*T, H*D)
    values = values.view(batch, tokens, heads, dim).transpose(1, 2).reshape(batch, -1, dim)
    return keys.baddbmm_(attn.transpose(1, 2), values)


class FoldedProjectionAttention(Attention):
    """The two-way transformer's :class:`~segany.modeling.transformer.Attention` with the long
    side's projections folded into the short side when one side has few tokens."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``q`` ``(B, Nq, D)``, ``k``/``v`` ``(B, Nk, D)`` -> ``(B, Nq, D)``.

        Between a few prompt tokens and the image tokens, the projections of the long side
        are folded into the short side (same result, re-associated products): projecting
        4096 image tokens costs ``head_dim`` multiply-adds per head and token, the folded
        form ``Nq`` (or ``Nk``), fewer whenever the short side has under ``head_dim`` tokens.
        """
        head_dim = self.internal_dim // self.num_heads
        if q.shape[1] < head_dim < k.shape[1]:
            return self._few_queries(q, k, v)
        if k.shape[1] < head_dim < q.shape[1]:
            return self._few_keys(q, k, v)
        return super().forward(q, k, v)

    def _per_head(self, linear: nn.Linear) -> Tensor:
        """A projection's weight ``(C, D)`` as ``(heads, C / heads, D)``."""
        return linear.weight.unflatten(0, (self.num_heads, -1))

    def _few_queries(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Few queries, many keys: ``softmax(q_h W_k,h k^T) v W_v,h^T`` (the key bias adds
        the same score to a whole row, which softmax ignores; rows of weights sum to 1, so
        the value bias passes through)."""
        heads = self.num_heads
        q_h = self._heads(self.q_proj(q)) * (self.internal_dim // heads) ** -0.5
        folded = torch.einsum("bhqc,hcd->bhqd", q_h, self._per_head(self.k_proj))
        scores = folded.flatten(1, 2) @ k.transpose(1, 2)  # (B, heads * Nq, Nk)
        weights = scores.unflatten(1, (heads, -1)).softmax(dim=-1)
        mixed = (weights.flatten(1, 2) @ v).unflatten(1, (heads, -1))  # (B, heads, Nq, D)
        out = torch.einsum("bhqd,hcd->bqhc", mixed, self._per_head(self.v_proj))
        out = out + self.v_proj.bias.unflatten(0, (heads, -1))
        return self.out_proj(out.flatten(2))

    def _few_keys(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Many queries, few keys: scores ``q (W_q,h^T k_h^T) + b_q,h k_h^T`` and output
        ``sum_h A_h (v_h W_o,h^T)``, so the long side meets only ``heads * Nk`` columns."""
        heads = self.num_heads
        k_h = self._heads(self.k_proj(k)) * (self.internal_dim // heads) ** -0.5
        v_h = self._heads(self.v_proj(v))  # (B, heads, Nk, C / heads)
        query_weight = self._per_head(self.q_proj)  # (heads, C / heads, D)
        folded = torch.einsum("bhkc,hcd->bhkd", k_h, query_weight).flatten(1, 2)  # (B, h*Nk, D)
        bias = torch.einsum("bhkc,hc->bhk", k_h, self.q_proj.bias.unflatten(0, (heads, -1)))
        # scores transposed, (B, h*Nk, Nq): softmax over the few keys then runs along a strided
        # axis, vectorised over the many queries (a softmax over rows of Nk is slow)
        scores = torch.baddbmm(bias.flatten(1).unsqueeze(-1), folded, q.transpose(1, 2))
        weights = scores.unflatten(1, (heads, -1)).softmax(dim=2).flatten(1, 2)
        out_weight = self.out_proj.weight.unflatten(1, (heads, -1))  # (D, heads, C / heads)
        values = torch.einsum("bhkc,dhc->bhkd", v_h, out_weight).flatten(1, 2)  # (B, h*Nk, D)
        return torch.baddbmm(self.out_proj.bias, weights.transpose(1, 2), values)
