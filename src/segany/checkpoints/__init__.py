"""Weights in and out: one module per checkpoint family, one ``load`` for all of them.

``official.py`` reads the official ``.pth`` files and segany's safetensors, detects the model
type from shapes and holds the ``load`` entry point; other families (their key layouts and
conversions) go in modules of their own beside it.
"""

from .official import (
    BUNDLED_WEIGHTS,
    CONFIG_METADATA_KEY,
    CheckpointError,
    StateDict,
    bundled_weights_path,
    check_family,
    infer_config,
    load,
    load_checkpoint,
    load_state_dict_strict,
    read_weights,
    save_checkpoint,
)

__all__ = [
    "BUNDLED_WEIGHTS",
    "CONFIG_METADATA_KEY",
    "CheckpointError",
    "StateDict",
    "bundled_weights_path",
    "check_family",
    "infer_config",
    "load",
    "load_checkpoint",
    "load_state_dict_strict",
    "read_weights",
    "save_checkpoint",
]
