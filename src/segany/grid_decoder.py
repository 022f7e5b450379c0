"""The mask decoder rearranged for many sparse prompts on one image (the point grid of the
automatic mask generator): the same weights and the same function as
:meth:`segany.modeling.Sam.decode`, equal up to float rounding, with far less work per prompt.

Three rearrangements, all exact in real arithmetic:

1. Before the first image->token attention every prompt sees the same image tokens, so the
   first block's image-side projections are computed once per image, not once per prompt.
2. Attention between 4096 image tokens and a handful of prompt tokens never projects the image
   tokens: the projections are folded into the small token side (``q.W_k`` instead of
   ``W_k.x``; ``(A.x).W_v`` instead of ``A.(x.W_v)``; ``A.(v.W_o)`` instead of ``(A.v).W_o``).
   The key bias of token->image attention is dropped: it adds a constant to every logit of a
   softmax row. The output bias of image->token attention is folded into the values, as every
   head's attention row sums to one.
3. The two transposed convolutions of the mask head (kernel 2, stride 2) are matrix products on
   channels-last image tokens, followed by one pixel shuffle of the final logits; the mask head
   runs only for the prompts a caller asks for (the ones whose predicted IoU passed a filter).

Image tokens stay channels-last ``(P, N, D)`` throughout, so no big tensor is ever transposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .modeling.sam import Sam
from .modeling.transformer import Attention


@dataclass(frozen=True)
class SharedImage:
    """One image's decoder inputs, shared by all its prompts.

    ``keys`` ``(N, D)`` are the image tokens plus the no-mask embedding, ``pe`` their positional
    encoding and ``keys_pe`` the sum; ``t2i_k``/``t2i_v``/``i2t_q`` ``(H, N, d)`` are the first
    block's image-side projections (per head); ``keys_bias`` ``(N, D)`` is ``keys`` plus the first
    image->token output bias. ``grid`` is the embedding's ``(h, w)``.
    """

    keys: Tensor
    pe: Tensor
    keys_pe: Tensor
    keys_bias: Tensor
    t2i_k: Tensor
    t2i_v: Tensor
    i2t_q: Tensor
    grid: tuple[int, int]


@dataclass(frozen=True)
class DecodedPrompts:
    """``P`` prompts after the two-way transformer.

    ``iou`` ``(P, C)`` predicted IoU of the ``C`` output masks (3 with multimask output, else 1),
    ``mask_tokens`` ``(P, C, D)`` their tokens after the transformer, the first of them being mask
    token ``first_token``; ``keys`` ``(P, N, D)`` the updated image tokens the mask head needs, on
    a ``grid`` ``(h, w)``.
    """

    iou: Tensor
    mask_tokens: Tensor
    first_token: int
    keys: Tensor
    grid: tuple[int, int]

    def __len__(self) -> int:
        return self.iou.shape[0]


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(..., T, H*d) -> (..., T, H, d)``."""
    return x.unflatten(-1, (heads, -1))


def _weight(linear: torch.nn.Linear, heads: int) -> Tensor:
    """``(H*d, D)`` weight -> ``(H, d, D)``."""
    return linear.weight.unflatten(0, (heads, -1))


