"""Hugging Face ``transformers`` SAM checkpoints (``facebook/sam-vit-base`` and the like): a
folder with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``), as
``SamModel.save_pretrained`` writes it.

The weights are SAM's under other names (``vision_encoder.layers.N`` for
``image_encoder.blocks.N``, ``upscale_conv1`` for ``output_upscaling.0``...). One function,
:func:`hf_name`, maps an official key to its Hugging Face name; reading inverts it over the keys
of the model ``config.json`` describes (built on the meta device, so nothing is allocated), so
the two directions cannot drift apart. ``config.json`` converts to and from a
:class:`~segany.config.SamConfig`. transformers itself is not needed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import DecoderConfig, EncoderConfig, SamConfig, named_config
from ..modeling.sam import build_model
from .base import CheckpointError, StateDict

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# transformers ties the prompt encoder's copy of the positional matrix to the model's one and
# saves only the latter; a file holding both is read with the copy ignored
TIED_COPY = "prompt_encoder.shared_embedding.positional_embedding"

# The official two-way transformer's layer norms use torch's default eps (1e-5); transformers
# takes its mask_decoder_config.layer_norm_eps, 1e-6 in the hub's SAM configs, which moves
# logits by ~1e-4 relative. Folders segany writes say 1e-5, so transformers computes the official
# model; segany always computes it, whatever a folder says.
DECODER_NORM_EPS = 1e-5

# official sub-module index -> Hugging Face name, for the nn.Sequential parts
_SEQUENTIAL = {
    "image_encoder.neck": ("vision_encoder.neck", {0: "conv1", 1: "layer_norm1", 2: "conv2", 3: "layer_norm2"}),
    "prompt_encoder.mask_downscaling": (
        "prompt_encoder.mask_embed",
        {0: "conv1", 1: "layer_norm1", 3: "conv2", 4: "layer_norm2", 6: "conv3"},
    ),
    "mask_decoder.output_upscaling": (
        "mask_decoder",
        {0: "upscale_conv1", 1: "upscale_layer_norm", 3: "upscale_conv2"},
    ),
}  # fmt: skip
# (official pattern, Hugging Face replacement), the first match wins
_RULES = (
    (r"image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
    (r"image_encoder\.blocks\.", "vision_encoder.layers."),
    (r"image_encoder\.", "vision_encoder."),
    (
        r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
        "shared_image_embedding.positional_embedding",
    ),
    (r"prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
)  # fmt: skip
_MLP = re.compile(
    r"(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(.*)"
)
_SEQ = re.compile(r"(.+)\.(\d+)\.(weight|bias)$")  # fmt: skip


def is_hf_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a transformers SamModel's (``vision_encoder.…`` keys)."""
    return any(k.startswith("vision_encoder.") for k in state)


def hf_name(key: str, mlp_depth: Mapping[str, int]) -> str:
    """The Hugging Face name of an official key. ``mlp_depth`` gives each decoder MLP's number of
    layers: Hugging Face names the first ``proj_in``, the last ``proj_out`` and those between
    ``layers.0``, ``layers.1``..."""
    if (m := _MLP.match(key)) is not None:
        prefix, index, rest = m.group(1), int(m.group(2)), m.group(3)
        last = mlp_depth[prefix] - 1
        part = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
        return f"{prefix}.{part}.{rest}"
    if (m := _SEQ.match(key)) is not None and m.group(1) in _SEQUENTIAL:
        prefix, names = _SEQUENTIAL[m.group(1)]
        return f"{prefix}.{names[int(m.group(2))]}.{m.group(3)}"
    for pattern, replacement in _RULES:
        renamed, hits = re.subn(f"^{pattern}", replacement, key)
        if hits:
            return renamed
    return key


def _mlp_depths(keys: list[str]) -> dict[str, int]:
    depths: dict[str, int] = {}
    for key in keys:
        if (m := _MLP.match(key)) is not None:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    return depths


