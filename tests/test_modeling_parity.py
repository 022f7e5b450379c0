"""Module-level parity with the official package on identical seeded random weights."""

from __future__ import annotations

import pytest
import torch

from conftest import SMALL, make_pair
from segany.config import DecoderConfig, SamConfig
from segany.modeling.image_encoder import Block, window_partition, window_unpartition

ATOL = 1e-4


def _prompts(low_res: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(3, 4, 2, generator=g) * 250
    labels = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
    boxes = torch.tensor([[10.0, 20.0, 200.0, 220.0], [0.0, 0.0, 255.0, 255.0], [50, 60, 70, 90]])
    masks = torch.randn(3, 1, low_res, low_res, generator=g) * 5
    return coords, labels, boxes, masks


@pytest.mark.parametrize(
    "case", ["points", "boxes", "points+boxes", "mask", "points+mask", "nothing"]
)
def test_prompt_encoder_matches(small_pair, case):
    ours, theirs = small_pair
    coords, labels, boxes, masks = _prompts(4 * SMALL.embedding_size)
    kwargs = {
        "points": (coords, labels) if "points" in case else None,
        "boxes": boxes if "boxes" in case else None,
        "masks": masks if "mask" in case else None,
    }
    with torch.no_grad():
        s1, d1 = ours.prompt_encoder(**kwargs)
        s2, d2 = theirs.prompt_encoder(**kwargs)
    assert s1.shape == s2.shape and d1.shape == d2.shape
    torch.testing.assert_close(s1, s2, atol=1e-6, rtol=0)
    torch.testing.assert_close(d1, d2, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        ours.prompt_encoder.get_dense_pe(), theirs.prompt_encoder.get_dense_pe(), atol=1e-6, rtol=0
    )


def test_encoder_matches_with_padding_windows(small_pair):
    ours, theirs = small_pair
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours.image_encoder(x), theirs.image_encoder(x)
    assert a.shape == (2, 256, 16, 16)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_encoder_without_window_padding_and_interpolated_rel_pos():
    # 16x16 grid with window 8 (no padding), and rel-pos tables resized by interpolation.
    config = SMALL.with_encoder(window_size=8, depth=2, global_attn_indexes=(1,))
    ours, theirs = make_pair(config, seed=3)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    for model in (ours, theirs):  # shrink one table so get_rel_pos must interpolate
        attn = model.image_encoder.blocks[1].attn
        attn.rel_pos_h = torch.nn.Parameter(attn.rel_pos_h.detach()[::2].clone())
    with torch.no_grad():
        torch.testing.assert_close(
            ours.image_encoder(x), theirs.image_encoder(x), atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_matches_for_a_batch_of_prompts(small_pair, multimask):
    ours, theirs = small_pair
    coords, labels, boxes, masks = _prompts(4 * SMALL.embedding_size, seed=4)
    emb = torch.randn(1, 256, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        sparse, dense = theirs.prompt_encoder((coords, labels), boxes, masks)
        pe = theirs.prompt_encoder.get_dense_pe()
        m1, i1 = ours.mask_decoder(emb, pe, sparse, dense, multimask)
        m2, i2 = theirs.mask_decoder(emb, pe, sparse, dense, multimask)
    assert m1.shape == (3, 3 if multimask else 1, 64, 64)
    torch.testing.assert_close(m1, m2, atol=ATOL, rtol=0)
    torch.testing.assert_close(i1, i2, atol=ATOL, rtol=0)


def test_first_block_self_attention_has_no_residual(small_pair):
    ours, _ = small_pair
    first, second = ours.mask_decoder.transformer.layers
    assert first.skip_first_layer_pe and not second.skip_first_layer_pe


def test_sam_forward_matches_batched_input(small_pair):
    ours, theirs = small_pair
    g = torch.Generator().manual_seed(6)
    batch = [
        {
            "image": torch.rand(3, 256, 170, generator=g) * 255,
            "original_size": (300, 200),
            "point_coords": torch.rand(2, 3, 2, generator=g) * 160,
            "point_labels": torch.tensor([[1, 0, 1], [1, 1, 1]]),
        },
        {
            "image": torch.rand(3, 140, 256, generator=g) * 255,
            "original_size": (70, 128),
            "boxes": torch.tensor([[5.0, 5.0, 100.0, 120.0]]),
        },
    ]
    out_ours = ours(batch, multimask_output=True)
    out_theirs = theirs(batch, multimask_output=True)
    for a, b in zip(out_ours, out_theirs):
        torch.testing.assert_close(
            a["low_res_logits"].detach(), b["low_res_logits"], atol=ATOL, rtol=0
        )
        torch.testing.assert_close(
            a["iou_predictions"].detach(), b["iou_predictions"], atol=ATOL, rtol=0
        )
        assert (a["masks"] != b["masks"]).float().mean() < 1e-4


def test_variant_with_other_decoder_sizes_matches():
    config = SamConfig(
        name="odd",
        encoder=SMALL.with_encoder(depth=1, global_attn_indexes=()).encoder,
        decoder=DecoderConfig(depth=3, mlp_dim=512, iou_head_depth=2, iou_head_hidden_dim=128),
    )
    ours, theirs = make_pair(config, seed=7)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(8))
    pts = (torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]]))
    with torch.no_grad():
        e1, e2 = ours.image_encoder(x), theirs.image_encoder(x)
        torch.testing.assert_close(e1, e2, atol=ATOL, rtol=0)
        s, d = theirs.prompt_encoder(pts, None, None)
        pe = theirs.prompt_encoder.get_dense_pe()
        torch.testing.assert_close(
            ours.mask_decoder(e2, pe, s, d, True)[0],
            theirs.mask_decoder(e2, pe, s, d, True)[0],
            atol=ATOL,
            rtol=0,
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_windowed_attention_on_real_tokens_matches_padded_windows(dtype):
    # A 6x5 grid in windows of 4 pads to 8x8; a non-zero qkv bias makes the padding keys count.
    torch.manual_seed(0)
    block = Block(16, 2, use_rel_pos=True, rel_pos_zero_init=False, window_size=4)
    torch.nn.init.normal_(block.attn.qkv.bias)
    block.to(dtype)
    y = torch.randn(2, 6, 5, 16, dtype=dtype)
    with torch.no_grad():
        windows, padded = window_partition(y, 4)
        plain = window_unpartition(block.attn(windows), 4, padded, (6, 5))
        fast = block.windowed_attention(y)
    assert fast.shape == (2, 6, 5, 16)
    atol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(fast.float(), plain.float(), atol=atol, rtol=0)
