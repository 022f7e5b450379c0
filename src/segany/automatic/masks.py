"""Mask utilities for segment-everything: run-length encoding (uncompressed and COCO), boxes from
masks, the stability score, point grids, crop boxes and uncropping, small-region cleanup and box
NMS. Vectorised in torch or numpy; no per-pixel Python loops.

Conventions: masks are ``(..., H, W)`` bool; boxes XYXY with an inclusive maximum (a one-pixel
mask at ``(x, y)`` has the box ``[x, y, x, y]``); uncompressed RLE is COCO's: column-major
(Fortran) order, counts alternating background/foreground runs starting with background.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

EDGE_TOLERANCE = 20.0  # pixels: a box this close to an inner crop edge is cut off by the crop

Box = list[int]  # XYXY


# --- run-length encoding ------------------------------------------------------------------------


def masks_to_rle_counts(
    masks: Tensor,
    offset: tuple[int, int] = (0, 0),
    frame: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Uncompressed RLE counts of ``(B, h, w)`` bool masks, each placed with its top-left corner
    at ``offset`` ``(x0, y0)`` in an all-background ``frame`` ``(H, W)`` (default: the masks'
    own size). The frame is never materialised. Returns one int64 array per mask."""
    count, h, w = masks.shape
    frame_h, frame_w = frame if frame is not None else (h, w)
    x0, y0 = offset
    if x0 < 0 or y0 < 0 or x0 + w > frame_w or y0 + h > frame_h:
        raise ValueError(
            f"masks of size {h}x{w} at {offset} do not fit a {frame_h}x{frame_w} frame"
        )
    if count == 0:  # np.split below would give one empty chunk: a run for a mask not there
        return []
    total = frame_h * frame_w
    # Column-major, each column padded with background above and below: every foreground run
    # then starts and ends inside its column, at a change of value.
    columns = torch.nn.functional.pad(masks.transpose(1, 2), (1, 1))
    changes = (columns[..., 1:] != columns[..., :-1]).nonzero()  # (E, 3): mask, column, row
    which = changes[:, 0]
    edges = (changes[:, 1] + x0) * frame_h + changes[:, 2] + y0
    # A run ending at the bottom of one column and one starting at the top of the next are one
    # run in the frame when the masks span its full height.
    if len(edges) > 1:
        joined = (edges[1:] == edges[:-1]) & (which[1:] == which[:-1])
        if bool(joined.any()):
            drop = torch.zeros(len(edges), dtype=torch.bool, device=edges.device)
            drop[1:] |= joined
            drop[:-1] |= joined
            edges, which = edges[~drop], which[~drop]
    per_mask = torch.bincount(which, minlength=count).cpu().numpy()
    edges_np = edges.cpu().numpy()
    out = []
    for chunk in np.split(edges_np, np.cumsum(per_mask)[:-1]):
        counts = np.diff(chunk, prepend=0, append=total)
        out.append(counts[:-1] if len(chunk) and chunk[-1] == total else counts)
    return out


def mask_to_rle_pytorch(tensor: Tensor) -> list[dict[str, Any]]:
    """``(B, H, W)`` bool masks -> uncompressed RLE dicts ``{"size": [H, W], "counts": [...]}``."""
    h, w = tensor.shape[1:]
    return [{"size": [h, w], "counts": c.tolist()} for c in masks_to_rle_counts(tensor.bool())]


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE dict -> ``(H, W)`` bool mask (C-contiguous)."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {h}*{w} = {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.ascontiguousarray(np.repeat(values, counts).reshape(w, h).T)


def area_from_rle(rle: dict[str, Any]) -> int:
    """Foreground pixels of an uncompressed RLE dict."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE dict -> COCO compressed RLE with ``counts`` as a utf-8 string."""
    from pycocotools import mask as mask_utils

    h, w = uncompressed_rle["size"]
    rle = mask_utils.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


