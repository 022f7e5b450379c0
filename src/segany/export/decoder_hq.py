"""HQ-SAM's decoder graph: :class:`~segany.export.decoder.OnnxDecoder`'s interface with one more
input, ``interm_embeddings`` ``(1, h, w, C)`` float32 (the encoder's early features, as
:attr:`segany.Embedding.early` holds them), after ``image_embeddings``.

The outputs keep the official four masks, so every client's selection rule works unchanged:
mask k is SAM's token k plus the HQ mask (``hq_token_only``: the HQ mask in all four), with
SAM's predicted IoU. Picking token 0, or the best of tokens 1..3, gives what the official HQ
predictor returns without and with ``multimask_output``.
"""

from __future__ import annotations

import torch

from ..modeling.sam_hq import SamHQ
from .decoder import INPUT_NAMES, OnnxDecoder, dummy_inputs

HQ_INPUT_NAMES = (INPUT_NAMES[0], "interm_embeddings", *INPUT_NAMES[1:])


class OnnxDecoderHQ(OnnxDecoder):
    """The decoder graph of an HQ-SAM model (see the module docstring)."""

    model: SamHQ

    def __init__(
        self,
        model: SamHQ,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
        hq_token_only: bool = False,
    ) -> None:
        super().__init__(model, return_single_mask, use_stability_score, return_extra_metrics)
        self.hq_token_only = hq_token_only

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        interm_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Masks, scores and low-res logits (plus stability and areas with extra metrics)."""
        src_tokens, hyper_in, scores, size = self.decode_prompts(
            image_embeddings, point_coords, point_labels, mask_input, has_mask_input
        )
        decoder = self.model.mask_decoder
        hq_features = decoder.hq_features(image_embeddings, interm_embeddings)
        sam_hyper = hyper_in[:, :0] if self.hq_token_only else hyper_in[:, :-1]
        sam, hq = decoder.project_hq(src_tokens, sam_hyper, hyper_in[:, -1:], hq_features, size)
        low_res = hq.expand(-1, scores.shape[1], -1, -1) if self.hq_token_only else sam + hq
        return self.select_outputs(low_res, scores, point_labels, orig_im_size)


def dummy_inputs_hq(model: SamHQ, num_points: int = 5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Trace-time inputs in the order of :data:`HQ_INPUT_NAMES`."""
    embeddings, *rest = dummy_inputs(model, num_points, seed)
    grid = model.prompt_encoder.image_embedding_size
    width = model.mask_decoder.compress_vit_feat[0].in_channels
    generator = torch.Generator().manual_seed(seed + 1)
    return (embeddings, torch.randn(1, *grid, width, generator=generator), *rest)


__all__ = ["HQ_INPUT_NAMES", "OnnxDecoderHQ", "dummy_inputs_hq"]
