"""Text prompts through the bundled text-prompt head: phrase -> text embedding -> one sparse
prompt token -> the frozen mask decoder -> a mask (the paper's route, §7.5)."""

from __future__ import annotations

import os

import torch

from ..data.names import phrase_words
from ..fast.upscale import upscale_to_masks
from ..formats.boxes import masks_to_boxes
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from ..modeling.sam import Sam
from .head import TextPromptModel, word_ids
from .results import TextMask
from .weights import bundled_text_head_path, load_text_head


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

    def segment(self, predictor: Predictor, embedding: Embedding, phrase: str) -> list[TextMask]:
        """The object ``phrase`` names, as one :class:`TextMask` (``detector_score`` ``None``).

        The head gives one token, so one mask: for a phrase naming several objects it is the
        decoder's pick among them (see README, "Text prompts"). Words outside the generator's
        vocabulary raise :class:`~segany.data.names.UnknownWordError`.
        """
        return self.segment_phrases(predictor, embedding, [phrase])

    @torch.inference_mode()
    def segment_phrases(
        self, predictor: Predictor, embedding: Embedding, phrases: list[str]
    ) -> list[TextMask]:
        """One :class:`TextMask` per phrase, decoded together."""
        words = [phrase_words(phrase) for phrase in phrases]
        predictor.check_embedding(embedding)
        sam = predictor.model
        self.model.to(predictor.device)
        token = self.model.head(self.model.text(word_ids(words).to(predictor.device)))
        low_res, iou = decode_tokens(sam, embedding.features, token)
        masks = upscale_to_masks(
            low_res[:, None],
            sam.img_size,
            embedding.input_size,
            embedding.original_size,
            sam.mask_threshold,
        )[:, 0]
        boxes = masks_to_boxes(masks).tolist()
        return [
            TextMask(phrase, mask.cpu().numpy(), tuple(map(float, box)), None, float(score))  # type: ignore[arg-type]
            for phrase, mask, box, score in zip(phrases, masks, boxes, iou)
        ]
