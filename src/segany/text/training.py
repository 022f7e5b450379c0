"""Training the text-prompt head on generated scenes, with the SAM model frozen.

1. :func:`collect_objects` runs the frozen image encoder once per scene and keeps, per visible
   object, what training needs: its scene's embedding, its mask at the decoder's low-res size,
   its coverage of the embedding grid, its mean colour and its words.
2. :func:`train_encoders`: the text and object encoders, contrastively (CLIP-style): a phrase
   and an object are a positive pair when the phrase names the object.
3. :func:`train_prompt_head`: the prompt head, whose token the frozen mask decoder turns into
   the object's mask; fed the object side (the paper's recipe) or the text side (the ablation).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.names import COLOURS, scene_objects
from ..data.scenes import generate_scene
from ..modeling.sam import Sam
from ..train.losses import dice_loss, focal_loss
from .head import TextPromptModel, pool_under_masks, word_ids
from .prompt import decode_tokens

FOCAL_WEIGHT = 20.0  # the paper's 20:1 focal to dice


@dataclass
class ObjectTable:
    """Visible objects of ``S`` scenes (``O`` objects in all).

    ``features`` ``(S, D, h, w)`` float16 image embeddings; ``scene`` ``(O,)`` scene of each
    object; ``targets`` ``(O, 4h, 4w)`` float16 mask coverage at the low-res size; ``cover``
    ``(O, h, w)`` coverage of the embedding grid; ``colour`` ``(O, 3)`` mean colour in 0..1;
    ``words`` the object's words (colour word first).
    """

    features: torch.Tensor
    scene: torch.Tensor
    targets: torch.Tensor
    cover: torch.Tensor
    colour: torch.Tensor
    words: list[tuple[str, ...]]

    def pooled(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` embeddings of objects ``rows`` pooled under their masks."""
        return pool_under_masks(self.features[self.scene[rows]].float(), self.cover[rows])


def _coverage(mask: np.ndarray, side: int) -> np.ndarray:
    """Fraction of each cell of a ``side``² grid that ``mask`` ``(H, W)`` covers."""
    h, w = mask.shape
    return mask.reshape(side, h // side, side, w // side).mean(axis=(1, 3))


@torch.no_grad()
def collect_objects(model: Sam, seeds: range, batch: int = 8) -> ObjectTable:
    """Embed the scenes of ``seeds`` (default-size scenes, square at the model's input size)
    with the frozen encoder and gather their objects."""
    grid, low = (
        model.prompt_encoder.image_embedding_size[0],
        model.prompt_encoder.mask_input_size[0],
    )
    features, scene_ids, targets, cover, colour, words = [], [], [], [], [], []
    seeds = list(seeds)
    for start in range(0, len(seeds), batch):
        scenes = [generate_scene(seed) for seed in seeds[start : start + batch]]
        images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in scenes])
        features.append(model.image_encoder(model.preprocess(images)).half())
        for offset, scene in enumerate(scenes):
            for obj in scene_objects(scene):
                mask = scene.masks[obj.index]
                scene_ids.append(start + offset)
                targets.append(_coverage(mask, low))
                cover.append(_coverage(mask, grid))
                colour.append(scene.image[mask].mean(axis=0) / 255)
                words.append(tuple(sorted(obj.words, key=lambda w: w not in COLOURS)))
    return ObjectTable(
        torch.cat(features),
        torch.tensor(scene_ids),
        torch.from_numpy(np.stack(targets)).half(),
        torch.from_numpy(np.stack(cover)).float(),
        torch.from_numpy(np.stack(colour)).float(),
        words,
    )


def sample_phrase(words: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """A phrase naming an object with ``words`` (colour, shape): both words half the time, else
    one of them."""
    draw = rng.random()
    return words if draw < 0.5 else words[:1] if draw < 0.75 else words[1:]


def contrastive_loss(
    model: TextPromptModel, table: ObjectTable, rows: torch.Tensor, rng: random.Random
) -> torch.Tensor:
    """Symmetric InfoNCE between the objects ``rows`` and one sampled phrase each; every
    phrase-object pair where the phrase names the object counts as positive."""
    phrases = [sample_phrase(table.words[i], rng) for i in rows.tolist()]
    text = model.text(word_ids(phrases))
    image = model.image(table.pooled(rows), table.colour[rows])
    logits = model.log_scale.exp().clamp(max=100) * text @ image.T  # (phrase, object)
    names = torch.tensor(
        [[set(p) <= set(table.words[j]) for j in rows.tolist()] for p in phrases],
        dtype=torch.float32,
    )
    to_image = -(names / names.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    to_text = -(names / names.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (to_image + to_text) / 2


def train_encoders(
    model: TextPromptModel,
    table: ObjectTable,
    steps: int,
    batch: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> float:
    """Train the text and object encoders; returns the last loss."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    params = [*model.text.parameters(), *model.image.parameters(), model.log_scale]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    loss = torch.tensor(0.0)
    for step in range(steps):
        rows = torch.randint(len(table.scene), (batch,), generator=gen)
        loss = contrastive_loss(model, table, rows, rng)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if log is not None:
            log(step, float(loss.detach()))
    return float(loss.detach())


def head_loss(
    sam: Sam,
    model: TextPromptModel,
    table: ObjectTable,
    rows: torch.Tensor,
    side: str,
    rng: random.Random,
) -> torch.Tensor:
    """Focal + dice of the mask decoded from the head's token for objects ``rows``; the head is
    fed the object side (``side="image"``) or a phrase naming the object (``"text"``)."""
    with torch.no_grad():
        if side == "image":
            shared = model.image(table.pooled(rows), table.colour[rows])
        else:
            shared = model.text(word_ids([table.words[i] for i in rows.tolist()]))
    logits, _ = decode_tokens(sam, table.features[table.scene[rows]].float(), model.head(shared))
    targets = table.targets[rows].float()
    return (FOCAL_WEIGHT * focal_loss(logits, targets) + dice_loss(logits, targets)).mean()


def train_prompt_head(
    sam: Sam,
    model: TextPromptModel,
    table: ObjectTable,
    steps: int,
    side: str = "image",
    batch: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> float:
    """Train the prompt head with SAM frozen; returns the last loss."""
    sam.requires_grad_(False)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed + 1)
    optimiser = torch.optim.AdamW(model.head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=max(steps, 1))
    pool = torch.arange(len(table.scene)) if side == "image" else text_targets_unique(table)
    loss = torch.tensor(0.0)
    for step in range(steps):
        rows = pool[torch.randint(len(pool), (batch,), generator=gen)]
        loss = head_loss(sam, model, table, rows, side, rng)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if log is not None:
            log(step, float(loss.detach()))
    return float(loss.detach())


def text_targets_unique(table: ObjectTable) -> torch.Tensor:
    """Rows whose full name (colour and shape) names no other object of their scene: the
    objects the text-side ablation can be trained on."""
    seen: dict[tuple[int, tuple[str, ...]], int] = {}
    for scene, words in zip(table.scene.tolist(), table.words):
        seen[(scene, words)] = seen.get((scene, words), 0) + 1
    keep = [seen[(s, w)] == 1 for s, w in zip(table.scene.tolist(), table.words)]
    return torch.nonzero(torch.tensor(keep)).flatten()


__all__ = [
    "ObjectTable",
    "collect_objects",
    "contrastive_loss",
    "head_loss",
    "train_encoders",
    "train_prompt_head",
]
