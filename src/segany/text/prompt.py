"""Text prompts through the bundled text head: the phrase's text embedding chooses among SAM's
grid proposals (the shipped route, :mod:`.proposals`), or becomes one sparse prompt token for
the frozen mask decoder (the paper's route, §7.5, kept for the comparison)."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..data.names import phrase_words
from ..fast.upscale import upscale_to_masks
from ..formats.boxes import masks_to_boxes
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..modeling.sam import Sam
from .head import TextPromptModel, word_ids
from .proposals import IOU_WEIGHT, grid_proposals, object_embeddings
from .results import TextMask
from .weights import bundled_text_head_path, load_text_head

ROUTES = ("proposals", "token")


class NoTextHeadError(ValueError):
    """The model has no text-prompt head."""


def decode_tokens(
    sam: Sam, features: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask decoder on embeddings ``(1 or B, D, h, w)`` with prompt tokens ``(B, 1, D)`` and
    no mask prompt: the single-mask output, low-res logits ``(B, 4h, 4w)`` and IoU ``(B,)``."""
    encoder = sam.prompt_encoder
    dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
        tokens.shape[0], -1, *encoder.image_embedding_size
    )
    masks, iou = sam.mask_decoder(features, encoder.get_dense_pe(), tokens, dense, False)
    return masks[:, 0], iou[:, 0]


class TextPromptHead:
    """A trained :class:`TextPromptModel` used for prompting a SAM model with phrases."""

    def __init__(self, model: TextPromptModel) -> None:
        self.model = model.eval()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TextPromptHead:
        return cls(load_text_head(path))

    @classmethod
    def bundled(cls, model_name: str) -> TextPromptHead:
        """The head shipped with a bundled model; ``NoTextHeadError`` for any other model."""
        path = bundled_text_head_path(model_name)
        if path is None:
            raise NoTextHeadError(
                f"model {model_name!r} has no text-prompt head (the bundled 'tiny' has one); "
                "for other models give a detector (--detector)"
            )
        return cls.load(path)

    def segment(
        self,
        predictor: Predictor,
        image: np.ndarray,
        phrase: str,
        embedding: Embedding | None = None,
        route: str = "proposals",
    ) -> list[TextMask]:
        """The object ``phrase`` names in an ``(H, W, 3)`` uint8 RGB image, as one
        :class:`TextMask` (``detector_score`` ``None``).

        One mask per phrase: for a phrase naming several objects it is the one the route ranks
        first (see README, "The bundled text head"). Words outside the generator's
        vocabulary raise :class:`~segany.data.names.UnknownWordError`. ``route``: ``proposals``
        (shipped) or ``token`` (the paper's prompt token, kept for the comparison).
        """
        return self.segment_phrases(predictor, image, [phrase], embedding, route)

    @torch.inference_mode()
    def segment_phrases(
        self,
        predictor: Predictor,
        image: np.ndarray,
        phrases: list[str],
        embedding: Embedding | None = None,
        route: str = "proposals",
    ) -> list[TextMask]:
        """One :class:`TextMask` per phrase, for one image (``embedding``: of this image)."""
        if route not in ROUTES:
            raise ValueError(f"unknown text-head route {route!r}; expected one of {ROUTES}")
        words = word_ids([phrase_words(phrase) for phrase in phrases])
        embedding = embedding if embedding is not None else predictor.embed(image)
        predictor.check_embedding(embedding)
        self.model.to("cpu")
        text = self.model.text(words)
        if route == "token":
            masks, scores = self._token_masks(predictor, embedding, text)
        else:
            candidates, candidate_scores = grid_proposals(predictor, embedding)
            if not len(candidates):
                return []
            similarity = text @ object_embeddings(self.model, embedding, image, candidates).T
            best = (similarity + IOU_WEIGHT * candidate_scores).argmax(1)
            masks, scores = candidates[best], candidate_scores[best]
        boxes = masks_to_boxes(masks).tolist()
        return [
            TextMask(phrase, mask.cpu().numpy(), tuple(map(float, box)), None, float(score))  # type: ignore[arg-type]
            for phrase, mask, box, score in zip(phrases, masks, boxes, scores)
        ]

    def _token_masks(
        self, predictor: Predictor, embedding: Embedding, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's route: text embeddings ``(P, E)`` -> one prompt token each -> masks
        ``(P, H, W)`` and predicted IoU ``(P,)``."""
        sam = predictor.model
        token = self.model.head(text).to(predictor.device)
        low_res, iou = decode_tokens(sam, embedding.features, token)
        masks = upscale_to_masks(
            low_res[:, None],
            sam.img_size,
            embedding.input_size,
            embedding.original_size,
            sam.mask_threshold,
        )[:, 0]
        return masks.cpu(), iou.cpu()
