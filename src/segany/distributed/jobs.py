"""Segment-everything and embeddings over a folder on Ray: each image's result comes back to
the driver as it is finished, and the caller writes it (the same writers as without Ray, so
the files are the same)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .cluster import ScaleOptions, connected
from .pipeline import stream, threads_per_worker
from .workers import EmbedWorker, Failed, MaskWorker, ModelSpec, Segmented, unpack, unpack_segmented


def _rows(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    # absolute: a worker runs in a folder of its node's choosing, not the driver's
    for i, path in enumerate(paths):
        yield {"index": i, "path": str(Path(path).absolute())}


def segment_images(
    paths: Sequence[Path],
    spec: ModelSpec,
    settings: dict[str, Any],
    options: ScaleOptions,
    page_size: int | None = None,
) -> Iterator[tuple[Path, Segmented | Failed]]:
    """``(path, result)`` for each image, in the order workers finish them; ``settings`` are
    the generator's (``preset`` included)."""
    args = (spec, settings, threads_per_worker(options), False)
    with connected(options):
        for row in stream(_rows(paths), MaskWorker, args, options, page_size):
            yield paths[int(row["index"])], unpack_segmented(row)


def embed_images(
    paths: Sequence[Path], spec: ModelSpec, options: ScaleOptions, page_size: int | None = None
) -> Iterator[tuple[Path, bytes | Failed]]:
    """``(path, the embedding's file)`` for each image, ``--batch-size`` images per encoder
    call, in the order workers finish them."""
    args = (spec, threads_per_worker(options))
    with connected(options):
        for row in stream(_rows(paths), EmbedWorker, args, options, page_size):
            yield paths[int(row["index"])], unpack(row)
