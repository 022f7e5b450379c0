"""The image embedding as a value: encoder output plus the geometry that maps prompts and masks
between the original image and the model's square input. Immutable and savable."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..config import LOW_RES_UPSCALE
from ..fast.precision import encoder_id  # noqa: F401  (re-exported)
from ..formats.files import atomic_write_bytes
from ..modeling.sam import Sam
from .prompts import check_image
from .transforms import resize_image

T = TypeVar("T")


@dataclass(frozen=True)
class Embedding:
    """One image's embedding.

    ``features`` is ``(1, D, h, w)`` float32 (``(1, 256, 64, 64)`` for the official models);
    ``original_size`` and ``input_size`` (after resizing, before padding) are ``(H, W)``.
    ``encoder_id`` identifies the encoder weights that produced it. ``early`` is, for HQ-SAM,
    the encoder's early features ``(1, h, w, C)`` float32 (its first global block's output,
    which the HQ decoder fuses), else ``None``.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    img_size: int
    encoder_id: str = ""
    early: torch.Tensor | None = None
    _derived: weakref.WeakKeyDictionary[Any, tuple[Hashable, Any]] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False
    )

    def derived(self, owner: object, version: Hashable, make: Callable[[], T]) -> T:
        """What ``owner`` computes from this embedding with ``make`` (like a decoder's inputs
        shared by all prompts), computed once and kept with the embedding while ``owner``
        lives and ``version`` stays equal. Never saved."""
        kept = self._derived.get(owner)
        if kept is None or kept[0] != version:
            kept = (version, make())
            self._derived[owner] = kept
        return kept[1]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the derived values (they are recomputed on demand)."""
        return {k: v for k, v in self.__dict__.items() if k != "_derived"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _derived=weakref.WeakKeyDictionary())

    @property
    def height(self) -> int:
        return self.original_size[0]

    @property
    def width(self) -> int:
        return self.original_size[1]

    @property
    def encoder_outputs(self) -> tuple[torch.Tensor, ...]:
        """What a decoder route takes per image: ``(features,)``, or ``(features, early)``."""
        return (self.features,) if self.early is None else (self.features, self.early)

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits decoded from it (``mask_input``, ``low_res_logits``)."""
        return low_res_side(self.features.shape[-1])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as safetensors (features plus geometry in the metadata), atomically: a run
        killed mid-write leaves no partial file that a resumed run would take for done."""
        atomic_write_bytes(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """The file :meth:`save` writes, as bytes (what a Ray worker sends its driver)."""
        metadata = {
            "original_size": f"{self.original_size[0]},{self.original_size[1]}",
            "input_size": f"{self.input_size[0]},{self.input_size[1]}",
            "img_size": str(self.img_size),
            "encoder_id": self.encoder_id,
            "format": "segany-embedding",
        }
        tensors = {"features": self.features}
        if self.early is not None:
            tensors["early"] = self.early
        return safetensors_bytes(
            {k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, metadata
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Embedding:
        """Read a file written by :meth:`save`; ``ValueError`` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such embedding file")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as handle:
                meta = handle.metadata() or {}
                if meta.get("format") != "segany-embedding":
                    raise ValueError("missing segany-embedding metadata")
                features = handle.get_tensor("features")
                names = handle.keys()  # a safetensors handle has no ``in``
                early = handle.get_tensor("early") if "early" in names else None
            original = tuple(int(v) for v in meta["original_size"].split(","))
            input_size = tuple(int(v) for v in meta["input_size"].split(","))
            img_size = int(meta["img_size"])
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a segany embedding file ({exc})") from None
        return cls(features, original, input_size, img_size, meta.get("encoder_id", ""), early)  # type: ignore[arg-type]


def low_res_side(grid: int) -> int:
    """Side of the low-res mask logits for an embedding grid of side ``grid`` (256 for 64): the
    one rule for embeddings and exported graphs, which carry a grid but no model."""
    return LOW_RES_UPSCALE * grid


def encode(model: Sam, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image encoder on ``(B, 3, S, S)`` preprocessed images: embeddings ``(B, D, h, w)``
    and, for HQ-SAM (whose encoder returns both), the early features ``(B, h, w, C)``."""
    out = model.image_encoder(images)
    return out if isinstance(out, tuple) else (out, None)


def prepare_image(model: Sam, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize an RGB uint8 image and move it to the model: ``(1, 3, h, w)`` float32, and the
    resized size ``(h, w)``."""
    resized = resize_image(check_image(image), model.img_size)
    tensor = torch.as_tensor(resized, device=model.device).permute(2, 0, 1)[None].float()
    return tensor, (resized.shape[0], resized.shape[1])
