"""Embed once, prompt many: the native predictor over immutable :class:`Embedding` values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..fast.hq_decoder import HQImageDecoder
from ..fast.shared_decoder import SharedImageDecoder, tensors_version
from ..fast.upscale import upscale_to_masks
from ..modeling.sam import Sam
from ..modeling.sam_hq import SamHQ
from .embedding import Embedding, encode, encoder_id, prepare_image
from .prompts import PromptBatch, check_embedding, convert_images, embedding_prompts


@dataclass(frozen=True)
class Prediction:
    """Masks for K prompt sets with C candidates each.

    ``masks`` ``(K, C, H, W)`` bool (float32 logits if requested), ``scores`` ``(K, C)``
    predicted IoU, ``low_res_logits`` ``(K, C, 4h, 4w)`` float32 (feed back as ``mask_input``).
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    def best_index(self) -> np.ndarray:
        """``(K,)`` index of the highest-scoring candidate per prompt set."""
        return self.scores.argmax(axis=1)

    def best_masks(self) -> np.ndarray:
        """``(K, H, W)``: the highest-scoring mask of each prompt set."""
        return self.masks[np.arange(len(self.masks)), self.best_index()]

    def best_logits(self) -> np.ndarray:
        """``(K, 1, 4h, 4w)``: the low-res logits of the best masks, ready as ``mask_input``."""
        return self.low_res_logits[np.arange(len(self.masks)), self.best_index()][:, None]


def decode_prompts(
    model: Sam,
    decoder: SharedImageDecoder | None,
    embedding: Embedding,
    prompts: PromptBatch,
    multimask_output: bool,
    return_logits: bool,
    hq_token_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the prompt encoder and decoder and upscale: ``(K, C, H, W)`` masks (bool or logits),
    ``(K, C)`` IoU, ``(K, C, 4h, 4w)`` low-res logits. The one decode path of every predictor.
    An HQ-SAM model gives one mask per prompt set (C = 1; the HQ mask alone with
    ``hq_token_only``, see :class:`~segany.fast.hq_decoder.HQImageDecoder`).

    ``decoder`` (the model's :class:`SharedImageDecoder`, if given) decodes against inputs computed once
    per embedding and kept with it, changed for a mask input by c-wide products
    (:class:`~segany.fast.shared_decoder.MaskFold`); other models go through :meth:`Sam.decode`.
    """
    hq = isinstance(decoder, HQImageDecoder)
    if hq_token_only and not hq:
        raise ValueError("hq_token_only needs an HQ-SAM model")
    if decoder is not None and (prompts.mask_input is None or decoder.accepts_masks):
        sparse, _ = model.prompt_encoder(points=prompts.point_pair, boxes=prompts.boxes, masks=None)
        sparse = sparse.expand(prompts.size, -1, -1)  # (1, 0, D) for masks alone
        shared = embedding.derived(
            decoder, weights_version(model), lambda: decoder.image(*embedding.encoder_outputs)
        )
        options = {"hq_token_only": hq_token_only} if hq else {}
        decoded = decoder.decode(
            shared, sparse, multimask=multimask_output, mask_input=prompts.mask_input, **options
        )
        low_res = decoder.masks(decoded)
        iou = decoded.iou
    else:
        low_res, iou = model.decode(
            embedding.features,
            points=prompts.point_pair,
            boxes=prompts.boxes,
            mask_input=prompts.mask_input,
            multimask_output=multimask_output,
        )
    if return_logits:
        masks = model.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
    else:
        masks = upscale_to_masks(
            low_res,
            model.img_size,
            embedding.input_size,
            embedding.original_size,
            model.mask_threshold,
        )
    return masks, iou, low_res


def weights_version(model: Sam) -> tuple[int, ...]:
    """Changes whenever a prompt encoder or mask decoder weight changes in place or gets new
    storage (version counters, data pointers): what invalidates decoder inputs kept per image."""
    tensors = [*model.prompt_encoder.parameters(), *model.prompt_encoder.buffers()]
    return tensors_version([*tensors, *model.mask_decoder.parameters()])


def shared_decoder(model: Sam) -> SharedImageDecoder | HQImageDecoder | None:
    """The model's :class:`SharedImageDecoder` (:class:`HQImageDecoder` for HQ-SAM), or
    ``None`` for a decoder it cannot rearrange."""
    if isinstance(model, SamHQ):
        return HQImageDecoder(model)
    return SharedImageDecoder(model) if model.mask_decoder.transformer.depth >= 1 else None


class Predictor:
    """Promptable segmentation with a model; thread-safe (it holds no per-image state)."""

    def __init__(self, model: Sam) -> None:
        self.model = model.eval()
        self._encoder_id = encoder_id(model)
        self._decoder = shared_decoder(model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits (``mask_input``, ``low_res_logits``)."""
        return self.model.prompt_encoder.mask_input_size[0]

    @torch.inference_mode()
    def embed(self, image: np.ndarray, image_format: str = "RGB") -> Embedding:
        """Encode one ``(H, W, 3)`` uint8 image (``RGB`` or ``BGR``)."""
        return self.embed_batch([image], image_format=image_format)[0]

    @torch.inference_mode()
    def embed_batch(
        self, images: Sequence[np.ndarray], image_format: str = "RGB"
    ) -> list[Embedding]:
        """Encode several images in one encoder call."""
        batch, sizes = [], []
        for image in convert_images(images, image_format):
            tensor, input_size = prepare_image(self.model, image)
            batch.append(self.model.preprocess(tensor)[0])
            sizes.append(((image.shape[0], image.shape[1]), input_size))
        features, early = encode(self.model, torch.stack(batch))
        return [
            Embedding(
                features=features[i : i + 1].clone(),
                original_size=original,
                input_size=input_size,
                img_size=self.model.img_size,
                encoder_id=self._encoder_id,
                early=None if early is None else early[i : i + 1].clone(),
            )
            for i, (original, input_size) in enumerate(sizes)
        ]

    def check_embedding(self, embedding: Embedding) -> None:
        """``ValueError`` if the embedding does not belong to this model."""
        check_embedding(embedding, self.model.img_size, self._encoder_id)

    @torch.inference_mode()
    def predict(
        self,
        embedding: Embedding,
        *,
        points: Any = None,
        labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> Prediction:
        """Masks for prompts in original-image pixels.

        ``points`` ``(N, 2)`` or ``(K, N, 2)`` as (x, y) with ``labels`` (1 foreground,
        0 background); ``boxes`` ``(4,)`` or ``(K, 4)`` XYXY (K boxes give K masks);
        ``mask_input`` previous low-res logits ``(1, 4h, 4w)`` or ``(K, 1, 4h, 4w)``.
        Parts broadcast over the K prompt sets. With ``multimask`` each set gets 3 candidates;
        an HQ-SAM model gives one (the best of SAM's 3 with ``multimask``, else SAM's single
        mask, plus the HQ mask; only the HQ mask with ``hq_token_only``).
        """
        self.check_embedding(embedding)
        prompts = embedding_prompts(
            embedding, self.device, points=points, labels=labels, boxes=boxes, mask_input=mask_input
        )
        masks, iou, low_res = decode_prompts(
            self.model, self._decoder, embedding, prompts, multimask, return_logits, hq_token_only
        )
        return Prediction(
            masks=masks.cpu().numpy(),
            scores=iou.float().cpu().numpy(),
            low_res_logits=low_res.float().cpu().numpy(),
        )
