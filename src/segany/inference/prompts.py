"""Input checking and prompt batching shared by every predictor (:class:`~segany.Predictor`,
the drop-in ``SamPredictor``, :class:`~segany.export.runtime.OnnxPredictor`): images and their
channel order, embeddings against a model, and user prompts in original-image pixels -> tensors
in the model's input frame, with a clear ``ValueError`` for anything malformed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .transforms import scale_boxes, scale_coords

if TYPE_CHECKING:
    from .embedding import Embedding

VALID_LABELS = (0, 1)  # background, foreground
IMAGE_FORMATS = ("RGB", "BGR")


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 image; ``ValueError`` naming what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values 0-255, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def check_image_format(image_format: str, error: type[ValueError] = ValueError) -> None:
    """``error`` unless ``image_format`` is ``RGB`` or ``BGR`` (the drop-in predictor passes its
    assertion-compatible subclass)."""
    if image_format not in IMAGE_FORMATS:
        raise error(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")


def convert_image(
    image: np.ndarray,
    image_format: str,
    model_format: str = "RGB",
    error: type[ValueError] = ValueError,
) -> np.ndarray:
    """Check an ``(H, W, 3)`` uint8 image given in ``image_format`` and return it contiguous in
    ``model_format`` (channels reversed where the two differ); ``error`` as in
    :func:`check_image_format`."""
    check_image_format(image_format, error)
    check_image(image)
    return np.ascontiguousarray(image[..., ::-1] if image_format != model_format else image)


def convert_images(images: Sequence[np.ndarray], image_format: str) -> list[np.ndarray]:
    """:func:`convert_image` to RGB for each of a non-empty batch of images."""
    check_image_format(image_format)
    if len(images) == 0:
        raise ValueError("no images to embed")
    return [convert_image(image, image_format) for image in images]


def check_embedding(embedding: Embedding, img_size: int, encoder_id: str) -> None:
    """``ValueError`` unless ``embedding`` comes from an encoder with input size ``img_size``
    and fingerprint ``encoder_id`` (an empty fingerprint on either side matches any)."""
    if embedding.img_size != img_size or (
        embedding.encoder_id and encoder_id and embedding.encoder_id != encoder_id
    ):
        raise ValueError(
            "this embedding was computed by a different image encoder; embed the image again "
            "with this model"
        )


@dataclass(frozen=True)
class PromptBatch:
    """K prompt sets in the model's input frame, ready for :meth:`Sam.decode`.

    ``points`` ``(K, N, 2)`` float32 with ``labels`` ``(K, N)`` int, ``boxes`` ``(K, 4)``,
    ``mask_input`` ``(K, 1, 4h, 4w)``; absent parts are ``None``.
    """

    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None
    mask_input: torch.Tensor | None

    @property
    def size(self) -> int:
        for part in (self.points, self.boxes, self.mask_input):
            if part is not None:
                return part.shape[0]
        return 0

    @property
    def point_pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.points is None else (self.points, self.labels)  # type: ignore[return-value]


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values: {array.tolist()}")
    return array


def _check_inside(coords: np.ndarray, size: tuple[int, int], name: str) -> None:
    h, w = size
    xs, ys = coords[..., 0], coords[..., 1]
    outside = (xs < 0) | (xs > w) | (ys < 0) | (ys > h)
    if np.any(outside):
        bad = coords.reshape(-1, 2)[outside.reshape(-1)][0].tolist()
        raise ValueError(
            f"{name} {bad} lies outside the {w}x{h} image (x in [0, {w}], y in [0, {h}])"
        )


def check_points(
    points: Any, labels: Any, image_size: tuple[int, int], require_inside: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` or ``(K, N, 2)`` points and matching labels -> ``(K, N, 2)``, ``(K, N)``."""
    if labels is None:
        raise ValueError("point labels are required with points: 1 = foreground, 0 = background")
    coords = _as_float_array(points, "points")
    label_array = np.asarray(labels)
    if coords.ndim == 2:
        coords = coords[None]
    if label_array.ndim == 1:
        label_array = label_array[None]
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[1] == 0:
        raise ValueError(
            f"points must have shape (N, 2) or (K, N, 2) with N >= 1, got {np.shape(points)}"
        )
    if label_array.shape != coords.shape[:2]:
        raise ValueError(
            f"labels shape {np.shape(labels)} does not match points shape {np.shape(points)}: "
            "one label per point"
        )
    if not np.isin(label_array, VALID_LABELS).all():
        raise ValueError(
            f"labels must be 1 (foreground) or 0 (background), got {np.unique(label_array).tolist()}"
        )
    if require_inside:
        _check_inside(coords, image_size, "point")
    return coords, label_array.astype(np.int64)


