"""Drop-in for ``segment_anything.utils.amg``: the official helper names over
:mod:`segany.masks`."""

from ..masks import (
    area_from_rle,
    batch_iterator,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
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
from ..masks import masks_to_boxes as batched_mask_to_box
from ..masks import stability_score as calculate_stability_score

__all__ = [
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
