"""The detector route of text prompts: tiny random zero-shot detectors of transformers (Grounding
DINO, OWLv2, OmDet-Turbo) saved as folders and loaded through segany's public path. Random
weights give random boxes, so the tests plant known detections in the model's raw outputs (its
forward runs, then chosen queries get chosen scores and boxes) and check what segany makes of
them: boxes in original-image pixels, thresholds, phrases, NMS, masks, messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
from PIL import Image

import tiny_detectors
from segany.checkpoints import load
from segany.cli import main
from segany.formats import decode_coco_rle
from segany.inference.predictor import Predictor
from segany.text import Detector, DetectorError, segment_text, split_phrases
from segany.text.detectors import Detections
from segany.text.segment import select_boxes

HEIGHT, WIDTH = 50, 80  # not square: OWLv2 pads to a square, the others stretch
FAMILIES = {
    "grounding-dino": ("GroundingDinoForObjectDetection", tiny_detectors.grounding_dino),
    "owlv2": ("Owlv2ForObjectDetection", tiny_detectors.owlv2),
    "omdet-turbo": ("OmDetTurboForObjectDetection", tiny_detectors.omdet_turbo),
}
# planted detections: (query, phrase index into ["dog", "cat"], score, normalised cx, cy, w, h)
PLANTED = [(0, 1, 0.9, (0.25, 0.30, 0.2, 0.2)), (3, 0, 0.8, (0.70, 0.40, 0.3, 0.2)),
           (5, 0, 0.4, (0.50, 0.20, 0.1, 0.1))]  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("detectors")
    return {family: build(base / family) for family, (_, build) in FAMILIES.items()}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load("tiny"))


def expected_box(family: str, box: tuple[float, float, float, float]) -> np.ndarray:
    """A normalised centre box in original pixels, by each family's documented frame: OWLv2's
    boxes are relative to the image padded to a square at the bottom and right."""
    cx, cy, w, h = box
    sx, sy = (max(WIDTH, HEIGHT),) * 2 if family == "owlv2" else (WIDTH, HEIGHT)
    return np.array([(cx - w / 2) * sx, (cy - h / 2) * sy, (cx + w / 2) * sx, (cy + h / 2) * sy])


def plant(monkeypatch, family: str, planted=PLANTED) -> None:
    """Run the family's real forward, then overwrite its scores and boxes with ``planted``."""
    import transformers

    model_class = getattr(transformers, FAMILIES[family][0])
    forward = model_class.forward

    def planted_forward(self, *args, **inputs):
        out = forward(self, *args, **inputs)
        if family == "grounding-dino":  # scores per token: put each on its phrase's word
            logits, boxes = out.logits, out.pred_boxes
            words = inputs["input_ids"][0].tolist()  # the tiny BERT vocabulary: 5 specials first
            columns = [words.index(tiny_detectors.WORDS.index(w) + 5) for w in ("dog", "cat")]
        elif family == "owlv2":
            logits, boxes, columns = out.logits, out.pred_boxes, [0, 1]
        else:
            logits, boxes = out.decoder_class_logits, out.decoder_coord_logits
            columns = [0, 1]
        logits[..., : len(columns) if family != "grounding-dino" else len(words)] = -12.0
        for query, phrase, score, box in planted:
            logits[0, query, columns[phrase]] = math.log(score / (1 - score))
            boxes[0, query] = torch.tensor(box)
        return out

    monkeypatch.setattr(model_class, "forward", planted_forward)


@pytest.mark.parametrize("family", FAMILIES)
def test_detect_scales_boxes_to_original_pixels_and_thresholds(monkeypatch, folders, image, family):
    detector = Detector(folders[family])
    assert detector.family == family
    plant(monkeypatch, family)
    found = detector.detect(image, ["dog", "cat"], box_threshold=0.5)
    order = np.argsort(-found.scores)
    assert found.scores[order] == pytest.approx([0.9, 0.8], abs=1e-4)
    assert found.phrases[order].tolist() == [1, 0]
    expected = np.stack([expected_box(family, PLANTED[0][3]), expected_box(family, PLANTED[1][3])])
    np.testing.assert_allclose(found.boxes[order], expected, atol=1e-3)
    lower = detector.detect(image, ["dog", "cat"], box_threshold=0.3)
    assert sorted(lower.scores.tolist()) == pytest.approx([0.4, 0.8, 0.9], abs=1e-4)


def test_phrases_split_on_dots():
    assert split_phrases("A  Dog . the cat.") == ["a dog", "the cat"]
    assert split_phrases(["dog", "cat . dog"]) == ["dog", "cat"]
    with pytest.raises(DetectorError, match="empty text prompt"):
        split_phrases(" . ")


