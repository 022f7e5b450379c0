"""HQ-SAM: parity with the official ``segment_anything_hq`` package on identical seeded random
weights (model, predictors, segment-everything, ONNX graph), checkpoint detection from the
published key layout, the CLI and the web app's routes with an HQ model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import segment_anything_hq as official_hq
import torch
from PIL import Image

import segany
from conftest import SMALL, random_image
from hq_helpers import hq_config, make_hq_pair
from segany import CheckpointError, Embedding, Predictor, SamPredictor
from segany.checkpoints import infer_config, load
from segany.config import get_config
from segany.modeling.sam_hq import SamHQ

ATOL = 1e-4
IMAGE = random_image(180, 240, seed=1)
POINTS = np.array([[50, 60], [120, 100], [200, 30]])
LABELS = np.array([1, 0, 1])
FLAGS = [(mm, only) for mm in (True, False) for only in (True, False)]


@pytest.fixture(scope="module")
def hq_pair():
    return make_hq_pair(hq_config(SMALL), seed=0)


@pytest.fixture(scope="module")
def checkpoint(hq_pair, tmp_path_factory) -> Path:
    """The official model's ``state_dict()`` saved as the published files are."""
    path = tmp_path_factory.mktemp("hq") / "sam_hq_small.pth"
    torch.save(hq_pair[1].state_dict(), path)
    return path


def test_model_forward_matches_official(hq_pair):
    ours, theirs = hq_pair
    generator = torch.Generator().manual_seed(0)
    record = {
        "image": torch.rand(3, 256, 200, generator=generator) * 255,
        "original_size": (300, 234),
        "point_coords": torch.rand(2, 3, 2, generator=generator) * 200,
        "point_labels": torch.tensor([[1, 0, 1], [1, 1, 1]]),
        "boxes": torch.tensor([[10.0, 20.0, 150.0, 180.0], [0.0, 0.0, 60.0, 90.0]]),
    }
    for multimask, only in FLAGS:
        a = ours([record], multimask, hq_token_only=only)[0]
        b = theirs([record], multimask, hq_token_only=only)[0]
        assert a["low_res_logits"].shape == (2, 1, 64, 64)
        torch.testing.assert_close(a["low_res_logits"], b["low_res_logits"], atol=ATOL, rtol=0)
        torch.testing.assert_close(a["iou_predictions"], b["iou_predictions"], atol=ATOL, rtol=0)
        assert torch.equal(a["masks"], b["masks"])


def test_predictors_match_the_official_hq_predictor(hq_pair, tmp_path):
    ours, theirs = hq_pair
    official = official_hq.SamPredictor(theirs)
    official.set_image(IMAGE)
    dropin = SamPredictor(ours)
    dropin.set_image(IMAGE)
    assert dropin.interm_features[0].shape == official.interm_features[0].shape == (1, 16, 16, 64)
    native = Predictor(ours)
    embedding = native.embed(IMAGE)
    embedding.save(tmp_path / "e.safetensors")  # the early features travel with the embedding
    embedding = Embedding.load(tmp_path / "e.safetensors")
    assert torch.equal(embedding.early, dropin.interm_features[0])
    box = np.array([20, 10, 200, 150])
    for multimask, only in FLAGS:
        flags = {"multimask_output": multimask, "hq_token_only": only}
        expected = official.predict(POINTS, LABELS, box=box, **flags)
        got = dropin.predict(POINTS, LABELS, box=box, **flags)
        assert got[0].shape == expected[0].shape == (1, 180, 240)
        np.testing.assert_allclose(got[1], expected[1], atol=ATOL)
        np.testing.assert_allclose(got[2], expected[2], atol=ATOL)
        assert (got[0] != expected[0]).mean() < 1e-4
        refined = official.predict(POINTS[:1], LABELS[:1], mask_input=expected[2], **flags)
        mine = native.predict(
            embedding, points=POINTS[:1], labels=LABELS[:1], mask_input=expected[2],
            multimask=multimask, hq_token_only=only,
        )  # fmt: skip
        np.testing.assert_allclose(mine.low_res_logits[0], refined[2], atol=ATOL)
        np.testing.assert_allclose(mine.scores[0], refined[1], atol=ATOL)
    with pytest.raises(ValueError, match="HQ-SAM"):
        plain = segany.build_model(SMALL)
        Predictor(plain).predict(Predictor(plain).embed(IMAGE), points=POINTS, labels=LABELS,
                                 hq_token_only=True)  # fmt: skip


