"""The mask decoder rearranged for many sparse prompts on one image (the point grid of the
automatic mask generator): the same weights and the same function as
:meth:`segany.modeling.Sam.decode`, equal up to float rounding, with far less work per prompt.

Three rearrangements, all exact in real arithmetic:

1. Before the first image->token attention every prompt sees the same image tokens, so the
   first block's image-side projections are computed once per image, not once per prompt.
   A mask input (a refinement click's previous logits) changes them by c-wide products only
   (c = 16 channels before the mask embedding's last, 1x1, convolution; see :class:`~segany.fast.folding.MaskFold`).
2. Attention between 4096 image tokens and a handful of prompt tokens never projects the image
   tokens: per head, the projections are folded into the small token side
   (:mod:`segany.fast.folding`).
3. Only the IoU token goes through the final attention for every prompt; the mask tokens do,
   with the mask head, only for the prompts a caller asks for (those whose predicted IoU passed
   a filter). The mask head's two transposed convolutions (kernel 2, stride 2) are matrix
   products on channels-last image tokens (:func:`~segany.fast.upscale.patch_matmul`),
   followed by one pixel shuffle of the final logits.

Image tokens stay channels-last ``(P, N, D)`` throughout, so no big tensor is ever transposed,
and the tiny prompt-token side is a handful of matrix products per block. With a
:class:`Workspace`, the ``(P, N, D)``-sized tensors of a batch are written into buffers reused
from the previous batch (layer norms and activations in place), so no fresh pages are mapped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..modeling.sam import Sam
from ..modeling.transformer import Attention
from .folding import (
    FoldedAttention,
    FoldedWeights,
    MaskFold,
    image_to_token,
    token_to_image,
)
from .upscale import patch_matmul
from .workspace import Workspace, activate_, layer_norm_, tensors_version


@dataclass(frozen=True)
class SharedImage:
    """One image's decoder inputs, shared by all its prompts.

    ``keys`` ``(N, D)`` are the image tokens plus the no-mask embedding, ``pe`` their positional
    encoding; ``t2i_k``/``t2i_v`` ``(H, N, d)`` are the first block's token->image key and value
    projections and ``i2t_q`` ``(H, N, d)`` its image->token query projection (scaled).
    ``t2i``/``i2t`` hold every block's folded attention weights, ``final`` the final attention's.
    ``grid`` is the embedding's ``(h, w)``.
    """

    keys: Tensor
    pe: Tensor
    t2i_k: Tensor
    t2i_v: Tensor
    i2t_q: Tensor
    t2i: list[FoldedAttention]
    i2t: list[FoldedAttention]
    final: FoldedAttention
    mask: MaskFold | None
    grid: tuple[int, int]


@dataclass(frozen=True)
class _ImageSide:
    """The first block's image side for a batch of 1 (shared by all prompts) or P prompts:
    ``keys`` ``(B, N, D)``, ``t2i_k``/``t2i_v``/``i2t_q`` ``(B, H, N, d)`` (see
    :class:`SharedImage`)."""

    keys: Tensor
    t2i_k: Tensor
    t2i_v: Tensor
    i2t_q: Tensor


@dataclass(frozen=True)
class DecodedPrompts:
    """``P`` prompts after the two-way transformer.

    ``iou`` ``(P, C)`` predicted IoU of the ``C`` output masks (3 with multimask output, else 1).
    The final attention has run for the IoU token only; for the mask head, ``mask_queries`` and
    ``mask_query_pe`` ``(P, C, D)`` hold the output mask tokens before it (the first being mask
    token ``first_token``) and ``keys`` ``(P, N, D)`` the updated image tokens of ``image`` (in
    the workspace :meth:`SharedImageDecoder.decode` was given, if any: valid until its next use).
    """

    iou: Tensor
    mask_queries: Tensor
    mask_query_pe: Tensor
    first_token: int
    keys: Tensor
    image: SharedImage

    def __len__(self) -> int:
        return self.iou.shape[0]


def _heads(x: Tensor, heads: int) -> Tensor:
    """``(..., H*d) -> (..., H, d)``."""
    return x.unflatten(-1, (heads, -1))


class SharedImageDecoder:
    """Decode many prompts against a shared image embedding (with or without mask inputs).

    Use :meth:`image` once per embedding, :meth:`decode` for batches of sparse prompt embeddings
    and :meth:`masks` for the prompts whose masks are wanted. Weights are read (and folded) at
    :meth:`image` (folded once, and again whenever a parameter changes), so a model trained
    further is picked up by the next image.
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.decoder = model.mask_decoder
        self.transformer = self.decoder.transformer
        if self.transformer.depth < 1:
            raise ValueError("the shared-image decoder needs a transformer with at least one block")
        self._folded: tuple[tuple[int, ...], FoldedWeights] | None = None

    def _folded_weights(self) -> FoldedWeights:
        """The folded attention weights, recomputed only when a parameter changed in place
        (tracked by tensor versions) or was replaced."""
        prompt_encoder = self.model.prompt_encoder
        mask_embedding = [
            *prompt_encoder.mask_downscaling.parameters(),
            prompt_encoder.no_mask_embed.weight,
        ]
        key = tensors_version([*self.transformer.parameters(), *mask_embedding])
        if self._folded is None or self._folded[0] != key:
            layers = self.transformer.layers
            last = self._last_mask_conv()
            mask = None
            if last is not None:
                first = layers[0]
                mask = MaskFold.of(
                    last,
                    prompt_encoder.no_mask_embed.weight,
                    first.cross_attn_token_to_image,
                    first.cross_attn_image_to_token,
                )
            folded = FoldedWeights(
                t2i=[FoldedAttention.of(layer.cross_attn_token_to_image) for layer in layers],
                i2t=[FoldedAttention.of(layer.cross_attn_image_to_token) for layer in layers],
                final=FoldedAttention.of(self.transformer.final_attn_token_to_image),
                mask=mask,
            )
            self._folded = (key, folded)
        return self._folded[1]

    @torch.inference_mode()
    def image(self, features: Tensor) -> SharedImage:
        """Precompute what every prompt on this ``(1, D, h, w)`` embedding shares."""
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense).flatten(2)[0].transpose(0, 1).contiguous()  # (N, D)
        pe = prompt_encoder.get_dense_pe().flatten(2)[0].transpose(0, 1).contiguous()
        keys_pe = keys + pe
        layers = self.transformer.layers
        t2i, i2t = layers[0].cross_attn_token_to_image, layers[0].cross_attn_image_to_token
        scale = 1.0 / math.sqrt(i2t.internal_dim // i2t.num_heads)
        i2t_q = _heads(i2t.q_proj(keys_pe), i2t.num_heads) * scale
        folded = self._folded_weights()
        return SharedImage(
            keys=keys,
            pe=pe,
            t2i_k=_heads(t2i.k_proj(keys_pe), t2i.num_heads).transpose(0, 1).contiguous(),
            t2i_v=_heads(t2i.v_proj(keys), t2i.num_heads).transpose(0, 1).contiguous(),
            i2t_q=i2t_q.transpose(0, 1).contiguous(),
            t2i=folded.t2i,
            i2t=folded.i2t,
            final=folded.final,
            mask=folded.mask,
            grid=(features.shape[2], features.shape[3]),
        )

    @torch.inference_mode()
    def decode(
        self,
        image: SharedImage,
        sparse: Tensor,
        multimask: bool = True,
        *,
        mask_input: Tensor | None = None,
        workspace: Workspace | None = None,
    ) -> DecodedPrompts:
        """Run the two-way transformer and the IoU head for ``(P, T, D)`` sparse prompt
        embeddings (from the prompt encoder). ``multimask`` selects mask tokens 1..3, else 0.
        ``mask_input`` ``(1 or P, 1, 4h, 4w)`` are previous low-res logits (needs
        :attr:`accepts_masks`). With a ``workspace``, the result's image tokens live in it
        (valid until its next use)."""
        decoder = self.decoder
        workspace = Workspace() if workspace is None else workspace
        batch = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        query_pe = torch.cat([output_tokens.expand(batch, -1, -1), sparse], dim=1)  # (P, T, D)

        layers = self.transformer.layers
        side = self._image_side(image, mask_input)
        queries, keys = self._first_block(layers[0], side, image.i2t[0], query_pe, workspace)
        for i, layer in enumerate(layers[1:], start=1):
            keys_pe = torch.add(keys, image.pe, out=workspace.take("keys_pe", keys.shape, keys))
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q, q, queries))
            out = token_to_image(image.t2i[i], queries + query_pe, keys, keys_pe)
            queries = layer.norm2(queries + out)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            keys = layer_norm_(image_to_token(image.i2t[i], keys, keys_pe, q, queries), layer.norm4)
        # the final attention for the IoU token; the mask tokens' waits for the mask head
        first = 1 if multimask else 0
        count = decoder.num_mask_tokens - 1 if multimask else 1
        iou_token = queries[:, :1]
        out = token_to_image(image.final, iou_token + query_pe[:, :1], keys, pe=image.pe)
        iou_token = self.transformer.norm_final_attn(iou_token + out)
        iou = decoder.iou_prediction_head(iou_token[:, 0])[:, first : first + count]
        chosen = slice(1 + first, 1 + first + count)
        return DecodedPrompts(iou, queries[:, chosen], query_pe[:, chosen], first, keys, image)

    def _last_mask_conv(self) -> torch.nn.Conv2d | None:
        """The mask embedding's last layer if it is a 1x1 convolution (as in every SAM)."""
        last = self.model.prompt_encoder.mask_downscaling[-1]
        is_1x1 = isinstance(last, torch.nn.Conv2d) and last.kernel_size == (1, 1)
        return last if is_1x1 else None

    @property
    def accepts_masks(self) -> bool:
        """Whether :meth:`decode` takes a ``mask_input`` (see :class:`MaskFold`)."""
        return self._last_mask_conv() is not None

    def _image_side(self, image: SharedImage, mask_input: Tensor | None) -> _ImageSide:
        """The first block's image side: shared (batch 1), or changed by ``mask_input``
        ``(B, 1, 4h, 4w)`` through :class:`MaskFold` (batch B)."""
        shared = _ImageSide(
            image.keys[None], image.t2i_k[None], image.t2i_v[None], image.i2t_q[None]
        )
        if mask_input is None:
            return shared
        fold = image.mask
        if fold is None:
            raise ValueError("this mask decoder's mask embedding cannot be folded")
        z = self.model.prompt_encoder.mask_downscaling[:-1](mask_input)  # (B, c, h, w)
        z = z.flatten(2).transpose(1, 2)  # (B, N, c)
        heads = image.t2i_k.shape[0]
        delta = torch.matmul(z, fold.projections).add_(fold.projection_bias)  # (B, N, 3*H*d)
        k, v, q = (
            t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in delta.chunk(3, dim=-1)
        )  # each (B, H, N, d)
        return _ImageSide(
            keys=torch.matmul(z, fold.weight).add_(fold.bias).add_(image.keys),
            t2i_k=k + shared.t2i_k,
            t2i_v=v + shared.t2i_v,
            i2t_q=q + shared.i2t_q,
        )

    def _first_block(
        self,
        layer: torch.nn.Module,
        side: _ImageSide,
        folded: FoldedAttention,
        query_pe: Tensor,
        workspace: Workspace,
    ) -> tuple[Tensor, Tensor]:
        """The first two-way block against the image side computed once for all prompts
        (``side`` of batch 1) or once per prompt (batch P, with a mask input each)."""
        queries = query_pe
        if layer.skip_first_layer_pe:
            queries = layer.norm1(layer.self_attn(queries, queries, queries))
        else:
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q, q, queries))
        # token -> image against the precomputed projections, in one attention call: with a
        # shared side all P*T queries go as one sequence, else each prompt's T as a batch
        t2i: Attention = layer.cross_attn_token_to_image
        batch, tokens, _ = queries.shape
        sides, heads = side.keys.shape[0], t2i.num_heads
        q = _heads(t2i.q_proj(queries + query_pe), heads)  # (P, T, H, d)
        q = q.reshape(sides, -1, heads, q.shape[-1]).transpose(1, 2)  # (B, H, P/B*T, d)
        out = F.scaled_dot_product_attention(q, side.t2i_k, side.t2i_v)
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        queries = layer.norm2(queries + t2i.out_proj(out))
        queries = layer.norm3(queries + layer.mlp(queries))
        # image -> token: the image queries are precomputed as well
        i2t: Attention = layer.cross_attn_image_to_token
        k = i2t.k_proj(queries + query_pe).unflatten(-1, (heads, -1))  # (P, T, H, d)
        k = k.reshape(sides, -1, heads, k.shape[-1]).transpose(1, 2)  # (B, H, P/B*T, d)
        logits = torch.matmul(k, side.i2t_q.transpose(2, 3))  # (B, H, P/B*T, N)
        attn = logits.unflatten(2, (-1, tokens)).softmax(dim=3)  # over the T tokens
        attn = attn.transpose(1, 2).reshape(batch, heads * tokens, -1)  # (P, H*T, N)
        values = torch.addmm(folded.ov_bias, queries.flatten(0, 1), folded.ov)
        values = values.view(batch, tokens, heads, -1).transpose(1, 2).flatten(1, 2)
        keys = workspace.take("keys", (batch, *side.keys.shape[1:]), side.keys)
        torch.baddbmm(side.keys, attn.transpose(1, 2), values, out=keys)
        return queries, layer_norm_(keys, layer.norm4)

    @torch.inference_mode()
    def masks(
        self,
        decoded: DecodedPrompts,
        index: Tensor | None = None,
        extent: tuple[int, int] | None = None,
        *,
        workspace: Workspace | None = None,
    ) -> Tensor:
        """Low-res mask logits ``(K, C, 4h, 4w)`` of the prompts ``index`` ``(K,)`` (all of
        ``decoded``'s, in order, when ``None``: their image tokens are then used in place).

        The mask head works token by token, so with ``extent`` ``(rows, cols)`` it runs only for
        the tokens under that top-left part of the logits and leaves zeros elsewhere (for
        callers that read no further, like the upscaling of an image padded bottom-right).
        Its image-token-sized tensors go to ``workspace`` (beside ``decoded``'s own) when given.
        """
        workspace = Workspace() if workspace is None else workspace
        decoder = self.decoder
        up1, norm, act1, up2, act2 = decoder.output_upscaling
        h, w = decoded.image.grid
        rows, cols = (h, w) if extent is None else (-(-extent[0] // 4), -(-extent[1] // 4))
        rows, cols = min(rows, h), min(cols, w)
        dim = decoded.keys.shape[-1]
        if index is None:
            count, keys = len(decoded), decoded.keys
            queries, query_pe = decoded.mask_queries, decoded.mask_query_pe
        else:
            count = index.shape[0]
            head_keys = workspace.take("head_keys", (count, h * w, dim), decoded.keys)
            keys = torch.index_select(decoded.keys, 0, index, out=head_keys)  # (K, N, D)
            queries, query_pe = decoded.mask_queries[index], decoded.mask_query_pe[index]
        # the final attention for the chosen mask tokens (over all image tokens)
        q = queries + query_pe
        out = token_to_image(decoded.image.final, q, keys, pe=decoded.image.pe)
        mask_tokens = self.transformer.norm_final_attn(queries + out)
        if (rows, cols) != (h, w):
            cropped = workspace.take("head_crop", (count, rows, cols, dim), keys)
            keys = cropped.copy_(keys.view(count, h, w, dim)[:, :rows, :cols])
        # ConvTranspose2d(k=2, s=2) as a matrix product: (in) -> (2, 2, out) per token
        c1, c2 = up1.out_channels, up2.out_channels
        tokens = count * rows * cols
        y = workspace.take("head_up1", (tokens, 4 * c1), keys)
        patch_matmul(keys.reshape(tokens, dim), up1, out=y)
        y = activate_(layer_norm_(y.view(tokens * 4, c1), norm), act1)
        y2 = workspace.take("head_up2", (tokens * 4, 4 * c2), y)
        y = activate_(patch_matmul(y, up2, out=y2).view(tokens * 4, -1), act2)  # (K*N*4, 4*c2)
        mlps = decoder.output_hypernetworks_mlps[decoded.first_token :]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps[: mask_tokens.shape[1]])], dim=2
        )  # (K, c2, C)
        logits = torch.bmm(y.view(count, -1, c2), hyper)  # (K, N*16, C) ordered (y, x, i, j, k, l)
        logits = logits.view(count, rows, cols, 2, 2, 2, 2, -1)
        # fine row = 4y + 2i + k, fine column = 4x + 2j + l
        logits = logits.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(count, -1, 4 * rows, 4 * cols)
        if (rows, cols) != (h, w):
            logits = F.pad(logits, (0, 4 * (w - cols), 0, 4 * (h - rows)))
        return logits


__all__ = [
    "DecodedPrompts",
    "FoldedAttention",
    "MaskFold",
    "SharedImage",
    "SharedImageDecoder",
    "Workspace",
    "tensors_version",
]
