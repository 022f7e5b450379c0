"""The official stateful predictor, ``SamPredictor``: ``set_image`` once, ``predict`` many
times, with the official signatures and errors, over the same prompt core and decoder as
:class:`~segany.inference.predictor.Predictor`."""

from __future__ import annotations

import numpy as np
import torch

from ..modeling.sam import Sam
from .embedding import Embedding, encode, encoder_id, prepare_image
from .predictor import decode_prompts, shared_decoder
from .prompts import PromptBatch, convert_image, embedding_prompts
from .transforms import ResizeLongestSide


class PromptShapeError(ValueError, AssertionError):
    """Raised where the official code asserts: catchable as either ``ValueError`` or
    ``AssertionError``."""


def _check_official_shapes(
    point_coords: np.ndarray | None,
    point_labels: np.ndarray | None,
    box: np.ndarray | None,
    mask_input: np.ndarray | None,
) -> None:
    """Where the official ``SamPredictor.predict`` asserts (one prompt set; the rest is checked
    by :func:`~segany.inference.prompts.build_prompt_batch`): :class:`PromptShapeError`."""
    if point_coords is not None and point_labels is None:
        raise PromptShapeError("point_labels must be supplied if point_coords is supplied.")
    if box is not None and np.asarray(box).size != 4:
        raise PromptShapeError(f"box must be one XYXY box of 4 numbers, got shape {np.shape(box)}")
    if mask_input is not None and np.ndim(mask_input) != 3:
        raise PromptShapeError(f"mask_input must have shape (1, H, W), got {np.shape(mask_input)}")
    if point_coords is not None and np.ndim(point_coords) != 2:
        raise PromptShapeError(f"point_coords must have shape (N, 2), got {np.shape(point_coords)}")


class SamPredictor:
    """The official stateful predictor: ``set_image`` once, ``predict`` many times."""

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self._encoder_id = encoder_id(sam_model)
        self._decoder = shared_decoder(sam_model)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        # HQ-SAM's: the early encoder features, in a list as the official HQ predictor keeps them
        self.interm_features: list[torch.Tensor] | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        # the official predictor's attributes (it sets them to None and never updates them)
        self.orig_h = self.orig_w = self.input_h = self.input_w = None
        self._current: Embedding | None = None  # kept between predicts: it caches decoder inputs

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an ``(H, W, 3)`` uint8 image given as ``RGB`` or ``BGR``."""
        image = convert_image(image, image_format, self.model.image_format, PromptShapeError)
        tensor, _ = prepare_image(self.model, image)
        self.set_torch_image(tensor, image.shape[:2])

    @torch.inference_mode()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Embed a ``(1, 3, h, w)`` image already resized so its longest side is the model's
        input size."""
        img_size = self.model.image_encoder.img_size
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[1] != 3 or max(shape[2:]) != img_size:
            raise PromptShapeError(
                f"set_torch_image input must be BCHW with long side {img_size}, got {shape}"
            )
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (shape[2], shape[3])
        features, early = encode(self.model, self.model.preprocess(transformed_image.float()))
        self.features = features
        self.interm_features = None if early is None else [early]
        self.is_image_set = True

    def _embedding(self) -> Embedding:
        if not self.is_image_set or self.features is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        current = self._current
        if (
            current is None
            or current.features is not self.features
            or (current.original_size, current.input_size) != (self.original_size, self.input_size)
        ):
            current = Embedding(
                self.features,
                self.original_size,
                self.input_size,  # type: ignore[arg-type]
                self.model.image_encoder.img_size,
                self._encoder_id,
                None if self.interm_features is None else self.interm_features[0],
            )
            self._current = current
        return current

    @torch.inference_mode()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks ``(C, H, W)``, IoU ``(C,)`` and low-res logits ``(C, 4h, 4w)`` for one prompt:
        ``point_coords`` ``(N, 2)`` pixels with ``point_labels`` ``(N,)``, one XYXY ``box``,
        ``mask_input`` ``(1, 4h, 4w)`` logits. ``hq_token_only`` is the official HQ-SAM
        predictor's flag (HQ-SAM models give C = 1)."""
        embedding = self._embedding()
        _check_official_shapes(point_coords, point_labels, box, mask_input)
        prompts = embedding_prompts(
            embedding,
            self.device,
            points=point_coords,
            labels=point_labels,
            boxes=box,
            mask_input=mask_input,
            require_inside=False,
        )
        masks, iou, low_res = self._decode(
            embedding, prompts, multimask_output, return_logits, hq_token_only
        )
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the model's input frame: ``point_coords`` ``(B, N, 2)``,
        ``point_labels`` ``(B, N)``, ``boxes`` ``(B, 4)``, ``mask_input`` ``(B, 1, 4h, 4w)``.
        Returns ``(B, C, H, W)`` masks, ``(B, C)`` IoU, ``(B, C, 4h, 4w)`` low-res logits."""
        embedding = self._embedding()
        if point_coords is not None and point_labels is None:
            raise PromptShapeError("point_labels must be supplied if point_coords is supplied.")
        if point_coords is None and boxes is None and mask_input is None:
            raise ValueError("empty prompt: give point_coords, boxes or mask_input")
        prompts = PromptBatch(point_coords, point_labels, boxes, mask_input)
        return self._decode(embedding, prompts, multimask_output, return_logits, hq_token_only)

    def _decode(
        self,
        embedding: Embedding,
        prompts: PromptBatch,
        multimask_output: bool,
        return_logits: bool,
        hq_token_only: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`~segany.inference.predictor.decode_prompts` with this predictor's model and
        shared decoder: ``(B, C, H, W)`` masks, ``(B, C)`` IoU, ``(B, C, 4h, 4w)`` logits."""
        return decode_prompts(
            self.model,
            self._decoder,
            embedding,
            prompts,
            multimask_output,
            return_logits,
            hq_token_only,
        )

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding, ``(1, D, h, w)``."""
        if not self.is_image_set or self.features is None:
            raise RuntimeError(
                "An image must be set with .set_image(...) to generate an embedding."
            )
        return self.features
