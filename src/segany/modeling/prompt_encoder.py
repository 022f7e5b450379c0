"""Prompt encoder: points and box corners to sparse tokens, mask logits to a dense embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import LOW_RES_UPSCALE
from .common import LayerNorm2d

PIXEL_CENTER = 0.5  # prompts are given at pixel corners; the model encodes pixel centres
PADDING_LABEL = -1  # "not a point": pads point prompts when no box is given
BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 2, 3


def labelled_points(
    points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Points and boxes as one labelled point set, the form the ONNX graph takes.

    ``points`` = (coords ``(B, N, 2)``, labels ``(B, N)``), ``boxes`` ``(B, 4)`` XYXY. Box
    corners follow the points with labels 2 and 3; without a box, one padding point
    ``(0, 0)`` with label -1 is appended. Returns coords ``(B, N', 2)`` float32 and labels
    ``(B, N')`` int64, or ``None`` when there is neither.
    """
    coords: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    if points is not None:
        coords.append(points[0].to(torch.float32))
        labels.append(points[1].to(torch.long))
        if boxes is None:
            coords.append(coords[0].new_zeros(coords[0].shape[0], 1, 2))
            labels.append(torch.full_like(labels[0][:, :1], PADDING_LABEL))
    if boxes is not None:
        corners = boxes.reshape(-1, 2, 2).to(torch.float32)
        coords.append(corners)
        corner_labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=boxes.device)
        labels.append(corner_labels.expand(corners.shape[0], 2))
    if not coords:
        return None
    return torch.cat(coords, dim=1), torch.cat(labels, dim=1)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2-D coordinates: ``(..., 2)`` in [0, 1] -> ``(..., 2F)``."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        projected = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        projected = 2 * math.pi * projected
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the cell centres of an ``(H, W)`` grid, as ``(2F, H, W)``."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode pixel coordinates ``(B, N, 2)`` given the ``(H, W)`` frame they live in."""
        h, w = image_size
        extent = torch.tensor([w, h], device=coords_input.device, dtype=torch.float32)
        return self._pe_encoding(coords_input.to(torch.float32) / extent)


class PromptEncoder(nn.Module):
    """Sparse tokens for points and boxes, dense embedding for a mask prompt."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = tuple(LOW_RES_UPSCALE * side for side in image_embedding_size)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, ``(1, D, h, w)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_labelled_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Tokens for points in the model's input frame.

        ``coords`` ``(B, N, 2)`` as (x, y) pixels, ``labels`` ``(B, N)`` in {-1, 0, 1, 2, 3}
        (padding, negative, positive, box top-left, box bottom-right). Returns ``(B, N, D)``.
        This is the only point-embedding code: boxes and the ONNX graph use it too.
        """
        position = self.pe_layer.forward_with_coords(coords + PIXEL_CENTER, self.input_image_size)
        labels = labels.to(torch.long)
        is_point = (labels != PADDING_LABEL).unsqueeze(-1).to(position.dtype)
        table = torch.cat(
            [self.not_a_point_embed.weight] + [e.weight for e in self.point_embeddings]
        )  # (5, D), row 0 for padding
        return position * is_point + table[labels + 1]

    def embed_dense(self, masks: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``(B, 1, 4h, 4w)`` mask logits -> ``(B, D, h, w)``; without a mask, the learned
        no-mask embedding broadcast to ``batch``."""
        if masks is not None:
            return self.mask_downscaling(masks)
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)

    @staticmethod
    def _get_batch_size(
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return self.no_mask_embed.weight.device

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts for a batch of B prompt sets.

        ``points`` = (coords ``(B, N, 2)``, labels ``(B, N)``), ``boxes`` ``(B, 4)``,
        ``masks`` ``(B, 1, 4h, 4w)``. Returns sparse ``(B, N', D)`` and dense ``(B, D, h, w)``.
        When points come without a box, one padding point is appended (:func:`labelled_points`).
        """
        batch = self._get_batch_size(points, boxes, masks)
        merged = labelled_points(points, boxes)
        if merged is None:
            sparse = torch.empty((batch, 0, self.embed_dim), device=self._get_device())
        else:
            sparse = self.embed_labelled_points(*merged)
        return sparse, self.embed_dense(masks, batch)
