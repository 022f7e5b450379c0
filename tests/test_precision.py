"""Precision modes and compilation (``segany.fast.precision``): every mode loads and runs, bf16 and
int8 masks agree with fp32 ones, fp32 stays the exact path, a compiled encoder does not
recompile for a second image, and the CLI takes ``--precision``."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import segany
from conftest import SMALL, random_image
from segany import Predictor, build_model, save_checkpoint
from segany.fast.attention import blockwise_rel_pos_attention, rel_pos_attention
from segany.fast.precision import PRECISIONS, optimize
from segany.modeling.image_encoder import decomposed_rel_pos_terms
from segany.testing import random_state_dict, region_mask_head


@pytest.fixture(scope="module")
def region_model() -> segany.Sam:
    """The small config with seeded weights whose masks are regions (not texture)."""
    model = build_model(SMALL)
    model.load_state_dict(region_mask_head(random_state_dict(model.state_dict(), seed=1)))
    return model


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, region_model) -> str:
    path = tmp_path_factory.mktemp("precision") / "small.safetensors"
    save_checkpoint(region_model, path)
    return str(path)


def point_masks(model: segany.Sam, image: np.ndarray) -> np.ndarray:
    """``(P, 3, H, W)`` masks of a fixed grid of single clicks."""
    predictor = Predictor(model)
    h, w = image.shape[:2]
    grid = np.stack(np.meshgrid(np.linspace(5, w - 5, 5), np.linspace(5, h - 5, 4)), -1)
    points = grid.reshape(-1, 1, 2)
    prediction = predictor.predict(
        predictor.embed(image), points=points, labels=np.ones(points.shape[:2])
    )
    return prediction.masks


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_loads_and_embeds_float32(weights_file, precision):
    model = segany.load(weights_file, precision=precision)
    embedding = Predictor(model).embed(random_image(90, 120))
    assert embedding.features.dtype == torch.float32
    assert embedding.features.shape == (1, 256, 16, 16)
    assert torch.isfinite(embedding.features).all()
    assert all(p.dtype == torch.float32 for p in model.mask_decoder.parameters())


@pytest.mark.parametrize(("precision", "threshold"), [("bf16", 0.97), ("int8", 0.92)])
def test_reduced_precision_masks_agree_with_fp32(region_model, precision, threshold):
    image = random_image(200, 256, seed=3)
    reference = point_masks(region_model, image)
    assert 0.05 < reference.mean() < 0.95  # regions, not all-or-nothing masks
    fast = optimize(copy.deepcopy(region_model), precision)
    assert mean_iou(point_masks(fast, image), reference) >= threshold  # measured 0.986, 0.974


def test_fp32_is_the_unchanged_model(region_model):
    image = random_image(120, 100, seed=4)
    model = optimize(copy.deepcopy(region_model), "fp32")
    for key, value in region_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    a = Predictor(region_model).embed(image).features
    b = Predictor(model).embed(image).features
    assert torch.equal(a, b)


def test_reduced_precision_keeps_embeddings_interchangeable(region_model, tmp_path):
    image = random_image(64, 64)
    saved = tmp_path / "fp32.emb"
    Predictor(region_model).embed(image).save(saved)
    fast = Predictor(optimize(copy.deepcopy(region_model), "bf16"))
    prediction = fast.predict(segany.Embedding.load(saved), points=[[10, 10]], labels=[1])
    assert prediction.masks.shape == (1, 3, 64, 64)


def test_bad_precision_and_double_conversion(region_model):
    with pytest.raises(ValueError, match="precision 'fp16'"):
        optimize(copy.deepcopy(region_model), "fp16")
    model = optimize(copy.deepcopy(region_model), "bf16")
    with pytest.raises(ValueError, match="already"):
        optimize(model, "int8")


def test_registry_models_take_a_precision():
    model = optimize(segany.sam_model_registry["vit_b"](), "int8")
    qkv = model.image_encoder.blocks[0].attn.qkv
    assert type(qkv) is not torch.nn.Linear and qkv.weight().dtype == torch.qint8


@pytest.mark.parametrize("grad", [False, True])
def test_rel_pos_attention_in_blocks_of_rows_matches_one_call(grad):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6 * 5, 8, generator=generator) for _ in range(3))
    rel_h, rel_w = (0.1 * torch.randn(11, 8, generator=generator) for _ in range(2))
    q.requires_grad_(grad)
    whole = rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 0.3, chunk_elements=1 << 30)
    rows = rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 0.3, chunk_elements=2 * 3 * 5 * 30 * 2)
    torch.testing.assert_close(rows, whole, atol=1e-6, rtol=1e-5)
    if grad:
        (g_whole,) = torch.autograd.grad(whole.sum(), q)
        (g_rows,) = torch.autograd.grad(rows.sum(), q)
        torch.testing.assert_close(g_rows, g_whole, atol=1e-5, rtol=1e-4)


def attention_inputs(
    head_dim: int = 8, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, ...]:
    """q, k, v ``(2, 3, 6*5, head_dim)`` and rel-pos tables ``(11, head_dim)`` for a 6x5 grid."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6 * 5, head_dim, generator=generator) for _ in range(3))
    rel_h, rel_w = (0.3 * torch.randn(11, head_dim, generator=generator) for _ in range(2))
    return tuple(t.to(dtype) for t in (q, k, v, rel_h, rel_w))


