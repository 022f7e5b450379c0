"""MobileSAM: segany's TinyViT against the TinyViT that MobileSAM released (shipped inside
``segment_anything_hq`` for its Light HQ-SAM), on identical seeded weights; ``mobile_sam.pt``'s
key layout loads strictly; the model runs end to end, under ``optimize()`` and from the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor as OfficialPredictor
from segment_anything import modeling as official_modeling

import segany
from conftest import random_image
from segany import CheckpointError, Predictor, TinyViTConfig, sam_model_registry
from segany.checkpoints import infer_config, save_checkpoint
from segany.cli import main
from segany.config import VIT_T, SamConfig
from segany.modeling.tiny_vit import TinyViT
from segany.testing import random_state_dict

with warnings.catch_warnings():  # timm's deprecated import paths
    warnings.simplefilter("ignore")
    from segment_anything_hq.modeling.tiny_vit_sam import TinyViT as ReferenceTinyViT

# MobileSAM's stage structure at its 1024-px input (the reference hard-codes the 64x64 grid and
# a stride-1 last merge into 320 channels), narrow and shallow elsewhere to keep tests fast
SMALL_TINY = TinyViTConfig(
    embed_dims=(16, 32, 40, 320), depths=(1, 1, 2, 1), num_heads=(2, 2, 10), window_sizes=(7, 14, 7)
)
SMALL_MOBILE = SamConfig(name="small-mobile", encoder=SMALL_TINY)


def reference_encoder(config: TinyViTConfig) -> ReferenceTinyViT:
    return ReferenceTinyViT(
        img_size=config.img_size,
        embed_dims=list(config.embed_dims),
        depths=list(config.depths),
        num_heads=[1, *config.num_heads],  # its first entry is unused
        window_sizes=[7, *config.window_sizes],
        mlp_ratio=config.mlp_ratio,
        drop_path_rate=0.0,
        mbconv_expand_ratio=config.mbconv_expand_ratio,
        local_conv_size=config.local_conv_size,
        layer_lr_decay=0.8,
    )


@pytest.fixture(scope="module")
def mobile_file(tmp_path_factory):
    """A ``mobile_sam.pt``-layout file (reference encoder keys, classifier head included, plus
    SAM's prompt encoder and decoder) with seeded random weights, and the reference model."""
    torch.manual_seed(0)
    encoder = reference_encoder(SMALL_TINY)
    encoder.load_state_dict(random_state_dict(encoder.state_dict(), seed=1))
    decoder_part = {
        k: v
        for k, v in random_state_dict(
            segany.modeling.build_model(SMALL_MOBILE).state_dict()
        ).items()
        if not k.startswith("image_encoder.")
    }
    state = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()} | decoder_part
    path = tmp_path_factory.mktemp("mobile") / "mobile_sam.pt"
    torch.save(state, path)
    return path, state, encoder.eval()


def test_published_layout_and_parameter_count():
    """Every key and shape of MobileSAM's encoder (the classifier head aside) at its published
    configuration, and the same parameter count as the released code."""
    reference = reference_encoder(VIT_T.encoder)
    with torch.device("meta"):
        ours = sam_model_registry["vit_t"]()
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    mine = {k.removeprefix("image_encoder."): v.shape for k, v in ours.state_dict().items()}
    head = {"norm_head.weight", "norm_head.bias", "head.weight", "head.bias"}
    assert set(theirs) - set(mine) == head
    assert {k: v for k, v in theirs.items() if k not in head} == {
        k: v for k, v in mine.items() if k in theirs
    }
    counted = sum(p.numel() for n, p in reference.named_parameters() if "head" not in n)
    assert sum(p.numel() for p in ours.image_encoder.parameters()) == counted == 5_743_892
    assert ours.config == VIT_T and ours.img_size == 1024 and ours.config.embedding_size == 64


def test_model_type_is_checked_against_the_file(mobile_file):
    path, _, _ = mobile_file
    with pytest.raises(CheckpointError, match=r"holds a custom model \(a TinyViT encoder"):
        segany.load("vit_b", checkpoint=path)
    with pytest.raises(CheckpointError, match="but model type 'vit_t' was asked for"):
        sam_model_registry["vit_t"](checkpoint=path)  # a narrower TinyViT than MobileSAM's


