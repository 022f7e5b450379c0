"""The official HQ-SAM model (``segment_anything_hq``, the test oracle) built with the same small
architecture as a segany config, and pairs of the two on identical seeded random weights."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from segment_anything_hq import modeling as hq_modeling

from segany import build_model
from segany.config import SamConfig
from segany.modeling.sam import Sam
from segany.testing import random_state_dict


def hq_config(config: SamConfig) -> SamConfig:
    return replace(config, name=f"{config.name}_hq", decoder=replace(config.decoder, hq=True))


def build_official_hq(config: SamConfig) -> hq_modeling.Sam:
    """The official HQ model with the same architecture as ``config``."""
    enc, dec = config.encoder, config.decoder
    grid = config.embedding_size
    return hq_modeling.Sam(
        image_encoder=hq_modeling.ImageEncoderViT(
            img_size=enc.img_size,
            patch_size=enc.patch_size,
            embed_dim=enc.embed_dim,
            depth=enc.depth,
            num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio,
            out_chans=enc.out_chans,
            qkv_bias=enc.qkv_bias,
            norm_layer=partial(torch.nn.LayerNorm, eps=enc.layer_norm_eps),
            use_rel_pos=enc.use_rel_pos,
            window_size=enc.window_size,
            global_attn_indexes=enc.global_attn_indexes,
        ),
        prompt_encoder=hq_modeling.PromptEncoder(
            embed_dim=dec.embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size),
            mask_in_chans=dec.mask_in_chans,
        ),
        mask_decoder=hq_modeling.MaskDecoderHQ(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=hq_modeling.TwoWayTransformer(
                depth=dec.depth,
                embedding_dim=dec.embed_dim,
                mlp_dim=dec.mlp_dim,
                num_heads=dec.num_heads,
            ),
            transformer_dim=dec.embed_dim,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
            vit_dim=enc.embed_dim,
        ),
    ).eval()


def make_hq_pair(config: SamConfig, seed: int = 0) -> tuple[Sam, hq_modeling.Sam]:
    """segany's HQ model (with its speed routes) and the official one, same seeded weights
    (loaded strictly into both: the key layouts are the same)."""
    theirs = build_official_hq(config)
    ours = build_model(config)
    state = random_state_dict(theirs.state_dict(), seed)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return ours, theirs