def official_keys(config: SamConfig) -> list[str]:
    """The state-dict keys of the model ``config`` describes (built on the meta device)."""
    with torch.device("meta"):
        return list(build_model(config).state_dict())


def to_hf(state: Mapping[str, torch.Tensor]) -> StateDict:
    """An official-layout state dict under Hugging Face names."""
    depths = _mlp_depths(list(state))
    return {hf_name(k, depths): v for k, v in state.items()}


def from_hf(state: Mapping[str, torch.Tensor], config: SamConfig, source: str) -> StateDict:
    """A Hugging Face SamModel state dict under the official names of ``config``'s model."""
    keys = official_keys(config)
    depths = _mlp_depths(keys)
    official = {hf_name(k, depths): k for k in keys}
    unknown = [k for k in state if k not in official and k != TIED_COPY]
    if unknown:
        raise CheckpointError(
            f"{source}: keys that no SAM described by its config.json has: "
            f"{', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}"
        )
    return {official[k]: v for k, v in state.items() if k in official}


def _act(section: Mapping[str, Any], expected: str, source: str) -> None:
    act = section.get("hidden_act", expected)
    if act != expected:
        raise CheckpointError(f"{source}: hidden_act {act!r} is not SAM's {expected!r}")


# long: one field per line, the whole correspondence in one place
def config_from_hf(data: Mapping[str, Any], source: str = CONFIG_FILE) -> SamConfig:
    """A :class:`SamConfig` from a Hugging Face ``config.json`` (``model_type`` ``sam``)."""
    if data.get("model_type") != "sam":
        raise CheckpointError(
            f"{source}: model_type {data.get('model_type')!r}, not a transformers SamModel ('sam')"
        )
    vision = data.get("vision_config", {})
    prompt = data.get("prompt_encoder_config", {})
    decoder = data.get("mask_decoder_config", {})
    _act(vision, "gelu", source)
    _act(decoder, "relu", source)
    base, dec = EncoderConfig(), DecoderConfig()
    width = vision.get("hidden_size", base.embed_dim)
    mlp_dim = vision.get("mlp_dim") or width * vision.get("mlp_ratio", base.mlp_ratio)
    encoder = EncoderConfig(
        img_size=vision.get("image_size", base.img_size),
        patch_size=vision.get("patch_size", base.patch_size),
        embed_dim=width,
        depth=vision.get("num_hidden_layers", base.depth),
        num_heads=vision.get("num_attention_heads", base.num_heads),
        mlp_ratio=mlp_dim / width,
        window_size=vision.get("window_size", base.window_size),
        global_attn_indexes=tuple(vision.get("global_attn_indexes", base.global_attn_indexes)),
        out_chans=vision.get("output_channels", base.out_chans),
        qkv_bias=vision.get("qkv_bias", base.qkv_bias),
        use_abs_pos=vision.get("use_abs_pos", base.use_abs_pos),
        use_rel_pos=vision.get("use_rel_pos", base.use_rel_pos),
        layer_norm_eps=vision.get("layer_norm_eps", base.layer_norm_eps),
    )
    if prompt.get("image_size", encoder.img_size) != encoder.img_size:
        raise CheckpointError(
            f"{source}: the prompt encoder's image_size differs from the vision's"
        )
    decoder_config = DecoderConfig(
        embed_dim=decoder.get("hidden_size", dec.embed_dim),
        depth=decoder.get("num_hidden_layers", dec.depth),
        num_heads=decoder.get("num_attention_heads", dec.num_heads),
        mlp_dim=decoder.get("mlp_dim", dec.mlp_dim),
        attention_downsample_rate=decoder.get("attention_downsample_rate", dec.attention_downsample_rate),
        num_multimask_outputs=decoder.get("num_multimask_outputs", dec.num_multimask_outputs),
        iou_head_depth=decoder.get("iou_head_depth", dec.iou_head_depth),
        iou_head_hidden_dim=decoder.get("iou_head_hidden_dim", dec.iou_head_hidden_dim),
        mask_in_chans=prompt.get("mask_input_channels", dec.mask_in_chans),
    )  # fmt: skip
    return named_config(encoder, decoder_config)