# head_dim 8 < 6 + 5: the bias added into the scores; 16: folded into the matmul. Blocks of 150
# and 300 elements: 1 and 2 grid rows; 3600: all rows of 4 (batch, head) pairs
@pytest.mark.parametrize("head_dim", [8, 16])
@pytest.mark.parametrize("block", [150, 300, 3600])
def test_blockwise_attention_matches_sdpa_in_fp32(head_dim, block):
    q, k, v, rel_h, rel_w = attention_inputs(head_dim)
    terms = decomposed_rel_pos_terms(q, rel_h, rel_w, (6, 5))
    reference = rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 0.3)
    blockwise = blockwise_rel_pos_attention(q, k, v, *terms, 0.3, block_elements=block)
    torch.testing.assert_close(blockwise, reference, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("head_dim", [8, 16])
def test_bf16_inference_attention_is_blockwise_and_close_to_fp32(head_dim):
    inputs = attention_inputs(head_dim)
    reference = rel_pos_attention(*inputs, (6, 5), 0.3)
    q, k, v, rel_h, rel_w = attention_inputs(head_dim, torch.bfloat16)
    with torch.inference_mode():
        fast = rel_pos_attention(q, k, v, rel_h, rel_w, (6, 5), 0.3)
        terms = decomposed_rel_pos_terms(q, rel_h, rel_w, (6, 5))
        assert torch.equal(fast, blockwise_rel_pos_attention(q, k, v, *terms, 0.3))
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), reference, atol=3e-2, rtol=0)


@pytest.mark.parametrize("amx", [False, True])
def test_bf16_global_attention_on_amx_cpus_goes_through_sdpa(monkeypatch, amx):
    from segany.fast import attention, routes

    inputs = attention_inputs(head_dim=8)  # 6 + 5 > 8: a large grid for its width
    reference = rel_pos_attention(*inputs, (6, 5), 0.3)
    calls = []
    monkeypatch.setattr(routes, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(routes, "AMX_BIAS_CHUNK_ELEMENTS", 2 * 3 * 5 * 30 * 2)  # 2 rows
    sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attention.F,
        "scaled_dot_product_attention",
        lambda q, *args, **kw: calls.append(q.shape) or sdpa(q, *args, **kw),
    )
    bf16 = [t.to(torch.bfloat16) for t in inputs]
    with torch.inference_mode():
        fast = rel_pos_attention(*bf16, (6, 5), 0.3)
    assert calls == ([(2, 3, 10, 8)] * 3 if amx else [])  # 3 blocks of 2 query grid rows
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), reference, atol=3e-2, rtol=0)


def compile_available() -> bool:
    return hasattr(torch, "compile") and shutil.which("g++") is not None


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler here")
@pytest.mark.parametrize("bias_in_blocks", [False, True])
def test_compiled_encoder_does_not_recompile_for_another_image(monkeypatch, bias_in_blocks):
    import torch._dynamo

    from micro import MICRO
    from segany.fast import routes

    if bias_in_blocks:  # as a full-size global block: the bias in blocks of query rows
        monkeypatch.setattr(routes, "BIAS_CHUNK_ELEMENTS", 256)
    torch._dynamo.reset()
    model = build_model(MICRO)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
    eager = Predictor(copy.deepcopy(model))
    compiled = Predictor(optimize(model, "fp32", compile=True))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for height, width in ((40, 64), (64, 30)):  # different sizes, one padded encoder input
            image = random_image(height, width, seed=height)
            torch.testing.assert_close(
                compiled.embed(image).features, eager.embed(image).features, atol=1e-4, rtol=1e-4
            )
    torch._dynamo.reset()


def embed(folder, weights: str, output, precision: str) -> subprocess.CompletedProcess:
    """``segany embed image.png`` in ``folder`` at ``precision``."""
    command = [sys.executable, "-m", "segany", "embed", "image.png", "--output", str(output)]
    return subprocess.run(
        [*command, "--model", weights, "--precision", precision],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_precision_flag(weights_file, tmp_path):
    from PIL import Image

    Image.fromarray(random_image(80, 100)).save(tmp_path / "image.png")
    outputs = {}
    for precision in ("fp32", "bf16"):
        output = tmp_path / f"{precision}.emb"
        done = embed(tmp_path, weights_file, output, precision)
        assert done.returncode == 0, done.stderr
        outputs[precision] = segany.Embedding.load(output).features
    assert not torch.equal(outputs["fp32"], outputs["bf16"])  # the flag took effect
    torch.testing.assert_close(outputs["bf16"], outputs["fp32"], atol=0.1, rtol=0.1)
    bad = embed(tmp_path, weights_file, tmp_path / "x.emb", "fp8")
    assert bad.returncode == 2 and "fp8" in bad.stderr