def test_nms_between_phrases_and_max_objects():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [0, 0, 95, 10]], np.float32)
    found = Detections(boxes, np.array([0.6, 0.9, 0.5, 0.7], np.float32), np.array([0, 1, 0, 1]))
    kept = select_boxes(found, (50, 80), nms_threshold=0.5)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])  # "dog" box under "cat" goes
    assert kept.phrases.tolist() == [1, 1, 0]
    assert kept.boxes[1].tolist() == [0, 0, 80, 10]  # clipped to the image
    assert len(select_boxes(found, (50, 80), nms_threshold=1.0)) == 4
    assert select_boxes(found, (50, 80), max_objects=2).scores.tolist() == pytest.approx([0.9, 0.7])
    with pytest.raises(ValueError, match="max objects"):
        select_boxes(found, (50, 80), max_objects=0)


def test_segment_text_gives_the_predictors_masks(monkeypatch, folders, image, predictor):
    planted = [*PLANTED, (7, 0, 0.85, (0.26, 0.30, 0.2, 0.2))]  # "dog" over the "cat": NMS
    plant(monkeypatch, "grounding-dino", planted)
    detector = Detector(folders["grounding-dino"])
    found = segment_text(predictor, detector, image, "dog . cat", box_threshold=0.5)
    assert [(m.phrase, round(m.detector_score, 4)) for m in found] == [("cat", 0.9), ("dog", 0.8)]
    boxes = np.stack([expected_box("grounding-dino", PLANTED[i][3]) for i in (0, 1)])
    reference = predictor.predict(predictor.embed(image), boxes=boxes, multimask=False)
    for i, result in enumerate(found):
        assert result.mask.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(result.mask, reference.masks[i, 0])
        assert result.predicted_iou == pytest.approx(float(reference.scores[i, 0]), abs=1e-5)
        np.testing.assert_allclose(result.box, boxes[i], atol=1e-3)
    assert segment_text(predictor, detector, image, "dog . cat", box_threshold=0.95) == []


@pytest.fixture
def photo(tmp_path, image) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    return path


