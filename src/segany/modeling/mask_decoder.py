"""Mask decoder: output tokens + prompt tokens through the two-way transformer, then masks from
hypernetwork MLPs dotted with an upscaled image embedding, and an IoU prediction per mask.

The reference model: the upscaling is the plain transposed-convolution sequence; the faster
route (the convolutions as matrix products on channels-last tokens) is
:class:`segany.fast.model.FastMaskDecoder`."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d


def output_slice(multimask_output: bool) -> slice:
    """Which of the mask tokens a prediction returns: 1..3 with ``multimask_output``, else 0."""
    return slice(1, None) if multimask_output else slice(0, 1)


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs + 1`` masks and their IoU for each prompt set."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, C, 4h, 4w)`` logits and IoU ``(B, C)``; C = 3 with ``multimask_output``
        (tokens 1..3), else 1 (token 0). See :meth:`predict_masks` for the inputs. Only the
        returned masks are projected."""
        selected = output_slice(multimask_output)
        src_tokens, hyper_in, iou_pred, size = self.decode_tokens(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        masks = self.upscale_and_project(src_tokens, hyper_in[:, selected], size)
        return masks, iou_pred[:, selected]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens: ``(B, 4, 4h, 4w)`` logits and ``(B, 4)`` IoU (inputs as in
        :meth:`decode_tokens`)."""
        src_tokens, hyper_in, iou_pred, size = self.decode_tokens(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        return self.upscale_and_project(src_tokens, hyper_in, size), iou_pred

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """The transformer and the heads, before any mask is projected: image tokens
        ``(B, h*w, D)``, hypernetwork weights ``(B, T, D/8)`` of every mask token (T = 4, one
        more with HQ-SAM's token, see :meth:`mask_token_weights`), IoU ``(B, 4)`` and the grid
        ``(h, w)``; masks come from :meth:`upscale_and_project` for the tokens wanted.

        ``image_embeddings`` ``(1 or B, D, h, w)`` (one image shared by all prompt sets, or one
        per prompt set), ``image_pe`` ``(1, D, h, w)``, ``sparse_prompt_embeddings``
        ``(B, N, D)``, ``dense_prompt_embeddings`` ``(B or 1, D, h, w)``.
        """
        batch = sparse_prompt_embeddings.shape[0]
        mask_tokens = self.mask_token_weights()
        output_tokens = torch.cat([self.iou_token.weight, mask_tokens], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if image_embeddings.shape[0] not in (1, batch):
            raise ValueError(
                f"image_embeddings has batch {image_embeddings.shape[0]}; expected 1 or {batch}"
                " (one per prompt set)"
            )
        src = (image_embeddings + dense_prompt_embeddings).expand(batch, -1, -1, -1)
        h, w = src.shape[-2:]
        hs, src_tokens = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + len(mask_tokens), :]

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.hypernetwork_mlps())],
            dim=1,
        )  # (B, T, D/8)
        return src_tokens, hyper_in, self.iou_prediction_head(iou_token_out), (h, w)

    def mask_token_weights(self) -> torch.Tensor:
        """The learned mask tokens ``(T, D)``, in the order of :meth:`hypernetwork_mlps`."""
        return self.mask_tokens.weight

    def hypernetwork_mlps(self) -> list[nn.Module]:
        """Each mask token's MLP to its hypernetwork weights (``D`` -> ``D/8``)."""
        return list(self.output_hypernetworks_mlps)

    def upscale_and_project(
        self, src_tokens: torch.Tensor, hyper_in: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``output_upscaling`` of the image tokens, then each mask is the product of its
        hypernetwork weights with the upscaled embedding.

        ``src_tokens`` ``(B, h*w, D)``, ``hyper_in`` ``(B, T, D/8)`` -> masks ``(B, T, 4h, 4w)``.
        """
        b, _, dim = src_tokens.shape
        src = src_tokens.transpose(1, 2).reshape(b, dim, *size)
        upscaled = self.output_upscaling(src)  # (B, D/8, 4h, 4w)
        _, channels, height, width = upscaled.shape
        masks = hyper_in @ upscaled.view(b, channels, height * width)
        return masks.view(b, -1, height, width)
