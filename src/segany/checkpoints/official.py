"""Reading and writing weights: official ``.pth`` state dicts (loaded unchanged, strictly) and
segany's own safetensors files (config in the metadata); model-type detection from shapes;
the ``load`` entry point. Other families' layouts are converted on reading by their modules
(``hf.py``: Hugging Face folders, ``mobile.py``: MobileSAM)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import (
    CONFIGS,
    DecoderConfig,
    EncoderConfig,
    SamConfig,
    TinyViTConfig,
    get_config,
    named_config,
)
from ..fast.model import build_model
from ..fast.precision import check_precision, optimize
from ..modeling.sam import Sam
from . import hf, mobile
from .base import CheckpointError, StateDict, count_indices
from .hq import HQLayoutError, check_hq_layout, is_hq_state

CONFIG_METADATA_KEY = "segany_config"
BUNDLED_WEIGHTS = {"tiny": "tiny.safetensors"}
SAVE_FORMATS = ("segany", "hf")
_EXPECTED = (
    "expected an official SAM v1 checkpoint (sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth, "
    "sam_vit_b_01ec64.pth), an HQ-SAM one (sam_hq_vit_b.pth...), MobileSAM's mobile_sam.pt, "
    "a Hugging Face SAM folder (config.json + model.safetensors) or a segany .safetensors file"
)
_OTHER_FAMILIES = {
    "image_encoder.trunk.": "a SAM 2 checkpoint",
    "sam_mask_decoder.": "a SAM 2 checkpoint",
}


def read_weights(path: str | os.PathLike[str]) -> tuple[StateDict, SamConfig | None]:
    """Read a state dict (on the CPU) and, for segany files, the config stored with it."""
    path = Path(path)
    if path.is_dir():
        return hf.read_folder(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        state, config = _read_safetensors(path)
        return (state, config) if config is not None else _to_segany_layout(state, path)
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file; {_EXPECTED}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        text = str(exc).strip()
        if "Weights only load failed" in text:
            reason = "it holds pickled objects other than tensors, which are not loaded for safety"
        else:
            reason = text.splitlines()[0][:160] if text else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch state dict ({reason}); {_EXPECTED}"
        ) from None
    return _to_segany_layout(_unwrap(obj, path), path)


def _to_segany_layout(state: StateDict, path: Path) -> tuple[StateDict, SamConfig | None]:
    """Another family's state dict under segany's keys (with its config when the file's
    family defines it), after checking it is a SAM model at all."""
    if hf.is_hf_state(state):  # a model.safetensors taken out of its folder's config.json
        config = hf.read_config(path.parent)
        return hf.from_hf(state, config, str(path)), config
    if mobile.is_mobile_sam(state):
        state = mobile.from_mobile_sam(state)
    check_family(state, str(path))
    return state, None


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (``torch.save``'s format) or a pickle stream (legacy format)."""
    with path.open("rb") as stream:
        head = stream.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _read_safetensors(path: Path) -> tuple[StateDict, SamConfig | None]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({exc}); {_EXPECTED}"
        ) from None
    config = None
    if CONFIG_METADATA_KEY in metadata:
        try:
            config = SamConfig.from_json(metadata[CONFIG_METADATA_KEY])
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{path}: unreadable segany config metadata ({exc})") from None
    return tensors, config


def _unwrap(obj: object, path: Path) -> StateDict:
    """Accept a plain state dict, or a training checkpoint holding one under ``model``."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: holds a {type(obj).__name__}, not a state dict; {_EXPECTED}"
        )
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: not a mapping of names to tensors; {_EXPECTED}")
    return dict(obj)


def check_family(state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Raise :class:`CheckpointError` unless ``state`` looks like a SAM v1 model."""
    for prefix, family in _OTHER_FAMILIES.items():
        if any(k.startswith(prefix) for k in state):
            raise CheckpointError(f"{source}: this looks like {family}; {_EXPECTED}")
    stem = "seq.0.c" if mobile.is_mobile_sam(state) else "proj"
    needed = (f"image_encoder.patch_embed.{stem}.weight", "mask_decoder.mask_tokens.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{source}: not a SAM model (missing {', '.join(missing)}; keys start with "
            f"{sample}); {_EXPECTED}"
        )


