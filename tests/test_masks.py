"""Mask utilities against the official helpers (``segment_anything.utils.amg``) and pycocotools."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from segment_anything.utils import amg as official

from segany.automatic import cleanup, crops, filters
from segany.fast.upscale import upscale_logits, upscale_to_masks
from segany.formats import boxes as box_formats
from segany.formats import rle as rle_format
from segany.utils import amg as dropin

# pycocotools' own decode trips a numpy 2 deprecation warning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _random_masks(generator: torch.Generator, count: int, h: int, w: int) -> torch.Tensor:
    out = torch.rand(count, h, w, generator=generator) < torch.rand(
        count, 1, 1, generator=generator
    )
    out[0] = True  # full
    out[1] = False  # empty
    return out


@pytest.mark.parametrize("seed", range(6))
def test_rle_matches_official_and_pycocotools(seed):
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(1, 20, (2,), generator=g))
    frame_h, frame_w = h + seed % 3, w + (seed * 7) % 4
    x0, y0 = frame_w - w - (seed % 2) * (frame_w - w), (frame_h - h) // 2
    crop_masks = _random_masks(g, 6, h, w)
    full = official.uncrop_masks(crop_masks, [x0, y0, x0 + w, y0 + h], frame_h, frame_w)
    expected = official.mask_to_rle_pytorch(full)
    ours = rle_format.masks_to_rle_counts(crop_masks, (x0, y0), (frame_h, frame_w))
    assert [c.tolist() for c in ours] == [r["counts"] for r in expected]
    assert rle_format.mask_to_rle_pytorch(full) == expected
    for rle, mask in zip(expected, full.numpy()):
        decoded = rle_format.rle_to_mask(rle)
        assert decoded.flags.c_contiguous and np.array_equal(decoded, mask)
        assert rle_format.area_from_rle(rle) == int(mask.sum())
        coco = rle_format.coco_encode_rle(rle)
        assert coco == official.coco_encode_rle(rle)
        assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)


def test_rle_of_no_masks_is_no_runs():
    # a batch emptied by a filter must give no counts: one spurious run would shift every later
    # mask onto another mask's box and area
    none = torch.zeros(0, 5, 7, dtype=torch.bool)
    assert rle_format.masks_to_rle_counts(none) == []
    assert rle_format.masks_to_rle_counts(none, (3, 2), (20, 30)) == []
    assert rle_format.mask_to_rle_pytorch(none) == []


def test_rle_rejects_bad_input():
    with pytest.raises(ValueError, match="do not fit"):
        rle_format.masks_to_rle_counts(torch.zeros(1, 4, 4, dtype=torch.bool), (2, 0), (4, 4))
    with pytest.raises(ValueError, match="sum to"):
        rle_format.rle_to_mask({"size": [2, 2], "counts": [1, 2]})


def test_boxes_and_stability_match_official():
    g = torch.Generator().manual_seed(0)
    batch = _random_masks(g, 8, 9, 13).reshape(2, 4, 9, 13)
    batch[0, 2] = False
    batch[0, 2, 4, 7] = True  # one pixel: width and height 0
    assert torch.equal(box_formats.masks_to_boxes(batch), official.batched_mask_to_box(batch))
    assert box_formats.masks_to_boxes(batch)[0, 2].tolist() == [7, 4, 7, 4]
    assert box_formats.masks_to_boxes(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0, 4)
    logits = torch.randn(10, 30, 40, generator=g) * 3
    logits[0] = -5  # empty union: NaN, like the official
    ours = filters.stability_score(logits, 0.0, 1.0)
    theirs = official.calculate_stability_score(logits, 0.0, 1.0)
    assert ours.dtype == torch.float32 and torch.isnan(ours[0])
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0, equal_nan=True)


def test_point_grids_and_crop_boxes_match_official():
    for n in (1, 5, 16, 32):
        assert np.array_equal(crops.build_point_grid(n), official.build_point_grid(n))
    for ours, theirs in zip(
        crops.build_all_layer_point_grids(32, 2, 2), official.build_all_layer_point_grids(32, 2, 2)
    ):
        assert np.array_equal(ours, theirs)
    boxes, layers = crops.generate_crop_boxes((1500, 2250), 1, 512 / 1500)
    assert boxes[1:] == [
        [0, 0, 1381, 1006],
        [0, 494, 1381, 1500],
        [869, 0, 2250, 1006],
        [869, 494, 2250, 1500],
    ]
    assert layers == [0, 1, 1, 1, 1]
    for size in [(534, 800), (1200, 1800), (603, 1072), (37, 100), (1, 1)]:
        for n_layers in range(4):
            for ratio in (512 / 1500, 0.1, 0.0):
                assert crops.generate_crop_boxes(size, n_layers, ratio) == (
                    official.generate_crop_boxes(size, n_layers, ratio)
                )


def test_uncrop_and_crop_edges_match_official():
    g = torch.Generator().manual_seed(1)
    crop = [10, 20, 60, 70]
    boxes = torch.randint(0, 50, (20, 4), generator=g)
    boxes[:, 2:] += boxes[:, :2]
    points = torch.rand(20, 2, generator=g, dtype=torch.float64) * 50
    assert torch.equal(
        crops.uncrop_boxes_xyxy(boxes, crop), official.uncrop_boxes_xyxy(boxes, crop)
    )
    assert torch.equal(crops.uncrop_points(points, crop), official.uncrop_points(points, crop))
    crop_masks = _random_masks(g, 3, 50, 50)
    assert torch.equal(
        crops.uncrop_masks(crop_masks, crop, 90, 80),
        official.uncrop_masks(crop_masks, crop, 90, 80),
    )
    for image_box in ([0, 0, 80, 90], [0, 0, 60, 70]):
        assert torch.equal(
            filters.is_box_near_crop_edge(boxes, crop, image_box),
            official.is_box_near_crop_edge(boxes, crop, image_box),
        )
    xywh = box_formats.box_xyxy_to_xywh(boxes)
    assert torch.equal(xywh[:, 2:], boxes[:, 2:] - boxes[:, :2]) and torch.equal(
        xywh[:, :2], boxes[:, :2]
    )
    assert [b for (b,) in crops.batch_iterator(4, list(range(10)))] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    with pytest.raises(ValueError):
        next(crops.batch_iterator(2, [1, 2], [1]))


@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_remove_small_regions_matches_official(mode):
    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = rng.random((30, 40)) < (0.3 + 0.02 * trial)
        for area in (1, 4, 30, 10_000):
            ours = cleanup.remove_small_regions(mask, area, mode)
            theirs = official.remove_small_regions(mask, area, mode)
            assert ours[1] == theirs[1] and np.array_equal(ours[0], theirs[0])
    with pytest.raises(ValueError, match="mode"):
        cleanup.remove_small_regions(mask, 10, "specks")  # type: ignore[arg-type]


def test_dropin_module_has_the_official_names():
    names = [
        name
        for name, value in vars(official).items()
        if inspect.isfunction(value) and value.__module__ == official.__name__
    ]
    assert len(names) >= 16
    for name in names:
        assert callable(getattr(dropin, name)), name
        assert hasattr(official, name), name


@pytest.mark.parametrize(
    ("low_res", "img_size", "input_size", "original_size"),
    [
        (64, 256, (171, 256), (150, 225)),  # downscale, landscape
        (64, 256, (256, 97), (600, 227)),  # upscale, portrait
        (256, 1024, (684, 1024), (534, 800)),  # a photo at full size
        (16, 64, (64, 64), (64, 64)),  # no resize
    ],
)
def test_upscale_footprint_bounds_the_upscaled_logits(low_res, img_size, input_size, original_size):
    g = torch.Generator().manual_seed(low_res + input_size[1])
    smooth = torch.nn.functional.interpolate(
        torch.randn(4, 1, low_res // 4, low_res // 4, generator=g) * 4,
        (low_res, low_res),
        mode="bilinear",
    )[:, 0]
    logits = torch.cat(
        [smooth, torch.randn(2, low_res, low_res, generator=g) * 3, smooth[:1] - 100]
    )
    up = upscale_logits(logits[:, None], img_size, input_size, original_size)[:, 0]
    footprint = filters.UpscaleFootprint.of(low_res, img_size, input_size, original_size)
    low, high = footprint.extremes(logits)
    rows, cols = footprint.row_count, footprint.col_count
    assert rows.sum() == original_size[0] and cols.sum() == original_size[1]
    low = low.repeat_interleave(rows, dim=1).repeat_interleave(cols, dim=2)
    high = high.repeat_interleave(rows, dim=1).repeat_interleave(cols, dim=2)
    assert bool((low - 1e-4 <= up).all()) and bool((up <= high + 1e-4).all())
    for offset in (1.0, 0.25):
        exact = filters.stability_score(up, 0.0, offset)
        bound = footprint.stability_upper_bound(logits, 0.0, offset)
        assert bool(((exact <= bound) | exact.isnan()).all())
        assert bool((exact[bound == 0] == 0).all() | exact[bound == 0].isnan().all())
    assert bound[-1] == 0  # all below the threshold: nothing to upscale
    rows, cols = footprint.extent  # nothing outside it is read
    scrambled = torch.randn(logits.shape, generator=g) * 100
    scrambled[:, :rows, :cols] = logits[:, :rows, :cols]
    rescaled = upscale_logits(scrambled[:, None], img_size, input_size, original_size)[:, 0]
    assert torch.equal(rescaled, up)


@pytest.mark.parametrize(
    "low_res, img_size, input_size, original_size",
    [
        (256, 1024, (683, 1024), (1200, 1800)),  # landscape photo, upscaled
        (256, 1024, (1024, 439), (1500, 643)),  # portrait
        (64, 256, (43, 256), (64, 380)),  # a thin strip
        (256, 1024, (1024, 1024), (3000, 3000)),  # bands cover many output rows
        (16, 64, (64, 64), (64, 64)),  # no resize
        (64, 250, (250, 167), (300, 200)),  # img_size not a multiple: the plain path
    ],
)
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_upscale_to_masks_is_the_thresholded_upscale(
    low_res, img_size, input_size, original_size, threshold
):
    g = torch.Generator().manual_seed(low_res + input_size[0])
    smooth = torch.nn.functional.interpolate(
        torch.randn(2, 3, low_res // 8, low_res // 8, generator=g) * 4, (low_res, low_res)
    )
    logits = smooth + torch.randn(2, 3, low_res, low_res, generator=g)
    up = upscale_logits(logits, img_size, input_size, original_size)
    with torch.inference_mode():
        fused = upscale_to_masks(logits, img_size, input_size, original_size, threshold)
    assert fused.shape == up.shape and fused.dtype == torch.bool
    different = fused != (up > threshold)
    assert bool(((up[different] - threshold).abs() < 1e-5).all())  # rounding at the threshold
    assert different.float().mean() < 1e-5
    # the cached weights made under inference mode serve calls outside it too
    again = upscale_to_masks(logits, img_size, input_size, original_size, threshold)
    assert torch.equal(again, fused)
