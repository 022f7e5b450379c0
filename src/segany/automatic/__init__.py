"""Segment everything: the automatic mask generator and its pieces (point grids and crops,
filters, small-region cleanup, the table of masks, settings)."""

from .generator import SamAutomaticMaskGenerator
from .settings import PRESETS
from .table import MaskTable

__all__ = ["PRESETS", "MaskTable", "SamAutomaticMaskGenerator"]
