"""Drop-in for ``segment_anything.utils.amg``: the official helper names over
:mod:`segany.automatic` and :mod:`segany.formats`, plus :class:`MaskData` (the column store)
and :func:`calculate_stability_score` with the official parameter names."""

from __future__ import annotations

from collections.abc import ItemsView
from copy import deepcopy
from typing import Any

import numpy as np
import torch

from ..automatic.cleanup import remove_small_regions
from ..automatic.crops import (
    batch_iterator,
    build_all_layer_point_grids,
    build_point_grid,
    generate_crop_boxes,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from ..automatic.filters import is_box_near_crop_edge
from ..automatic.filters import stability_score as _stability_score
from ..formats.boxes import box_xyxy_to_xywh
from ..formats.boxes import masks_to_boxes as batched_mask_to_box
from ..formats.rle import area_from_rle, coco_encode_rle, mask_to_rle_pytorch, rle_to_mask

__all__ = [
    "MaskData",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


def calculate_stability_score(
    masks: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """IoU between ``masks > mask_threshold + threshold_offset`` and
    ``masks > mask_threshold - threshold_offset`` for ``(..., H, W)`` mask logits: ``(...)``
    float32 (NaN where both are empty). The official parameter names, so keyword calls work."""
    return _stability_score(masks, mask_threshold, threshold_offset)


_COLUMN_TYPES = (list, np.ndarray, torch.Tensor)


class MaskDataTypeError(TypeError, AssertionError):
    """A column that is not a list, numpy array or torch tensor. Catchable as ``TypeError`` or
    as the ``AssertionError`` the official ``MaskData`` raises."""


def _check_column(key: str, value: Any) -> None:
    if not isinstance(value, _COLUMN_TYPES):
        raise MaskDataTypeError(
            f"MaskData only supports list, numpy arrays, and torch tensors; {key!r} is a "
            f"{type(value).__name__}"
        )


class MaskData:
    """Named columns of per-mask values (lists, numpy arrays or torch tensors, one row per mask),
    filtered and concatenated row-wise together: the official automatic generator's batch
    container, for code that drives the generator's pieces by hand."""

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            _check_column(key, value)
        self._stats: dict[str, Any] = dict(kwargs)

    def __setitem__(self, key: str, item: Any) -> None:
        _check_column(key, item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows selected by ``keep`` (a bool mask or indices) in every column, in place.
        ``None`` columns stay ``None``."""
        for key, value in self._stats.items():
            self._stats[key] = _select_rows(key, value, keep)

    def cat(self, new_stats: MaskData) -> None:
        """Append ``new_stats``' rows to every column, in place; columns new here (or ``None``)
        are taken as copies."""
        for key, value in new_stats.items():
            mine = self._stats.get(key)
            if mine is None:
                self._stats[key] = deepcopy(value)
            elif isinstance(value, torch.Tensor):
                self._stats[key] = torch.cat([mine, value], dim=0)
            elif isinstance(value, np.ndarray):
                self._stats[key] = np.concatenate([mine, value], axis=0)
            elif isinstance(value, list):
                self._stats[key] = mine + deepcopy(value)
            else:
                raise TypeError(f"MaskData key {key} has an unsupported type {type(value)}.")

    def to_numpy(self) -> None:
        """Turn every tensor column into a numpy array (detached, on the CPU), in place."""
        for key, value in self._stats.items():
            if isinstance(value, torch.Tensor):
                self._stats[key] = value.detach().cpu().numpy()


def _select_rows(key: str, value: Any, keep: torch.Tensor) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(keep, device=value.device)]
    if isinstance(value, np.ndarray):
        return value[keep.detach().cpu().numpy()]
    if isinstance(value, list):
        if keep.dtype == torch.bool:
            return [row for row, kept in zip(value, keep.tolist()) if kept]
        return [value[int(i)] for i in keep]
    raise TypeError(f"MaskData key {key} has an unsupported type {type(value)}.")
