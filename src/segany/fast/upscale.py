"""Faster routes of the mask decoder's output side, equal to the reference up to float rounding.

- :func:`upscale_logits`: :meth:`segany.modeling.Sam.postprocess_masks` (bilinear to the padded
  square, crop, bilinear to the original size) without upsampling the padding: only the
  low-res rows and columns that reach the crop are upsampled.
- :func:`upscale_to_masks`: the same thresholded into boolean masks without the float logits at
  full size: both resizes are linear and separable, so rows are a banded matrix product done
  per band of output rows and thresholded while the band is in the cache.
- :func:`patch_matmul`: a transposed convolution with kernel = stride = 2 as one matrix product
  on channels-last tokens, the outputs grouped by source pixel; the fast mask decoder and the
  shared-image decoder upscale with it, putting pixels in spatial order once, on the masks.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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


def patch_matmul(
    x: torch.Tensor, conv: nn.ConvTranspose2d, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``conv`` (kernel = stride = 2) on channels-last ``(..., C_in)`` -> ``(..., 4, C_out)``
    (sub-pixel position row-major, then channel), by one matrix product, written into ``out``
    (``(N, 4 * C_out)``, N the number of pixels) when given."""
    weight = conv.weight.permute(0, 2, 3, 1).flatten(1)  # (C_in, 2 * 2 * C_out)
    flat = x.reshape(-1, x.shape[-1])
    if conv.bias is None:
        result = torch.mm(flat, weight, out=out)
    else:
        result = torch.addmm(conv.bias.repeat(4), flat, weight, out=out)
    return result.view(*x.shape[:-1], 4, -1)
