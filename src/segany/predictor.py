"""The official ``segment_anything.predictor`` module path: the stateful :class:`SamPredictor`
(``segany.inference.predictor`` holds the native :class:`~segany.Predictor`)."""

from .compat import SamPredictor

__all__ = ["SamPredictor"]
