"""The official ``segment_anything.predictor`` module path: the stateful :class:`SamPredictor`
(``segany.inference.predictor`` holds the native :class:`~segany.Predictor`)."""

from .compat import SamPredictor
from .modeling import Sam
from .utils.transforms import ResizeLongestSide

__all__ = ["ResizeLongestSide", "Sam", "SamPredictor"]
