"""The SAM model: wiring of encoder, prompt encoder and decoder, with tensor pre/post-processing.

``forward`` is differentiable; inference helpers elsewhere add ``torch.inference_mode``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SamConfig
from .image_encoder import ImageEncoderViT, encoder_from_config
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer


def upscale_logits(
    low_res: torch.Tensor,
    img_size: int,
    input_size: tuple[Any, Any],
    original_size: tuple[Any, Any],
) -> torch.Tensor:
    """Low-res logits ``(B, C, 4h, 4w)`` -> ``(B, C, H, W)`` at the original image size:
    bilinear to the padded square, crop the padding away, bilinear to the original size.
    The sizes are ints, or 0-d int64 tensors in an exported graph.

    Only the first ``size // factor + 2`` low-res rows and columns reach the crop, so just
    those are upsampled (by the same factor, hence the same half-pixel mapping, and far from
    the clamped border): the result is the same, without upsampling the padding.
    """
    side = low_res.shape[-1]
    factor = img_size // side
    if low_res.shape[-2] == side and factor * side == img_size:
        rows, cols = (_rows_needed(n, factor, side) for n in input_size)
        size = (rows * factor, cols * factor)  # an exact multiple: the same mapping
        masks = F.interpolate(
            low_res[..., :rows, :cols], size, mode="bilinear", align_corners=False
        )
    else:
        masks = F.interpolate(low_res, (img_size, img_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


def _rows_needed(size: Any, factor: int, limit: int) -> Any:
    """Low-res rows that bilinear upsampling by ``factor`` reads for the first ``size`` rows."""
    if isinstance(size, torch.Tensor):
        return torch.clamp(size // factor + 2, max=limit)
    return min(size // factor + 2, limit)


def upscale_to_masks(
    low_res: torch.Tensor,
    img_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float,
) -> torch.Tensor:
    """Boolean masks ``(B, C, H, W)``: ``upscale_logits(...) > threshold`` up to float rounding
    (pixels whose logit is within rounding of the threshold may differ), without the float
    logits at full size.

    Both bilinear resizes are linear and separable. Columns are resized on the few low-res rows
    that reach the crop (two 1-D resizes, cheap); rows are then a banded matrix product, done
    per band of output rows and thresholded at once, while the band is in the cache.
    """
    side = low_res.shape[-1]
    factor = img_size // side
    if low_res.shape[-2] != side or factor * side != img_size:
        return upscale_logits(low_res, img_size, input_size, original_size) > threshold
    (in_h, in_w), (height, width) = input_size, original_size
    rows, cols = _rows_needed(in_h, factor, side), _rows_needed(in_w, factor, side)
    batch, channels = low_res.shape[:2]
    count = batch * channels
    x = low_res[..., :rows, :cols].reshape(1, count * rows, cols)
    x = _resize_last_axis(x, factor, in_w, width).view(count, rows, width)
    masks = torch.empty(batch, channels, height, width, dtype=torch.bool, device=low_res.device)
    out = masks.view(count, height, width)
    for y0, y1, a0, a1, weight in _row_bands(rows, factor, in_h, height, x.device, x.dtype):
        torch.gt(torch.matmul(weight, x[:, a0:a1]), threshold, out=out[:, y0:y1])
    return masks


def _resize_last_axis(x: torch.Tensor, factor: int, crop: int, size: int) -> torch.Tensor:
    """``(1, N, L)`` -> ``(1, N, size)``: linear resize by ``factor``, keep the first ``crop``,
    linear resize to ``size`` (one axis of :func:`upscale_logits`)."""
    x = F.interpolate(x, x.shape[-1] * factor, mode="linear", align_corners=False)
    return F.interpolate(x[..., :crop], size, mode="linear", align_corners=False)


_BAND = 64  # output rows per band in upscale_to_masks


@functools.lru_cache(maxsize=16)
def _row_bands(
    rows: int, factor: int, crop: int, size: int, device: torch.device, dtype: torch.dtype
) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """The row resize of :func:`upscale_to_masks` as bands ``(y0, y1, a0, a1, weight)``: output
    rows ``y0:y1`` are ``weight`` ``(y1 - y0, a1 - a0)`` times low-res rows ``a0:a1``."""
    bands = []
    with torch.inference_mode(False), torch.no_grad():  # cached: plain tensors, in any mode
        # resized in the working dtype, so the weights are those the bilinear kernel computes
        eye = torch.eye(rows, dtype=dtype, device=device)[None]
        matrix = _resize_last_axis(eye, factor, crop, size)[0].T  # (size, rows)
        used = matrix != 0
        for y0 in range(0, size, _BAND):
            y1 = min(y0 + _BAND, size)
            columns = used[y0:y1].any(dim=0).nonzero()[:, 0]
            a0, a1 = int(columns[0]), int(columns[-1]) + 1
            bands.append((y0, y1, a0, a1, matrix[y0:y1, a0:a1].contiguous()))
    return bands


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
        image_encoder: ImageEncoderViT,
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
        """Low-res logits ``(B, C, 4h, 4w)`` -> logits ``(B, C, H, W)`` at ``original_size``."""
        return upscale_logits(masks, self.img_size, tuple(input_size), tuple(original_size))

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
        ``low_res_logits`` ``(B, C, 4h, 4w)``. Gradients flow (unlike the official model).
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.image_encoder(images)
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            low_res, iou = self.decode(
                embedding.unsqueeze(0),
                points=points,
                boxes=record.get("boxes"),
                mask_input=record.get("mask_inputs"),
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res, record["image"].shape[-2:], record["original_size"]
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs


def build_model(config: SamConfig, *, drop_path_rate: float = 0.0, dropout: float = 0.0) -> Sam:
    """A freshly initialised model for ``config`` (in eval mode)."""
    dec = config.decoder
    grid = config.embedding_size
    model = Sam(
        image_encoder=encoder_from_config(config.encoder, drop_path_rate=drop_path_rate),
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