def test_published_layout_is_detected_and_loaded_strictly(checkpoint, hq_pair):
    model = load(checkpoint)
    assert isinstance(model, SamHQ) and model.config.decoder.hq
    state = torch.load(checkpoint, weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert set(model.state_dict()) == set(state)
    # the full-size official layout: named configs detected from the keys and shapes alone
    for name, builder in official_hq.sam_model_registry.items():
        if name in ("default", "vit_tiny"):
            continue
        with torch.device("meta"):
            layout = builder().state_dict()
        assert infer_config(layout).name == f"sam_hq_{name}"
        with torch.device("meta"):
            ours = segany.build_model(get_config(f"sam_hq_{name}")).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in layout.items()}
    # a cut file fails with the reason
    del state["mask_decoder.compress_vit_feat.0.weight"]
    torch.save(state, checkpoint.with_name("cut.pth"))
    with pytest.raises(CheckpointError, match="compress_vit_feat"):
        load(checkpoint.with_name("cut.pth"))
    assert segany.sam_hq_model_registry["vit_b"].__name__ == "build_sam_hq_vit_b"


def test_cli_segment_with_an_hq_checkpoint(checkpoint, hq_pair, tmp_path, capsys):
    from segany.cli import main

    Image.fromarray(IMAGE).save(tmp_path / "image.png")
    output = tmp_path / "mask.png"
    code = main(
        ["segment", str(tmp_path / "image.png"), "--model", str(checkpoint),
         "--point", "50,60", "--output", str(output)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    mask = np.asarray(Image.open(output)) > 0
    official = official_hq.SamPredictor(hq_pair[1])
    official.set_image(IMAGE)
    expected = official.predict(POINTS[:1], LABELS[:1])[0][0]
    assert (mask != expected).mean() < 1e-3


def test_segment_everything_matches_the_official_generator(hq_pair):
    ours, theirs = hq_pair
    settings = {
        "points_per_side": 4,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,  # keep every mask: random weights give overlapping ones
        "output_mode": "coco_rle",
    }
    mine = segany.SamAutomaticMaskGenerator(ours, **settings).generate(IMAGE)
    expected = official_hq.SamAutomaticMaskGenerator(theirs, **settings).generate(IMAGE)
    assert len(mine) == len(expected) == 16  # one mask per point, as the HQ generator gives

    def key(record):
        return tuple(record["point_coords"][0])

    for a, b in zip(sorted(mine, key=key), sorted(expected, key=key)):
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=ATOL)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-3)
        assert abs(a["area"] - b["area"]) <= 2


@pytest.fixture(scope="module")
def hq_graph(hq_pair, tmp_path_factory) -> Path:
    return segany.export_onnx(hq_pair[0], tmp_path_factory.mktemp("onnx") / "hq.onnx").decoder


