"""Drop-in names with the official signatures: ``sam_model_registry``, ``build_sam*`` and the
stateful ``SamPredictor``. Code written for ``segment_anything`` (or MobileSAM's ``mobile_sam``,
whose ``vit_t`` is here too) runs by changing the import."""

from __future__ import annotations

import os
from collections.abc import Callable

from .checkpoints import load_checkpoint
from .config import get_config
from .fast.model import build_model
from .inference.sam_predictor import PromptShapeError, SamPredictor
from .modeling.sam import Sam


def _builder(name: str) -> Callable[..., Sam]:
    def build(checkpoint: str | os.PathLike[str] | None = None) -> Sam:
        if checkpoint is None:
            return build_model(get_config(name))
        return load_checkpoint(checkpoint, model_type=name)

    build.__name__ = f"build_{name}" if name.startswith("sam_") else f"build_sam_{name}"
    build.__doc__ = f"SAM {name}: random weights, or the given checkpoint loaded strictly."
    return build


build_sam_vit_h = _builder("vit_h")
build_sam_vit_l = _builder("vit_l")
build_sam_vit_b = _builder("vit_b")
build_sam_vit_t = _builder("vit_t")  # MobileSAM: its package names the TinyViT model vit_t
build_sam = build_sam_vit_h

sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": build_sam,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "vit_t": build_sam_vit_t,
}

# HQ-SAM: ``segment_anything_hq.sam_model_registry``'s builders (its ViT models), loading
# ``sam_hq_vit_*.pth`` strictly; their ``SamPredictor.predict`` takes ``hq_token_only``
build_sam_hq_vit_h = _builder("sam_hq_vit_h")
build_sam_hq_vit_l = _builder("sam_hq_vit_l")
build_sam_hq_vit_b = _builder("sam_hq_vit_b")
sam_hq_model_registry: dict[str, Callable[..., Sam]] = {
    "default": build_sam_hq_vit_h,
    "vit_h": build_sam_hq_vit_h,
    "vit_l": build_sam_hq_vit_l,
    "vit_b": build_sam_hq_vit_b,
}

__all__ = [
    "PromptShapeError",
    "SamPredictor",
    "build_sam",
    "build_sam_hq_vit_b",
    "build_sam_hq_vit_h",
    "build_sam_hq_vit_l",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "build_sam_vit_t",
    "sam_hq_model_registry",
    "sam_model_registry",
]
