"""Masks people made in another annotation tool (Label Studio), recorded as the project's own
assisted-manual work so that ``segany engine stats`` counts them.

A tool's annotation is a *group* of masks (``client_key`` prefix, e.g. ``ls:42:``); each mask's
key also holds a hash of its pixels. Recording a group again is idempotent: a mask already
stored is kept, a new or edited one is added, and one no longer in the group (removed, or
replaced by its edit) becomes ``undone``. The image counts as finished by the gear, as an image
submitted in the tool is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .project import Project
from .schema import MaskRow, utcnow
from .store import NewMask, add_image_file, gear_finished, mark_finished, mask_row, was_prefilled


@dataclass(frozen=True)
class ExternalMask:
    """One mask of a group: its id in the tool, the mask and the clicks that made it."""

    name: str
    mask: NewMask
    clicks: int | None = None


@dataclass(frozen=True)
class Recorded:
    """What recording a group did: the image, masks added, kept and withdrawn."""

    image_id: int
    added: int
    kept: int
    undone: int


def mask_key(group: str, item: ExternalMask) -> str:
    counts = item.mask.rle["counts"]
    digest = hashlib.sha256(counts if isinstance(counts, bytes) else counts.encode()).hexdigest()
    return f"{group}{item.name}:{digest[:16]}"[:100]


def _group_masks(session: Session, group: str) -> list[MaskRow]:
    like = group.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(session.scalars(select(MaskRow).where(MaskRow.client_key.like(like, escape="\\"))))


def withdraw_group(project: Project, group: str) -> int:
    """Mark every accepted mask of a group undone (the annotation was deleted); how many."""
    with project.session() as session:
        rows = [row for row in _group_masks(session, group) if row.status == "accepted"]
        for row in rows:
            row.status, row.decided_at = "undone", utcnow()
        session.commit()
        return len(rows)


def _record(
    session: Session,
    image_id: int,
    group: str,
    masks: Sequence[ExternalMask],
    annotator: str,
    seconds: float | None,
    model_version_id: int | None,
) -> Recorded:
    stored = {row.client_key: row for row in _group_masks(session, group)}
    wanted = {mask_key(group, item): item for item in masks}
    gear = 2 if was_prefilled(session, image_id) else 1
    each = seconds / len(wanted) if seconds is not None and wanted else None
    added = kept = undone = 0
    for key, item in wanted.items():
        row = stored.get(key)
        if row is None:
            session.add(
                mask_row(
                    image_id,
                    gear,
                    "accepted",
                    item.mask,
                    model_version_id=model_version_id,
                    annotator=annotator,
                    clicks=item.clicks,
                    seconds=each,
                    client_key=key,
                    decided_at=utcnow(),
                )
            )
            added += 1
        else:
            row.status, kept = "accepted", kept + 1  # taken back in the tool, then restored
    for key, row in stored.items():
        if key not in wanted and row.status == "accepted":
            row.status, row.decided_at = "undone", utcnow()
            undone += 1
    if not gear_finished(session, image_id, gear):
        mark_finished(
            session, image_id, gear, model_version_id, annotator=annotator, seconds=seconds
        )
    session.commit()
    return Recorded(image_id, added, kept, undone)


def record_group(
    project: Project,
    image_file: Path,
    group: str,
    masks: Sequence[ExternalMask],
    *,
    annotator: str,
    seconds: float | None = None,
    model_version_id: int | None = None,
) -> Recorded:
    """Record a group of masks on the image in ``image_file`` (added to the project if its
    bytes are new), in one transaction; ``seconds`` is the group's time, shared by its masks."""
    with project.session() as session:
        image = add_image_file(session, image_file)
        if image.error is not None:
            raise ValueError(f"{image_file.name}: not recorded: {image.error}")
        image_id = image.id
    for attempt in range(2):
        with project.session() as session:
            try:
                return _record(
                    session, image_id, group, masks, annotator, seconds, model_version_id
                )
            except IntegrityError:  # the same delivery recorded concurrently: read it again
                session.rollback()
                if attempt:
                    raise
    raise AssertionError("unreachable")