def check_boxes(boxes: Any, image_size: tuple[int, int], require_inside: bool = True) -> np.ndarray:
    """``(4,)`` or ``(K, 4)`` XYXY boxes -> ``(K, 4)``."""
    array = _as_float_array(boxes, "box")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] == 0:
        raise ValueError(
            f"boxes must have shape (4,) or (K, 4) as x0, y0, x1, y1; got {np.shape(boxes)}"
        )
    if np.any(array[:, 2] < array[:, 0]) or np.any(array[:, 3] < array[:, 1]):
        raise ValueError(
            f"boxes must be x0, y0, x1, y1 with x0 <= x1 and y0 <= y1; got {array.tolist()}"
        )
    if require_inside:
        _check_inside(array.reshape(-1, 2, 2), image_size, "box corner")
    return array


def check_mask_input(mask_input: Any, low_res: int) -> torch.Tensor:
    """``(4h, 4w)``, ``(1, 4h, 4w)`` or ``(K, 1, 4h, 4w)`` logits -> ``(K, 1, 4h, 4w)`` float32."""
    tensor = torch.as_tensor(
        np.asarray(mask_input) if not torch.is_tensor(mask_input) else mask_input
    )
    tensor = tensor.to(torch.float32)
    while tensor.ndim < 4:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[1:] != (1, low_res, low_res):
        raise ValueError(
            f"mask_input must be low-res logits of shape (1, {low_res}, {low_res}) or "
            f"(K, 1, {low_res}, {low_res}) (a previous low_res_logits); got {tuple(np.shape(mask_input))}"
        )
    if not torch.isfinite(tensor).all():
        raise ValueError("mask_input contains NaN or infinite values")
    return tensor


def _broadcast(tensor: torch.Tensor | None, size: int, name: str) -> torch.Tensor | None:
    if tensor is None or tensor.shape[0] == size:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(size, *tensor.shape[1:])
    raise ValueError(f"{name} has {tensor.shape[0]} prompt sets but others have {size}")


def build_prompt_batch(
    *,
    points: Any = None,
    labels: Any = None,
    boxes: Any = None,
    mask_input: Any = None,
    original_size: tuple[int, int],
    img_size: int,
    low_res: int,
    device: torch.device,
    require_inside: bool = True,
) -> PromptBatch:
    """Check user prompts (original pixels) and map them to the model's input frame.

    Prompt sets broadcast: one set of points with K boxes gives K sets. Raises ``ValueError``
    for an empty prompt, malformed shapes, NaN/inf, bad labels or (if ``require_inside``)
    coordinates outside the image.
    """
    if points is None and labels is not None:
        raise ValueError("labels were given without points")
    if points is None and boxes is None and mask_input is None:
        raise ValueError("empty prompt: give points (with labels), a box, or a mask_input")
    point_t = label_t = box_t = mask_t = None
    if points is not None:
        coords, label_array = check_points(points, labels, original_size, require_inside)
        coords = scale_coords(coords, original_size, img_size)
        point_t = torch.as_tensor(coords, dtype=torch.float32, device=device)
        label_t = torch.as_tensor(label_array, dtype=torch.int64, device=device)
    if boxes is not None:
        box_array = scale_boxes(
            check_boxes(boxes, original_size, require_inside), original_size, img_size
        )
        box_t = torch.as_tensor(box_array, dtype=torch.float32, device=device)
    if mask_input is not None:
        mask_t = check_mask_input(mask_input, low_res).to(device)
    size = max(t.shape[0] for t in (point_t, box_t, mask_t) if t is not None)
    return PromptBatch(
        points=_broadcast(point_t, size, "points"),
        labels=_broadcast(label_t, size, "labels"),
        boxes=_broadcast(box_t, size, "boxes"),
        mask_input=_broadcast(mask_t, size, "mask_input"),
    )


def embedding_prompts(
    embedding: Embedding,
    device: torch.device,
    *,
    points: Any = None,
    labels: Any = None,
    boxes: Any = None,
    mask_input: Any = None,
    require_inside: bool = True,
) -> PromptBatch:
    """:func:`build_prompt_batch` with the geometry of ``embedding``: what every predictor
    calls with the user's prompts."""
    return build_prompt_batch(
        points=points,
        labels=labels,
        boxes=boxes,
        mask_input=mask_input,
        original_size=embedding.original_size,
        img_size=embedding.img_size,
        low_res=embedding.low_res_size,
        device=device,
        require_inside=require_inside,
    )
