"""The generator's mask filters: stability score (and a bound on it from the low-res logits, so
that hopeless masks are never upscaled), box NMS, and the crop-edge test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from .crops import uncrop_boxes_xyxy

EDGE_TOLERANCE = 20.0  # pixels: a box this close to an inner crop edge is cut off by the crop


def stability_score(logits: Tensor, threshold: float, offset: float) -> Tensor:
    """IoU between the masks at ``threshold + offset`` and ``threshold - offset``: ``(..., H, W)``
    logits -> ``(...)`` float32; NaN where both are empty."""

    def count(mask: Tensor) -> Tensor:  # int8 sums vectorise far better than bool reductions
        # a traced graph (the ONNX decoder's) has no dtype views: a cast counts the same
        as_int8 = mask.to(torch.int8) if torch.jit.is_tracing() else mask.view(torch.int8)
        return as_int8.flatten(-2).sum(-1, dtype=torch.int32)

    return count(logits > threshold + offset) / count(logits > threshold - offset)


@dataclass(frozen=True)
class UpscaleFootprint:
    """Which low-res logits each output pixel of :func:`segany.fast.upscale.upscale_logits`
    reads: the ``row_count[i]`` output rows of group ``i`` read low-res rows within
    ``rows[i] .. rows[i] + window - 1``, and likewise for columns. Bilinear weights are
    non-negative and sum to one, so every output logit lies between the minimum and the maximum
    of the low-res logits in its window."""

    rows: Tensor
    row_count: Tensor
    cols: Tensor
    col_count: Tensor
    window: int

    @staticmethod
    def of(
        low_res: int, img_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> UpscaleFootprint:
        """For ``(low_res, low_res)`` logits upscaled to the padded ``img_size`` square, cropped
        to ``input_size`` and resized to ``original_size``."""

        def reads(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
            # bilinear, align_corners=False: output i reads inputs floor(s) and floor(s) + 1 at
            # s = (i + 0.5) * in / out - 0.5 (clamped); widened for float rounding of s
            source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
            first = np.floor(np.maximum(source - 1e-4, 0.0)).astype(np.int64)
            last = np.floor(np.maximum(source + 1e-4, 0.0)).astype(np.int64) + 1
            return np.minimum(first, in_size - 1), np.minimum(last, in_size - 1)

        def axis(in_size: int, out_size: int) -> tuple[Tensor, Tensor, int]:
            up_first, up_last = reads(img_size, low_res)
            down_first, down_last = reads(out_size, in_size)
            first, last = up_first[down_first], up_last[down_last]
            starts, counts = np.unique(first, return_counts=True)  # first is non-decreasing
            return torch.from_numpy(starts), torch.from_numpy(counts), int((last - first).max())

        rows, row_count, row_span = axis(input_size[0], original_size[0])
        cols, col_count, col_span = axis(input_size[1], original_size[1])
        return UpscaleFootprint(rows, row_count, cols, col_count, max(row_span, col_span) + 1)

    @property
    def extent(self) -> tuple[int, int]:
        """The top-left block of low-res rows and columns the upscaling reads (at most)."""
        return int(self.rows[-1]) + self.window, int(self.cols[-1]) + self.window

    def extremes(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Window minima and maxima ``(M, rows, cols)`` of ``(M, h, w)`` low-res logits."""
        k = self.window
        need_h, need_w = int(self.rows[-1]) + k, int(self.cols[-1]) + k
        x = logits[:, :need_h, :need_w]
        pad_h, pad_w = need_h - x.shape[1], need_w - x.shape[2]
        if pad_h or pad_w:  # repeat the last row/column: windows only widen
            x = F.pad(x[:, None], (0, pad_w, 0, pad_h), mode="replicate")[:, 0]

        def slide(x: Tensor, pick: type[torch.maximum], dim: int) -> Tensor:
            size = x.shape[dim] - k + 1
            out = x.narrow(dim, 0, size)
            for step in range(1, k):
                out = pick(out, x.narrow(dim, step, size))
            return out

        def pick(x: Tensor, index: Tensor, dim: int) -> Tensor:
            first, count = int(index[0]), len(index)
            if int(index[-1]) - first + 1 == count:  # consecutive: a view
                return x.narrow(dim, first, count)
            return x.index_select(dim, index.to(x.device))

        def extreme(op: type[torch.maximum]) -> Tensor:
            out = pick(slide(x, op, 1), self.rows, 1)
            return pick(slide(out, op, 2), self.cols, 2)

        return extreme(torch.minimum), extreme(torch.maximum)

    def stability_upper_bound(self, logits: Tensor, threshold: float, offset: float) -> Tensor:
        """``(M,)`` float32 bounds that the :func:`stability_score` of the upscaled ``(M, h, w)``
        logits never exceeds (0 where the score is 0 or NaN): a mask whose bound is below the
        stability threshold fails the threshold after upscaling too, so it need not be
        upscaled."""
        low, high = self.extremes(logits)
        # slack for the rounding of the interpolation arithmetic
        slack = 1e-5 * (1.0 + logits.abs().flatten(1).amax(dim=1))[:, None, None]
        col_count = self.col_count.to(logits.device, torch.float32)
        row_count = self.row_count.to(logits.device, torch.float64)

        def count(mask: Tensor) -> Tensor:  # exact: per-row sums < 2**24, then float64
            return ((mask.to(torch.float32) @ col_count).double() @ row_count).round().long()

        inner_most = count(high > threshold + offset - slack)  # >= pixels above t + o
        outer_least = count(low > threshold - offset + slack)  # <= pixels above t - o
        bound = inner_most.to(torch.int32) / outer_least.clamp(min=1).to(torch.int32)
        bound[outer_least == 0] = float("inf")
        bound[inner_most == 0] = 0.0
        return bound


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy box NMS (torchvision, one class): kept indices, best score first."""
    categories = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
    return batched_nms(boxes.float(), scores, categories, iou_threshold=iou_threshold)


def is_box_near_crop_edge(
    boxes: Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = EDGE_TOLERANCE
) -> Tensor:
    """``(B, 4)`` boxes in crop coordinates -> ``(B,)`` bool: within ``atol`` of a crop edge that
    is not also an edge of the image ``orig_box``."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)
