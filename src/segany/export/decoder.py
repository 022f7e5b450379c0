"""The prompt encoder, mask decoder and mask upscaling as one ONNX graph with the official
``SamOnnxModel`` interface, so clients written for the official export load it unchanged.

Inputs (float32): ``image_embeddings`` ``(1, 256, 64, 64)``, ``point_coords`` ``(1, N, 2)`` in
the model's input frame (dynamic N), ``point_labels`` ``(1, N)`` (-1 padding, 0, 1, 2/3 box
corners), ``mask_input`` ``(1, 1, 256, 256)``, ``has_mask_input`` ``(1,)``, ``orig_im_size``
``(2,)`` as (H, W). Outputs: ``masks`` ``(1, C, H, W)`` logits, ``iou_predictions``
``(1, C)``, ``low_res_masks`` ``(1, C, 256, 256)``; C = 4, or 1 with ``return_single_mask``.

Nothing here re-implements the model: points go through
:meth:`PromptEncoder.embed_labelled_points`, the resized size through
:func:`~segany.inference.transforms.preprocess_shape`, upscaling through
:func:`~segany.fast.upscale.upscale_logits`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..automatic.filters import stability_score
from ..fast.upscale import upscale_logits
from ..inference.embedding import encoder_id
from ..inference.transforms import preprocess_shape
from ..modeling.sam import Sam
from ..modeling.sam_hq import SamHQ
from .common import DEFAULT_OPSET, gelu_approximation, trace_to_onnx

INPUT_NAMES = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
OUTPUT_NAMES = ("masks", "iou_predictions", "low_res_masks")
EXTRA_OUTPUT_NAMES = ("masks", "iou_predictions", "stability_scores", "areas", "low_res_masks")
STABILITY_OFFSET = 1.0  # the official export's threshold offset
SINGLE_MASK_BIAS = 1000.0  # the official select rule: token 0 wins with more than 2 points
DUMMY_ORIG_SIZE = (1500.0, 2250.0)  # the official script's trace-time image size


@dataclass(frozen=True)
class DecoderExportOptions:
    """The official export flags."""

    return_single_mask: bool = False
    use_stability_score: bool = False
    return_extra_metrics: bool = False
    gelu_approximate: bool = False
    opset: int = DEFAULT_OPSET
    hq_token_only: bool = False  # HQ-SAM models only (see :mod:`.decoder_hq`)


def select_single_mask(
    masks: torch.Tensor, scores: torch.Tensor, num_points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``return_single_mask`` rule without control flow: with more than 2 points
    (padding included) token 0, else the best of tokens 1..; ``(B, T, h, w)``, ``(B, T)``,
    ``(B, 1)`` -> ``(B, 1, h, w)``, ``(B, 1)``. ``masks`` may be any per-token
    ``(B, T, a, b)`` tensor (the tokens' hypernetwork weights, say)."""
    bias = torch.zeros(scores.shape[1], dtype=scores.dtype, device=scores.device)
    bias[0] = SINGLE_MASK_BIAS
    best = torch.argmax(scores + (num_points - 2.5) * bias, dim=1, keepdim=True)  # (B, 1)
    index = best[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3])
    return torch.gather(masks, 1, index), torch.gather(scores, 1, best)


