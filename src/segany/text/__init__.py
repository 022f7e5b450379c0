"""Text prompts: a phrase → the masks of the objects it names.

Two routes give the same :class:`TextMask` results: boxes from a zero-shot detector of Hugging
Face transformers turned into masks by the predictor, and the bundled model's text-prompt head
(the paper's route: a text embedding as a sparse prompt token).
"""

from .detectors import Detections, Detector, DetectorError, split_phrases
from .results import TextMask
from .segment import segment_text

__all__ = ["Detections", "Detector", "DetectorError", "TextMask", "segment_text", "split_phrases"]
