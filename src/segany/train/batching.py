"""From dataset samples to training batches: the paper's preprocessing (resize the longest side,
normalise, pad) applied to images, masks and boxes alike; large masks dropped; a random subset
of masks per image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import MaskSample
from ..formats.boxes import masks_to_boxes
from ..inference.transforms import preprocess_shape, resize_image


@dataclass(frozen=True)
class TrainingExample:
    """``image`` ``(3, h, w)`` float (0-255, resized, not padded); ``masks`` ``(M, S, S)`` bool
    in the padded input frame; ``boxes`` ``(M, 4)`` their XYXY boxes (inclusive pixels)."""

    image: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor


@dataclass(frozen=True)
class Batch:
    """``images``: B resized ``(3, h, w)`` images (0-255, not padded); ``masks`` ``(N, S, S)``;
    ``image_index`` ``(N,)``; ``boxes`` ``(N, 4)``."""

    images: list[torch.Tensor]
    masks: torch.Tensor
    image_index: torch.Tensor
    boxes: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            [image.to(device) for image in self.images],
            *(t.to(device) for t in (self.masks, self.image_index, self.boxes)),
        )


def prepare_example(
    sample: MaskSample,
    img_size: int,
    max_masks: int,
    rng: np.random.Generator,
    max_coverage: float = 0.9,
) -> TrainingExample | None:
    """Resize, pick up to ``max_masks`` masks covering at most ``max_coverage`` of the image;
    ``None`` when no mask is left."""
    h, w = sample.image.shape[:2]
    masks = sample.masks
    if len(masks):
        coverage = masks.reshape(len(masks), -1).mean(axis=1)
        masks = masks[(coverage <= max_coverage) & (coverage > 0)]
    if len(masks) == 0:
        return None
    if len(masks) > max_masks:
        masks = masks[np.sort(rng.choice(len(masks), max_masks, replace=False))]
    new_h, new_w = preprocess_shape(h, w, img_size)
    if (new_h, new_w) != (h, w):
        resized = F.interpolate(
            torch.from_numpy(masks)[None].float(),
            (new_h, new_w),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        masks = (resized >= 0.5).numpy()
    padded = np.zeros((len(masks), img_size, img_size), dtype=bool)
    padded[:, :new_h, :new_w] = masks
    padded = padded[padded.reshape(len(padded), -1).any(axis=1)]
    if len(padded) == 0:
        return None
    image = torch.from_numpy(resize_image(sample.image, img_size)).permute(2, 0, 1).float()
    return TrainingExample(
        image, torch.from_numpy(padded), masks_to_boxes(torch.from_numpy(padded)).float()
    )


def collate(examples: list[TrainingExample | None]) -> Batch:
    """Join examples (skipping ``None``) into one batch; images stay unpadded."""
    examples = [e for e in examples if e is not None]
    images = [e.image for e in examples]
    masks = torch.cat([e.masks for e in examples])
    index = torch.cat(
        [torch.full((len(e.masks),), i, dtype=torch.long) for i, e in enumerate(examples)]
    )
    boxes = torch.cat([e.boxes for e in examples])
    return Batch(images, masks, index, boxes)
