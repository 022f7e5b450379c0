"""Installing the speed routes on a reference model.

:mod:`segany.modeling` is the plain reference. Each module with a faster route has a subclass
here (or in :mod:`segany.fast.attention` and :mod:`segany.fast.folding`) that overrides one method and adds no parameters or
buffers; :func:`install_fast_routes` swaps a model's modules to these classes in place, so the
state-dict keys, the weights and every ``isinstance`` check stay as they were. Swapping classes
keeps :mod:`segany.modeling` free of hooks and of any import of this package.

Every model segany hands out has the routes: :func:`segany.optimize` (and so
:func:`segany.load`), :func:`segany.load_checkpoint`, the drop-in builders and
:func:`build_model` (the top-level ``segany.build_model``). A model built from
:mod:`segany.modeling` directly stays plain until one of those is applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SamConfig
from ..modeling import image_encoder, tiny_vit, transformer
from ..modeling import sam as reference
from ..modeling.mask_decoder import MaskDecoder
from ..modeling.sam_hq import SamHQ
from .attention import FastAttention, FastBlock
from .folding import FoldedProjectionAttention
from .tiny_vit import FastTinyViT, FoldedConvBN
from .upscale import patch_matmul, upscale_logits


class FastMaskDecoder(MaskDecoder):
    """:class:`~segany.modeling.mask_decoder.MaskDecoder` upscaling on channels-last tokens."""

    def upscale_and_project(
        self, src_tokens: torch.Tensor, hyper_in: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``output_upscaling`` then the hypernetwork product, on channels-last tokens.

        ``src_tokens`` ``(B, h*w, D)``, ``hyper_in`` ``(B, T, D/8)`` -> masks ``(B, T, 4h, 4w)``.
        Each transposed convolution is a :func:`~segany.fast.upscale.patch_matmul` whose
        outputs stay grouped by source pixel; layer norm and GELU act per pixel, and the masks
        are put in spatial order once at the end, on T channels instead of D/8.
        """
        first, norm, act1, second, act2 = self.output_upscaling
        x = patch_matmul(src_tokens, first)  # (B, hw, 4, D/4)
        x = act1(_channels_last_norm(x, norm))
        x = act2(patch_matmul(x, second))  # (B, hw, 4, 4, D/8)
        b, tokens = hyper_in.shape[:2]
        masks = x.flatten(1, -2) @ hyper_in.transpose(1, 2)  # (B, hw * 16, T)
        h, w = size
        # (B, h, w, row1, col1, row2, col2, T) -> (B, T, (h, row1, row2), (w, col1, col2))
        masks = masks.reshape(b, h, w, 2, 2, 2, 2, tokens).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, tokens, 4 * h, 4 * w)


def _channels_last_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """A :class:`~segany.modeling.common.LayerNorm2d`'s normalisation on channels-last
    ``(..., C)``."""
    return F.layer_norm(x, (norm.num_channels,), norm.weight, norm.bias, norm.eps)


class FastSam(reference.Sam):
    """:class:`~segany.modeling.sam.Sam` whose ``postprocess_masks`` skips the padding."""

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits ``(B, C, 4h, 4w)`` -> logits ``(B, C, H, W)`` at ``original_size``
        (see :func:`~segany.fast.upscale.upscale_logits`)."""
        return upscale_logits(masks, self.img_size, tuple(input_size), tuple(original_size))


class FastSamHQ(SamHQ, FastSam):
    """:class:`~segany.modeling.sam_hq.SamHQ` with :class:`FastSam`'s ``postprocess_masks``."""


# reference class -> its class with the speed routes (the same parameters and buffers)
FAST_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    image_encoder.Attention: FastAttention,
    image_encoder.Block: FastBlock,
    transformer.Attention: FoldedProjectionAttention,
    MaskDecoder: FastMaskDecoder,
    reference.Sam: FastSam,
    SamHQ: FastSamHQ,
    tiny_vit.TinyViT: FastTinyViT,
    tiny_vit.ConvBN: FoldedConvBN,
}


def install_fast_routes(model: reference.Sam) -> reference.Sam:
    """Swap ``model``'s reference modules (exactly those classes, not subclasses of theirs) to
    their fast classes, in place; returns ``model``. Installing twice changes nothing."""
    for module in model.modules():
        fast = FAST_CLASSES.get(type(module))
        if fast is not None:
            module.__class__ = fast
    return model


def build_model(
    config: SamConfig, *, drop_path_rate: float = 0.0, dropout: float = 0.0
) -> reference.Sam:
    """:func:`segany.modeling.build_model` with the speed routes installed: a freshly
    initialised model for ``config`` (in eval mode), as every segany entry point returns."""
    model = reference.build_model(config, drop_path_rate=drop_path_rate, dropout=dropout)
    return install_fast_routes(model)
