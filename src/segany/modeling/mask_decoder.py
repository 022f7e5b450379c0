"""Mask decoder: output tokens + prompt tokens through the two-way transformer, then masks from
hypernetwork MLPs dotted with an upscaled image embedding, and an IoU prediction per mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        ``(B, h*w, D)``, hypernetwork weights ``(B, 4, D/8)`` and IoU ``(B, 4)`` of every mask
        token, and the grid ``(h, w)``; masks come from :meth:`upscale_and_project` for the
        tokens wanted.

        ``image_embeddings`` ``(1 or B, D, h, w)`` (one image shared by all prompt sets, or one
        per prompt set), ``image_pe`` ``(1, D, h, w)``, ``sparse_prompt_embeddings``
        ``(B, N, D)``, ``dense_prompt_embeddings`` ``(B or 1, D, h, w)``.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
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
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, 4, D/8)
        return src_tokens, hyper_in, self.iou_prediction_head(iou_token_out), (h, w)

    def upscale_and_project(
        self, src_tokens: torch.Tensor, hyper_in: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``output_upscaling`` then the hypernetwork product, on channels-last tokens.

        ``src_tokens`` ``(B, h*w, D)``, ``hyper_in`` ``(B, T, D/8)`` -> masks ``(B, T, 4h, 4w)``.
        Each 2x2-stride transposed convolution is a matmul whose outputs stay grouped by
        source pixel (sub-pixel position, channel); layer norm and GELU act per pixel, and the
        masks are put in spatial order once at the end, on T channels instead of D/8.
        """
        first, norm, act1, second, act2 = self.output_upscaling
        x = self._patch_matmul(src_tokens, first)  # (B, hw, 4, D/4)
        x = act1(F.layer_norm(x, (norm.num_channels,), norm.weight, norm.bias, norm.eps))
        x = act2(self._patch_matmul(x, second))  # (B, hw, 4, 4, D/8)
        b, tokens = hyper_in.shape[:2]
        masks = x.flatten(1, -2) @ hyper_in.transpose(1, 2)  # (B, hw * 16, T)
        h, w = size
        # (B, h, w, row1, col1, row2, col2, T) -> (B, T, (h, row1, row2), (w, col1, col2))
        masks = masks.reshape(b, h, w, 2, 2, 2, 2, tokens).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, tokens, 4 * h, 4 * w)

    @staticmethod
    def _patch_matmul(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
        """A transposed convolution with kernel = stride = 2 on ``(..., C_in)`` ->
        ``(..., 4, C_out)`` (sub-pixel position row-major, then channel)."""
        weight = conv.weight.permute(2, 3, 1, 0).flatten(0, 2)  # (2 * 2 * C_out, C_in)
        bias = None if conv.bias is None else conv.bias.repeat(4)
        out = F.linear(x.reshape(-1, x.shape[-1]), weight, bias)  # 2-D: one GEMM with bias
        return out.reshape(*x.shape[:-1], 4, -1)
