"""Run-length encoding of masks: uncompressed RLE (COCO's: column-major (Fortran) order, counts
alternating background/foreground runs, starting with background) computed in torch without
per-pixel Python loops, and COCO's compressed RLE through pycocotools."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

from .boxes import mask_bbox_xywh

__all__ = [
    "area_from_rle",
    "checked_rle_mask",
    "coco_encode_rle",
    "compressed_counts",
    "decode_coco_rle",
    "encode_coco_rle",
    "mask_bbox_xywh",  # kept importable from here: the server and the SA-1B records use it
    "mask_to_rle_pytorch",
    "masks_to_rle_counts",
    "rle_to_mask",
]


def _merge_column_seams(edges: Tensor, which: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the pairs of equal edges of one mask: a run ending at the bottom of a column and one
    starting at the top of the next are one run in the frame."""
    if len(edges) < 2:
        return edges, which
    joined = (edges[1:] == edges[:-1]) & (which[1:] == which[:-1])
    if not bool(joined.any()):
        return edges, which
    drop = torch.zeros(len(edges), dtype=torch.bool, device=edges.device)
    drop[1:] |= joined
    drop[:-1] |= joined
    return edges[~drop], which[~drop]


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
    edges = (changes[:, 1] + x0) * frame_h + changes[:, 2] + y0
    edges, which = _merge_column_seams(edges, changes[:, 0])
    per_mask = torch.bincount(which, minlength=count).cpu().numpy()
    out = []
    for chunk in np.split(edges.cpu().numpy(), np.cumsum(per_mask)[:-1]):
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
    """Uncompressed RLE dict -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    h, w = uncompressed_rle["size"]
    rle = mask_utils.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def encode_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W)`` bool -> ``{"size": [H, W], "counts": str}`` (compressed COCO RLE)."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None]
    return coco_encode_rle(mask_to_rle_pytorch(tensor)[0])


def decode_coco_rle(rle: dict[str, Any]) -> np.ndarray:
    """Compressed or uncompressed (list ``counts``) COCO RLE -> ``(H, W)`` bool."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def compressed_counts(counts: str) -> list[int]:
    """COCO's compressed RLE string -> its run lengths; ``ValueError`` for a malformed string.
    (pycocotools decodes a malformed string into whatever memory follows, so text from a
    client comes through here first.)"""
    runs: list[int] = []
    value, shift, position = 0, 0, 0
    for position, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ValueError(f"RLE counts: character {char!r} at {position} is not RLE text")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:  # more 5-bit groups follow
            continue
        if code & 0x10:  # the last group's high bit: negative (a difference, sign-extended)
            value -= 1 << shift
        if len(runs) > 2:  # from the fourth run on, each is stored as a difference
            value += runs[-2]
        if value < 0:
            raise ValueError(f"RLE counts: a negative run length ending at {position}")
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError(f"RLE counts: the string ends inside a number (at {position})")
    return runs


def checked_rle_mask(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    """A client's RLE (compressed string or uncompressed list ``counts``) of a ``height`` x
    ``width`` mask -> ``(H, W)`` bool; ``ValueError`` saying what is wrong with it."""
    size = [int(v) for v in rle["size"]]
    if size != [height, width]:
        raise ValueError(f"the mask is {size[0]}x{size[1]}, the image {height}x{width}")
    counts = rle["counts"]
    runs = compressed_counts(counts) if isinstance(counts, str) else [int(v) for v in counts]
    if any(v < 0 for v in runs):
        raise ValueError("RLE counts: run lengths must not be negative")
    if sum(runs) != height * width:
        raise ValueError(f"RLE counts sum to {sum(runs)}, expected {height}*{width}")
    return rle_to_mask({"size": size, "counts": runs})
