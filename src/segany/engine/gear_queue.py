"""The images the automatic gears (pre-fill, gear 3) work on, and how they read them.

An image counts when no gear has finished it (``store.pending_images``) and no annotator holds
its lease right now: a gear that finished or pre-filled an image beneath an annotator would
change their work under them; a later run picks it up once the lease is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..formats.images import read_image
from .schema import ImageRow, LeaseRow, utcnow
from .store import pending_images, was_prefilled


@dataclass(frozen=True)
class GearImage:
    """An image to work on, detached from its session (safe to send to a worker process)."""

    id: int
    path: str


@dataclass(frozen=True)
class Queue:
    """The images to work on now, and how many pending ones annotators hold."""

    images: tuple[GearImage, ...]
    leased: int


def leased_now(session: Session) -> set[int]:
    return set(session.scalars(select(LeaseRow.image_id).where(LeaseRow.expires_at > utcnow())))


def gear_queue(session: Session, *, without_proposals: bool = False) -> Queue:
    """The pending images no annotator holds, in the order they were added; with
    ``without_proposals`` only those not pre-filled yet."""
    held = leased_now(session)
    pending: Sequence[ImageRow] = pending_images(session)
    free = [row for row in pending if row.id not in held]
    if without_proposals:
        free = [row for row in free if not was_prefilled(session, row.id)]
    images = tuple(GearImage(row.id, row.path) for row in free)
    return Queue(images=images, leased=sum(row.id in held for row in pending))


def read_gear_image(image: GearImage) -> np.ndarray | str:
    """``(H, W, 3)`` uint8 pixels, upright; or why the file cannot be read now (moved, deleted,
    truncated since it was added): the image then stays pending, for a later run."""
    try:
        return read_image(image.path)
    except (ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())
        return reason.removeprefix(f"{image.path}: ")
