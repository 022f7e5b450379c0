"""Reading and writing weights: official ``.pth`` state dicts (loaded unchanged, strictly) and
segany's own safetensors files (config in the metadata); model-type detection from shapes;
the ``load`` entry point."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import CONFIGS, DecoderConfig, EncoderConfig, SamConfig, get_config
from ..fast.model import build_model
from ..fast.precision import check_precision, optimize
from ..modeling.sam import Sam
from .hq import HQLayoutError, check_hq_layout, is_hq_state

CONFIG_METADATA_KEY = "segany_config"
BUNDLED_WEIGHTS = {"tiny": "tiny.safetensors"}
_EXPECTED = (
    "expected an official SAM v1 checkpoint (sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth, "
    "sam_vit_b_01ec64.pth), an HQ-SAM one (sam_hq_vit_b.pth...) or a segany .safetensors file"
)
_OTHER_FAMILIES = {
    "image_encoder.trunk.": "a SAM 2 checkpoint",
    "sam_mask_decoder.": "a SAM 2 checkpoint",
    "vision_encoder.": "a Hugging Face transformers SamModel checkpoint",
    "image_encoder.layers.": "a MobileSAM/TinyViT checkpoint",
}


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the reason and what was expected."""


StateDict = dict[str, torch.Tensor]


def read_weights(path: str | os.PathLike[str]) -> tuple[StateDict, SamConfig | None]:
    """Read a state dict (on the CPU) and, for segany files, the config stored with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
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
    return _unwrap(obj, path), None


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
    state = dict(obj)
    check_family(state, str(path))
    return state


def check_family(state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Raise :class:`CheckpointError` unless ``state`` looks like a SAM v1 model."""
    for prefix, family in _OTHER_FAMILIES.items():
        if any(k.startswith(prefix) for k in state):
            raise CheckpointError(f"{source}: this looks like {family}; {_EXPECTED}")
    needed = ("image_encoder.patch_embed.proj.weight", "mask_decoder.mask_tokens.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{source}: not a SAM model (missing {', '.join(missing)}; keys start with "
            f"{sample}); {_EXPECTED}"
        )


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def _is_hq(state: Mapping[str, torch.Tensor], encoder_dim: int) -> bool:
    """Whether ``state`` is HQ-SAM's (:mod:`.hq`), its HQ parts checked against the encoder."""
    if not is_hq_state(state):
        return False
    try:
        check_hq_layout(state, encoder_dim)
    except HQLayoutError as exc:
        raise CheckpointError(f"{exc}; {_EXPECTED}") from None
    return True


def infer_config(state: Mapping[str, torch.Tensor]) -> SamConfig:
    """Recover the architecture from tensor shapes; named official configs when they match."""
    check_family(state)
    patch_w = state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch = patch_w.shape[0], patch_w.shape[-1]
    depth = _count(state, r"image_encoder\.blocks\.(\d+)\.")
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
    encoder = EncoderConfig(
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
    tokens = state["mask_decoder.mask_tokens.weight"]
    dim = tokens.shape[1]
    decoder = DecoderConfig(
        embed_dim=dim,
        depth=_count(state, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        attention_downsample_rate=dim
        // state["mask_decoder.transformer.final_attn_token_to_image.q_proj.weight"].shape[0],
        num_multimask_outputs=tokens.shape[0] - 1,
        iou_head_depth=_count(state, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        hq=_is_hq(state, embed_dim),
    )
    for known in CONFIGS.values():
        if known.encoder == encoder and known.decoder == decoder:
            return known
    return SamConfig(name="custom", encoder=encoder, decoder=decoder)


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
            raise CheckpointError(
                f"{path}: holds a {detected.name} model (embed_dim {detected.encoder.embed_dim}, "
                f"depth {detected.encoder.depth}), but model type {model_type!r} was asked for"
            )
    model = build_model(detected)
    load_state_dict_strict(model, state, str(path))
    return model


def save_checkpoint(
    model: Sam,
    path: str | os.PathLike[str],
    config: SamConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write ``model`` as safetensors with its config in the metadata; ``dtype=torch.float16``
    halves the file (weights are widened back to float32 on loading)."""
    config = config or model.config or infer_config(model.state_dict())
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

    ``name_or_path`` is a bundled model name (``tiny``), an official type (``vit_b``,
    ``vit_l``, ``vit_h``; then ``checkpoint`` is required), or a weights file alone.
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
        raise ValueError(
            f"model {name!r} needs its weights: pass checkpoint='sam_{get_config(name).name}_….pth' "
            "(official files cannot be downloaded automatically); use segany.build_model(config) "
            "for randomly initialised weights"
        )
    elif Path(name).suffix in (".pth", ".pt", ".safetensors") or Path(name).is_file():
        model = load_checkpoint(name)
    else:
        known = ", ".join([*BUNDLED_WEIGHTS, *CONFIGS])
        raise ValueError(f"unknown model {name!r}: expected one of {known} or a weights file")
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
