"""Gear 3, the automatic stage: the generator over every image no gear has finished, each
image's masks stored with its run in one transaction.

A run is resumable by construction: an image is either finished (its masks and its
``image_runs`` row committed together) or untouched, so a run killed at any point leaves only
finished images behind, and the next run starts on the first unfinished one; an image finished
meanwhile by another process is skipped by ``store.write_image_result`` (nothing duplicated).

With ``workers`` > 1, that many processes share the images: each loads the model once, takes
one image at a time and writes its own results (SQLite serialises the writers with its busy
timeout and WAL; PostgreSQL needs nothing). Torch's threads are split between them.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..automatic import SamAutomaticMaskGenerator
from ..checkpoints import load
from ..modeling.sam import Sam
from .gear_queue import GearImage, gear_queue, read_gear_image
from .project import Project
from .store import NewMask, write_image_result

GEAR = 3


@dataclass(frozen=True)
class GearJob:
    """What a gear-3 run needs, picklable for its workers: the model (a version's weights and
    how to load them) and the generator's settings (``preset`` included)."""

    project: str
    weights: str
    model_version_id: int
    generator: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False

    def load_model(self) -> Sam:
        return load(
            self.weights, device=self.device, precision=self.precision, compile=self.compile
        )

    def generator_for(self, model: Sam) -> SamAutomaticMaskGenerator:
        return SamAutomaticMaskGenerator(model, **self.generator)


@dataclass(frozen=True)
class ImageOutcome:
    """One image's fate: ``masks`` stored (``written``), or ``error`` (left pending)."""

    image: GearImage
    masks: int = 0
    written: bool = False
    error: str | None = None


@dataclass
class AutoReport:
    segmented: int = 0  # images finished by this run
    masks: int = 0
    already_done: int = 0  # finished by another process meanwhile
    leased: int = 0  # held by an annotator: left for them
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def add(self, outcome: ImageOutcome) -> None:
        if outcome.error is not None:
            self.unreadable.append((outcome.image.path, outcome.error))
        elif outcome.written:
            self.segmented += 1
            self.masks += outcome.masks
        else:
            self.already_done += 1


def segment_and_store(
    project: Project, generator: SamAutomaticMaskGenerator, job: GearJob, image: GearImage
) -> ImageOutcome:
    """Segment one image and store its masks with its run (atomic, idempotent)."""
    pixels = read_gear_image(image)
    if isinstance(pixels, str):
        return ImageOutcome(image, error=pixels)
    start = time.perf_counter()
    masks = [NewMask.from_record(a) for a in generator.generate_annotations(pixels)]
    seconds = time.perf_counter() - start
    with project.session() as session:
        written = write_image_result(
            session, image.id, GEAR, masks, job.model_version_id, seconds=seconds
        )
    return ImageOutcome(image, masks=len(masks), written=written)


def run_automatic_gear(
    job: GearJob, *, model: Sam | None = None, workers: int = 1, progress: bool = True
) -> AutoReport:
    """Gear 3 over the project's pending images; ``model`` (already loaded from the job's
    weights) saves loading it again when ``workers`` is 1."""
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    report = AutoReport()
    with Project.open(job.project) as project:
        with project.session() as session:
            queue = gear_queue(session)
        report.leased = queue.leased
        if not queue.images:
            return report
        if workers == 1:
            generator = job.generator_for(model if model is not None else job.load_model())
            outcomes: Iterator[ImageOutcome] = (
                segment_and_store(project, generator, job, image) for image in queue.images
            )
        else:
            del model  # each worker loads its own
            outcomes = _in_workers(job, queue.images, workers)
        with tqdm(total=len(queue.images), desc="gear 3", unit="img", disable=not progress) as bar:
            for outcome in outcomes:
                report.add(outcome)
                bar.update()
    return report


# -- worker processes ------------------------------------------------------------------------
_worker: tuple[Project, SamAutomaticMaskGenerator, GearJob] | None = None


def _start_worker(job: GearJob, threads: int) -> None:
    """Once per worker process: its share of the threads, the model, its own connections."""
    global _worker
    torch.set_num_threads(threads)
    _worker = (Project.open(Path(job.project)), job.generator_for(job.load_model()), job)


def _work(image: GearImage) -> ImageOutcome:
    assert _worker is not None, "started by _start_worker"
    return segment_and_store(*_worker, image)


def _in_workers(
    job: GearJob, images: tuple[GearImage, ...], workers: int
) -> Iterator[ImageOutcome]:
    """Each image's outcome as a worker finishes it. Spawned, not forked: a forked child of a
    process that ran torch may inherit its thread pools in a broken state."""
    threads = max(1, torch.get_num_threads() // workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(images)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(job, threads),
    )
    try:
        futures = [pool.submit(_work, image) for image in images]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
