"""HQ-SAM's decoder route for many prompts on one image (the predictors and segment-everything):
what the HQ decoder computes per image, the fusion of the early encoder features with the
embedding (:meth:`~segany.modeling.mask_decoder_hq.MaskDecoderHQ.hq_features`, two stacks of
transposed convolutions up to ``4h x 4w``, the bulk of a click's work in the official
predictor), is computed once per image and kept with the embedding; each batch of prompts then
runs the reference two-way transformer and mask head. The interface is
:class:`~segany.fast.shared_decoder.SharedImageDecoder`'s (``image``, ``decode``, ``masks``), so
callers take either."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..modeling.sam_hq import SamHQ
from .workspace import Workspace


@dataclass(frozen=True)
class HQImage:
    """One image's decoder inputs: the embedding ``(1, D, h, w)`` and its HQ features
    ``(1, D/8, 4h, 4w)``."""

    features: Tensor
    hq_features: Tensor

    @property
    def keys(self) -> Tensor:
        """The image tokens ``(N, D)`` (a view), as :class:`SharedImage` has them: what the
        memory of a batch of prompts scales with."""
        return self.features.flatten(2)[0].transpose(0, 1)


@dataclass(frozen=True)
class HQDecodedPrompts:
    """``P`` prompts decoded: ``iou`` ``(P, 1)`` and ``low_res`` ``(P, 1, 4h, 4w)`` logits
    (one mask per prompt, as HQ-SAM gives)."""

    iou: Tensor
    low_res: Tensor

    def __len__(self) -> int:
        return self.iou.shape[0]


class HQImageDecoder:
    """Decode many prompts against one image with an HQ-SAM model (see the module docstring);
    ``hq_token_only`` is the default of :meth:`decode`."""

    accepts_masks = True

    def __init__(self, model: SamHQ, hq_token_only: bool = False) -> None:
        self.model = model
        self.hq_token_only = hq_token_only

    @torch.inference_mode()
    def image(self, features: Tensor, early: Tensor | None = None) -> HQImage:
        """What every prompt on this ``(1, D, h, w)`` embedding with its ``(1, h, w, C)`` early
        features shares."""
        if early is None:
            raise ValueError(
                "this embedding has no early encoder features: it was not made by an HQ-SAM "
                "model, whose decoder needs them"
            )
        return HQImage(features, self.model.mask_decoder.hq_features(features, early))

    @torch.inference_mode()
    def decode(
        self,
        image: HQImage,
        sparse: Tensor,
        multimask: bool = True,
        *,
        mask_input: Tensor | None = None,
        workspace: Workspace | None = None,
        hq_token_only: bool | None = None,
    ) -> HQDecodedPrompts:
        """Masks and IoU for ``(P, T, D)`` sparse prompt embeddings, with ``mask_input``
        ``(1 or P, 1, 4h, 4w)`` previous logits if given (``workspace`` is not used)."""
        prompt_encoder = self.model.prompt_encoder
        dense = prompt_encoder.embed_dense(mask_input, 1)
        low_res, iou = self.model.mask_decoder.decode_hq(
            image.features,
            prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            image.hq_features,
            multimask_output=multimask,
            hq_token_only=self.hq_token_only if hq_token_only is None else hq_token_only,
        )
        return HQDecodedPrompts(iou, low_res)

    def masks(
        self,
        decoded: HQDecodedPrompts,
        index: Tensor | None = None,
        extent: tuple[int, int] | None = None,
        *,
        workspace: Workspace | None = None,
    ) -> Tensor:
        """Low-res logits ``(K, 1, 4h, 4w)`` of the prompts ``index`` (all when ``None``);
        ``extent`` and ``workspace`` are accepted for the shared decoder's interface."""
        return decoded.low_res if index is None else decoded.low_res[index]


__all__ = ["HQDecodedPrompts", "HQImage", "HQImageDecoder"]
