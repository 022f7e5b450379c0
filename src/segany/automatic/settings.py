"""The generator's settings: the presets, and the checks that refuse inconsistent ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..modeling.sam import Sam
from .crops import build_all_layer_point_grids
from .table import SEGMENTATIONS

OUTPUT_MODES = tuple(SEGMENTATIONS)  # ("binary_mask", "uncompressed_rle", "coco_rle")

# Settings of the paper's SA-1B generation (Kirillov et al. 2023, appendix B): a 32x32 grid on
# the image, 2x2 crops with 16x16 and 4x4 crops with 8x8 grids, holes and islands under 100 px
# cleaned up, masks covering 95% of the image or more dropped. The IoU (0.88) and stability
# (0.95) thresholds and the NMS thresholds (0.7) are the defaults already.
PRESETS: dict[str, dict[str, Any]] = {
    "sa1b": {
        "points_per_side": 32,
        "crop_n_layers": 2,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
        "max_mask_area_fraction": 0.95,
    },
    # the bundled demonstration model predicts its IoU less confidently than SAM
    "tiny": {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8},
    # Gear 2's pre-fill (segany.engine.prefill): only masks confident enough to show an
    # annotator as done, so stricter filters than SA-1B's (0.88, 0.95); no crops, as the small
    # objects crops find are the least confident and the ones annotators add anyway.
    "prefill": {
        "pred_iou_thresh": 0.95,
        "stability_score_thresh": 0.97,
        "min_mask_region_area": 100,
        "max_mask_area_fraction": 0.95,
    },
}
# The same presets for the tiny architecture, whose IoU predictions run lower (see
# preset_for_model). Its pre-fill filters were chosen on generated scenes: of the masks with
# predicted IoU > 0.7 and stability >= 0.9 every one matched a true object at IoU >= 0.8,
# against about half at the "tiny" filters.
PRESETS["sa1b-tiny"] = {**PRESETS["sa1b"], **PRESETS["tiny"]}
PRESETS["prefill-tiny"] = {
    **PRESETS["prefill"],
    "pred_iou_thresh": 0.7,
    "stability_score_thresh": 0.9,
}
TINY_ARCHITECTURE = "tiny"


def preset_for_model(preset: str | None, model: Sam) -> str | None:
    """``preset`` for ``model``: the tiny architecture (the bundled model, or one retrained
    from it) predicts lower IoUs, so SAM's thresholds would filter out nearly every mask; it
    gets the preset's ``-tiny`` variant (``tiny`` for the official defaults) where there is
    one."""
    if model.config is None or model.config.name != TINY_ARCHITECTURE:
        return preset
    variant = TINY_ARCHITECTURE if preset is None else f"{preset}-{TINY_ARCHITECTURE}"
    return variant if variant in PRESETS else preset


def apply_preset(given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings after ``given["preset"]``: preset values replace arguments left at their
    ``defaults``; arguments the caller changed win."""
    preset = given["preset"]
    if preset is None:
        return given
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    settings = dict(given)
    for name, value in PRESETS[preset].items():
        if given[name] == defaults[name]:
            settings[name] = value
    return settings


def check_settings(s: dict[str, Any]) -> list[np.ndarray]:
    """``ValueError`` for inconsistent settings; returns the ``(n, 2)`` point grid of each crop
    layer."""
    if s["output_mode"] not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {s['output_mode']!r}")
    if (s["points_per_side"] is None) == (s["point_grids"] is None):
        raise ValueError("give exactly one of points_per_side and point_grids")
    if not isinstance(s["crop_n_layers"], int) or s["crop_n_layers"] < 0:
        raise ValueError(f"crop_n_layers must be an int >= 0, got {s['crop_n_layers']!r}")
    if not isinstance(s["points_per_batch"], int) or s["points_per_batch"] < 1:
        raise ValueError(f"points_per_batch must be an int >= 1, got {s['points_per_batch']!r}")
    for name in ("box_nms_thresh", "crop_nms_thresh"):
        if not 0.0 <= s[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {s[name]}")
    if not 0.0 <= s["crop_overlap_ratio"] < 1.0:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {s['crop_overlap_ratio']}")
    if s["stability_score_offset"] < 0:
        raise ValueError(f"stability_score_offset must be >= 0, got {s['stability_score_offset']}")
    if s["min_mask_region_area"] < 0:
        raise ValueError(f"min_mask_region_area must be >= 0, got {s['min_mask_region_area']}")
    fraction = s["max_mask_area_fraction"]
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"max_mask_area_fraction must be in (0, 1], got {fraction}")
    return _point_grids(s)


def _point_grids(s: dict[str, Any]) -> list[np.ndarray]:
    """The checked ``point_grids``, or the grids ``points_per_side`` makes; one per crop layer."""
    layers = s["crop_n_layers"] + 1
    if s["point_grids"] is None:
        side, factor = s["points_per_side"], s["crop_n_points_downscale_factor"]
        if not isinstance(side, int) or side < 1:
            raise ValueError(f"points_per_side must be an int >= 1, got {side!r}")
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"crop_n_points_downscale_factor must be an int >= 1, got {factor!r}")
        if int(side / factor ** (layers - 1)) < 1:
            raise ValueError(
                f"points_per_side={side} with crop_n_points_downscale_factor={factor} leaves no "
                f"points in crop layer {layers - 1}"
            )
        return build_all_layer_point_grids(side, layers - 1, factor)
    grids = [np.asarray(g, dtype=np.float64) for g in s["point_grids"]]
    if len(grids) < layers:
        raise ValueError(f"point_grids has {len(grids)} grids; {layers} crop layers need one each")
    for grid in grids:
        if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
            raise ValueError(f"each point grid must have shape (n, 2), got {grid.shape}")
        if not np.all((grid >= 0) & (grid <= 1)):
            raise ValueError("point grids are normalised: coordinates must lie in [0, 1]")
    return grids