def _is_hq(state: Mapping[str, torch.Tensor], encoder: EncoderConfig | TinyViTConfig) -> bool:
    """Whether ``state`` is HQ-SAM's (:mod:`.hq`), its HQ parts checked against the encoder."""
    if not is_hq_state(state):
        return False
    if not isinstance(encoder, EncoderConfig):
        raise CheckpointError(f"Light HQ-SAM (a TinyViT encoder) is not supported; {_EXPECTED}")
    try:
        check_hq_layout(state, encoder.embed_dim)
    except HQLayoutError as exc:
        raise CheckpointError(f"{exc}; {_EXPECTED}") from None
    return True


def infer_config(state: Mapping[str, torch.Tensor]) -> SamConfig:
    """Recover the architecture from tensor shapes; named configs when they match."""
    check_family(state)
    vit = not mobile.is_mobile_sam(state)
    encoder = _vit_config(state) if vit else mobile.tiny_vit_config(state)
    decoder = replace(_decoder_config(state), hq=_is_hq(state, encoder))
    return named_config(encoder, decoder)


def _vit_config(state: Mapping[str, torch.Tensor]) -> EncoderConfig:
    """The ViT image encoder's architecture, from tensor shapes."""
    patch_w = state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = patch_w.shape[0], patch_w.shape[-1]
    depth = count_indices(state, r"image_encoder\.blocks\.(\d+)\.")
    rel_rows = [
        state.get(f"image_encoder.blocks.{i}.attn.rel_pos_h", torch.empty(0, 0))
        for i in range(depth)
    ]
    use_rel_pos = all(r.numel() for r in rel_rows)
    pos = state.get("image_encoder.pos_embed")
    if pos is not None:
        grid = pos.shape[1]
    elif use_rel_pos:
        grid = (max(r.shape[0] for r in rel_rows) + 1) // 2
    else:
        raise CheckpointError("cannot infer the image size: no pos_embed and no rel_pos tables")
    global_idx = tuple(
        i for i, r in enumerate(rel_rows) if use_rel_pos and r.shape[0] == 2 * grid - 1
    )
    windowed = [r.shape[0] for i, r in enumerate(rel_rows) if i not in global_idx]
    window = (windowed[0] + 1) // 2 if (use_rel_pos and windowed) else (0 if use_rel_pos else 14)
    head_dim = rel_rows[0].shape[1] if use_rel_pos else 64
    return EncoderConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        mlp_ratio=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        window_size=window,
        global_attn_indexes=global_idx,
        out_chans=state["image_encoder.neck.0.weight"].shape[0],
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state,
        use_abs_pos=pos is not None,
        use_rel_pos=use_rel_pos,
    )


