"""Drop-in for ``segment_anything.utils.transforms``."""

from ..inference.transforms import ResizeLongestSide

__all__ = ["ResizeLongestSide"]
