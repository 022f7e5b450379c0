"""The native API: embeddings as values, K boxes at once, broadcasting, batches of images,
interactive sessions, and clear errors."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import torch

from conftest import random_image
from segany import Embedding, InteractiveSession, Predictor, SamPredictor, mask_to_logits
from segany.inference.predictor import decode_prompts
from segany.inference.prompts import build_prompt_batch


@pytest.fixture(scope="module")
def predictor(small_model):
    return Predictor(small_model)


@pytest.fixture(scope="module")
def image():
    return random_image(300, 400, seed=3)


@pytest.fixture(scope="module")
def embedding(predictor, image):
    return predictor.embed(image)


@pytest.fixture(scope="module")
def dropin(small_model, image):
    p = SamPredictor(small_model)
    p.set_image(image)
    return p


def test_embedding_is_the_drop_in_embedding(embedding, dropin):
    assert embedding.features.shape == (1, 256, 16, 16)
    assert embedding.original_size == (300, 400) and embedding.input_size == (192, 256)
    torch.testing.assert_close(embedding.features, dropin.features, atol=0, rtol=0)


def test_native_predict_equals_drop_in(predictor, embedding, dropin):
    ours = predictor.predict(
        embedding, points=[[100, 120], [300, 50]], labels=[1, 0], multimask=False
    )
    masks, iou, low = dropin.predict(
        np.array([[100, 120], [300, 50]]), np.array([1, 0]), multimask_output=False
    )
    assert ours.masks.shape == (1, 1, 300, 400)
    np.testing.assert_array_equal(ours.masks[0], masks)
    np.testing.assert_array_equal(ours.scores[0], iou)
    np.testing.assert_array_equal(ours.low_res_logits[0], low)


def test_k_boxes_give_k_masks_equal_to_one_at_a_time(predictor, embedding):
    boxes = np.array([[10, 10, 200, 150], [150, 100, 390, 290], [0, 0, 400, 300]])
    together = predictor.predict(embedding, boxes=boxes, multimask=False)
    assert together.masks.shape == (3, 1, 300, 400) and together.scores.shape == (3, 1)
    for k, box in enumerate(boxes):
        alone = predictor.predict(embedding, boxes=box, multimask=False)
        np.testing.assert_allclose(alone.low_res_logits[0], together.low_res_logits[k], atol=1e-5)


def test_points_broadcast_over_boxes(predictor, embedding):
    boxes = np.array([[10, 10, 200, 150], [150, 100, 390, 290]])
    both = predictor.predict(
        embedding, boxes=boxes, points=[[100, 80]], labels=[0], multimask=False
    )
    second = predictor.predict(
        embedding, boxes=boxes[1], points=[[100, 80]], labels=[0], multimask=False
    )
    assert both.masks.shape[0] == 2
    np.testing.assert_allclose(both.low_res_logits[1], second.low_res_logits[0], atol=1e-5)


def test_best_mask_helpers(predictor, embedding):
    p = predictor.predict(embedding, points=[[100, 120]], labels=[1])
    assert p.masks.shape == (1, 3, 300, 400)
    best = p.best_index()[0]
    assert p.scores[0, best] == p.scores[0].max()
    np.testing.assert_array_equal(p.best_masks()[0], p.masks[0, best])
    assert p.best_logits().shape == (1, 1, 64, 64)


def test_embed_batch_equals_single_embeds(predictor):
    images = [
        random_image(300, 400, seed=1),
        random_image(256, 100, seed=2),
        random_image(50, 60, seed=3),
    ]
    batch = predictor.embed_batch(images)
    for image, emb in zip(images, batch):
        single = predictor.embed(image)
        assert emb.original_size == single.original_size and emb.input_size == single.input_size
        torch.testing.assert_close(emb.features, single.features, atol=1e-4, rtol=0)


def test_embedding_save_load_round_trip(tmp_path, predictor, embedding):
    path = tmp_path / "image.emb"
    embedding.save(path)
    loaded = Embedding.load(path)
    assert (
        loaded.original_size == embedding.original_size
        and loaded.input_size == embedding.input_size
    )
    assert loaded.encoder_id == embedding.encoder_id
    a = predictor.predict(embedding, boxes=[10, 10, 200, 150])
    b = predictor.predict(loaded, boxes=[10, 10, 200, 150])
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    (tmp_path / "junk.emb").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a segany embedding"):
        Embedding.load(tmp_path / "junk.emb")


def test_embedding_from_another_model_is_refused(embedding):
    from conftest import SMALL, make_pair

    other, _ = make_pair(SMALL, seed=99)
    with pytest.raises(ValueError, match="different image encoder"):
        Predictor(other).predict(embedding, points=[[10, 10]], labels=[1])


def test_predictor_is_shareable_between_threads(predictor, embedding):
    expected = predictor.predict(embedding, points=[[100, 120]], labels=[1]).low_res_logits
    results = []

    def work():
        results.append(predictor.predict(embedding, points=[[100, 120]], labels=[1]).low_res_logits)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_session_feeds_previous_logits_and_undoes(predictor, embedding):
    session = InteractiveSession(predictor, embedding)
    first = session.click(100, 120)
    assert first.masks.shape[1] == 3  # a single click is ambiguous
    second = session.click(300, 50, positive=False)
    assert second.masks.shape[1] == 1
    manual = predictor.predict(
        embedding,
        points=[[100, 120], [300, 50]],
        labels=[1, 0],
        mask_input=first.best_logits()[0],
        multimask=False,
    )
    np.testing.assert_allclose(second.low_res_logits, manual.low_res_logits, atol=1e-5)
    assert session.points == ((100.0, 120.0, 1), (300.0, 50.0, 0))
    assert session.undo() is first and session.points == ((100.0, 120.0, 1),)
    boxed = session.set_box((10, 10, 200, 150))
    assert boxed.masks.shape[1] == 1 and session.box == (10.0, 10.0, 200.0, 150.0)
    assert session.mask.shape == (300, 400)
    session.reset()
    assert session.mask is None and session.points == ()


def test_mask_to_logits_geometry(embedding):
    mask = np.zeros((300, 400), dtype=bool)
    mask[:150, :200] = True  # top-left quarter of the image
    logits = mask_to_logits(mask, embedding)
    assert logits.shape == (1, 64, 64) and logits.dtype == np.float32
    # the image fills 64 x 48 low-res cells (192/256 of the height); the mask is its top-left quarter
    assert logits[0, 5, 5] == pytest.approx(10.0) and logits[0, 40, 40] == pytest.approx(-10.0)
    assert logits[0, 60, 5] == pytest.approx(-10.0)  # padding is background
    positive = logits[0] > 0
    assert positive[:24, :32].mean() > 0.9 and positive[24:, :].mean() < 0.05
    with pytest.raises(ValueError, match="must equal the image size"):
        mask_to_logits(mask[:10], embedding)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "empty prompt"),
        ({"points": [[10, 10]]}, "labels are required"),
        ({"points": [[10, 10]], "labels": [2]}, "labels must be 1"),
        ({"points": [[10, 10]], "labels": [1, 0]}, "does not match"),
        ({"points": [[np.nan, 10]], "labels": [1]}, "NaN or infinite"),
        ({"points": [[np.inf, 10]], "labels": [1]}, "NaN or infinite"),
        ({"points": [[10, 10, 3]], "labels": [1]}, "shape"),
        ({"points": [[500, 10]], "labels": [1]}, "outside the 400x300 image"),
        ({"points": [[-1, 10]], "labels": [1]}, "outside"),
        ({"boxes": [10, 10, 5, 50]}, "x0 <= x1"),
        ({"boxes": [10, 10, 50]}, "boxes must have shape"),
        ({"boxes": [10, 10, 50, 900]}, "outside"),
        ({"mask_input": np.zeros((1, 32, 32))}, "mask_input must be low-res logits"),
        ({"boxes": np.zeros((2, 4)), "mask_input": np.zeros((3, 1, 64, 64))}, "prompt sets"),
        ({"points": "abc", "labels": [1]}, "numeric"),
        ({"labels": [1]}, "without points"),
    ],
)
def test_bad_prompts_raise_value_error(predictor, embedding, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(embedding, **kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), dtype=np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        ([[1, 2, 3]], "numpy array"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
    ],
)
def test_bad_images_raise(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.embed(image)


def test_drop_in_errors(small_model, image):
    p = SamPredictor(small_model)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(np.array([[1, 1]]), np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        p.get_image_embedding()
    with pytest.raises(AssertionError, match="long side 256"):
        p.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    with pytest.raises(ValueError, match="image_format"):
        p.set_image(image, image_format="HSV")
    p.set_image(image)
    with pytest.raises(ValueError, match="point_labels must be supplied"):
        p.predict(np.array([[1, 1]]))
    with pytest.raises(ValueError, match="empty prompt"):
        p.predict()
    with pytest.raises(ValueError, match="NaN"):
        p.predict(np.array([[np.nan, 1]]), np.array([1]))
    # drop-in stays lenient where the official code is: points outside the image still work
    masks, _, _ = p.predict(np.array([[-5, 10]]), np.array([1]))
    assert masks.shape == (3, 300, 400)
    p.reset_image()
    assert not p.is_image_set and p.features is None


def test_embedding_keeps_derived_values_per_owner_and_version(embedding):
    calls = []

    class Owner:
        pass

    def make():
        calls.append(1)
        return len(calls)

    first, second = Owner(), Owner()
    assert embedding.derived(first, 0, make) == 1
    assert embedding.derived(first, 0, make) == 1  # kept
    assert embedding.derived(second, 0, make) == 2  # per owner
    assert embedding.derived(first, 1, make) == 3  # a new version replaces it
    assert embedding.derived(first, 1, make) == 3
    for twin in (pickle.loads(pickle.dumps(embedding)), copy.deepcopy(embedding)):
        torch.testing.assert_close(twin.features, embedding.features, atol=0, rtol=0)
        assert twin.original_size == embedding.original_size
        made = len(calls)
        assert twin.derived(first, 1, make) == made + 1  # not carried over: made again


def _plain_decode(model, embedding, **prompts):
    """Masks, IoU and low-res logits through :meth:`Sam.decode` (no shared image inputs)."""
    batch = build_prompt_batch(
        **prompts,
        original_size=embedding.original_size,
        img_size=embedding.img_size,
        low_res=4 * embedding.features.shape[-1],
        device=model.device,
    )
    with torch.inference_mode():
        return decode_prompts(model, None, embedding, batch, True, False)


def test_shared_decoder_inputs_follow_decoder_weight_changes(small_model, image):
    model = copy.deepcopy(small_model)
    predictor = Predictor(model)
    embedding = predictor.embed(image)
    prompts = dict(points=[[120, 80]], labels=[1], boxes=None, mask_input=None)
    for step in range(2):
        if step:  # change weights the shared inputs were computed from, in place
            with torch.no_grad():
                layer = model.mask_decoder.transformer.layers[0]
                layer.cross_attn_image_to_token.q_proj.weight.mul_(1.5)
                model.prompt_encoder.no_mask_embed.weight.add_(0.5)
        got = predictor.predict(embedding, points=prompts["points"], labels=prompts["labels"])
        masks, iou, low = _plain_decode(model, embedding, **prompts)
        np.testing.assert_allclose(got.low_res_logits, low.numpy(), atol=1e-4)
        np.testing.assert_allclose(got.scores, iou.numpy(), atol=1e-4)
        assert (got.masks != masks.numpy()).mean() < 1e-3
