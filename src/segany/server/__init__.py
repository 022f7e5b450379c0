"""The web app: ``segany serve`` (FastAPI) and the page it serves.

The server computes each image's embedding once, caches it on disk by content hash, and hands
it to the page together with the decoder's ONNX graph; the page runs the prompt encoder and
mask decoder itself (onnxruntime-web), so a click costs the server nothing.
"""

from .annotation import AnnotationService
from .app import create_app
from .cache import EmbeddingCache, content_key
from .errors import ApiError
from .limits import Limits
from .service import SegmentService

__all__ = [
    "AnnotationService",
    "ApiError",
    "EmbeddingCache",
    "Limits",
    "SegmentService",
    "content_key",
    "create_app",
]