def test_cli_writes_one_record_per_object(monkeypatch, folders, photo, predictor, image, capsys):
    plant(monkeypatch, "owlv2")
    output = photo.with_name("pets.json")
    argv = ["segment", str(photo), "--text", "dog . cat", "--detector", str(folders["owlv2"]),
            "--output", str(output), "--format", "coco", "--box-threshold", "0.5"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(output.read_text())
    assert (record["height"], record["width"], record["text"]) == (HEIGHT, WIDTH, "dog . cat")
    objects = record["objects"]
    assert [o["phrase"] for o in objects] == ["cat", "dog"]
    assert [o["detector_score"] for o in objects] == pytest.approx([0.9, 0.8], abs=1e-4)
    boxes = np.stack([expected_box("owlv2", PLANTED[i][3]) for i in (0, 1)])
    np.testing.assert_allclose([o["box"] for o in objects], boxes, atol=1e-3)
    reference = predictor.predict(predictor.embed(image), boxes=boxes, multimask=False)
    for i, o in enumerate(objects):
        np.testing.assert_array_equal(decode_coco_rle(o["segmentation"]), reference.masks[i, 0])
        assert o["area"] == int(reference.masks[i, 0].sum())
    assert "cat: detector score 0.900" in capsys.readouterr().out

    png = photo.with_name("pets.png")
    assert main([*argv[:6], "--output", str(png), "--box-threshold", "0.5"]) == 0
    union = np.asarray(Image.open(png)) > 0
    np.testing.assert_array_equal(union, reference.masks[:, 0].any(axis=0))


def test_cli_nothing_found_writes_nothing(monkeypatch, folders, photo, capsys):
    plant(monkeypatch, "omdet-turbo")
    output = photo.with_name("none.png")
    argv = ["segment", str(photo), "--text", "dog . cat", "--detector",
            str(folders["omdet-turbo"]), "--output", str(output), "--box-threshold", "0.95"]  # fmt: skip
    assert main(argv) == 1
    assert "no object found for 'dog', 'cat'" in capsys.readouterr().err
    assert not output.exists()


def test_cli_errors_are_one_line(tmp_path, photo, capsys, monkeypatch):
    unsupported = tmp_path / "bert"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "bert"}))
    out = str(tmp_path / "o.png")
    cases = {
        "needs --detector": ["--text", "dog"],
        "detector nobody/missing: no such folder, and not in the local Hugging Face cache": [
            "--text", "dog", "--detector", "nobody/missing"],
        "missing: no such folder": ["--text", "dog", "--detector", str(tmp_path / "missing")],
        "is a 'bert' model; supported: grounding-dino": [
            "--text", "dog", "--detector", str(unsupported)],
        "either --text or --point": ["--text", "dog", "--point", "3,4"],
    }  # fmt: skip
    for message, extra in cases.items():
        assert main(["segment", str(photo), "--output", out, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    everything = ["everything", str(photo), "--output", str(tmp_path / "masks"), "--text", "dog"]
    for message, extra in {
        "needs --detector": [],
        "use --format sa1b or coco": [
            "--detector",
            "x",
            "--text-match",
            "label",
            "--format",
            "png",
        ],
    }.items():
        assert main([*everything, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    assert main(["segment", str(photo), "--output", out, "--text", "a", "--detector", "x"]) == 2
    assert "pip install 'segany[text]'" in capsys.readouterr().err
    assert not Path(out).exists()


def mask_box_iou(bbox: list[int], box: np.ndarray) -> float:
    """IoU of a mask's XYWH box (inclusive max) with an XYXY box, written out by hand."""
    x0, y0, x1, y1 = bbox[0], bbox[1], bbox[0] + bbox[2] + 1, bbox[1] + bbox[3] + 1
    w = max(0.0, min(x1, box[2]) - max(x0, box[0]))
    h = max(0.0, min(y1, box[3]) - max(y0, box[1]))
    union = (x1 - x0) * (y1 - y0) + (box[2] - box[0]) * (box[3] - box[1]) - w * h
    return w * h / union


def test_everything_keeps_or_labels_the_named_masks(monkeypatch, folders, tmp_path):
    from segany.data.scenes import SceneConfig, generate_scene

    photo = tmp_path / "photo.png"  # shapes on a background: masks to name
    Image.fromarray(generate_scene(164, SceneConfig(height=HEIGHT, width=WIDTH)).image).save(photo)
    base = ["everything", str(photo), "--points-per-side", "4"]
    assert main([*base, "--output", str(photo.parent / "all")]) == 0
    masks = json.loads((photo.parent / "all" / "photo.json").read_text())["annotations"]
    x, y, w, h = masks[0]["bbox"]  # a "cat" box around the first mask, a "dog" box elsewhere
    cat = ((x + (w + 1) / 2) / WIDTH, (y + (h + 1) / 2) / HEIGHT, (w + 1) / WIDTH, (h + 1) / HEIGHT)
    plant(monkeypatch, "grounding-dino", [(0, 1, 0.9, cat), (2, 0, 0.7, (0.9, 0.9, 0.05, 0.05))])
    text = ["--text", "dog . cat", "--detector", str(folders["grounding-dino"])]
    text += ["--box-threshold", "0.5"]
    assert main([*base, "--output", str(photo.parent / "kept"), *text]) == 0
    kept = json.loads((photo.parent / "kept" / "photo.json").read_text())["annotations"]
    boxes = [
        expected_box("grounding-dino", cat),
        expected_box("grounding-dino", (0.9, 0.9, 0.05, 0.05)),
    ]
    named = [m for m in masks if max(mask_box_iou(m["bbox"], b) for b in boxes) >= 0.5]
    assert 1 <= len(named) < len(masks)
    assert [m["segmentation"] for m in kept] == [m["segmentation"] for m in named]
    assert {(m["phrase"], round(m["detector_score"], 4)) for m in kept} == {("cat", 0.9)}

    out = photo.parent / "labelled"
    assert main([*base, "--output", str(out), *text, "--text-match", "label"]) == 0
    labelled = json.loads((out / "photo.json").read_text())["annotations"]
    assert [m["segmentation"] for m in labelled] == [m["segmentation"] for m in masks]
    assert sum("phrase" in m for m in labelled) == len(named)


def test_server_text_route(monkeypatch, folders, image, predictor, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from segany.server import SegmentService, create_app

    def client(detector) -> TestClient:
        service = SegmentService(predictor.model, tmp_path / "cache", text_detector=detector)
        service.workers.start()  # without the lifespan: the text route needs no decoder graph
        return TestClient(create_app(service, static_dir=None))

    plain = client(None)
    key = plain.post("/api/images", content=photo_bytes(image)).json()["id"]
    answer = plain.post(f"/api/images/{key}/text", json={"text": "a dog"})
    assert answer.status_code == 400 and "segany serve --detector" in answer.json()["detail"]
    assert plain.get("/api/model").json()["text_detector"] is None

    plant(monkeypatch, "grounding-dino")
    served = client(Detector(folders["grounding-dino"]))
    assert served.post("/api/images", content=photo_bytes(image)).json()["id"] == key
    answer = served.post(
        f"/api/images/{key}/text", json={"text": "dog . cat", "box_threshold": 0.5}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["phrases"] == ["dog", "cat"] and body["message"] is None
    boxes = np.stack([expected_box("grounding-dino", PLANTED[i][3]) for i in (0, 1)])
    reference = predictor.predict(predictor.embed(image), boxes=boxes, multimask=False)
    assert [m["phrase"] for m in body["masks"]] == ["cat", "dog"]
    for i, record in enumerate(body["masks"]):
        np.testing.assert_array_equal(
            decode_coco_rle(record["segmentation"]), reference.masks[i, 0]
        )
        np.testing.assert_allclose(record["box"], boxes[i], atol=1e-3)
    none = served.post(f"/api/images/{key}/text", json={"text": "dog . cat", "box_threshold": 0.95})
    assert none.json()["masks"] == [] and "no object found" in none.json()["message"]
    assert served.post(f"/api/images/{key}/text", json={"text": " . "}).status_code == 400
    assert served.post(f"/api/images/{'0' * 64}/text", json={"text": "dog"}).status_code == 404
    assert served.post(f"/api/images/{key}/text", json={"text": ""}).status_code == 422


def photo_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
