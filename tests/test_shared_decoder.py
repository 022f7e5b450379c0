"""The rearranged decoder of the point grid gives the mask decoder's numbers: against our
``Sam.decode`` and the official decoder on identical weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import SMALL, make_pair
from segany.fast.shared_decoder import SharedImageDecoder, Workspace

ATOL = 1e-4


def _inputs(config, count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    grid = config.embedding_size
    features = torch.randn(1, config.decoder.embed_dim, grid, grid, generator=g)
    points = torch.rand(count, 1, 2, generator=g) * config.img_size
    labels = torch.ones(count, 1, dtype=torch.int64)
    return features, points, labels


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("multimask", [True, False])
def test_shared_decoder_matches_mask_decoder(depth, multimask):
    config = dataclasses.replace(SMALL, decoder=dataclasses.replace(SMALL.decoder, depth=depth))
    ours, theirs = make_pair(config, seed=depth)
    features, points, labels = _inputs(config, 12, seed=depth)
    with torch.inference_mode():
        low_res, iou = ours.decode(features, points=(points, labels), multimask_output=multimask)
        sparse, dense = theirs.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        official_low_res, official_iou = theirs.mask_decoder(
            features, theirs.prompt_encoder.get_dense_pe(), sparse, dense, multimask
        )
        decoder = SharedImageDecoder(ours)
        decoded = decoder.decode(decoder.image(features), sparse, multimask=multimask)
        index = torch.tensor([0, 5, 11, 5])
        masks = decoder.masks(decoded, index)
    assert decoded.iou.shape == iou.shape == (12, 3 if multimask else 1)
    assert masks.shape == (4, *low_res.shape[1:])
    torch.testing.assert_close(decoded.iou, iou, atol=ATOL, rtol=0)
    torch.testing.assert_close(decoded.iou, official_iou, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks, low_res[index], atol=ATOL, rtol=0)
    torch.testing.assert_close(masks, official_low_res[index], atol=ATOL, rtol=0)
    with torch.inference_mode():  # only the top-left block the caller reads
        part = decoder.masks(decoded, index, extent=(37, 21))
    torch.testing.assert_close(part[..., :37, :21], masks[..., :37, :21], atol=1e-6, rtol=0)
    assert part.shape == masks.shape and not part[..., 40:, :].any()


@pytest.mark.parametrize("mask_batch", [1, 5])
def test_shared_decoder_takes_mask_inputs(mask_batch):
    """Previous low-res logits change the image side through the folded mask embedding: the
    numbers of the plain decoder and the official one, one mask for all prompts or one each."""
    ours, theirs = make_pair(SMALL, seed=8)
    features, points, labels = _inputs(SMALL, 5, seed=8)
    g = torch.Generator().manual_seed(9)
    mask_input = torch.randn(mask_batch, 1, *ours.prompt_encoder.mask_input_size, generator=g)
    with torch.inference_mode():
        sparse, dense = theirs.prompt_encoder(points=(points, labels), boxes=None, masks=mask_input)
        official_low_res, official_iou = theirs.mask_decoder(
            features, theirs.prompt_encoder.get_dense_pe(), sparse, dense, True
        )
        decoder = SharedImageDecoder(ours)
        assert decoder.accepts_masks
        image = decoder.image(features)
        decoded = decoder.decode(image, sparse, mask_input=mask_input)
        masks = decoder.masks(decoded)
        plain = decoder.decode(image, sparse)
    torch.testing.assert_close(decoded.iou, official_iou, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks, official_low_res, atol=ATOL, rtol=0)
    assert (decoded.iou - plain.iou).abs().max() > 1e-3  # the mask input did change things


def test_shared_decoder_decodes_in_chunks_alike(small_model):
    """Chunks of prompts sharing one workspace (each batch overwrites the last one's buffers,
    the last batch smaller; the mask head in pieces) give the IoU and masks of one batch."""
    features, points, labels = _inputs(SMALL, 10, seed=7)
    decoder = SharedImageDecoder(small_model)
    workspace = Workspace()
    with torch.inference_mode():
        sparse, _ = small_model.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        image = decoder.image(features)
        whole = decoder.decode(image, sparse)
        whole_masks = decoder.masks(whole, torch.arange(10), extent=(37, 21))
        ious = []
        for i in range(0, 10, 3):
            part = decoder.decode(image, sparse[i : i + 3], workspace=workspace)
            ious.append(part.iou)
            # the mask head a few at a time, the last prompts first
            for index in torch.arange(len(part)).flip(0).split(2):
                masks = decoder.masks(part, index, extent=(37, 21), workspace=workspace)
                torch.testing.assert_close(masks, whole_masks[i + index], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(ious), whole.iou, atol=1e-6, rtol=0)


def test_shared_decoder_follows_weight_updates():
    ours, _ = make_pair(SMALL, seed=4)
    features, points, labels = _inputs(SMALL, 3, seed=4)
    decoder = SharedImageDecoder(ours)
    with torch.inference_mode():
        sparse, _ = ours.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        before = decoder.decode(decoder.image(features), sparse).iou
    with torch.no_grad():  # an optimiser step changes weights in place
        ours.mask_decoder.transformer.final_attn_token_to_image.q_proj.weight.mul_(1.5)
    with torch.inference_mode():
        after = decoder.decode(decoder.image(features), sparse).iou
        _, expected = ours.decode(features, points=(points, labels))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, atol=ATOL, rtol=0)
