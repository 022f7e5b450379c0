"""Gear 3 on a Ray cluster: the project's pending images, a page at a time, segmented by a pool
of actors; each image's masks committed with its ``image_runs`` row in one transaction
(``store.write_image_result``: atomic, unique per image and gear, so a retried or rerun image
is stored once).

Who writes depends on the database. SQLite is one file that allows one writer at a time and
lives beside the driver: the driver writes each result as it streams in. PostgreSQL takes
writers from anywhere: a Datasink writes from the cluster, as many at once as there are
workers (up to 16), so the database's rate, not one process, bounds the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..engine.automatic_gear import GEAR, AutoReport, ImageOutcome
from ..engine.gear_queue import GearImage, leased_now
from ..engine.models import gear_model_version
from ..engine.project import Project
from ..engine.schema import ImageRow, ModelVersionRow
from ..engine.store import NewMask, is_done, pending_images, write_image_result
from .cluster import ScaleOptions, connected
from .pipeline import Row, page_size_for, stream, threads_per_worker, write
from .workers import Failed, MaskWorker, ModelSpec, unpack_segmented


@dataclass
class RayAutoReport(AutoReport):
    """What a run did, plus what its workers ran: the preset (after the model's variant) and
    the model version the masks were stored under."""

    preset: str | None = None
    version: tuple[int, str] | None = None  # (id, name)

    def merge(self, other: AutoReport) -> None:
        self.segmented += other.segmented
        self.masks += other.masks
        self.already_done += other.already_done
        self.unreadable += other.unreadable
        if isinstance(other, RayAutoReport):
            self.preset = self.preset or other.preset
            self.version = self.version or other.version


def count_pending(session: Session) -> int:
    """Images no gear has finished (annotators' leases included): the run's upper bound."""
    query = select(func.count(ImageRow.id)).where(ImageRow.error.is_(None), ~is_done(ImageRow.id))
    return session.scalar(query) or 0


def queue_rows(project: Project, report: RayAutoReport, page_size: int) -> Iterator[Row]:
    """The pending images no annotator holds, read a page at a time as the run asks for them;
    images held by an annotator are counted in ``report.leased`` and left for them."""
    after = 0
    while True:
        with project.session() as session:
            held = leased_now(session)
            page = [
                (row.id, row.path) for row in pending_images(session, after=after, limit=page_size)
            ]
        if not page:
            return
        after = page[-1][0]
        for image_id, path in page:
            if image_id in held:
                report.leased += 1
            else:
                yield {"index": image_id, "path": path}


class GearWriter:
    """Stores result rows into a project: the model version is registered on the first
    segmented image (so a model no worker could load leaves no row), then each image's masks
    go in with its run, once."""

    def __init__(self, project: Project, weights: str, report: RayAutoReport) -> None:
        self.project, self.weights, self.report = project, weights, report

    def version_id(self) -> int:
        if self.report.version is None:
            row = gear_model_version(self.project, self.weights)
            self.report.version = (row.id, row.name)
        return self.report.version[0]

    def store(self, row: Row) -> None:
        image = GearImage(int(row["index"]), str(row["path"]))
        result = unpack_segmented(row)
        if isinstance(result, Failed):  # left pending, as the single-process gear does
            reason = " ".join(str(result.error).split()).removeprefix(f"{image.path}: ")
            self.report.add(ImageOutcome(image, error=reason))
            return
        self.report.preset = self.report.preset or result.preset
        masks = [NewMask.from_record(a) for a in result.annotations]
        version_id = self.version_id()
        with self.project.session() as session:
            written = write_image_result(
                session, image.id, GEAR, masks, version_id, seconds=result.seconds
            )
        self.report.add(ImageOutcome(image, masks=len(masks), written=written))


def stored_version(project: Project, weights: str) -> tuple[int, str] | None:
    with project.session() as session:
        row = session.scalar(
            select(ModelVersionRow)
            .where(ModelVersionRow.weights == weights)
            .order_by(ModelVersionRow.id.desc())
        )
        return None if row is None else (row.id, row.name)


def run_automatic_gear_on_ray(
    project_path: str,
    spec: ModelSpec,
    preset: str,
    options: ScaleOptions,
    *,
    page_size: int | None = None,
    progress: TextIO | None = None,
) -> RayAutoReport:
    """Gear 3 over the project's pending images on Ray; ``spec.model`` names the weights (see
    :func:`segany.engine.models.gear_weights`), which every worker loads. ``progress``: where
    a progress bar goes (SQLite, where results pass through here), if anywhere."""
    from tqdm import tqdm

    report = RayAutoReport()
    args = (spec, {"preset": preset}, threads_per_worker(options), True)
    with Project.open(project_path) as project, connected(options):
        page_size = page_size or page_size_for(options)
        rows = queue_rows(project, report, page_size)
        if project.engine.dialect.name == "sqlite":
            writer = GearWriter(project, spec.model, report)
            with project.session() as session:
                total = count_pending(session)
            bar = tqdm(total=total, desc="gear 3", unit="img", file=progress, disable=not progress)
            with bar:
                for row in stream(rows, MaskWorker, args, options, page_size):
                    writer.store(row)
                    bar.update()
        else:
            from .sinks import GearSink

            sink = GearSink(project_path, project.url, spec.model)
            write(rows, MaskWorker, args, sink, options, page_size)
            report.merge(sink.report)
            report.version = report.version or stored_version(project, spec.model)
    return report
