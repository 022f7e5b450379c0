"""The GPU's routes: which route a CUDA call takes (a pure choice, checked everywhere), the fused
Triton kernel's arithmetic on the CPU through Triton's interpreter (float32 and float16; the
interpreter has no bfloat16), the kernel inside a whole encoder, and on a GPU (tests marked
``gpu``, skipped without CUDA) the kernel and the bf16 model against float32."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segany.fast import routes

SRC = str(Path(__file__).resolve().parents[1] / "src")
CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu


def choose(device: str, dtype: torch.dtype, **state: bool) -> routes.AttentionRoute:
    flags = {"grad": False, "tracing": False, "compiling": False, "large_grid": True} | state
    return routes.choose_attention_route(device, dtype, **flags)


def test_cuda_inference_in_half_precision_takes_the_fused_kernel(monkeypatch):
    monkeypatch.setattr(routes, "triton_available", lambda: True)
    for dtype in (torch.bfloat16, torch.float16):
        assert choose("cuda", dtype).kind == "triton"
        assert choose("cuda", dtype, large_grid=False).kind == "triton"  # windows too
    # float32 stays the parity path: SDPA with the bias, in large blocks
    assert choose("cuda", torch.float32) == routes.AttentionRoute(
        "sdpa", routes.CUDA_BIAS_CHUNK_ELEMENTS
    )
    # autograd, an export and a compile keep their own routes on every device
    assert choose("cuda", torch.bfloat16, grad=True).kind == "sdpa"
    assert choose("cuda", torch.bfloat16, tracing=True).bias_elements == routes.WHOLE
    assert choose("cuda", torch.bfloat16, compiling=True).kind == "sdpa"
    # the CPU keeps its blockwise route
    assert choose("cpu", torch.bfloat16).kind == "blockwise"
    monkeypatch.setattr(routes, "triton_available", lambda: False)
    assert choose("cuda", torch.bfloat16).kind == "sdpa"


INTERPRETED = r"""
import json, sys
import torch
from segany.fast.triton_attention import triton_rel_pos_attention
from segany.modeling.image_encoder import decomposed_rel_pos_terms, rel_pos_bias

torch.manual_seed(0)
errors = []
# (batch, heads, grid rows, grid cols, head width, dtype): windows with padding (5x7), ViT-H's
# 80 channels (padded to 128 in the kernel), more keys than one block, float16
for b, heads, h, w, c, dtype in [(2, 3, 5, 7, 20, torch.float32), (1, 2, 9, 8, 80, torch.float32),
                                  (1, 2, 6, 6, 32, torch.float16)]:
    qkv = torch.randn(b, h * w, 3, heads, c).to(dtype)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # strided views, as in the encoder
    tables = torch.randn(2 * h - 1, c).to(dtype), torch.randn(2 * w - 1, c).to(dtype)
    rel_h, rel_w = decomposed_rel_pos_terms(q, *tables, (h, w))
    scale = c ** -0.5
    out = triton_rel_pos_attention(q, k, v, rel_h, rel_w, scale)
    q, k, v = q.float(), k.float(), v.float()
    bias = rel_pos_bias(rel_h.float(), rel_w.float())
    plain = torch.softmax(scale * q @ k.transpose(-1, -2) + bias, -1) @ v
    plain = plain.transpose(1, 2).flatten(2)
    errors.append([str(dtype), list(out.shape) == list(plain.shape),
                   (out.float() - plain).abs().max().item()])
print(json.dumps(errors))
"""

WHOLE_ENCODER = r"""
import json, sys
import numpy as np, torch
import segany
from segany.config import get_config
from segany.fast import routes
from segany.modeling import build_model as build_plain
from segany.testing import random_state_dict

torch.manual_seed(0)
plain = build_plain(get_config("tiny")).eval()
plain.load_state_dict(random_state_dict(plain.state_dict(), seed=3))
fast = segany.build_model(get_config("tiny")).eval()
fast.load_state_dict(plain.state_dict())
# the route a CUDA device takes in half precision, forced here for every attention call
routes.choose_attention_route = lambda *args, **state: routes.AttentionRoute("triton")
image = torch.randn(1, 3, 256, 256)
with torch.no_grad():
    want, got = plain.image_encoder(image), fast.image_encoder(image)
print(json.dumps([(got - want).abs().max().item(), want.abs().max().item()]))
"""


def interpret(script: str) -> list:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def triton_module():
    return pytest.importorskip("triton")


def test_the_fused_kernel_computes_relative_position_attention(triton_module):
    cases = interpret(INTERPRETED)
    assert [case[:2] for case in cases] == [
        ["torch.float32", True], ["torch.float32", True], ["torch.float16", True]
    ]  # fmt: skip
    (_, _, fp32_windows), (_, _, fp32_vit_h), (_, _, fp16) = cases
    assert fp32_windows < 1e-5 and fp32_vit_h < 1e-5
    assert fp16 < 5e-3


def test_an_encoder_on_the_fused_kernel_matches_the_plain_model(triton_module):
    error, scale = interpret(WHOLE_ENCODER)
    assert error < 1e-4 * max(scale, 1.0)


# -- on a GPU ---------------------------------------------------------------------------------
@gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_fused_kernel_on_a_gpu_matches_sdpa(triton_module, dtype):
    from segany.fast.triton_attention import triton_rel_pos_attention
    from segany.modeling.image_encoder import decomposed_rel_pos_terms, rel_pos_bias

    torch.manual_seed(0)
    for b, heads, h, w, c in [
        (2, 16, 64, 64, 80),
        (25, 12, 14, 14, 64),
    ]:  # ViT-H global, ViT-B windows
        q, k, v = torch.randn(3, b, heads, h * w, c, device="cuda", dtype=dtype).unbind(0)
        tables = (torch.randn(2 * h - 1, c, device="cuda", dtype=dtype),
                  torch.randn(2 * w - 1, c, device="cuda", dtype=dtype))  # fmt: skip
        rel_h, rel_w = decomposed_rel_pos_terms(q, *tables, (h, w))
        got = triton_rel_pos_attention(q, k, v, rel_h, rel_w, c**-0.5)
        bias = rel_pos_bias(rel_h.float(), rel_w.float())
        want = torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=bias, scale=c**-0.5
        )
        error = (got.float() - want.transpose(1, 2).flatten(2)).abs().max().item()
        assert error < 3e-2, (dtype, b, h, error)


@gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_bf16_on_a_gpu_gives_the_float32_masks():
    import segany
    from segany.data.scenes import SceneConfig, generate_scene

    scene = generate_scene(5, SceneConfig(height=256, width=320))
    masks = {}
    for precision in ("fp32", "bf16"):
        model = segany.load("tiny", device="cuda", precision=precision)
        predictor = segany.Predictor(model)
        points = np.array([[[x, y]] for x in (60, 160, 260) for y in (60, 128, 200)], float)
        masks[precision] = predictor.predict(
            predictor.embed(scene.image), points=points, labels=np.ones(points.shape[:2])
        ).masks
    inter = (masks["fp32"] & masks["bf16"]).sum((-2, -1))
    union = (masks["fp32"] | masks["bf16"]).sum((-2, -1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.mean() >= 0.98, iou.mean()