def test_encoder_matches_reference_on_seeded_weights(mobile_file):
    _, state, reference = mobile_file
    ours = TinyViT(SMALL_TINY).eval()
    encoder_state = {
        k.removeprefix("image_encoder."): v for k, v in state.items() if k.startswith("image_e")
    }
    ours.load_state_dict({k: v for k, v in encoder_state.items() if "head" not in k})
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    fast = segany.optimize(segany.modeling.build_model(SMALL_MOBILE), "fp32").image_encoder
    fast.load_state_dict(ours.state_dict())
    with torch.no_grad():
        expected = reference(x)[0]
        got = ours(x)
        routed = fast(x)  # channels-last memory, batch norm folded into the convolutions
    assert got.shape == (1, 256, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert type(fast).__name__ == "FastTinyViT"
    torch.testing.assert_close(routed, expected, atol=1e-4, rtol=0)


class _EmbeddingOnly(torch.nn.Module):
    """The reference encoder returns (embedding, intermediate features); SAM wants the first."""

    def __init__(self, encoder: ReferenceTinyViT) -> None:
        super().__init__()
        self.encoder, self.img_size = encoder, encoder.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]


def test_mobile_sam_file_loads_strictly_and_predicts_like_the_reference(mobile_file):
    path, state, reference = mobile_file
    loaded = segany.load(path)
    assert loaded.config.encoder == SMALL_TINY and loaded.config.name == "custom"
    mine = loaded.state_dict()
    assert set(state) - set(mine) == {f"image_encoder.{k}" for k in ("norm_head.weight",
        "norm_head.bias", "head.weight", "head.bias")}  # fmt: skip
    assert all(torch.equal(mine[k], state[k]) for k in mine)
    # MobileSAM's package is segment_anything with this encoder: the official predictor on it
    official = official_modeling.Sam(
        _EmbeddingOnly(reference), loaded.prompt_encoder, loaded.mask_decoder
    ).eval()
    image = random_image(240, 320, seed=4)
    theirs = OfficialPredictor(official)
    theirs.set_image(image)
    masks, scores, low_res = theirs.predict(np.array([[200.0, 90.0]]), np.array([1]))
    predictor = Predictor(loaded)
    result = predictor.predict(predictor.embed(image), points=[[200.0, 90.0]], labels=[1])
    np.testing.assert_allclose(result.low_res_logits[0], low_res, atol=1e-3)
    np.testing.assert_allclose(result.scores[0], scores, atol=1e-5)
    assert (result.masks[0] != masks).mean() < 1e-3


def test_bf16_int8_and_checkpoint_round_trip(mobile_file, tmp_path):
    path, _, _ = mobile_file
    fp32 = segany.load(path)
    image = random_image(200, 150, seed=6)
    reference = Predictor(fp32).embed(image)
    for precision in ("bf16", "int8"):
        fast = Predictor(segany.load(path, precision=precision)).embed(image)
        assert fast.encoder_id == reference.encoder_id
        error = (fast.features - reference.features).abs().mean() / reference.features.abs().mean()
        assert error < 0.05, precision
    saved = tmp_path / "mobile.safetensors"
    save_checkpoint(fp32, saved)
    again = segany.load(saved)
    assert again.config == fp32.config and infer_config(again.state_dict()) == fp32.config
    assert torch.equal(Predictor(again).embed(image).features, reference.features)


def test_cli_segment_with_a_mobile_sam_file(mobile_file, tmp_path):
    path, _, _ = mobile_file
    Image.fromarray(random_image(120, 160, seed=7)).save(tmp_path / "in.png")
    code = main(
        ["segment", str(tmp_path / "in.png"), "--model", str(path), "--point", "80,60",
         "--output", str(tmp_path / "mask.png")]
    )  # fmt: skip
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    predictor = Predictor(segany.load(path))
    image = np.asarray(Image.open(tmp_path / "in.png"))
    expected = predictor.predict(predictor.embed(image), points=[[80, 60]], labels=[1])
    np.testing.assert_array_equal(mask > 0, expected.best_masks()[0])
