"""Drop-in for ``segment_anything.utils.transforms``."""

from ..transforms import ResizeLongestSide

__all__ = ["ResizeLongestSide"]
