"""``segany engine init``, ``stats`` and ``export``: the project store's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import USAGE_ERROR, CliError


def run_init(args: argparse.Namespace) -> int:
    from ..engine import Project, add_images

    images = Path(args.images)
    if not images.is_dir():
        raise CliError(f"{images}: not a folder of images")
    with Project.create(args.project, args.db) as project, project.session() as session:
        report = add_images(session, images)
    for path, reason in report.unreadable:
        print(f"warning: skipped {path}: {reason.removeprefix(path + ': ')}")
    print(
        f"{args.project}: {report.added} images added, {report.known} already known, "
        f"{len(report.unreadable)} unreadable (recorded, skipped)"
    )
    return 0


def _cell(value: float | int | None, digits: int = 2, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.1f}%"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


TABLE = (  # (heading, key, width, digits, percent)
    ("images", "images", 7, 0, False),
    ("masks", "masks", 7, 0, False),
    ("masks/img", "masks_per_image", 9, 1, False),
    ("clicks/mask", "clicks_per_mask", 11, 1, False),
    ("s/mask", "seconds_per_mask", 7, 1, False),
    ("unchanged", "accepted_unchanged", 9, 0, True),
    ("rejected", "rejected", 8, 0, False),
    ("pairs", "iou_pairs", 6, 0, False),
    ("mIoU", "iou_mean", 5, 3, False),
    (">0.9", "iou_over_90", 6, 0, True),
    (">0.75", "iou_over_75", 6, 0, True),
)


def _table_line(gear: str, model: str, row: dict[str, Any]) -> str:
    cells = [
        _cell(row[key], digits, percent).rjust(width) for _, key, width, digits, percent in TABLE
    ]
    return f"{gear:<5} {model[:20]:<20} " + " ".join(cells)


def stats_table(stats: dict[str, Any]) -> str:
    """The human-readable form of :meth:`ProjectStats.to_dict`."""
    images, statuses = stats["images"], stats["masks_by_status"]
    lines = [
        f"images: {images['total']} ({images['done']} done, {images['pending']} pending, "
        f"{images['unreadable']} unreadable)",
        "masks by status, all images: " + ", ".join(f"{k} {v}" for k, v in statuses.items()),
        "figures below: accepted masks of finished images",
        "",
        f"{'gear':<5} {'model':<20} " + " ".join(h.rjust(w) for h, _, w, _, _ in TABLE),
    ]
    for gear in stats["gears"]:
        lines.append(_table_line(str(gear["gear"]), "all versions", gear["all"]))
        for row in gear["versions"]:
            lines.append(_table_line("", "  " + (row["model"] or "(no model)"), row))
    lines.append(_table_line("total", "", stats["total"]))
    share = stats["automatic_share"]
    lines.append(f"\nautomatic (gear 3) masks: {_cell(share, percent=True)} of all masks")
    return "\n".join(lines)


def run_stats(args: argparse.Namespace) -> int:
    import json

    from ..engine import Project
    from ..engine.stats import project_stats

    with Project.open(args.project) as project, project.session() as session:
        stats = project_stats(session).to_dict()
    print(json.dumps(stats, indent=2) if args.json else stats_table(stats))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..engine import Project
    from ..engine.exporting import export_project

    with Project.open(args.project) as project:
        report = export_project(project, args.output, args.format, args.gear, args.min_iou)
    for path, reason in report.skipped:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print(
        f"{report.images} images, {report.masks} masks written as {report.format} to "
        f"{report.output}" + (f"; {len(report.skipped)} images skipped" if report.skipped else "")
    )
    return USAGE_ERROR if report.skipped else 0
