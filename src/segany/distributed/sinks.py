"""The Datasink that writes gear 3's results into a PostgreSQL project from the cluster's
write tasks. Imports Ray: only :mod:`segany.distributed.gear` imports it, when a run needs it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink

from ..engine.project import Project
from .gear import GearWriter, RayAutoReport


class GearSink(Datasink):
    """Each write task opens its own connection (from the URL: the project folder need not be
    visible there) and stores its rows one image per transaction; the reports come back to
    the driver's copy of the sink in :meth:`on_write_complete`."""

    def __init__(self, project_path: str, url: str, weights: str) -> None:
        self.project_path, self.url, self.weights = project_path, url, weights
        self.report = RayAutoReport()

    def write(self, blocks: Iterable[Block], ctx: Any) -> RayAutoReport:
        report = RayAutoReport()
        project = Project(Path(self.project_path), self.url)
        try:
            writer = GearWriter(project, self.weights, report)
            for block in blocks:
                for row in BlockAccessor.for_block(block).iter_rows(public_row_format=True):
                    writer.store(row)
        finally:
            project.close()
        return report

    def on_write_complete(self, write_result: Any) -> None:
        # a WriteResult since Ray 2.3x, the list of returns before
        for report in getattr(write_result, "write_returns", write_result):
            self.report.merge(report)

    def get_name(self) -> str:
        return "segany project"
