"""Hugging Face SAM folders: segany reads what ``transformers.SamModel.save_pretrained`` writes
and writes what ``SamModel.from_pretrained`` reads, and both models give the same embeddings,
low-res logits, IoU and masks on the same seeded random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import segany
from conftest import SMALL, random_image
from segany import CheckpointError, Predictor
from segany.checkpoints import hf, save_checkpoint
from segany.cli import main
from segany.inference.transforms import ResizeLongestSide
from segany.testing import random_state_dict

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """segany model (random weights) -> HF folder (ours) -> SamModel -> save_pretrained folder."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    ours = segany.build_model(SMALL)
    ours.load_state_dict(random_state_dict(ours.state_dict(), seed=3))
    written = root / "written"
    save_checkpoint(ours, written, format="hf")
    theirs = transformers.SamModel.from_pretrained(written).eval()
    pretrained = root / "pretrained"
    theirs.save_pretrained(pretrained)
    return ours, theirs, written, pretrained


def test_written_folder_is_read_by_transformers(folders):
    ours, theirs, written, _ = folders
    assert sorted(p.name for p in written.iterdir()) == ["config.json", "model.safetensors"]
    config = theirs.config
    assert config.vision_config.hidden_size == 64 and config.vision_config.image_size == 256
    assert config.vision_config.global_attn_indexes == [1, 3]
    hf_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        name = hf.hf_name(key, {"mask_decoder.iou_prediction_head": 3} | _hyper_depths())
        assert torch.equal(hf_state[name], value), key


def _hyper_depths() -> dict[str, int]:
    return {f"mask_decoder.output_hypernetworks_mlps.{i}": 3 for i in range(4)}


def test_save_pretrained_folder_loads_strictly_with_the_same_weights(folders):
    ours, _, _, pretrained = folders
    loaded = segany.load(pretrained)
    assert (loaded.config.encoder, loaded.config.decoder) == (SMALL.encoder, SMALL.decoder)
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _their_outputs(theirs, pixels, **prompts):
    with torch.no_grad():
        out = theirs(pixel_values=pixels, multimask_output=True, **prompts)
    return out.pred_masks[0], out.iou_scores[0]


def test_model_outputs_match_transformers(folders):
    _, theirs, _, pretrained = folders
    loaded = segany.load(pretrained)
    image = torch.rand(3, 256, 192) * 255  # resized frame, 64 columns of padding
    pixels = loaded.preprocess(image)[None]
    with torch.no_grad():
        embedding = loaded.image_encoder(pixels)
        expected = theirs.get_image_embeddings(pixels)
    torch.testing.assert_close(embedding, expected, atol=1e-4, rtol=1e-4)
    points = torch.tensor([[[60.0, 90.0], [150.0, 40.0]]])
    labels = torch.tensor([[1, 0]])
    boxes = torch.tensor([[20.0, 30.0, 170.0, 200.0]])
    cases = [
        ({"points": (points, labels)}, {"input_points": points[None], "input_labels": labels[None]}),
        ({"boxes": boxes}, {"input_boxes": boxes[None]}),
        (
            {"points": (points[:, :1], labels[:, :1]), "boxes": boxes},
            {"input_points": points[None, :, :1], "input_labels": labels[None, :, :1], "input_boxes": boxes[None]},
        ),
    ]  # fmt: skip
    for mine, their_prompts in cases:
        with torch.no_grad():
            low_res, iou = loaded.decode(embedding, multimask_output=True, **mine)
        their_low_res, their_iou = _their_outputs(theirs, pixels, **their_prompts)
        torch.testing.assert_close(low_res, their_low_res, atol=1e-4, rtol=0)
        torch.testing.assert_close(iou, their_iou, atol=1e-5, rtol=0)


def test_end_to_end_masks_match_transformers_postprocessing(folders):
    _, theirs, _, pretrained = folders
    image = random_image(150, 200, seed=5)  # (H, W, 3) uint8
    predictor = Predictor(segany.load(pretrained))
    embedding = predictor.embed(image)
    point = np.array([[120.0, 60.0]])
    result = predictor.predict(embedding, points=point, labels=np.array([1]))
    # transformers on the same resized, normalised input; its own mask post-processing
    resized = torch.from_numpy(ResizeLongestSide(256).apply_image(image))
    pixels = predictor.model.preprocess(resized.permute(2, 0, 1).float())[None]
    scale = 256 / 200
    low_res, iou = _their_outputs(
        theirs, pixels, input_points=torch.tensor([[[[120.0 * scale, 60.0 * scale]]]]),
        input_labels=torch.tensor([[[1]]]),
    )  # fmt: skip
    processor = transformers.SamImageProcessor(
        size={"longest_edge": 256}, pad_size={"height": 256, "width": 256}
    )
    masks = processor.post_process_masks(
        low_res[None], original_sizes=[(150, 200)], reshaped_input_sizes=[resized.shape[:2]]
    )[0][0]
    np.testing.assert_allclose(result.scores[0], iou[0].numpy(), atol=1e-5)
    differing = (result.masks[0] != masks.numpy()).mean()
    assert differing < 1e-3  # pixels on the threshold may flip between the two upscalers


def test_config_json_round_trip_and_bad_folders(tmp_path, folders):
    _, _, written, _ = folders
    data = json.loads((written / "config.json").read_text())
    assert hf.config_from_hf(data).encoder == SMALL.encoder
    assert hf.config_from_hf(hf.config_to_hf(segany.config.VIT_B)) == segany.config.VIT_B
    with pytest.raises(CheckpointError, match=r"needs its config\.json"):
        segany.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam2"}))
    with pytest.raises(CheckpointError, match="not a transformers SamModel"):
        segany.load(tmp_path)
    with pytest.raises(CheckpointError, match="ViT encoder only"):
        save_checkpoint(segany.build_model(segany.config.VIT_T), tmp_path / "t", format="hf")


def test_cli_segment_with_a_hugging_face_folder(folders, tmp_path):
    _, _, _, pretrained = folders
    Image.fromarray(random_image(90, 120, seed=8)).save(tmp_path / "in.png")
    code = main(
        ["segment", str(tmp_path / "in.png"), "--model", str(pretrained), "--box", "10,10,100,80",
         "--output", str(tmp_path / "mask.png")]
    )  # fmt: skip
    assert code == 0
    predictor = Predictor(segany.load(pretrained))
    image = np.asarray(Image.open(tmp_path / "in.png"))
    expected = predictor.predict(predictor.embed(image), boxes=[[10, 10, 100, 80]], multimask=False)
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    np.testing.assert_array_equal(mask, expected.best_masks()[0])
