"""Official .pth files load strictly and unchanged; our safetensors format round-trips; model
types are detected from shapes; wrong files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry as official_registry

import segany
from conftest import SMALL, build_official, random_image
from segany import CheckpointError, Predictor, sam_model_registry
from segany.checkpoints import infer_config, load_checkpoint, read_weights, save_checkpoint
from segany.config import VIT_B, VIT_H, VIT_L
from segany.modeling import build_model

OFFICIAL = {"vit_h": (594, 641_090_608), "vit_l": (482, 312_342_832), "vit_b": (314, 93_735_472)}


@pytest.mark.parametrize("name", ["vit_h", "vit_l", "vit_b"])
def test_keys_and_parameter_counts_equal_official(name):
    with torch.device("meta"):
        ours = sam_model_registry[name]()
        theirs = official_registry[name]()
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in theirs_sd.items()}
    keys, params = OFFICIAL[name]
    assert len(ours_sd) == keys
    assert sum(p.numel() for p in ours.parameters()) == params
    assert infer_config(ours_sd).name == name


def test_registry_names_and_constants():
    assert set(sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b", "vit_t"}
    assert segany.build_sam is segany.build_sam_vit_h
    with torch.device("meta"):
        model = sam_model_registry["default"]()
    assert model.config == VIT_H
    assert model.mask_threshold == 0.0 and model.image_format == "RGB" and model.img_size == 1024


def test_official_state_dict_loads_strictly_and_back(tmp_path, small_pair):
    _, theirs = small_pair
    path = tmp_path / "official_small.pth"
    torch.save(theirs.state_dict(), path)
    ours = load_checkpoint(path)  # type detected from shapes
    assert ours.config.encoder == SMALL.encoder
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)
    # and ours saved as .pth loads strictly into the official model
    back = tmp_path / "ours.pth"
    torch.save(ours.state_dict(), back)
    fresh = build_official(SMALL)
    fresh.load_state_dict(torch.load(back, weights_only=True), strict=True)


def test_full_size_official_file_through_every_entry_point(tmp_path):
    theirs = official_registry["vit_b"]()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(theirs.state_dict(), path)
    by_registry = sam_model_registry["vit_b"](checkpoint=str(path))
    by_load = segany.load(path)
    by_name = segany.load("vit_b", checkpoint=path)
    assert by_load.config == VIT_B and by_name.config == VIT_B
    expected = theirs.state_dict()["mask_decoder.iou_token.weight"]
    for model in (by_registry, by_load, by_name):
        assert torch.equal(model.state_dict()["mask_decoder.iou_token.weight"], expected)
    with pytest.raises(CheckpointError, match=r"vit_b.*'vit_l'"):
        sam_model_registry["vit_l"](checkpoint=str(path))


def test_gpu_saved_tensors_load_on_cpu(tmp_path, small_pair):
    # map_location='cpu' is what makes this work; we check the loaded tensors are on the CPU.
    path = tmp_path / "w.pth"
    torch.save(small_pair[1].state_dict(), path)
    state, config = read_weights(path)
    assert config is None and all(t.device.type == "cpu" for t in state.values())


def test_safetensors_round_trip_keeps_config_and_outputs(tmp_path, small_model):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model, path)
    loaded = segany.load(path)
    assert loaded.config == small_model.config
    image = random_image(120, 90)
    a, b = Predictor(small_model), Predictor(loaded)
    pa = a.predict(a.embed(image), points=[[40, 50]], labels=[1])
    pb = b.predict(b.embed(image), points=[[40, 50]], labels=[1])
    np.testing.assert_array_equal(pa.low_res_logits, pb.low_res_logits)


def test_training_checkpoint_with_model_key_is_accepted(tmp_path, small_model):
    path = tmp_path / "train.pth"
    torch.save({"model": small_model.state_dict(), "step": 3}, path)
    assert load_checkpoint(path).config.encoder == SMALL.encoder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: torch.save([1, 2, 3], p), "holds a list, not a state dict"),
        (lambda p: torch.save({"conv1.weight": torch.zeros(2)}, p), "not a SAM model"),
        (
            lambda p: torch.save({"image_encoder.trunk.patch_embed.weight": torch.zeros(1)}, p),
            "SAM 2",
        ),
        (lambda p: torch.save({"vision_encoder.x": torch.zeros(1)}, p), "Hugging Face"),
        (lambda p: p.write_bytes(b"this is not a checkpoint"), "not a PyTorch checkpoint file"),
        (lambda p: p.write_text(""), "not a PyTorch checkpoint file"),
        (lambda p: p.write_bytes(b"PK\x03\x04 broken zip"), "not a readable PyTorch state dict"),
    ],
)
def test_wrong_files_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message) as info:
        segany.load(path)
    assert "expected" in str(info.value)


def test_truncated_checkpoint(tmp_path, small_model):
    path = tmp_path / "cut.pth"
    torch.save(small_model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch state dict"):
        load_checkpoint(path)


def test_missing_file_and_bad_names(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        segany.load(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="needs its weights"):
        segany.load("vit_b")
    with pytest.raises(ValueError, match="unknown model"):
        segany.load("vit_q")
    with pytest.raises(ValueError, match="precision"):
        segany.load("vit_b", precision="fp8")


def test_shapes_that_do_not_fit_name_the_difference(tmp_path, small_model):
    state = dict(small_model.state_dict())
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_weights_only_rejects_pickled_code(tmp_path):
    path = tmp_path / "model_object.pth"
    torch.save(build_model(SMALL), path)  # a whole pickled module, not a state dict
    with pytest.raises(CheckpointError, match="pickled objects other than tensors"):
        load_checkpoint(path)


def test_infer_config_of_other_official_shapes():
    with torch.device("meta"):
        assert infer_config(build_model(VIT_L).state_dict()) == VIT_L


def test_half_precision_file_loads_as_float32(tmp_path, small_model):
    path = tmp_path / "half.safetensors"
    save_checkpoint(small_model, path, dtype=torch.float16)
    full = tmp_path / "full.safetensors"
    save_checkpoint(small_model, full)
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded = segany.load(path)
    for key, value in small_model.state_dict().items():
        assert loaded.state_dict()[key].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[key], value.half().float(), atol=0, rtol=0)
