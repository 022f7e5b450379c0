"""Mirrors the official module path ``segment_anything.automatic_mask_generator``:
:class:`SamAutomaticMaskGenerator`, and the names the official module imports (the model, the
stateful predictor and the :mod:`segany.utils.amg` helpers)."""

from .automatic.generator import SamAutomaticMaskGenerator
from .compat import SamPredictor
from .modeling import Sam
from .utils.amg import (
    MaskData,
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)

__all__ = [
    "MaskData",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
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
