"""The bundled text-prompt head (the paper's text-to-mask route): the generator's names, the
shipped weights on held-out scenes, the CLI, and a short training run."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from segany.checkpoints import load
from segany.cli import main
from segany.data.names import (
    PART_WORD,
    VOCABULARY,
    UnknownWordError,
    colour_name,
    phrase_words,
    scene_objects,
    scene_phrases,
)
from segany.data.scenes import generate_scene
from segany.inference.predictor import Predictor
from segany.text.demo import run_text_demo
from segany.text.evaluation import evaluate_text_head, mask_iou
from segany.text.head import TextPromptModel
from segany.text.prompt import NoTextHeadError, TextPromptHead
from segany.text.training import (
    collect_objects,
    contrastive_loss,
    head_loss,
    train_encoders,
    train_prompt_head,
)
from segany.text.weights import bundled_text_head_path, load_text_head, save_text_head

# Held-out scene with exactly one red star (object 2), found by rule: the first seed from
# 1,000,000 whose phrases name one red star.
RED_STAR_SEED, RED_STAR_INDEX = 1_000_043, 2
# Floor for the shipped head on 3 held-out scenes (measured 0.707 there, 44 unique phrases; the
# paper's token route, which did not transfer, gives 0.059): BENCHMARKS.md has the full table.
UNIQUE_MIOU_FLOOR = 0.5


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load("tiny"))


@pytest.fixture(scope="module")
def head() -> TextPromptHead:
    return TextPromptHead.bundled("tiny")


def test_names_come_from_the_generator_and_the_pixels():
    assert colour_name(np.array([230, 20, 20])) == "red"
    assert colour_name(np.array([20, 40, 220])) == "blue"
    assert colour_name(np.array([128, 128, 128])) == "grey"
    scene = generate_scene(RED_STAR_SEED)
    phrases = dict(scene_phrases(scene))
    assert phrases["red star"] == [RED_STAR_INDEX]
    assert scene.shapes[RED_STAR_INDEX] == "star"
    assert scene_phrases(generate_scene(RED_STAR_SEED)) == scene_phrases(scene)  # seeded
    for obj in scene_objects(scene):  # a part is called a part, a whole object by its shape
        parent = scene.parents[obj.index]
        assert (PART_WORD if parent >= 0 else scene.shapes[obj.index]) in obj.words
        assert obj.words <= set(VOCABULARY) and len(obj.words) == 2


def test_unknown_words_name_the_vocabulary():
    assert phrase_words("The Red star") == ("red", "star")
    with pytest.raises(UnknownWordError, match=r"dog.*vocabulary: red orange"):
        phrase_words("red dog")
    with pytest.raises(UnknownWordError):
        phrase_words("  ")


def test_shipped_head_names_unique_objects(predictor, head):
    report = evaluate_text_head(predictor, head, count=3)
    assert report.count() >= 20
    assert report.miou() > UNIQUE_MIOU_FLOOR
    # the text is what chooses the object: another object's name gives another mask
    scene = generate_scene(RED_STAR_SEED)
    red_star = head.segment(predictor, scene.image, "red star")[0]
    assert red_star.detector_score is None
    assert mask_iou(red_star.mask, scene.masks[RED_STAR_INDEX]) > 0.5


def test_weights_round_trip_and_only_tiny_has_a_head(tmp_path, head):
    path = bundled_text_head_path("tiny")
    assert path is not None and path.stat().st_size < 400_000
    save_text_head(head.model, tmp_path / "copy.safetensors", {"test": True})
    copy = load_text_head(tmp_path / "copy.safetensors")
    for name, value in head.model.state_dict().items():
        torch.testing.assert_close(copy.state_dict()[name], value)
    with pytest.raises(NoTextHeadError, match="no text-prompt head"):
        TextPromptHead.bundled("vit_b")


def test_cli_segments_a_phrase(tmp_path, capsys):
    scene = generate_scene(RED_STAR_SEED)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    args = ["segment", str(tmp_path / "scene.png"), "--model", "tiny", "--text", "red star"]
    assert main([*args, "--output", str(tmp_path / "mask.png")]) == 0
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    assert mask_iou(mask, scene.masks[RED_STAR_INDEX]) > 0.5
    assert main([*args[:-1], "red dog", "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "vocabulary" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_a_few_training_steps_lower_the_losses():
    torch.manual_seed(0)
    sam = load("tiny")
    table = collect_objects(sam, range(2), batch=2)
    model = TextPromptModel()
    rows = torch.arange(len(table.scene))
    with torch.no_grad():
        before = float(contrastive_loss(model, table, rows, random.Random(0)))
    train_encoders(model, table, steps=30, batch=len(rows))
    with torch.no_grad():
        assert float(contrastive_loss(model, table, rows, random.Random(0))) < before
        before = float(head_loss(sam, model, table, rows, "image", random.Random(0)))
    train_prompt_head(sam, model, table, steps=8, batch=len(rows), lr=3e-3)
    with torch.no_grad():
        assert float(head_loss(sam, model, table, rows, "image", random.Random(0))) < before
    assert not any(p.requires_grad for p in sam.parameters())


def test_demo_prompts_a_phrase(tmp_path):
    result = run_text_demo(tmp_path)
    assert result.phrase == "green blob"  # the largest object with a unique name, by rule
    assert result.iou > UNIQUE_MIOU_FLOOR
    assert result.file.stat().st_size > 0


def test_the_page_text_route_uses_the_head_without_a_detector(tmp_path, predictor, head):
    # `segany serve` with the bundled model and no --detector: the Text field gets the head's
    # mask for the phrase; a word the head does not know is a 400 naming the way out.
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient

    from segany.formats import decode_coco_rle
    from segany.server import SegmentService, create_app

    service = SegmentService(predictor.model, tmp_path / "cache", text_head=head)
    service.workers.start()  # without the lifespan: the text route needs no decoder graph
    client = TestClient(create_app(service, static_dir=None))
    assert client.get("/api/model").json()["text_detector"] == "the bundled model's text head"
    scene = generate_scene(RED_STAR_SEED)
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    key = client.post("/api/images", content=buffer.getvalue()).json()["id"]
    answer = client.post(f"/api/images/{key}/text", json={"text": "red star"})
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()["masks"]
    assert record["phrase"] == "red star" and record["detector_score"] is None
    expected = head.segment(predictor, scene.image, "red star")[0].mask
    np.testing.assert_array_equal(decode_coco_rle(record["segmentation"]), expected)
    assert mask_iou(expected, scene.masks[RED_STAR_INDEX]) > 0.5
    unknown = client.post(f"/api/images/{key}/text", json={"text": "a dog"})
    assert unknown.status_code == 400 and "--detector" in unknown.json()["detail"]
