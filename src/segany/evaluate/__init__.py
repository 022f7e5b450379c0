"""Zero-shot interactive evaluation (the paper's point protocol)."""

from .clicks import centre_click, next_click
from .protocol import DEFAULT_CLICKS, EvalReport, ObjectResult, evaluate, mask_iou

__all__ = [
    "DEFAULT_CLICKS",
    "EvalReport",
    "ObjectResult",
    "centre_click",
    "evaluate",
    "mask_iou",
    "next_click",
]
