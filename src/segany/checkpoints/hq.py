"""HQ-SAM checkpoints (``sam_hq_vit_b.pth``, ``sam_hq_vit_l.pth``, ``sam_hq_vit_h.pth``): the
official SAM keys plus the HQ decoder's (``mask_decoder.hf_token``, ``hf_mlp``,
``compress_vit_feat``, ``embedding_encoder``, ``embedding_maskfeature``), loaded unchanged and
strictly. Detection is by key; the rest of the architecture is inferred as for SAM."""

from __future__ import annotations

from collections.abc import Mapping

import torch

HQ_TOKEN_KEY = "mask_decoder.hf_token.weight"
HQ_EARLY_KEY = "mask_decoder.compress_vit_feat.0.weight"  # (encoder width, D, 2, 2)


class HQLayoutError(ValueError):
    """HQ keys that do not fit the rest of the checkpoint."""


def is_hq_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds HQ-SAM's decoder (its HQ output token)."""
    return HQ_TOKEN_KEY in state


def check_hq_layout(state: Mapping[str, torch.Tensor], encoder_dim: int) -> None:
    """Raise :class:`HQLayoutError` unless the HQ parts are whole and fuse features as wide as
    the encoder's (``encoder_dim``): a Light HQ-SAM (TinyViT) file or a cut file ends here."""
    if HQ_EARLY_KEY not in state:
        raise HQLayoutError(f"an HQ-SAM checkpoint without {HQ_EARLY_KEY}")
    width = state[HQ_EARLY_KEY].shape[0]
    if width != encoder_dim:
        raise HQLayoutError(
            f"the HQ decoder fuses {width}-wide early features but the ViT encoder is "
            f"{encoder_dim} wide"
        )


__all__ = ["HQ_TOKEN_KEY", "HQLayoutError", "check_hq_layout", "is_hq_state"]
