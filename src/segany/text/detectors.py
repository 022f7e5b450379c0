"""Zero-shot object detectors of Hugging Face transformers: phrases → scored boxes.

A detector is a folder written by ``save_pretrained`` (model and processor) or a Hub name
already in the local Hugging Face cache; nothing is downloaded. The family is read from
``config.json``'s ``model_type``. transformers is imported only here, when a detector is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

GROUNDING = ("grounding-dino", "mm-grounding-dino")  # one text, phrases split by "."
CLASSES = ("owlv2", "owlvit", "omdet-turbo")  # one query per phrase
FAMILIES = GROUNDING + CLASSES
INSTALL = "pip install 'segany[text]'"
DEFAULT_THRESHOLDS = {"owlv2": 0.1, "owlvit": 0.1}  # the processors' defaults; others 0.3


class DetectorError(ValueError):
    """A detector that cannot be found, loaded or used (the CLI prints it after ``error:``)."""


@dataclass(frozen=True)
class Detections:
    """What a detector found: ``boxes`` ``(N, 4)`` float32 XYXY in original-image pixels,
    ``scores`` ``(N,)`` float32, ``phrases`` ``(N,)`` int64 index into the phrases asked for."""

    boxes: np.ndarray
    scores: np.ndarray
    phrases: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def split_phrases(text: str | list[str]) -> list[str]:
    """``"a dog . a cat"`` → ``["a dog", "a cat"]`` (Grounding DINO's separator); a list is
    cleaned the same way. ``ValueError`` if nothing is left."""
    parts = text.split(".") if isinstance(text, str) else [p for t in text for p in t.split(".")]
    phrases = list(dict.fromkeys(" ".join(p.split()).lower() for p in parts if p.strip()))
    if not phrases:
        raise DetectorError(
            "empty text prompt: give a phrase such as 'a dog' (several: 'dog . cat')"
        )
    return phrases


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise DetectorError(f"text prompts with a detector need transformers: {INSTALL}") from None
    return transformers


def _model_type(source: str) -> str:
    """The ``model_type`` of a detector folder or cached Hub name, without loading weights."""
    transformers = _transformers()
    folder = Path(source).expanduser()
    try:
        if folder.is_dir():
            config = json.loads((folder / "config.json").read_text())
        else:
            path = transformers.utils.cached_file(source, "config.json", local_files_only=True)
            config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        if folder.is_dir():
            message = "no readable config.json in the folder"
        elif source.startswith((".", "/", "~")) or source.count("/") > 1:
            message = "no such folder"
        else:
            message = (
                "no such folder, and not in the local Hugging Face cache (segany never "
                f"downloads weights: run `hf download {source}` where there is a network, or "
                "give a folder written by save_pretrained)"
            )
        raise DetectorError(f"detector {source}: {message}") from None
    return str(config.get("model_type", ""))


class Detector:
    """A loaded zero-shot detector; :meth:`detect` turns an image and phrases into boxes."""

    def __init__(self, source: str | Path, device: str | torch.device = "cpu") -> None:
        self.source = str(source)
        self.family = _model_type(self.source)
        if self.family not in FAMILIES:
            raise DetectorError(
                f"detector {self.source} is a {self.family or 'unknown'!r} model; supported: "
                f"{', '.join(FAMILIES)} (zero-shot detectors of transformers)"
            )
        transformers = _transformers()
        folder = Path(self.source).expanduser()
        path = str(folder) if folder.is_dir() else self.source
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # a load takes a blink: no bar
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            model_class = transformers.AutoModelForZeroShotObjectDetection
            self.model = model_class.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise DetectorError(f"detector {self.source} does not load: {exc}") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.default_threshold = DEFAULT_THRESHOLDS.get(self.family, 0.3)

    @torch.inference_mode()
    def detect(
        self, image: np.ndarray, phrases: list[str], box_threshold: float | None = None
    ) -> Detections:
        """Boxes for ``phrases`` in an ``(H, W, 3)`` uint8 RGB image whose score exceeds
        ``box_threshold`` (default: the family's), each credited to its best phrase, XYXY in
        original-image pixels."""
        from PIL import Image

        if box_threshold is None:
            box_threshold = self.default_threshold
        if not 0.0 <= box_threshold <= 1.0:
            raise DetectorError(f"box threshold {box_threshold} is not between 0 and 1")
        picture = Image.fromarray(image)
        text = phrases if self.family in CLASSES else ". ".join(phrases) + "."
        inputs = self.processor(images=picture, text=text, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        return self.post_process(outputs, inputs, len(phrases), image.shape[:2], box_threshold)

    def post_process(
        self,
        outputs: Any,
        inputs: Any,
        count: int,
        size: tuple[int, int],
        box_threshold: float,
    ) -> Detections:
        """The model's raw ``outputs`` → :class:`Detections` through the processor's own
        post-processing (boxes scaled to ``size`` = original ``(H, W)``)."""
        if self.family in GROUNDING:
            found = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=box_threshold,
                target_sizes=[size],
            )[0]  # fmt: skip
            labels = self._grounded_phrases(outputs, inputs["input_ids"][0], count, box_threshold)
        elif self.family == "omdet-turbo":
            found = self.processor.post_process_grounded_object_detection(
                outputs, threshold=box_threshold, nms_threshold=1.0, target_sizes=[size]
            )[0]
            labels = found["labels"]
        else:
            found = self.processor.post_process_grounded_object_detection(
                outputs, threshold=box_threshold, target_sizes=[size]
            )[0]
            labels = found["labels"]
        return Detections(
            boxes=found["boxes"].float().cpu().numpy().reshape(-1, 4),
            scores=found["scores"].float().cpu().numpy().reshape(-1),
            phrases=torch.as_tensor(labels).long().cpu().numpy().reshape(-1),
        )

    def _grounded_phrases(
        self, outputs: Any, input_ids: torch.Tensor, count: int, box_threshold: float
    ) -> torch.Tensor:
        """Grounding DINO scores each box against every token of one text; the phrase of a
        kept box is the one holding its best token (phrases are the spans between ``"."``
        tokens, as the model itself separates them)."""
        probs = outputs.logits[0].sigmoid()  # (Q, T)
        kept = probs[probs.max(dim=-1).values > box_threshold]  # the processor's keep rule
        tokens = self.processor.tokenizer
        stops = {tokens.convert_tokens_to_ids("."), tokens.sep_token_id}
        span = torch.full((probs.shape[-1],), -1, dtype=torch.long)  # token → phrase, -1 none
        phrase = 0
        for position, token in enumerate(input_ids.tolist()[1:], start=1):
            if token in stops:
                phrase += 1
            elif phrase < count:
                span[position] = phrase
        member = span[None, :] == torch.arange(count)[:, None]  # (P, T)
        per_phrase = kept[:, None, :].masked_fill(~member.to(kept.device), -1.0).amax(dim=-1)
        return per_phrase.argmax(dim=-1)