def count_points(point_labels: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` labels -> ``(B, 1)`` the number of points, padding included (as the official
    single-mask rule counts them)."""
    return torch.ones_like(point_labels).sum(dim=1, keepdim=True)


class OnnxDecoder(nn.Module):
    """``SamOnnxModel``'s interface over a segany model (see the module docstring)."""

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.img_size = model.img_size
        self.mask_threshold = float(model.mask_threshold)
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.return_extra_metrics = return_extra_metrics

    @property
    def output_names(self) -> tuple[str, ...]:
        return EXTRA_OUTPUT_NAMES if self.return_extra_metrics else OUTPUT_NAMES

    def embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """Dense prompt ``(1, D, h, w)``: the mask embedding where ``has_mask_input`` is 1,
        ``no_mask_embed`` where it is 0, blended arithmetically."""
        prompt_encoder = self.model.prompt_encoder
        no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = prompt_encoder.mask_downscaling(mask_input)
        return has_mask_input * dense + (1 - has_mask_input) * no_mask

    def upscale(self, low_res: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """``(B, C, 4h, 4w)`` -> ``(B, C, H, W)`` for ``orig_im_size`` = (H, W) as floats."""
        height, width = orig_im_size[0], orig_im_size[1]
        input_size = preprocess_shape(height, width, self.img_size)
        original = (height.to(torch.int64), width.to(torch.int64))
        return upscale_logits(low_res, self.img_size, input_size, original)

    def forward(
        self,
        image_embeddings: torch.Tensor,
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
        if self.return_single_mask and not self.use_stability_score:
            # the selection needs only the predicted IoU: project the chosen mask alone
            num_points = count_points(point_labels)
            chosen, scores = select_single_mask(hyper_in[:, :, None], scores, num_points)
            low_res = decoder.upscale_and_project(src_tokens, chosen[:, :, 0], size)
            return self.outputs(low_res, scores, orig_im_size)
        low_res = decoder.upscale_and_project(src_tokens, hyper_in, size)
        return self.select_outputs(low_res, scores, point_labels, orig_im_size)

    def decode_prompts(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """The graph's prompts through the prompt encoder and the decoder's transformer:
        :meth:`MaskDecoder.decode_tokens`' image tokens, hypernetwork weights, predicted IoU
        ``(1, C)`` and grid size."""
        prompt_encoder = self.model.prompt_encoder
        sparse = prompt_encoder.embed_labelled_points(point_coords, point_labels)
        return self.model.mask_decoder.decode_tokens(
            image_embeddings=image_embeddings,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=self.embed_mask(mask_input, has_mask_input),
        )

    def select_outputs(
        self,
        low_res: torch.Tensor,
        scores: torch.Tensor,
        point_labels: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The outputs from every token's ``(1, C, 4h, 4w)`` logits and ``(1, C)`` predicted
        IoU: stability scores in place of the IoU with ``use_stability_score``, the one mask of
        the official rule with ``return_single_mask``."""
        if self.use_stability_score:
            scores = stability_score(low_res, self.mask_threshold, STABILITY_OFFSET)
        if self.return_single_mask:
            low_res, scores = select_single_mask(low_res, scores, count_points(point_labels))
        return self.outputs(low_res, scores, orig_im_size)

    def outputs(
        self, low_res: torch.Tensor, scores: torch.Tensor, orig_im_size: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The graph's outputs from the chosen ``(1, C, 4h, 4w)`` logits and ``(1, C)``
        scores: upscaled masks, plus stability and areas with extra metrics."""
        masks = self.upscale(low_res, orig_im_size)
        if not self.return_extra_metrics:
            return masks, scores, low_res
        stability = stability_score(masks, self.mask_threshold, STABILITY_OFFSET)
        areas = (masks > self.mask_threshold).sum(dim=(-2, -1))
        return masks, scores, stability, areas, low_res


def dummy_inputs(model: Sam, num_points: int = 5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Trace-time inputs in the order of :data:`INPUT_NAMES`."""
    generator = torch.Generator().manual_seed(seed)
    grid = model.prompt_encoder.image_embedding_size
    low_res = model.prompt_encoder.mask_input_size
    dim = model.prompt_encoder.embed_dim
    return (
        torch.randn(1, dim, *grid, generator=generator),
        torch.rand(1, num_points, 2, generator=generator) * model.img_size,
        torch.randint(-1, 4, (1, num_points), generator=generator).to(torch.float32),
        torch.randn(1, 1, *low_res, generator=generator),
        torch.tensor([1.0]),
        torch.tensor(DUMMY_ORIG_SIZE),
    )


def _traced(
    model: Sam, options: DecoderExportOptions
) -> tuple[OnnxDecoder, tuple[torch.Tensor, ...], tuple[str, ...]]:
    """The module to trace, its trace-time inputs and their names: HQ-SAM's graph
    (:mod:`.decoder_hq`) for an HQ model."""
    from .decoder_hq import HQ_INPUT_NAMES, OnnxDecoderHQ, dummy_inputs_hq  # builds on this one

    flags = (options.return_single_mask, options.use_stability_score, options.return_extra_metrics)
    if isinstance(model, SamHQ):
        wrapper = OnnxDecoderHQ(model.eval(), *flags, options.hq_token_only)
        return wrapper, dummy_inputs_hq(model), HQ_INPUT_NAMES
    if options.hq_token_only:
        raise ValueError("hq_token_only needs an HQ-SAM model")
    return OnnxDecoder(model.eval(), *flags), dummy_inputs(model), INPUT_NAMES


def export_decoder(
    model: Sam,
    output: str | os.PathLike[str],
    *,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    gelu_approximate: bool = False,
    opset: int = DEFAULT_OPSET,
    hq_token_only: bool = False,
) -> Path:
    """Write the prompt encoder + mask decoder graph to ``output`` (see the module docstring;
    an HQ-SAM model's graph takes its early features too, see :mod:`.decoder_hq`).

    The flags are the official script's; the model itself is left unchanged.
    """
    options = DecoderExportOptions(
        return_single_mask,
        use_stability_score,
        return_extra_metrics,
        gelu_approximate,
        opset,
        hq_token_only,
    )
    wrapper, inputs, input_names = _traced(model, options)
    dynamic = {
        "point_coords": {1: "num_points"},
        "point_labels": {1: "num_points"},
        "masks": {2: "height", 3: "width"},
    }
    count = 1 if return_single_mask else model.mask_decoder.num_mask_tokens
    low_res = model.prompt_encoder.mask_input_size
    shapes: dict[str, list[int | str]] = {
        "masks": [1, count, "height", "width"],
        "iou_predictions": [1, count],
        "stability_scores": [1, count],
        "areas": [1, count],
        "low_res_masks": [1, count, *low_res],
    }
    metadata = {
        "kind": "decoder",
        "config": model.config.to_json() if model.config is not None else "",
        "encoder_id": encoder_id(model),
        "img_size": str(model.img_size),
        "mask_threshold": str(float(model.mask_threshold)),
        "options": asdict(options),
    }
    with gelu_approximation(model, gelu_approximate):
        return trace_to_onnx(
            wrapper,
            inputs,
            output,
            input_names=input_names,
            output_names=wrapper.output_names,
            dynamic_axes=dynamic,
            opset=opset,
            metadata=metadata,
            output_shapes=shapes,
            external_data=False,
        )