class GridDecoder:
    """Decode many prompts against a shared image embedding (no mask input).

    Use :meth:`image` once per embedding, :meth:`decode` for batches of sparse prompt embeddings
    and :meth:`masks` for the prompts whose masks are wanted.
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.decoder = model.mask_decoder
        self.transformer = self.decoder.transformer
        if self.transformer.depth < 1:
            raise ValueError("the grid decoder needs a transformer with at least one block")

    @torch.inference_mode()
    def image(self, features: Tensor) -> SharedImage:
        """Precompute what every prompt on this ``(1, D, h, w)`` embedding shares."""
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense).flatten(2)[0].transpose(0, 1).contiguous()  # (N, D)
        pe = prompt_encoder.get_dense_pe().flatten(2)[0].transpose(0, 1).contiguous()
        keys_pe = keys + pe
        first = self.transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        return SharedImage(
            keys=keys,
            pe=pe,
            keys_pe=keys_pe,
            keys_bias=keys + i2t.out_proj.bias,
            t2i_k=_heads(t2i.k_proj(keys_pe), t2i.num_heads).transpose(0, 1).contiguous(),
            t2i_v=_heads(t2i.v_proj(keys), t2i.num_heads).transpose(0, 1).contiguous(),
            i2t_q=_heads(i2t.q_proj(keys_pe), i2t.num_heads).transpose(0, 1).contiguous(),
            grid=(features.shape[2], features.shape[3]),
        )

    @torch.inference_mode()
    def decode(self, image: SharedImage, sparse: Tensor, multimask: bool = True) -> DecodedPrompts:
        """Run the two-way transformer and the IoU head for ``(P, T, D)`` sparse prompt
        embeddings (from the prompt encoder). ``multimask`` selects mask tokens 1..3, else 0."""
        decoder = self.decoder
        batch = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        query_pe = torch.cat([output_tokens.expand(batch, -1, -1), sparse], dim=1)  # (P, T, D)
        pe = image.pe

        layers = self.transformer.layers
        queries, keys, keys_pe = self._first_block(layers[0], image, query_pe)
        for layer in layers[1:]:
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q, q, queries))
            q = queries + query_pe
            queries = layer.norm2(
                queries + self._token_to_image(layer.cross_attn_token_to_image, q, keys, keys_pe)
            )
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            keys = layer.norm4(
                self._image_to_token(layer.cross_attn_image_to_token, keys, keys_pe, q, queries)
            )
            keys_pe = keys + pe
        # the final attention only for the tokens read afterwards: IoU and the selected masks
        first = 1 if multimask else 0
        count = decoder.num_mask_tokens - 1 if multimask else 1
        wanted = torch.tensor([0, *range(1 + first, 1 + first + count)], device=sparse.device)
        queries, query_pe = queries[:, wanted], query_pe[:, wanted]
        final = self.transformer.final_attn_token_to_image
        q = queries + query_pe
        queries = self.transformer.norm_final_attn(
            queries + self._token_to_image(final, q, keys, keys_pe)
        )
        iou = decoder.iou_prediction_head(queries[:, 0])[:, first : first + count]
        return DecodedPrompts(iou, queries[:, 1:], first, keys, image.grid)

    def _first_block(
        self, layer: torch.nn.Module, image: SharedImage, query_pe: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The first two-way block, with the image side shared by all prompts."""
        queries = query_pe
        if layer.skip_first_layer_pe:
            queries = layer.norm1(layer.self_attn(queries, queries, queries))
        else:
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q, q, queries))
        # token -> image against the shared projections: all P*T queries in one attention call
        t2i: Attention = layer.cross_attn_token_to_image
        batch, tokens, _ = queries.shape
        q = _heads(t2i.q_proj(queries + query_pe), t2i.num_heads)  # (P, T, H, d)
        q = q.permute(2, 0, 1, 3).reshape(t2i.num_heads, batch * tokens, -1)
        out = F.scaled_dot_product_attention(q[None], image.t2i_k[None], image.t2i_v[None])[0]
        out = out.reshape(t2i.num_heads, batch, tokens, -1).permute(1, 2, 0, 3).flatten(2)
        queries = layer.norm2(queries + t2i.out_proj(out))
        queries = layer.norm3(queries + layer.mlp(queries))
        # image -> token: image queries are shared, so their projection is precomputed
        i2t: Attention = layer.cross_attn_image_to_token
        q = queries + query_pe
        k = _heads(i2t.k_proj(q), i2t.num_heads)  # (P, T, H, d)
        scale = 1.0 / math.sqrt(k.shape[-1])
        logits = torch.einsum("hnd,pthd->pnht", image.i2t_q, k) * scale
        attn = logits.softmax(dim=-1).flatten(2)  # (P, N, H*T)
        values = self._folded_values(i2t, queries, with_bias=False)
        keys = layer.norm4(torch.baddbmm(image.keys_bias, attn, values))
        return queries, keys, keys + image.pe

    @staticmethod
    def _folded_values(attn: Attention, tokens: Tensor, with_bias: bool) -> Tensor:
        """Token values pushed through the output projection: ``(P, H*T, D)``; with
        ``with_bias`` each row also carries ``bias / H`` (rows of a head's attention sum to 1)."""
        heads = attn.num_heads
        v = _heads(attn.v_proj(tokens), heads)  # (P, T, H, d)
        w_out = attn.out_proj.weight.unflatten(1, (heads, -1))  # (D, H, d)
        values = torch.einsum("pthd,ehd->phte", v, w_out).flatten(1, 2)
        if with_bias:
            values = values + attn.out_proj.bias / heads
        return values

    @staticmethod
    def _token_to_image(attn: Attention, q_in: Tensor, keys: Tensor, keys_pe: Tensor) -> Tensor:
        """Prompt tokens attend to per-prompt image tokens: ``(P, T, D)`` out."""
        heads = attn.num_heads
        tokens = q_in.shape[1]
        q = _heads(attn.q_proj(q_in), heads)  # (P, T, H, d)
        scale = 1.0 / math.sqrt(q.shape[-1])
        q_folded = torch.einsum("pthd,hde->phte", q * scale, _weight(attn.k_proj, heads))
        logits = torch.bmm(q_folded.flatten(1, 2), keys_pe.transpose(1, 2))  # (P, H*T, N)
        context = torch.bmm(logits.softmax(dim=-1), keys).unflatten(1, (heads, tokens))
        out = torch.einsum("phte,hde->pthd", context, _weight(attn.v_proj, heads))
        out = out + attn.v_proj.bias.unflatten(0, (heads, -1))
        return attn.out_proj(out.flatten(2))

    def _image_to_token(
        self, attn: Attention, keys: Tensor, keys_pe: Tensor, k_in: Tensor, v_in: Tensor
    ) -> Tensor:
        """Per-prompt image tokens attend to the prompt tokens; returns ``keys`` plus the
        attention output ``(P, N, D)`` (the residual sum, before the norm)."""
        heads = attn.num_heads
        k = _heads(attn.k_proj(k_in), heads)  # (P, T, H, d)
        scale = 1.0 / math.sqrt(k.shape[-1])
        w_q = _weight(attn.q_proj, heads)  # (H, d, D)
        k_folded = torch.einsum("pthd,hde->phte", k * scale, w_q)
        k_folded = k_folded.flatten(1, 2).transpose(1, 2)  # (P, D, H*T)
        k_bias = torch.einsum("pthd,hd->pht", k * scale, attn.q_proj.bias.unflatten(0, (heads, -1)))
        logits = torch.baddbmm(k_bias.flatten(1)[:, None], keys_pe, k_folded)  # (P, N, H*T)
        attn_w = logits.unflatten(2, (heads, -1)).softmax(dim=-1).flatten(2)
        values = self._folded_values(attn, v_in, with_bias=True)
        return torch.baddbmm(keys, attn_w, values)

    @torch.inference_mode()
    def masks(self, decoded: DecodedPrompts, index: Tensor) -> Tensor:
        """Low-res mask logits ``(K, C, 4h, 4w)`` of the prompts ``index`` ``(K,)``."""
        decoder = self.decoder
        up1, norm, act1, up2, act2 = decoder.output_upscaling
        keys = decoded.keys[index]  # (K, N, D)
        count = keys.shape[0]
        h, w = decoded.grid
        # ConvTranspose2d(k=2, s=2) as a matrix product: (in) -> (2, 2, out) per token
        c1 = up1.out_channels
        y = keys @ up1.weight.permute(0, 2, 3, 1).flatten(1)  # (K, N, 2*2*c1)
        y = y.unflatten(2, (4, c1)) + up1.bias
        y = act1(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        c2 = up2.out_channels
        y = y.flatten(1, 2) @ up2.weight.permute(0, 2, 3, 1).flatten(1)  # (K, N*4, 2*2*c2)
        y = act2(y.unflatten(2, (4, c2)) + up2.bias)
        mask_tokens = decoded.mask_tokens[index]
        mlps = decoder.output_hypernetworks_mlps[decoded.first_token :]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps[: mask_tokens.shape[1]])], dim=2
        )  # (K, c2, C)
        logits = torch.bmm(y.flatten(1, 2), hyper)  # (K, N*16, C) ordered (y, x, i, j, k, l)
        logits = logits.view(count, h, w, 2, 2, 2, 2, -1)
        # fine row = 4y + 2i + k, fine column = 4x + 2j + l
        return logits.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(count, -1, 4 * h, 4 * w)
