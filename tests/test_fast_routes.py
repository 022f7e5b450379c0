"""The reference model of ``segany.modeling`` and the same model with the speed routes of
``segany.fast`` installed give the same embeddings and masks; modeling imports nothing of
segany's but config."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

import segany
from conftest import SMALL
from segany import modeling
from segany.fast.model import FastSam, install_fast_routes
from segany.testing import random_state_dict


@pytest.fixture(scope="module")
def plain_and_fast() -> tuple[modeling.Sam, modeling.Sam]:
    plain = modeling.build_model(SMALL)
    plain.load_state_dict(random_state_dict(plain.state_dict(), seed=7))
    return plain, segany.optimize(copy.deepcopy(plain))


def test_modeling_builds_plain_and_optimize_installs_the_routes(plain_and_fast, tmp_path):
    plain, fast = plain_and_fast
    assert type(plain) is modeling.Sam and type(plain.image_encoder.blocks[0].attn).__name__ == (
        "Attention"
    )
    assert isinstance(fast, modeling.Sam) and type(fast) is FastSam
    assert type(segany.build_model(SMALL)) is FastSam
    segany.save_checkpoint(plain, tmp_path / "small.safetensors")
    assert type(segany.load_checkpoint(tmp_path / "small.safetensors")) is FastSam
    assert list(fast.state_dict()) == list(plain.state_dict())
    before = {type(m) for m in fast.modules()}
    install_fast_routes(fast)
    assert {type(m) for m in fast.modules()} == before


def test_plain_and_fast_give_the_same_embeddings_and_masks(plain_and_fast):
    plain, fast = plain_and_fast
    generator = torch.Generator().manual_seed(0)
    batch = [
        {
            "image": torch.rand(3, 256, 200, generator=generator) * 255,
            "original_size": (300, 234),
            "point_coords": torch.tensor([[[50.0, 60.0], [120.0, 30.0]]]),
            "point_labels": torch.tensor([[1, 0]]),
            "boxes": torch.tensor([[10.0, 10.0, 150.0, 200.0]]),
        }
    ]
    with torch.no_grad():
        images = plain.preprocess(batch[0]["image"])[None]
        torch.testing.assert_close(
            fast.image_encoder(images), plain.image_encoder(images), atol=1e-5, rtol=0
        )
        ours, reference = fast(batch, True)[0], plain(batch, True)[0]
    for key in ("low_res_logits", "iou_predictions"):
        torch.testing.assert_close(ours[key], reference[key], atol=1e-5, rtol=0)
    logits = fast.postprocess_masks(ours["low_res_logits"], (256, 200), (300, 234))
    torch.testing.assert_close(
        logits,
        plain.postprocess_masks(ours["low_res_logits"], (256, 200), (300, 234)),
        atol=1e-5,
        rtol=0,
    )
    near = logits.abs() < 1e-4  # masks may differ only where the logit is within rounding of 0
    assert torch.equal(ours["masks"] | near, reference["masks"] | near)


def test_gradients_through_the_fast_routes_match_the_plain_model(plain_and_fast, monkeypatch):
    from segany.fast import routes

    monkeypatch.setattr(routes, "BIAS_CHUNK_ELEMENTS", 4096)  # the bias in blocks of rows
    plain, fast = plain_and_fast
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    grads = []
    for model in (plain, fast):
        model = copy.deepcopy(model)
        model.image_encoder(images).square().mean().backward()
        grads.append(model.image_encoder.blocks[-1].attn.rel_pos_h.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


STANDARD = {"__future__", "collections", "dataclasses", "functools", "itertools", "math", "typing"}


def test_modeling_imports_only_config_and_torch():
    for path in sorted(Path(modeling.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:  # within segany
                target = "." * node.level + (node.module or "")
                assert node.level == 1 or target == "..config", f"{path.name} imports {target}"
            elif isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in {"torch", *STANDARD}, node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in {"torch", *STANDARD}, alias.name
