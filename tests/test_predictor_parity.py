"""SamPredictor parity with the official predictor on identical weights, across prompt kinds,
odd image sizes and BGR input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as OfficialPredictor

from conftest import random_image
from segany import SamPredictor

ATOL = 1e-4
MAX_DIFFERENT_PIXELS = 1e-4  # 0.01%


def assert_same_outputs(ours, theirs):
    (m1, i1, l1), (m2, i2, l2) = ours, theirs
    assert m1.shape == m2.shape and m1.dtype == m2.dtype
    assert i1.shape == i2.shape and l1.shape == l2.shape
    np.testing.assert_allclose(l1, l2, atol=ATOL, rtol=0)
    np.testing.assert_allclose(i1, i2, atol=ATOL, rtol=0)
    if m1.dtype == bool:
        assert (m1 != m2).mean() <= MAX_DIFFERENT_PIXELS
    else:
        np.testing.assert_allclose(m1, m2, atol=ATOL, rtol=0)


@pytest.fixture(scope="module", params=[(333, 777), (64, 1500), (480, 640), (400, 400)])
def predictors(request, small_pair):
    ours, theirs = small_pair
    h, w = request.param
    image = random_image(h, w, seed=h + w)
    a, b = SamPredictor(ours), OfficialPredictor(theirs)
    a.set_image(image)
    b.set_image(image)
    return a, b, (h, w)


def test_embedding_matches(predictors):
    a, b, _ = predictors
    assert a.original_size == b.original_size and a.input_size == b.input_size
    torch.testing.assert_close(a.get_image_embedding(), b.get_image_embedding(), atol=ATOL, rtol=0)


def _cases(h, w):
    return {
        "one point": dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1])),
        "points": dict(
            point_coords=np.array([[w * 0.4, h * 0.5], [w * 0.1, h * 0.2], [w * 0.8, h * 0.9]]),
            point_labels=np.array([1, 0, 1]),
            multimask_output=False,
        ),
        "box": dict(box=np.array([w * 0.1, h * 0.2, w * 0.7, h * 0.9])),
        "box + negative point": dict(
            box=np.array([w * 0.1, h * 0.2, w * 0.7, h * 0.9]),
            point_coords=np.array([[w * 0.3, h * 0.5]]),
            point_labels=np.array([0]),
            multimask_output=False,
        ),
        "logits": dict(
            point_coords=np.array([[w * 0.4, h * 0.5]]),
            point_labels=np.array([1]),
            return_logits=True,
        ),
    }


@pytest.mark.parametrize("case", ["one point", "points", "box", "box + negative point", "logits"])
def test_predict_matches(predictors, case):
    a, b, (h, w) = predictors
    kwargs = _cases(h, w)[case]
    assert_same_outputs(a.predict(**kwargs), b.predict(**kwargs))


@pytest.mark.parametrize("with_points", [True, False])
def test_mask_input_from_previous_low_res_logits(predictors, with_points):
    a, b, (h, w) = predictors
    first = dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1]))
    _, scores, logits = b.predict(**first)
    second = dict(mask_input=logits[np.argmax(scores)][None], multimask_output=with_points)
    if with_points:  # a refinement click; else the mask alone
        second["point_coords"] = np.array([[w * 0.4, h * 0.5], [w * 0.6, h * 0.3]])
        second["point_labels"] = np.array([1, 0])
    assert_same_outputs(a.predict(**second), b.predict(**second))


def test_predict_torch_with_four_boxes(predictors):
    a, b, (h, w) = predictors
    boxes = np.array(
        [[0.05, 0.2, 0.95, 0.6], [0.2, 0.3, 0.4, 0.5], [0.7, 0.3, 0.9, 0.55], [0.6, 0.4, 0.7, 0.5]]
    ) * np.array([w, h, w, h])
    boxes_t = b.transform.apply_boxes_torch(
        torch.as_tensor(boxes, dtype=torch.float), b.original_size
    )
    out_a = a.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
    out_b = b.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
    assert out_a[0].shape == (4, 1, h, w)
    assert_same_outputs(*[[t.cpu().numpy() for t in out] for out in (out_a, out_b)])


def test_bgr_input_matches(small_pair):
    ours, theirs = small_pair
    image = random_image(200, 300, seed=11)
    a, b = SamPredictor(ours), OfficialPredictor(theirs)
    a.set_image(image[..., ::-1].copy(), image_format="BGR")
    b.set_image(image[..., ::-1].copy(), image_format="BGR")
    torch.testing.assert_close(a.features, b.features, atol=ATOL, rtol=0)
    c = SamPredictor(ours)
    c.set_image(image)  # the same pixels given as RGB
    torch.testing.assert_close(a.features, c.features, atol=0, rtol=0)
