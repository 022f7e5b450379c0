"""segany: Segment Anything, from scratch.

Native API: :func:`load`, :class:`Predictor`, :class:`Embedding`, :class:`InteractiveSession`.
ONNX: :func:`export_onnx`, and :func:`load_onnx` (an :class:`OnnxPredictor` on onnxruntime).
Speed: :func:`optimize` (bf16 / int8 encoder, ``torch.compile``), also as ``load(precision=...)``.
Drop-in API (official signatures): :data:`sam_model_registry`, :func:`build_sam`,
:class:`SamPredictor`, :class:`SamAutomaticMaskGenerator`; HQ-SAM's as
:data:`sam_hq_model_registry` (``predict(..., hq_token_only=...)``).
"""

from importlib.metadata import PackageNotFoundError, version

from .automatic.generator import SamAutomaticMaskGenerator

# the builders through their official module path, so that importing the module
# `segany.build_sam` later never replaces the function `segany.build_sam` (as in the official)
from .build_sam import (
    build_sam,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    build_sam_vit_t,
    sam_model_registry,
)
from .checkpoints import CheckpointError, load, load_checkpoint, save_checkpoint
from .compat import SamPredictor, sam_hq_model_registry
from .config import CONFIGS, DecoderConfig, EncoderConfig, SamConfig, TinyViTConfig, get_config
from .export import OnnxPredictor, export_onnx, load_onnx
from .fast.allocator import keep_freed_memory
from .fast.model import build_model
from .fast.precision import PRECISIONS, optimize
from .inference.embedding import Embedding
from .inference.predictor import Prediction, Predictor
from .inference.session import InteractiveSession, mask_to_logits
from .modeling import Sam

try:
    __version__ = version("segany")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CONFIGS",
    "PRECISIONS",
    "CheckpointError",
    "DecoderConfig",
    "Embedding",
    "EncoderConfig",
    "InteractiveSession",
    "OnnxPredictor",
    "Prediction",
    "Predictor",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "TinyViTConfig",
    "__version__",
    "build_model",
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "build_sam_vit_t",
    "export_onnx",
    "get_config",
    "keep_freed_memory",
    "load",
    "load_checkpoint",
    "load_onnx",
    "mask_to_logits",
    "optimize",
    "sam_hq_model_registry",
    "sam_model_registry",
    "save_checkpoint",
]
