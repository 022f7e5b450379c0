"""The reference SAM: plain ``nn.Module`` building blocks (no I/O, no numpy), readable beside
the official code. :func:`build_model` here returns this plain model; the speed routes of
:mod:`segany.fast` (same weights and keys) are installed by :func:`segany.optimize`, and every
model segany's loaders and the top-level ``segany.build_model`` return has them."""

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam, build_model
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TwoWayTransformer",
    "build_model",
]
