"""The data engine: the project store and the three gears that made SA-1B (assisted,
semi-automatic, automatic), the retrain loop and the paper's statistics."""

from .annotation import AnnotationDesk, ImageTask, LeaseLostError, NotAllowedError
from .database import DatabaseError
from .project import NotAProjectError, Project
from .store import NewMask, add_images, register_model

__all__ = [
    "AnnotationDesk",
    "DatabaseError",
    "ImageTask",
    "LeaseLostError",
    "NewMask",
    "NotAProjectError",
    "NotAllowedError",
    "Project",
    "add_images",
    "register_model",
]
