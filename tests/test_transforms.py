"""Preprocessing and coordinate mapping equal to the official ResizeLongestSide and
Sam.preprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide as OfficialResize

from conftest import random_image
from segany.inference.transforms import ResizeLongestSide, preprocess_shape, resize_image
from segany.utils.transforms import ResizeLongestSide as DropInResize

SIZES = [
    (1500, 2250),
    (534, 800),
    (480, 640),
    (333, 777),
    (64, 1500),
    (1, 1),
    (1024, 1024),
    (2000, 17),
    (777, 333),
    (1023, 1025),
    (3, 5000),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("long_side", [1024, 256])
def test_preprocess_shape_matches(size, long_side):
    assert preprocess_shape(*size, long_side) == OfficialResize.get_preprocess_shape(
        *size, long_side
    )


def test_known_shapes():
    assert preprocess_shape(1500, 2250, 1024) == (683, 1024)
    assert preprocess_shape(534, 800, 1024) == (684, 1024)
    assert preprocess_shape(480, 640, 1024) == (768, 1024)


@pytest.mark.parametrize("size", [(534, 800), (333, 777), (64, 1500), (1200, 900), (17, 2000)])
def test_apply_image_is_byte_identical(size):
    image = random_image(*size, seed=size[0])
    ours = ResizeLongestSide(1024).apply_image(image)
    theirs = OfficialResize(1024).apply_image(image)
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("size", SIZES)
def test_coords_and_boxes_match(size):
    rng = np.random.default_rng(0)
    coords = rng.random((5, 2)) * np.array(size[::-1])
    boxes = rng.random((3, 4)) * np.array(size[::-1] * 2)
    ours, theirs = DropInResize(1024), OfficialResize(1024)
    np.testing.assert_allclose(
        ours.apply_coords(coords, size), theirs.apply_coords(coords, size), atol=1e-9, rtol=0
    )
    np.testing.assert_allclose(
        ours.apply_boxes(boxes, size), theirs.apply_boxes(boxes, size), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(
        ours.apply_coords_torch(torch.as_tensor(coords, dtype=torch.float32), size),
        theirs.apply_coords_torch(torch.as_tensor(coords, dtype=torch.float32), size),
    )
    assert ours.apply_boxes(boxes, size).shape == (3, 4)


def test_apply_image_torch_uses_the_real_shape():
    # The official wheel reads shape[0], shape[1] (batch, channels); ours reads H and W.
    out = ResizeLongestSide(256).apply_image_torch(torch.rand(2, 3, 100, 50))
    assert out.shape == (2, 3, 256, 128)


def test_sam_preprocess_matches(small_pair):
    ours, theirs = small_pair
    x = torch.rand(1, 3, 200, 256) * 255
    torch.testing.assert_close(ours.preprocess(x), theirs.preprocess(x), atol=0, rtol=0)
    assert ours.preprocess(x)[..., 200:, :].abs().max() == 0  # padding after normalising


def test_postprocess_matches(small_pair):
    ours, theirs = small_pair
    low = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        ours.postprocess_masks(low, (170, 256), (333, 500)),
        theirs.postprocess_masks(low, (170, 256), (333, 500)),
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("long_side", [1024, 256])
def test_preprocess_shape_on_tensors_equals_ints(size, long_side):
    h, w = preprocess_shape(torch.tensor(float(size[0])), torch.tensor(float(size[1])), long_side)
    assert h.dtype == torch.int64 and (int(h), int(w)) == preprocess_shape(*size, long_side)


def test_too_thin_an_image_is_a_value_error():
    assert resize_image(np.zeros((1, 2000, 3), np.uint8), 1024).shape == (1, 1024, 3)
    with pytest.raises(ValueError, match="too thin"):
        resize_image(np.zeros((3000, 1, 3), np.uint8), 1024)
