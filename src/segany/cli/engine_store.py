"""``segany engine init``: create a project or add new images to one."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CliError


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
