"""HQ-SAM's mask decoder: SAM's decoder plus one more output token, the HQ token, whose mask is
drawn on the decoder's upscaled image features fused with the image encoder's early features.

Per image (shared by every prompt), the HQ features ``(1, D/8, 4h, 4w)`` are the sum of two
upscalings: of the final embedding (``embedding_encoder``) and of the early ViT features
(``compress_vit_feat``). Per prompt, the HQ token's hypernetwork weights (``hf_mlp``) are dotted
with ``embedding_maskfeature(upscaled) + hq_features``. The output is one mask per prompt set:
the HQ mask alone (``hq_token_only``) or the HQ mask's logits added to SAM's (token 0, or with
``multimask_output`` the one of tokens 1..3 with the best predicted IoU). Keys are the official
``segment_anything_hq`` ones (``hf_token``, ``hf_mlp``, ``compress_vit_feat``,
``embedding_encoder``, ``embedding_maskfeature``).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .mask_decoder import MaskDecoder


def _upscaling(in_dim: int, mid_dim: int, out_dim: int) -> nn.Sequential:
    """Two transposed convolutions (kernel 2, stride 2: 4x the side) with a norm and GELU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_dim, mid_dim, kernel_size=2, stride=2),
        LayerNorm2d(mid_dim),
        nn.GELU(),
        nn.ConvTranspose2d(mid_dim, out_dim, kernel_size=2, stride=2),
    )


class MaskDecoderHQ(MaskDecoder):
    """:class:`MaskDecoder` with the HQ output token; ``vit_dim`` is the encoder's width."""

    def __init__(self, *, vit_dim: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        dim = self.transformer_dim
        self.hf_token = nn.Embedding(1, dim)
        self.hf_mlp = MLP(dim, dim, dim // 8, 3)
        self.compress_vit_feat = _upscaling(vit_dim, dim, dim // 8)
        self.embedding_encoder = _upscaling(dim, dim // 4, dim // 8)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(dim // 8, dim // 4, 3, 1, 1),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim // 8, 3, 1, 1),
        )

    def hq_features(self, image_embeddings: torch.Tensor, early: torch.Tensor) -> torch.Tensor:
        """``(1, D, h, w)`` embedding and ``(1, h, w, C)`` early ViT features (channels last,
        as the encoder's blocks give them) -> ``(1, D/8, 4h, 4w)``: per image, not per prompt."""
        vit = self.compress_vit_feat(early.permute(0, 3, 1, 2))
        return self.embedding_encoder(image_embeddings) + vit

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_token_only: bool,
        interm_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The official signature: ``interm_embeddings[0]`` is the early features
        ``(1, h, w, C)``. Returns ``(B, 1, 4h, 4w)`` logits and ``(B, 1)`` IoU (see the module
        docstring)."""
        hq = self.hq_features(image_embeddings, interm_embeddings[0])
        return self.decode_hq(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            hq,
            multimask_output=multimask_output,
            hq_token_only=hq_token_only,
        )

    def decode_hq(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: torch.Tensor,
        *,
        multimask_output: bool,
        hq_token_only: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt set from the image's precomputed ``hq_features``
        (:meth:`hq_features`): ``(B, 1, 4h, 4w)`` logits and ``(B, 1)`` IoU."""
        src_tokens, hyper_in, iou, size = self.decode_tokens(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        if multimask_output:
            iou, best = iou[:, 1:].max(dim=1, keepdim=True)  # (B, 1): the best of tokens 1..3
            index = (best + 1)[..., None].expand(-1, -1, hyper_in.shape[2])
            sam_hyper = hyper_in.gather(1, index)
        else:
            iou, sam_hyper = iou[:, :1], hyper_in[:, :1]
        if hq_token_only:
            sam_hyper = sam_hyper[:, :0]  # SAM's mask is not wanted: project none
        sam_mask, hq_mask = self.project_hq(
            src_tokens, sam_hyper, hyper_in[:, -1:], hq_features, size
        )
        return (hq_mask if hq_token_only else sam_mask + hq_mask), iou

    def mask_token_weights(self) -> torch.Tensor:
        """SAM's 4 mask tokens, then the HQ token: ``(5, D)`` (so :meth:`decode_tokens` gives
        hypernetwork weights ``(B, 5, D/8)``, HQ last; the IoU stays SAM's ``(B, 4)``)."""
        return torch.cat([self.mask_tokens.weight, self.hf_token.weight], dim=0)

    def hypernetwork_mlps(self) -> list[nn.Module]:
        """SAM's 4 MLPs, then the HQ token's."""
        return [*self.output_hypernetworks_mlps, self.hf_mlp]

    def project_hq(
        self,
        src_tokens: torch.Tensor,
        sam_hyper: torch.Tensor,
        hq_hyper: torch.Tensor,
        hq_features: torch.Tensor,
        size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's masks ``(B, T, 4h, 4w)`` for ``sam_hyper`` ``(B, T, D/8)`` and the HQ mask
        ``(B, 1, 4h, 4w)`` for ``hq_hyper`` ``(B, 1, D/8)`` (on the fused features)."""
        b, _, dim = src_tokens.shape
        upscaled = self.output_upscaling(src_tokens.transpose(1, 2).reshape(b, dim, *size))
        fused = self.embedding_maskfeature(upscaled) + hq_features
        _, channels, height, width = upscaled.shape
        sam = sam_hyper @ upscaled.reshape(b, channels, height * width)
        hq = hq_hyper @ fused.reshape(b, channels, height * width)
        return sam.view(b, -1, height, width), hq.view(b, 1, height, width)
