"""The SAM model: wiring of encoder, prompt encoder and decoder, with tensor pre/post-processing.

``forward`` is differentiable in training mode and, like the official one, builds no autograd
graph in eval mode; inference helpers elsewhere add ``torch.inference_mode``.
This is the reference model, plain modules readable beside the official code; the faster
routes for the same modules live in :mod:`segany.fast` and are installed by
:func:`segany.optimize` (and by every loader of segany).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SamConfig, TinyViTConfig
from .image_encoder import ImageEncoderViT, encoder_from_config
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer


def normalize_and_pad(
    x: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, img_size: int
) -> torch.Tensor:
    """Normalise ``(..., 3, h, w)`` resized RGB pixels (0-255) with ``(3, 1, 1)`` mean and std
    and zero-pad bottom and right to ``(..., 3, img_size, img_size)``. The one preprocessing
    implementation (the model, the ONNX encoder graph and the onnxruntime backend use it)."""
    x = (x - pixel_mean) / pixel_std
    h, w = x.shape[-2:]
    return F.pad(x, (0, img_size - w, 0, img_size - h))


class Sam(nn.Module):
    """Promptable segmentation: embed an image once, decode masks for many prompts."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
        config: SamConfig | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        mean = torch.tensor(list(pixel_mean), dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(list(pixel_std), dtype=torch.float32).view(-1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., 3, h, w)`` resized RGB pixels (0-255) and zero-pad to the square
        input size: ``-> (..., 3, S, S)``."""
        return normalize_and_pad(x, self.pixel_mean, self.pixel_std, self.img_size)

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits ``(B, C, 4h, 4w)`` -> logits ``(B, C, H, W)`` at ``original_size``:
        bilinear to the padded square input, crop the padding away, bilinear to the original
        size."""
        size = (self.img_size, self.img_size)
        masks = F.interpolate(masks, size, mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on embeddings ``(1 or B, D, h, w)``.

        Prompts are in the model's input frame (see :meth:`PromptEncoder.forward`). Returns
        low-res logits ``(B, C, 4h, 4w)`` and predicted IoU ``(B, C)``.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction with the official batched-input interface.

        Each record holds ``image`` ``(3, h, w)`` (resized, not normalised), ``original_size``
        and optionally ``point_coords`` ``(B, N, 2)``, ``point_labels`` ``(B, N)``, ``boxes``
        ``(B, 4)``, ``mask_inputs`` ``(B, 1, 4h, 4w)``, all in the input frame. Each output
        holds ``masks`` ``(B, C, H, W)`` bool, ``iou_predictions`` ``(B, C)`` and
        ``low_res_logits`` ``(B, C, 4h, 4w)``.

        Like the official model, a model in eval mode (as loaded) builds no autograd graph: the
        outputs are ready for numpy and no activations are kept. In training mode
        (``model.train()``) gradients flow, so the model can be fine-tuned through this call.
        """
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            return self._forward(batched_input, multimask_output)

    def _forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.image_encoder(images)
        return [
            self._decode_record(record, embedding.unsqueeze(0), multimask_output)
            for record, embedding in zip(batched_input, embeddings)
        ]

    def _decode_record(
        self,
        record: dict[str, Any],
        image_embeddings: torch.Tensor,
        multimask_output: bool,
        **decode_options: Any,
    ) -> dict[str, torch.Tensor]:
        """One record of :meth:`forward`'s input from its image's ``(1, D, h, w)`` embedding:
        its prompts through :meth:`decode` (given ``decode_options`` too), the logits
        upscaled to the original size."""
        points = None
        if "point_coords" in record:
            points = (record["point_coords"], record["point_labels"])
        low_res, iou = self.decode(
            image_embeddings,
            points=points,
            boxes=record.get("boxes"),
            mask_input=record.get("mask_inputs"),
            multimask_output=multimask_output,
            **decode_options,
        )
        masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
        return {
            "masks": masks > self.mask_threshold,
            "iou_predictions": iou,
            "low_res_logits": low_res,
        }


def build_model(config: SamConfig, *, drop_path_rate: float = 0.0, dropout: float = 0.0) -> Sam:
    """A freshly initialised model for ``config`` (in eval mode)."""
    if config.decoder.hq:  # HQ-SAM's module builds on this one, so it is imported here
        from .sam_hq import build_hq_model

        return build_hq_model(config, drop_path_rate=drop_path_rate, dropout=dropout)
    dec = config.decoder
    grid = config.embedding_size
    encoder: ImageEncoderViT | TinyViT
    if isinstance(config.encoder, TinyViTConfig):
        encoder = TinyViT(config.encoder)
    else:
        encoder = encoder_from_config(config.encoder, drop_path_rate=drop_path_rate)
    model = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=dec.embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=dec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dec.embed_dim,
            transformer=TwoWayTransformer(
                depth=dec.depth,
                embedding_dim=dec.embed_dim,
                num_heads=dec.num_heads,
                mlp_dim=dec.mlp_dim,
                attention_downsample_rate=dec.attention_downsample_rate,
                dropout=dropout,
            ),
            num_multimask_outputs=dec.num_multimask_outputs,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
        config=config,
    )
    model.mask_threshold = config.mask_threshold
    return model.eval()
