"""The point protocol on cases whose answers are known by construction."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from segany.data.datasets import GeneratedScenes, MaskSample
from segany.evaluate import centre_click, evaluate, next_click
from segany.inference.predictor import Prediction


def test_centre_click_is_farthest_from_the_boundary():
    mask = np.zeros((20, 30), dtype=bool)
    mask[4:15, 6:17] = True  # 11 x 11 square centred on (11, 9)
    assert centre_click(mask) == (11, 9)
    mask[4:15, 6:27] = True  # 11 x 21: a ridge of maxima; the first in raster order
    assert centre_click(mask) == (11, 9)
    edge = np.zeros((10, 10), dtype=bool)
    edge[:, :3] = True  # touching the image border: the border counts as boundary
    assert centre_click(edge) == (1, 1)
    with pytest.raises(ValueError):
        centre_click(np.zeros((4, 4), dtype=bool))


def test_next_click_goes_to_the_larger_error():
    truth = np.zeros((40, 40), dtype=bool)
    truth[5:35, 5:35] = True
    missed_half = truth.copy()
    missed_half[5:35, 20:35] = False  # right half missed -> positive click there
    x, y, label = next_click(truth, missed_half)
    assert label == 1 and 20 <= x < 35 and 5 <= y < 35
    spilled = truth.copy()
    spilled[0:40, 36:40] = True  # a thin spill plus a big spill below
    spilled[36:40, :] = True
    spilled[5:35, 5:8] = False  # a thin miss (3 px wide)
    x, y, label = next_click(truth, spilled)
    assert label == 0 and not truth[y, x]
    assert next_click(truth, truth) is None


class _OraclePredictor:
    """Knows the ground truth: returns the object under the first click (and junk
    candidates with lower scores)."""

    def embed(self, image):
        return SimpleNamespace(masks=self.masks)

    def predict(self, embedding, *, points, labels, mask_input=None, multimask=True):
        x, y = points[0]
        truth = next(m for m in embedding.masks if m[y, x])
        empty, full = np.zeros_like(truth), np.ones_like(truth)
        if multimask:
            masks, scores = np.stack([empty, truth, full]), np.array([0.1, 0.9, 0.2])
        else:
            masks, scores = truth[None], np.array([0.9])
        return Prediction(masks[None], scores[None], np.zeros((1, len(scores), 4, 4), np.float32))


class _WholeImagePredictor:
    """Always answers "the whole image"."""

    def embed(self, image):
        return image.shape[:2]

    def predict(self, embedding, *, points, labels, mask_input=None, multimask=True):
        count = 3 if multimask else 1
        masks = np.ones((1, count, *embedding), dtype=bool)
        return Prediction(masks, np.full((1, count), 0.5), np.zeros((1, count, 4, 4), np.float32))


def _disjoint_samples():
    """Three images with non-overlapping objects (so the clicked object is unambiguous)."""
    samples = []
    for seed in range(3):
        masks = np.zeros((2, 32, 48), dtype=bool)
        masks[0, 2 + seed : 12 + seed, 3:20] = True
        masks[1, 18:30, 25 + seed : 45] = True
        samples.append(MaskSample(np.zeros((32, 48, 3), np.uint8), masks, f"img{seed}"))
    return samples


def test_a_perfect_predictor_scores_one(tmp_path):
    samples = _disjoint_samples()
    oracle = _OraclePredictor()
    oracle.masks = None

    class Bound(_OraclePredictor):
        def embed(self, image):
            sample = next(s for s in samples if s.image is image)
            return SimpleNamespace(masks=sample.masks)

    report = evaluate(Bound(), {"toy": samples}, clicks=(1, 2, 3, 5, 9), progress=False)
    assert len(report.objects) == 6
    for k in (1, 2, 3, 5, 9):
        assert report.miou(k) == 1.0
    assert report.oracle_miou() == 1.0
    summary = report.summary()
    assert summary["overall"]["miou"]["9"] == 1.0 and summary["datasets"]["toy"]["objects"] == 6
    report.write_objects(tmp_path / "objects.csv")
    lines = (tmp_path / "objects.csv").read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith(
        "dataset,image_id,object,area,oracle_iou_1,iou_1"
    )


def test_a_whole_image_predictor_scores_the_area_fraction():
    samples = _disjoint_samples()
    report = evaluate(_WholeImagePredictor(), {"toy": samples}, clicks=(1, 5), progress=False)
    expected = np.mean([m.sum() / m.size for s in samples for m in s.masks])
    assert report.miou(1) == pytest.approx(expected)
    assert report.miou(5) == pytest.approx(expected)
    assert report.oracle_miou() == pytest.approx(expected)


def test_real_predictor_runs_on_generated_scenes(small_model):
    from segany import Predictor

    report = evaluate(
        Predictor(small_model),
        {"gen": GeneratedScenes(5, 1)},
        clicks=(1, 2),
        max_objects_per_image=2,
        progress=False,
    )
    assert len(report.objects) == 2
    assert all(0.0 <= o.ious[0] <= 1.0 and len(o.ious) == 2 for o in report.objects)
