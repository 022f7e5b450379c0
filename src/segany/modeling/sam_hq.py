"""HQ-SAM (Ke et al., 2023): SAM with an encoder that also hands out its early features and the
HQ mask decoder (:mod:`.mask_decoder_hq`). The official ``segment_anything_hq`` model's keys
and function; built by :func:`segany.modeling.build_model` for a config with ``decoder.hq``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..config import SamConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder_hq import MaskDecoderHQ
from .sam import Sam, build_model


class ImageEncoderViTHQ(ImageEncoderViT):
    """The ViT encoder returning ``(features, early)``: the ``(B, D, h, w)`` embedding and the
    ``(B, h, w, C)`` output of the first global-attention block (what HQ-SAM fuses)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        early = None
        for block in self.blocks:
            x = block(x)
            if early is None and block.window_size == 0:
                early = x
        if early is None:
            raise ValueError("HQ-SAM needs an encoder with a global-attention block")
        return self.neck(x.permute(0, 3, 1, 2)).contiguous(), early.contiguous()


class SamHQ(Sam):
    """:class:`Sam` with HQ-SAM's decoder: one mask per prompt set (see
    :class:`~segany.modeling.mask_decoder_hq.MaskDecoderHQ`)."""

    image_encoder: ImageEncoderViTHQ
    mask_decoder: MaskDecoderHQ

    def decode(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        *,
        early: torch.Tensor | None = None,
        hq_features: torch.Tensor | None = None,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`Sam.decode` for HQ-SAM: needs the image's ``early`` features ``(1, h, w, C)``
        or its ``hq_features`` ``(1, D/8, 4h, 4w)`` computed before; returns ``(B, 1, 4h, 4w)``
        logits and ``(B, 1)`` IoU."""
        if hq_features is None:
            if early is None:
                raise ValueError("an HQ-SAM model needs the image's early encoder features")
            hq_features = self.mask_decoder.hq_features(image_embeddings, early)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder.decode_hq(
            image_embeddings,
            self.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            hq_features,
            multimask_output=multimask_output,
            hq_token_only=hq_token_only,
        )

    def forward(  # type: ignore[override]
        self,
        batched_input: list[dict[str, Any]],
        multimask_output: bool,
        hq_token_only: bool = False,
    ) -> list[dict[str, torch.Tensor]]:
        """:meth:`Sam.forward` with the official HQ ``hq_token_only`` flag."""
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
            embeddings, early = self.image_encoder(images)
            return [
                self._decode_record(
                    record,
                    embeddings[i : i + 1],
                    multimask_output,
                    early=early[i : i + 1],
                    hq_token_only=hq_token_only,
                )
                for i, record in enumerate(batched_input)
            ]


def build_hq_model(
    config: SamConfig, *, drop_path_rate: float = 0.0, dropout: float = 0.0
) -> SamHQ:
    """A freshly initialised HQ-SAM model for ``config`` (``config.decoder.hq``; eval mode):
    SAM's parts for the same architecture, with the HQ encoder outputs and decoder."""
    dec = config.decoder
    plain = build_model(
        replace(config, decoder=replace(dec, hq=False)),
        drop_path_rate=drop_path_rate,
        dropout=dropout,
    )
    encoder = plain.image_encoder
    encoder.__class__ = ImageEncoderViTHQ  # the same modules; only the outputs differ
    decoder = MaskDecoderHQ(
        vit_dim=config.encoder.embed_dim,
        transformer_dim=dec.embed_dim,
        transformer=plain.mask_decoder.transformer,
        num_multimask_outputs=dec.num_multimask_outputs,
        iou_head_depth=dec.iou_head_depth,
        iou_head_hidden_dim=dec.iou_head_hidden_dim,
    )
    model = SamHQ(
        encoder, plain.prompt_encoder, decoder, config.pixel_mean, config.pixel_std, config
    )
    model.mask_threshold = config.mask_threshold
    return model.eval()
