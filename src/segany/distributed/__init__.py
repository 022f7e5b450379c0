"""Scale-out on Ray: the automatic gear, segment-everything and embeddings over a Ray cluster.

Ray is an extra (``pip install 'segany[ray]'``): nothing here imports it until a run asks for
it (:func:`~segany.distributed.cluster.import_ray`), so segany and every path without
``--ray`` work without it. Each job is Ray Data's streaming pattern: image rows
(``from_items``, a page at a time) → ``map_batches`` with a callable class, so each actor of the
pool loads the model once → results streamed to the driver, or written by a Datasink.
"""

from .cluster import LOCAL, ClusterError, RayUnavailableError, ScaleOptions, import_ray
from .pipeline import ModelLoadError
from .workers import ModelSpec

__all__ = [
    "LOCAL",
    "ClusterError",
    "ModelLoadError",
    "ModelSpec",
    "RayUnavailableError",
    "ScaleOptions",
    "import_ray",
]
