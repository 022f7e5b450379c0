"""``Sam.__call__`` as the official in eval mode (no autograd graph, outputs ready for numpy);
differentiable in training mode: losses backpropagate into the decoder and the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SMALL, make_pair
from segany.modeling import build_model
from segany.testing import random_state_dict


def batched_input() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.rand(3, 256, 200, generator=g) * 255,
            "original_size": (256, 200),
            "point_coords": torch.tensor([[[50.0, 60.0]]]),
            "point_labels": torch.tensor([[1]]),
            "boxes": torch.tensor([[10.0, 10.0, 150.0, 200.0]]),
        },
        {
            "image": torch.rand(3, 180, 256, generator=g) * 255,
            "original_size": (360, 512),
            "boxes": torch.tensor([[10.0, 10.0, 100.0, 90.0], [50.0, 20.0, 250.0, 170.0]]),
        },
    ]


@pytest.mark.parametrize("multimask", [False, True])
def test_eval_mode_call_is_the_official(multimask):
    ours, theirs = make_pair(SMALL, seed=1)
    ours.eval(), theirs.eval()
    batch = batched_input()
    mine = ours(batch, multimask_output=multimask)
    official = theirs(batch, multimask_output=multimask)
    for a, b in zip(mine, official):
        assert set(a) == set(b)
        for key in a:
            assert not a[key].requires_grad, key
            ours_np, theirs_np = a[key].numpy(), b[key].numpy()  # no autograd graph to detach
            assert ours_np.shape == theirs_np.shape and ours_np.dtype == theirs_np.dtype
        np.testing.assert_allclose(
            a["low_res_logits"].numpy(), b["low_res_logits"].numpy(), atol=1e-4, rtol=1e-4
        )
        np.testing.assert_allclose(
            a["iou_predictions"].numpy(), b["iou_predictions"].numpy(), atol=1e-5
        )
        assert (a["masks"] != b["masks"]).float().mean() < 1e-3  # logits at the threshold


def test_loss_reaches_encoder_and_decoder():
    model = build_model(SMALL)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=1))
    model.train()
    out = model(batched_input()[:1], multimask_output=True)
    target = torch.zeros_like(out[0]["low_res_logits"])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out[0]["low_res_logits"], target)
    loss = loss + out[0]["iou_predictions"].pow(2).mean()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name in (
        "image_encoder.patch_embed.proj.weight",
        "image_encoder.blocks.0.attn.rel_pos_h",
        "image_encoder.pos_embed",
        "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
        "mask_decoder.output_hypernetworks_mlps.1.layers.0.weight",
        "mask_decoder.iou_prediction_head.layers.2.weight",
        "prompt_encoder.point_embeddings.1.weight",
        "prompt_encoder.point_embeddings.2.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_frozen_encoder_gets_no_gradient():
    model = build_model(SMALL)
    model.image_encoder.requires_grad_(False)
    images = model.preprocess(torch.rand(1, 3, 256, 256) * 255)
    low_res, iou = model.decode(
        model.image_encoder(images), points=(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]]))
    )
    (low_res.mean() + iou.mean()).backward()
    assert model.image_encoder.patch_embed.proj.weight.grad is None
    assert model.mask_decoder.mask_tokens.weight.grad is not None
