"""Model configurations as data: one frozen dataclass per part, a registry of named variants.

Every size-like constant of the architecture (image size, patch size, embedding size, mask
threshold, normalisation) lives here, not as literals in the modules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)
LOW_RES_UPSCALE = 4  # low-res mask logits are 4x the embedding grid (256 for a 64 grid)


@dataclass(frozen=True)
class EncoderConfig:
    """The ViT image encoder (ViTDet-style: windowed blocks, a few global blocks, a neck)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    out_chans: int = 256
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    layer_norm_eps: float = 1e-6

    @property
    def grid_size(self) -> int:
        """Side of the (square) patch grid, e.g. 64 for 1024 / 16."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT image encoder: a convolutional stage, then windowed-attention stages
    with a depthwise convolution in each block; stride 4, 8, 16, 16 (the last stage keeps the
    1/16 grid) and SAM's neck."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    # per attention stage, i.e. from stage 1 on (stage 0 is convolutional); MobileSAM's code
    # lists 4 entries, of which the first is unused
    num_heads: tuple[int, ...] = (4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256

    @property
    def grid_size(self) -> int:
        """Side of the output grid, e.g. 64 for 1024 / 16."""
        return self.img_size // 16


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt encoder plus two-way transformer mask decoder (the same for all official models)."""

    embed_dim: int = 256
    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    # HQ-SAM: one more output token (the HQ token) whose mask is drawn on the decoder's
    # upscaled features fused with the encoder's early ones (its first global block's output)
    hq: bool = False


@dataclass(frozen=True)
class SamConfig:
    """A whole SAM model: encoder, prompt encoder/decoder, and pre/post-processing constants."""

    name: str
    encoder: EncoderConfig | TinyViTConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD
    mask_threshold: float = 0.0

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for the official models)."""
        return self.encoder.grid_size

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (256 for the official models)."""
        return LOW_RES_UPSCALE * self.embedding_size

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        encoder = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.get("encoder", {}).items()
        }
        kind = TinyViTConfig if "embed_dims" in encoder else EncoderConfig
        return cls(
            name=data["name"],
            encoder=kind(**encoder),
            decoder=DecoderConfig(**data.get("decoder", {})),
            pixel_mean=tuple(data.get("pixel_mean", PIXEL_MEAN)),  # type: ignore[arg-type]
            pixel_std=tuple(data.get("pixel_std", PIXEL_STD)),  # type: ignore[arg-type]
            mask_threshold=float(data.get("mask_threshold", 0.0)),
        )

    @classmethod
    def from_json(cls, text: str) -> SamConfig:
        return cls.from_dict(json.loads(text))

    def with_encoder(self, **changes: Any) -> SamConfig:
        """A copy with some encoder fields changed (handy for small test variants)."""
        return replace(self, encoder=replace(self.encoder, **changes))


VIT_B = SamConfig(
    name="vit_b",
    encoder=EncoderConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
)
VIT_L = SamConfig(
    name="vit_l",
    encoder=EncoderConfig(
        embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
)
VIT_H = SamConfig(
    name="vit_h",
    encoder=EncoderConfig(
        embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
)

# The bundled demonstration model: the official prompt encoder and decoder (so every tool
# built for SAM's decoder works with it) on a narrow, shallow ViT at 256-px input.
TINY = SamConfig(
    name="tiny",
    encoder=EncoderConfig(
        img_size=256,
        patch_size=16,
        embed_dim=192,
        depth=6,
        num_heads=3,
        window_size=8,
        global_attn_indexes=(2, 5),
    ),
)

# MobileSAM (Zhang et al. 2023): TinyViT-5M distilled from ViT-H, SAM's prompt encoder and decoder.
VIT_T = SamConfig(name="vit_t", encoder=TinyViTConfig())


def hq_variant(config: SamConfig) -> SamConfig:
    """The HQ-SAM model on ``config``'s architecture (``sam_hq_vit_b`` for ``vit_b``...)."""
    return replace(config, name=f"sam_hq_{config.name}", decoder=replace(config.decoder, hq=True))


HQ_CONFIGS: tuple[SamConfig, ...] = tuple(hq_variant(c) for c in (VIT_B, VIT_L, VIT_H))
CONFIGS: dict[str, SamConfig] = {c.name: c for c in (VIT_B, VIT_L, VIT_H, TINY, VIT_T, *HQ_CONFIGS)}
OFFICIAL_NAMES: tuple[str, ...] = ("vit_h", "vit_l", "vit_b")


def get_config(name: str) -> SamConfig:
    """Look a named config up; ``default`` is ViT-H as in the official registry."""
    key = "vit_h" if name == "default" else name
    if key not in CONFIGS:
        known = ", ".join(sorted([*CONFIGS, "default"]))
        raise ValueError(f"unknown model name {name!r}; expected one of: {known}")
    return CONFIGS[key]


def named_config(encoder: EncoderConfig | TinyViTConfig, decoder: DecoderConfig) -> SamConfig:
    """The registered config with this encoder and decoder, else one named ``custom``."""
    for known in CONFIGS.values():
        if known.encoder == encoder and known.decoder == decoder:
            return known
    return SamConfig(name="custom", encoder=encoder, decoder=decoder)


def register_config(config: SamConfig) -> None:
    """Add a named config to the registry (used by the bundled model)."""
    CONFIGS[config.name] = config
