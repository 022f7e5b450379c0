"""The text-prompt head of the bundled model (the paper's §7.5 route, at the scale of the
generated scenes): plain modules, no SAM weights.

- :class:`TextEncoder` maps a phrase (word ids of :data:`~segany.data.names.VOCABULARY`) to a
  unit vector of the shared space: a bag of word embeddings through an MLP (the phrases are
  attribute lists, so word order carries nothing).
- :class:`ObjectEncoder` maps an object as the image sees it (SAM's image embedding pooled under
  the object's mask, and the mean colour of its pixels) to the same space; it stands in for the
  paper's CLIP image embedding of the object.
- :class:`PromptHead` maps a shared-space vector to one sparse prompt token of SAM's prompt
  width, decoded by the frozen mask decoder like a point token.

Trained as in the paper: the encoders contrastively, the prompt head on the image side; at
inference the text side prompts.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..data.names import VOCABULARY


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class TextEncoder(nn.Module):
    """Word ids ``(B, L)`` (``-1`` pads) -> ``(B, E)`` unit vectors."""

    def __init__(self, vocabulary_size: int, width: int, shared_dim: int) -> None:
        super().__init__()
        self.words = nn.Embedding(vocabulary_size, width)
        self.project = _mlp((width, width, shared_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        present = (ids >= 0).to(self.words.weight.dtype)
        vectors = self.words(ids.clamp(min=0)) * present[..., None]
        bag = vectors.sum(1) / present.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.project(bag), dim=-1)


class ObjectEncoder(nn.Module):
    """Pooled SAM features ``(B, D)`` and mean colour ``(B, 3)`` in 0..1 -> ``(B, E)`` unit
    vectors."""

    def __init__(self, feature_dim: int, width: int, shared_dim: int) -> None:
        super().__init__()
        self.project = _mlp((feature_dim + 3, width, width, shared_dim))

    def forward(self, features: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(torch.cat([features, colour], dim=-1)), dim=-1)


class PromptHead(nn.Module):
    """Shared-space vectors ``(B, E)`` -> sparse prompt tokens ``(B, 1, D)``."""

    def __init__(self, shared_dim: int, width: int, token_dim: int) -> None:
        super().__init__()
        self.project = _mlp((shared_dim, width, token_dim))

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        return self.project(shared).unsqueeze(1)


class TextPromptModel(nn.Module):
    """The three parts together, with the contrastive temperature."""

    def __init__(
        self, feature_dim: int = 256, token_dim: int = 256, width: int = 128, shared_dim: int = 64
    ) -> None:
        super().__init__()
        self.text = TextEncoder(len(VOCABULARY), width, shared_dim)
        self.image = ObjectEncoder(feature_dim, width, shared_dim)
        self.head = PromptHead(shared_dim, width, token_dim)
        self.log_scale = nn.Parameter(torch.tensor(2.7))  # exp(2.7) ~ 15, as CLIP-like inits


def word_ids(phrases: list[tuple[str, ...]]) -> torch.Tensor:
    """Phrases as word tuples -> ``(B, L)`` ids into :data:`VOCABULARY`, padded with ``-1``."""
    index = {word: i for i, word in enumerate(VOCABULARY)}
    length = max(len(words) for words in phrases)
    rows = [[index[w] for w in words] + [-1] * (length - len(words)) for words in phrases]
    return torch.tensor(rows, dtype=torch.long)


def pool_under_masks(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` ``(B, D, h, w)`` weighted by mask coverage ``(B, h, w)`` -> ``(B, D)``."""
    total = weights.sum((-2, -1)).clamp(min=1e-6)
    return torch.einsum("bdhw,bhw->bd", features, weights) / total[:, None]
