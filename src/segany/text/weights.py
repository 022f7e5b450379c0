"""The text-prompt head's weights in and out: a small float16 safetensors file beside the
SAM model it was trained with (``weights/tiny-text.safetensors`` for the bundled ``tiny``)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from ..data.names import VOCABULARY
from .head import TextPromptModel

FORMAT = "segany-text-head"
BUNDLED_TEXT_HEADS = {"tiny": "tiny-text.safetensors"}


class TextHeadError(ValueError):
    """A text-head file that cannot be used (wrong format or vocabulary)."""


def save_text_head(model: TextPromptModel, path: str | os.PathLike[str], info: dict) -> None:
    """Write ``model`` as float16 with its sizes, vocabulary and ``info`` (how it was trained)."""
    sizes = {
        "width": model.text.words.embedding_dim,
        "shared_dim": model.head.project[0].in_features,
        "feature_dim": model.image.project[0].in_features - 3,
        "token_dim": model.head.project[-1].out_features,
    }
    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "sizes": json.dumps(sizes),
        "vocabulary": " ".join(VOCABULARY),
        "info": json.dumps(info),
    }
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)  # nothing half-written


def load_text_head(path: str | os.PathLike[str]) -> TextPromptModel:
    """Read a file written by :func:`save_text_head` (float32, eval mode)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise TextHeadError(f"{path} is not a segany text-head file")
        if metadata.get("vocabulary") != " ".join(VOCABULARY):
            raise TextHeadError(f"{path} was trained on another vocabulary")
        state = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 (a safe_open, not a dict)
    model = TextPromptModel(**json.loads(metadata["sizes"]))
    model.load_state_dict(state)
    return model.eval()


def bundled_text_head_path(model_name: str) -> Path | None:
    """The text head shipped with a bundled model, if any."""
    if model_name not in BUNDLED_TEXT_HEADS:
        return None
    path = Path(str(resources.files("segany") / "weights" / BUNDLED_TEXT_HEADS[model_name]))
    return path if path.is_file() else None
