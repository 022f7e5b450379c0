"""One full-size ViT-B run against the official code: 1024-px input, 64x64 embedding,
14x14 windows padded to 70, 4 global blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as OfficialPredictor
from segment_anything import sam_model_registry as official_registry

from conftest import random_image
from segany import SamPredictor, sam_model_registry
from segany.testing import random_state_dict


@pytest.mark.slow
def test_vit_b_full_size_predictor_parity():
    ours = sam_model_registry["vit_b"]()
    theirs = official_registry["vit_b"]()
    state = random_state_dict(ours.state_dict(), seed=42)
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    image = random_image(534, 800, seed=5)
    a, b = SamPredictor(ours), OfficialPredictor(theirs)
    a.set_image(image)
    b.set_image(image)
    assert a.features.shape == (1, 256, 64, 64)
    torch.testing.assert_close(a.features, b.features, atol=1e-4, rtol=0)

    prompts = [
        dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1])),
        dict(
            box=np.array([425, 200, 700, 475]),
            point_coords=np.array([[575, 350]]),
            point_labels=np.array([0]),
            multimask_output=False,
        ),
    ]
    for kwargs in prompts:
        (m1, i1, l1), (m2, i2, l2) = a.predict(**kwargs), b.predict(**kwargs)
        np.testing.assert_allclose(l1, l2, atol=1e-4, rtol=0)
        np.testing.assert_allclose(i1, i2, atol=1e-4, rtol=0)
        assert (m1 != m2).mean() <= 1e-4