def config_to_hf(config: SamConfig) -> dict[str, Any]:
    """The Hugging Face ``config.json`` of ``config`` (transformers fills in the rest)."""
    enc, dec = config.encoder, config.decoder
    if not isinstance(enc, EncoderConfig):
        raise CheckpointError("transformers' SamModel has a ViT encoder only; this model has not")
    vision = {
        "model_type": "sam_vision_model",
        "hidden_size": enc.embed_dim,
        "num_hidden_layers": enc.depth,
        "num_attention_heads": enc.num_heads,
        "mlp_dim": int(enc.embed_dim * enc.mlp_ratio),
        "image_size": enc.img_size,
        "patch_size": enc.patch_size,
        "window_size": enc.window_size,
        "global_attn_indexes": list(enc.global_attn_indexes),
        "output_channels": enc.out_chans,
        "qkv_bias": enc.qkv_bias,
        "use_abs_pos": enc.use_abs_pos,
        "use_rel_pos": enc.use_rel_pos,
        "layer_norm_eps": enc.layer_norm_eps,
        "hidden_act": "gelu",
    }
    prompt = {
        "model_type": "sam_prompt_encoder",
        "hidden_size": dec.embed_dim,
        "image_size": enc.img_size,
        "patch_size": enc.patch_size,
        "image_embedding_size": config.embedding_size,
        "mask_input_channels": dec.mask_in_chans,
    }
    decoder = {
        "model_type": "sam_mask_decoder",
        "hidden_size": dec.embed_dim,
        "num_hidden_layers": dec.depth,
        "num_attention_heads": dec.num_heads,
        "mlp_dim": dec.mlp_dim,
        "attention_downsample_rate": dec.attention_downsample_rate,
        "num_multimask_outputs": dec.num_multimask_outputs,
        "iou_head_depth": dec.iou_head_depth,
        "iou_head_hidden_dim": dec.iou_head_hidden_dim,
        "hidden_act": "relu",
        "layer_norm_eps": DECODER_NORM_EPS,
    }
    return {
        "architectures": ["SamModel"],
        "model_type": "sam",
        "vision_config": vision,
        "prompt_encoder_config": prompt,
        "mask_decoder_config": decoder,
    }


def read_config(folder: Path) -> SamConfig:
    """The :class:`SamConfig` of a Hugging Face folder's ``config.json``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: a Hugging Face SAM checkpoint needs its {CONFIG_FILE}, expected beside "
            "the weights as SamModel.save_pretrained writes it"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    return config_from_hf(data, str(path))


def _read_tensors(path: Path) -> StateDict:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable weights ({exc})") from None


def read_folder(folder: Path) -> tuple[StateDict, SamConfig]:
    """Weights (under official names) and config of a ``save_pretrained`` folder."""
    config = read_config(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: every file the index names
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: StateDict = {}
        for shard in shards:
            state.update(_read_tensors(folder / shard))
    else:
        found = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
        if not found:
            raise CheckpointError(f"{folder}: no {' or '.join(WEIGHT_FILES)} in this folder")
        state = _read_tensors(found[0])
    return from_hf(state, config, str(folder)), config


def _replace_atomically(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def save_folder(
    state: Mapping[str, torch.Tensor],
    config: SamConfig,
    folder: str | os.PathLike[str],
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write an official-layout ``state`` as a folder ``SamModel.from_pretrained`` reads."""
    hf_config = config_to_hf(config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().cpu()
        for k, v in to_hf(state).items()
    }
    _replace_atomically(
        folder / WEIGHT_FILES[0], lambda p: save_file(tensors, str(p), metadata={"format": "pt"})
    )
    text = json.dumps(hf_config, indent=2, sort_keys=True) + "\n"
    _replace_atomically(folder / CONFIG_FILE, lambda p: p.write_text(text))
