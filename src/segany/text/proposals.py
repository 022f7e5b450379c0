"""The route the bundled head ships with: SAM's own proposals, chosen by the text.

A grid of single clicks gives candidate masks (three each, kept when SAM trusts them); each
candidate is embedded by the object encoder exactly as objects were in training (the image
embedding pooled under the mask, and its mean colour), and the phrase picks the candidate
closest to its text embedding (helped by SAM's own confidence, :data:`IOU_WEIGHT`). This stands in for the paper's token route, which did not
transfer at this scale (README, "The bundled text head").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from .head import TextPromptModel, pool_under_masks

POINTS_PER_SIDE = 16
# A candidate's rank: cosine similarity with the phrase + IOU_WEIGHT x SAM's predicted IoU, so a
# clean whole object beats a ragged piece of the same colour (chosen on held-out seeds
# 1,000,100-1,000,119, outside the benchmark's: 0.46 -> 0.555 mIoU with the 16x16 grid).
IOU_WEIGHT = 0.3
MIN_PREDICTED_IOU = 0.5
MIN_AREA = 48  # the generator's smallest visible object


def grid_proposals(
    predictor: Predictor, embedding: Embedding, points_per_side: int = POINTS_PER_SIDE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate masks ``(N, H, W)`` bool and their predicted IoU ``(N,)`` from a
    ``points_per_side``² grid of clicks, three candidates each."""
    height, width = embedding.original_size
    xs = (np.arange(points_per_side) + 0.5) * width / points_per_side
    ys = (np.arange(points_per_side) + 0.5) * height / points_per_side
    points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 1, 2)
    prediction = predictor.predict(embedding, points=points, labels=np.ones((len(points), 1)))
    masks = torch.from_numpy(prediction.masks.reshape(-1, height, width))
    scores = torch.from_numpy(prediction.scores.reshape(-1))
    keep = (masks.sum((1, 2)) >= MIN_AREA) & (scores >= MIN_PREDICTED_IOU)
    return masks[keep], scores[keep]


def grid_coverage(masks: torch.Tensor, embedding: Embedding) -> torch.Tensor:
    """How much of each cell of the embedding grid each mask ``(N, H, W)`` covers, in the
    encoder's frame (resized, padded square): ``(N, h, w)``."""
    resized = F.interpolate(masks[:, None].float(), embedding.input_size, mode="area")
    pad = embedding.img_size
    padded = F.pad(resized, (0, pad - resized.shape[-1], 0, pad - resized.shape[-2]))
    return F.adaptive_avg_pool2d(padded, embedding.features.shape[-2:])[:, 0]


def object_embeddings(
    model: TextPromptModel, embedding: Embedding, image: np.ndarray, masks: torch.Tensor
) -> torch.Tensor:
    """The object encoder on candidate masks ``(N, H, W)`` of ``image``: ``(N, E)``."""
    features = embedding.features.float().cpu()
    cover = grid_coverage(masks, embedding)
    pooled = pool_under_masks(features.expand(len(masks), -1, -1, -1), cover)
    pixels = torch.from_numpy(image).float() / 255
    colour = torch.einsum("nhw,hwc->nc", masks.float(), pixels) / masks.sum((1, 2))[:, None]
    return model.image(pooled, colour)