def test_onnx_decoder_matches_torch_and_the_official_decoder(hq_pair, hq_graph):
    ort = pytest.importorskip("onnxruntime")
    from segany.export.decoder_hq import OnnxDecoderHQ, dummy_inputs_hq

    ours, theirs = hq_pair
    session = ort.InferenceSession(str(hq_graph))
    names = [i.name for i in session.get_inputs()]
    assert names[:2] == ["image_embeddings", "interm_embeddings"]
    embeddings, early, coords, labels, mask, _, _ = dummy_inputs_hq(ours, num_points=3, seed=4)
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    inputs = (embeddings, early, coords, labels, mask, torch.tensor([0.0]), torch.tensor([300.0, 234.0]))  # fmt: skip
    out = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    with torch.no_grad():
        reference = OnnxDecoderHQ(ours)(*inputs)
        prompts = ours.prompt_encoder
        sparse = prompts.embed_labelled_points(coords, labels)
        dense = prompts.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, 16, 16)
        pe = prompts.get_dense_pe()
        single, _ = theirs.mask_decoder(embeddings, pe, sparse, dense, False, False, [early])
        multi, best_iou = theirs.mask_decoder(embeddings, pe, sparse, dense, True, False, [early])
        hq_only = OnnxDecoderHQ(ours, hq_token_only=True)(*inputs)[2]  # the HQ mask in all 4
        hq_mask, _ = theirs.mask_decoder(embeddings, pe, sparse, dense, False, True, [early])
    torch.testing.assert_close(hq_only, hq_mask.expand(-1, 4, -1, -1), atol=ATOL, rtol=0)
    for got, want in zip(out, reference):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-3)
    np.testing.assert_allclose(out[2][0, 0], single[0, 0].numpy(), atol=ATOL)
    best = 1 + int(out[1][0, 1:].argmax())
    np.testing.assert_allclose(out[2][0, best], multi[0, 0].numpy(), atol=ATOL)
    assert out[1][0, best] == pytest.approx(float(best_iou[0, 0]), abs=ATOL)


def test_web_app_serves_the_early_features_and_the_hq_graph(hq_pair, hq_graph, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from segany.server import SegmentService, create_app

    ours, _ = hq_pair
    service = SegmentService(ours, tmp_path / "cache", decoder_path=hq_graph)
    with TestClient(create_app(service, static_dir=None)) as client:
        image = tmp_path / "image.png"
        Image.fromarray(IMAGE).save(image)
        info = client.post("/api/images", content=image.read_bytes()).json()
        assert info["embedding"]["early_shape"] == [1, 16, 16, 64]
        early = client.get(info["embedding"]["early_url"], params={"dtype": "float32"})
        assert early.headers["x-embedding-shape"] == "1,16,16,64"
        features = client.get(info["embedding"]["url"], params={"dtype": "float32"}).content
        graph = client.get("/api/model/decoder.onnx").content
    expected = Predictor(ours).embed(IMAGE)
    early_values = np.frombuffer(early.content, "<f4").reshape(1, 16, 16, 64)
    np.testing.assert_array_equal(early_values, expected.early.numpy())
    session = ort.InferenceSession(graph)
    scale = 256 / 240  # the page's frame: the longest side resized to the input size
    feeds = {
        "image_embeddings": np.frombuffer(features, "<f4").reshape(1, 256, 16, 16),
        "interm_embeddings": early_values,
        "point_coords": np.array([[[50 * scale, 60 * scale], [0, 0]]], np.float32),
        "point_labels": np.array([[1, -1]], np.float32),
        "mask_input": np.zeros((1, 1, 64, 64), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([180, 240], np.float32),
    }
    masks, scores, _ = session.run(None, feeds)
    best = 1 + int(scores[0, 1:].argmax())  # the page's pick for one click
    reference = Predictor(ours).predict(expected, points=POINTS[:1], labels=LABELS[:1])
    assert scores[0, best] == pytest.approx(float(reference.scores[0, 0]), abs=ATOL)
    assert ((masks[0, best] > 0) != reference.masks[0, 0]).mean() < 1e-3
    onnx = segany.load_onnx(hq_graph).predict(expected, points=POINTS[:1], labels=LABELS[:1])
    assert onnx.scores[0].max() == pytest.approx(float(reference.scores[0, 0]), abs=ATOL)
    assert (onnx.best_masks()[0] != reference.masks[0, 0]).mean() < 1e-3