def _decoder_config(state: Mapping[str, torch.Tensor]) -> DecoderConfig:
    """The prompt encoder's and mask decoder's architecture, from tensor shapes."""
    tokens = state["mask_decoder.mask_tokens.weight"]
    dim = tokens.shape[1]
    return DecoderConfig(
        embed_dim=dim,
        depth=count_indices(state, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        attention_downsample_rate=dim
        // state["mask_decoder.transformer.final_attn_token_to_image.q_proj.weight"].shape[0],
        num_multimask_outputs=tokens.shape[0] - 1,
        iou_head_depth=count_indices(state, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
    )


def load_state_dict_strict(model: Sam, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what differs."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()][:4]
        raise CheckpointError(
            f"{source}: weights do not fit the model: {' '.join(lines)[:400]}"
        ) from None


def load_checkpoint(path: str | os.PathLike[str], model_type: str | None = None) -> Sam:
    """Build the model a weights file describes (with segany's speed routes) and load it
    strictly.

    ``model_type`` (``vit_b``...) is checked against the file; by default it is detected.
    """
    state, config = read_weights(path)
    detected = config or infer_config(state)
    if model_type is not None:
        wanted = get_config(model_type)
        if wanted.encoder != detected.encoder or wanted.decoder != detected.decoder:
            enc = detected.encoder
            shape = (
                f"embed_dim {enc.embed_dim}, depth {enc.depth}"
                if isinstance(enc, EncoderConfig)
                else f"a TinyViT encoder, embed_dims {list(enc.embed_dims)}"
            )
            raise CheckpointError(
                f"{path}: holds a {detected.name} model ({shape}), "
                f"but model type {model_type!r} was asked for"
            )
    model = build_model(detected)
    load_state_dict_strict(model, state, str(path))
    return model


def save_checkpoint(
    model: Sam,
    path: str | os.PathLike[str],
    config: SamConfig | None = None,
    dtype: torch.dtype = torch.float32,
    format: str = "segany",
) -> None:
    """Write ``model`` as safetensors with its config in the metadata; ``dtype=torch.float16``
    halves the file (weights are widened back to float32 on loading).
    ``format="hf"`` writes a Hugging Face folder at ``path`` instead (``config.json`` and
    ``model.safetensors``, for ``transformers.SamModel.from_pretrained``)."""
    if format not in SAVE_FORMATS:
        raise ValueError(f"format {format!r} is not supported; expected one of {SAVE_FORMATS}")
    config = config or model.config or infer_config(model.state_dict())
    if format == "hf":
        hf.save_folder(model.state_dict(), config, path, dtype)
        return
    tensors = {
        k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(
        tensors, str(path), metadata={CONFIG_METADATA_KEY: config.to_json(), "format": "segany"}
    )


def bundled_weights_path(name: str) -> Path | None:
    """Path of a model shipped inside the package, if any."""
    if name not in BUNDLED_WEIGHTS:
        return None
    ref = resources.files("segany") / "weights" / BUNDLED_WEIGHTS[name]
    path = Path(str(ref))
    return path if path.is_file() else None


def load(
    name_or_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    compile: bool = False,
) -> Sam:
    """Load a model ready for inference.

    ``name_or_path`` is a bundled model name (``tiny``), a model type (``vit_b``, ``vit_l``,
    ``vit_h``, ``vit_t`` for MobileSAM; then ``checkpoint`` is required), a weights file alone
    or a Hugging Face SAM folder.
    ``precision`` (``fp32``, ``bf16``, ``int8``) and ``compile`` apply to the image encoder
    (see :func:`segany.fast.precision.optimize`).
    """
    check_precision(precision)  # before reading weights
    name = str(name_or_path)
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, model_type=name)
    elif (bundled := bundled_weights_path(name)) is not None:
        model = load_checkpoint(bundled)
    elif name in BUNDLED_WEIGHTS:
        raise ValueError(f"the bundled weights of {name!r} are missing from this installation")
    elif name in CONFIGS or name == "default":
        example = "mobile_sam.pt" if name == "vit_t" else f"sam_{get_config(name).name}_….pth"
        raise ValueError(
            f"model {name!r} needs its weights: pass checkpoint='{example}' "
            "(official files cannot be downloaded automatically); use segany.build_model(config) "
            "for randomly initialised weights"
        )
    elif Path(name).suffix in (".pth", ".pt", ".safetensors") or Path(name).exists():
        model = load_checkpoint(name)
    else:
        known = ", ".join([*BUNDLED_WEIGHTS, *CONFIGS])
        raise ValueError(
            f"unknown model {name!r}: expected one of {known}, a weights file or a Hugging Face folder"
        )
    return optimize(model.to(device), precision, compile=compile)


__all__ = [
    "CheckpointError",
    "bundled_weights_path",
    "check_family",
    "infer_config",
    "load",
    "load_checkpoint",
    "read_weights",
    "save_checkpoint",
]