# --- boxes and scores ---------------------------------------------------------------------------


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(..., H, W)`` bool -> ``(..., 4)`` int64 XYXY boxes, inclusive max; ``[0, 0, 0, 0]``
    for an empty mask."""
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)

    def first_last(hit: Tensor, size: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(size, device=hit.device)
        first = torch.where(hit, index, size).amin(dim=-1)
        last = torch.where(hit, index, -1).amax(dim=-1)
        return first, last

    y0, y1 = first_last(rows, h)
    x0, x1 = first_last(cols, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(rows.any(dim=-1, keepdim=True), boxes, 0)


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


def box_xyxy_to_xywh(box_xyxy: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``(..., 4)`` XYXY -> XYWH (a copy; width is ``x1 - x0``)."""
    box = box_xyxy.clone() if isinstance(box_xyxy, Tensor) else np.array(box_xyxy, copy=True)
    box[..., 2] = box[..., 2] - box[..., 0]
    box[..., 3] = box[..., 3] - box[..., 1]
    return box


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy box NMS (torchvision, one class): kept indices, best score first."""
    categories = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
    return batched_nms(boxes.float(), scores, categories, iou_threshold=iou_threshold)


# --- point grids and crops ----------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 points at cell centres of an ``n x n`` grid on [0, 1]^2, x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer: ``int(n / scale**i)`` points per side in layer ``i``."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, ...], n_layers: int, overlap_ratio: float
) -> tuple[list[Box], list[int]]:
    """XYXY crop boxes and their layer: the whole image, then ``(2**i)**2`` overlapping crops
    in layer ``i`` (x outer, y inner). Layer 1 overlaps by ``overlap_ratio`` of the short side,
    deeper layers proportionally less."""
    im_h, im_w = im_size[:2]
    short_side = min(im_h, im_w)
    boxes: list[Box] = [[0, 0, im_w, im_h]]
    layers = [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + im_w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + im_h) / per_side)
        starts_x = [int((crop_w - overlap) * i) for i in range(per_side)]
        starts_y = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(starts_x, starts_y):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def _offset(crop_box: Sequence[int], like: Tensor, width: int) -> Tensor:
    x0, y0 = crop_box[0], crop_box[1]
    values = [x0, y0] * (width // 2)
    return torch.tensor(values, device=like.device, dtype=like.dtype)


def uncrop_boxes_xyxy(boxes: Tensor, crop_box: Sequence[int]) -> Tensor:
    """``(..., 4)`` boxes in a crop -> the image frame."""
    return boxes + _offset(crop_box, boxes, 4)


def uncrop_points(points: Tensor, crop_box: Sequence[int]) -> Tensor:
    """``(..., 2)`` points in a crop -> the image frame."""
    return points + _offset(crop_box, points, 2)


def uncrop_masks(masks: Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> Tensor:
    """``(..., h, w)`` masks in a crop -> ``(..., H, W)``, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return torch.nn.functional.pad(masks, pad, value=0)


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


def batch_iterator(batch_size: int, *args: Sequence[Any]) -> Iterator[list[Any]]:
    """Slices of ``batch_size`` along the first axis of equally long sequences."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator needs one or more sequences of the same length")
    for start in range(0, len(args[0]), batch_size):
        yield [a[start : start + batch_size] for a in args]


# --- small-region cleanup -----------------------------------------------------------------------


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: Literal["holes", "islands"]
) -> tuple[np.ndarray, bool]:
    """Fill holes (``"holes"``) or drop islands (``"islands"``) smaller than ``area_thresh``
    (8-connected, OpenCV). If every island is small, the largest is kept. Returns the mask and
    whether it changed."""
    import cv2

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (mask ^ holes).astype(np.uint8)  # holes: components of the background
    _, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    if holes:  # label 0 is the mask itself: keep it and the small holes
        keep = np.concatenate([[True], small])
    else:
        keep = np.concatenate([[False], ~small])
        if not keep.any():
            keep[int(np.argmax(sizes)) + 1] = True
    return keep[labels], True
