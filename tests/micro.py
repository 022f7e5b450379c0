"""A micro model config for fast training tests: 64-px input, 4x4 embedding grid, the official
256-dim decoder."""

from segany.config import TINY, SamConfig, register_config

MICRO = SamConfig(
    name="micro-test",
    encoder=TINY.with_encoder(
        img_size=64,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        window_size=2,
        global_attn_indexes=(1,),
    ).encoder,
)
register_config(MICRO)
