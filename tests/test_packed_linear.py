"""bf16 linear layers on oneDNN-packed weights (``segany.fast.packed_linear``): the numbers of
``nn.Linear`` (and of linear + GELU when fused), a weight change is picked up, copies and
pickles work, and ``optimize(..., "bf16")`` packs the encoder."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from segany.fast.packed_linear import PackedLinear, pack_linear_layers, packing_available
from segany.modeling.common import MLPBlock

pytestmark = pytest.mark.skipif(not packing_available(), reason="no oneDNN bf16 packing here")
BF16_ATOL = 0.05  # a few bf16 roundings of values of order 1


def _block(approximate: str = "none") -> MLPBlock:
    torch.manual_seed(0)
    block = MLPBlock(32, 96)
    block.act = nn.GELU(approximate=approximate)
    return block.to(torch.bfloat16).eval()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_packed_mlp_block_matches_the_plain_one(approximate):
    block = _block(approximate)
    x = torch.randn(2, 5, 7, 32).to(torch.bfloat16)
    packed = pack_linear_layers(copy.deepcopy(block))
    with torch.inference_mode():
        expected = block(x).float()
        out = packed(x).float()
    assert isinstance(packed.lin1, PackedLinear) and packed.lin1.gelu == approximate
    assert isinstance(packed.lin2, PackedLinear) and packed.lin2.gelu is None
    assert isinstance(packed.act, nn.Identity)
    assert set(packed.state_dict()) == set(block.state_dict())  # the same keys as nn.Linear
    torch.testing.assert_close(out, expected, atol=BF16_ATOL, rtol=0.02)


def test_packed_linear_follows_weight_changes():
    layer = PackedLinear(nn.Linear(16, 8).to(torch.bfloat16))
    x = torch.randn(4, 16).to(torch.bfloat16)
    with torch.inference_mode():
        before = layer(x)
        layer.weight.mul_(2)
        after = layer(x)
        bias = layer.bias.float()
    torch.testing.assert_close(
        after.float() - bias, 2 * (before.float() - bias), atol=0.1, rtol=0.02
    )


def test_packed_modules_copy_and_pickle():
    packed = pack_linear_layers(_block())
    x = torch.randn(3, 32).to(torch.bfloat16)
    with torch.inference_mode():
        expected = packed(x)  # packs the weights
        for other in (copy.deepcopy(packed), pickle.loads(pickle.dumps(packed))):
            torch.testing.assert_close(other(x), expected, atol=0, rtol=0)


def test_packed_linear_falls_back_with_autograd():
    block = _block()
    packed = pack_linear_layers(copy.deepcopy(block))
    x = torch.randn(3, 32).to(torch.bfloat16).requires_grad_()
    out = packed(x)
    out.float().sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(out.detach().float(), block(x).detach().float(), atol=0, rtol=0)


def test_bf16_optimize_packs_the_encoder(small_model):
    from segany.fast.precision import optimize

    model = optimize(copy.deepcopy(small_model), "bf16")
    layers = [m for m in model.image_encoder.modules() if isinstance(m, nn.Linear)]
    assert layers and all(isinstance(m, PackedLinear) for m in layers)
    assert not any(isinstance(m, nn.GELU) for m in model.image_encoder.modules())
    decoder_layers = [m for m in model.mask_decoder.modules() if isinstance(m, nn.Linear)]
    assert not any(isinstance(m, PackedLinear) for m in decoder_layers)  # fp32 stays plain
