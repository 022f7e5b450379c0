"""The API's routes, one router per concern, each over a :class:`~..service.SegmentService`:
the model and its decoder graph, images and their embeddings, results (segment everything,
exports), the sample scenes, text prompts, and annotation mode (a project's queue)."""

from .annotation import annotation_router
from .images import images_router
from .model import model_router
from .results import results_router
from .samples import samples_router
from .text import text_router

__all__ = [
    "annotation_router",
    "images_router",
    "model_router",
    "results_router",
    "samples_router",
    "text_router",
]
