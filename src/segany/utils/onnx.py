"""Drop-in for ``segment_anything.utils.onnx``: :class:`SamOnnxModel`, the prompt encoder, mask
decoder and mask upscaling as one traceable module with the official constructor, inputs and
outputs, so ``torch.onnx.export(SamOnnxModel(sam, return_single_mask=True), ...)`` as in the
official notebook and export script works on a segany model.

It is :class:`segany.export.OnnxDecoder` (what ``segany export onnx`` traces) under the official
name; the official helper methods are kept for code that calls them.
"""

from __future__ import annotations

import torch

from segany import Sam
from segany.export import OnnxDecoder
from segany.export.decoder import STABILITY_OFFSET, select_single_mask
from segany.utils.amg import calculate_stability_score

__all__ = ["Sam", "SamOnnxModel", "calculate_stability_score"]


class SamOnnxModel(OnnxDecoder):
    """The official ONNX wrapper's interface over a segany model; meant for ``torch.onnx.export``.

    Inputs (float32): ``image_embeddings`` ``(1, D, h, w)``, ``point_coords`` ``(1, N, 2)`` in
    the model's input frame, ``point_labels`` ``(1, N)`` (-1 padding, 0/1 points, 2/3 box
    corners), ``mask_input`` ``(1, 1, 4h, 4w)``, ``has_mask_input`` ``(1,)``, ``orig_im_size``
    ``(2,)`` as (H, W). Outputs: mask logits ``(1, C, H, W)``, scores ``(1, C)``, low-res logits
    ``(1, C, 4h, 4w)``; with ``return_extra_metrics`` also stability scores and areas before the
    low-res logits. ``C`` is 1 with ``return_single_mask``, else the number of mask tokens.
    Unlike the official module, the graph follows ``orig_im_size`` at run time for any image
    size, not only the one it was traced with.
    """

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__(model, return_single_mask, use_stability_score, return_extra_metrics)
        self.mask_decoder = model.mask_decoder
        self.stability_score_offset = STABILITY_OFFSET

    @staticmethod
    def resize_longest_image_size(
        input_image_size: torch.Tensor, longest_side: int
    ) -> torch.Tensor:
        """``(2,)`` (H, W) -> the int64 size with the longest side scaled to ``longest_side``
        (rounded half up)."""
        size = input_image_size.to(torch.float32)
        scaled = size * (longest_side / torch.max(size))
        return torch.floor(scaled + 0.5).to(torch.int64)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``(B, C, 4h, 4w)`` -> ``(B, C, H, W)`` for ``orig_im_size`` (H, W)."""
        return self.upscale(masks, orig_im_size)

    def select_masks(
        self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-mask rule: the first token's mask with more than 2 points (padding
        included), else the best-scoring of the others. ``(B, C, ...)`` -> ``(B, 1, ...)``."""
        return select_single_mask(masks, iou_preds, num_points)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        if self.stability_score_offset != STABILITY_OFFSET:
            raise ValueError(
                f"stability_score_offset is fixed at {STABILITY_OFFSET} (the official value), "
                f"got {self.stability_score_offset}"
            )
        return super().forward(
            image_embeddings,
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            orig_im_size,
        )
