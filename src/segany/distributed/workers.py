"""The callable classes Ray Data runs in its actor pool: each actor loads the model once, then
takes batches of image rows (``index``, ``path``) and returns one result row per image
(``index``, ``path``, then ``payload``: a pickled :class:`Segmented` or an embedding's file,
or ``error``: the pickled exception that failed this image; :func:`unpack` reads one back).

Imports no Ray: the classes are plain Python, so they run in a test or a debugger as they are.
"""

from __future__ import annotations

import pickle
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..automatic import SamAutomaticMaskGenerator
from ..automatic.settings import preset_for_model
from ..checkpoints import load
from ..formats.images import read_image
from ..formats.sa1b import Sa1bAnnotation
from ..inference.predictor import Predictor
from ..modeling.sam import Sam
from .pipeline import ModelLoadError

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """How each worker loads the model: the arguments of :func:`segany.load` (a bundled name
    or a weights file, which every node must see at this path)."""

    model: str = "tiny"
    checkpoint: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False

    def load(self) -> Sam:
        return load(
            self.model,
            self.checkpoint,
            device=self.device,
            precision=self.precision,
            compile=self.compile,
        )


@dataclass(frozen=True)
class Segmented:
    """One image's masks, as the generator returns them, and the seconds it took."""

    height: int
    width: int
    annotations: list[Sa1bAnnotation]
    seconds: float
    preset: str | None = None


@dataclass(frozen=True)
class Failed:
    """An image the worker could not read or segment: the exception, for the driver's message."""

    error: BaseException


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (built-in errors do), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class ImageWorker:
    """Base of the actor classes: the model is loaded once per actor. A model that cannot load
    is not raised here (Ray would replace the actor and load again, and report the failure
    wrapped in its own traceback) but on the first batch, as :class:`ModelLoadError`, which
    fails the job with the reason."""

    def __init__(self, spec: ModelSpec, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.failure: str | None = None
        try:
            self.setup(spec.load())
        except (ValueError, OSError, RuntimeError, MemoryError, ImportError) as exc:
            reason = " ".join(str(exc).split())
            self.failure = f"a worker on {socket.gethostname()} could not load the model: {reason}"

    def setup(self, model: Sam) -> None:
        raise NotImplementedError

    def results(self, paths: list[str]) -> list[bytes | Failed]:
        raise NotImplementedError

    def __call__(self, batch: Batch) -> Batch:
        if self.failure is not None:
            raise ModelLoadError(self.failure)
        results = self.results([str(p) for p in batch["path"]])
        payloads, errors = np.empty(len(results), object), np.empty(len(results), object)
        for i, result in enumerate(results):
            failed = isinstance(result, Failed)
            payloads[i] = b"" if failed else result
            errors[i] = pickle.dumps(portable(result.error)) if failed else b""
        return {
            "index": batch["index"],
            "path": batch["path"],
            "payload": payloads,
            "error": errors,
        }


class MaskWorker(ImageWorker):
    """Segment-everything on each image of a batch (the generator takes one image at a time).
    With ``adapt_preset`` the preset follows the model's architecture, as gear 3 does."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: dict[str, Any],
        threads: int = 1,
        adapt_preset: bool = False,
    ) -> None:
        self.settings, self.adapt_preset = settings, adapt_preset
        super().__init__(spec, threads)

    def setup(self, model: Sam) -> None:
        settings = dict(self.settings)
        if self.adapt_preset:
            settings["preset"] = preset_for_model(settings.get("preset"), model)
        self.preset = settings.get("preset")
        self.generator = SamAutomaticMaskGenerator(model, **settings)

    def segment(self, path: str) -> bytes | Failed:
        try:
            image = read_image(path)
            start = time.perf_counter()
            annotations = self.generator.generate_annotations(image)
        except (ValueError, OSError, RuntimeError, MemoryError) as exc:
            return Failed(exc)
        seconds = time.perf_counter() - start
        height, width = image.shape[:2]
        return pickle.dumps(Segmented(height, width, annotations, seconds, self.preset))

    def results(self, paths: list[str]) -> list[bytes | Failed]:
        return [self.segment(path) for path in paths]


class EmbedWorker(ImageWorker):
    """The image encoder over a batch of images in one call; each result is the embedding's
    file (what :meth:`Embedding.save` writes), or a pickled :class:`Failed`."""

    def setup(self, model: Sam) -> None:
        self.predictor = Predictor(model)

    def results(self, paths: list[str]) -> list[bytes | Failed]:
        images: dict[int, np.ndarray] = {}
        out: list[bytes | Failed] = [b""] * len(paths)
        for i, path in enumerate(paths):
            try:
                images[i] = read_image(path)
            except (ValueError, OSError) as exc:
                out[i] = Failed(exc)
        if images:
            embeddings = self.predictor.embed_batch(list(images.values()))
            for i, embedding in zip(images, embeddings):
                out[i] = embedding.to_bytes()
        return out


def unpack(row: dict[str, Any]) -> bytes | Failed:
    """A result row's payload, or the :class:`Failed` it carries."""
    if row["error"]:
        return Failed(pickle.loads(row["error"]))
    return bytes(row["payload"])


def unpack_segmented(row: dict[str, Any]) -> Segmented | Failed:
    """A :class:`MaskWorker` result row."""
    result = unpack(row)
    return result if isinstance(result, Failed) else pickle.loads(result)
