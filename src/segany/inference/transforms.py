"""Resize-longest-side preprocessing and the matching coordinate mapping: one implementation,
used by the predictors, the generator, training and export alike.

Works on numpy arrays and torch tensors through the same arithmetic.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


SizeT = TypeVar("SizeT", int, torch.Tensor)


def preprocess_shape(height: SizeT, width: SizeT, long_side: int) -> tuple[SizeT, SizeT]:
    """Size ``(h, w)`` after scaling the longest side to ``long_side``: ``floor(x * scale + 0.5)``
    with ``scale = long_side / max(height, width)``.

    The one resize rule. Python ints give ints; 0-d tensors (as in an exported graph, where the
    image size is an input) give 0-d int64 tensors, computed in float64 with the same
    operations so that a graph rounds exactly like the Python path.
    """
    if not (isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor)):
        scale = long_side * 1.0 / max(height, width)
        return math.floor(height * scale + 0.5), math.floor(width * scale + 0.5)
    # A (2,) tensor, not 0-d ones: the ONNX exporter would compute 0-d scalars in float32.
    size = torch.stack([torch.as_tensor(height), torch.as_tensor(width)]).to(torch.float64)
    longest = size.amax(dim=0, keepdim=True)
    scale = torch.full_like(longest, long_side * 1.0) / longest  # a Div, as in Python
    new_size = torch.floor(size * scale + 0.5).to(torch.int64)
    return new_size[0], new_size[1]  # type: ignore[return-value]


def check_resizable(height: int, width: int, long_side: int) -> tuple[int, int]:
    """The resized size; ``ValueError`` for an image so thin that its short side would round
    to 0 pixels (a 1x3000 strip at a 1024 input)."""
    h, w = preprocess_shape(height, width, long_side)
    if min(h, w) < 1:
        raise ValueError(
            f"image of {width}x{height} pixels is too thin: its short side would be 0 pixels "
            f"once its long side is scaled to the model's {long_side}"
        )
    return h, w


def resize_image(image: np.ndarray, long_side: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(h, w, 3)`` uint8 with the longest side ``long_side``.

    PIL's antialiased bilinear filter: byte-identical to the official preprocessing.
    """
    h, w = check_resizable(image.shape[0], image.shape[1], long_side)
    return np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def scale_coords(coords: ArrayT, original_size: tuple[int, int], long_side: int) -> ArrayT:
    """Map ``(..., 2)`` (x, y) pixel coordinates from the original image to the resized one.

    numpy input is computed in float64, tensors in float32.
    """
    old_h, old_w = original_size
    new_h, new_w = preprocess_shape(old_h, old_w, long_side)
    if isinstance(coords, torch.Tensor):
        out = coords.to(torch.float32).clone()
    else:
        out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def scale_boxes(boxes: ArrayT, original_size: tuple[int, int], long_side: int) -> ArrayT:
    """Map ``(B, 4)`` XYXY boxes like :func:`scale_coords`."""
    return scale_coords(boxes.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


class ResizeLongestSide:
    """The official transform's interface, over the functions above."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> resized uint8."""
        return resize_image(image, self.target_length)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return scale_coords(coords, _hw(original_size), self.target_length)

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return scale_boxes(boxes, _hw(original_size), self.target_length)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float -> resized with antialiased bilinear interpolation (close to,
        not byte-identical with, :meth:`apply_image`)."""
        size = preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        return scale_coords(coords, _hw(original_size), self.target_length)

    def apply_boxes_torch(
        self, boxes: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        return scale_boxes(boxes, _hw(original_size), self.target_length)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        return preprocess_shape(oldh, oldw, long_side_length)


def _hw(size: tuple[int, ...]) -> tuple[int, int]:
    return int(size[0]), int(size[1])
