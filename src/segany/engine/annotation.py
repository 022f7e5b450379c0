"""Gears 1 and 2 with a person (or the simulated annotator) at the controls: the queue hands
each image to one annotator at a time under a lease, and every accepted mask is committed the
moment it is accepted. The annotation server's routes and ``engine simulate`` both call this
class, so a simulated run measures the same code path people use."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .project import Project
from .schema import ImageRow, ImageRunRow, LeaseRow, MaskRow, utcnow
from .store import NewMask, image_masks, is_done, mark_finished, mask_row, was_prefilled

LEASE_SECONDS = 15 * 60


class LeaseLostError(RuntimeError):
    """The image is held by another annotator (the caller's lease expired and was taken)."""


class NotAllowedError(ValueError):
    """The mask or image is not one this annotator may change in this way."""


@dataclass(frozen=True)
class ImageTask:
    """An image leased to one annotator: its gear (2 when it has pre-filled proposals),
    the proposals still open and the masks already accepted (what a reload shows)."""

    image_id: int
    path: str
    width: int
    height: int
    gear: int
    split: str
    expires_at: datetime
    proposals: tuple[MaskRow, ...]
    accepted: tuple[MaskRow, ...]


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


class AnnotationDesk:
    """The annotation queue and the writes of gears 1 and 2 on a :class:`Project`."""

    def __init__(self, project: Project, lease_seconds: float = LEASE_SECONDS) -> None:
        self.project = project
        self.lease = timedelta(seconds=lease_seconds)

    # -- the queue -----------------------------------------------------------------------------
    def checkout(self, annotator: str, among: Collection[int] | None = None) -> ImageTask | None:
        """The image this annotator holds (lease renewed), else the next free one; None when
        every image is done or held by someone else. ``among`` limits both to these image ids
        (the simulated annotator asks only for images it has ground truth for)."""
        with self.project.session() as session:
            query = select(LeaseRow.image_id).where(
                LeaseRow.annotator == annotator, LeaseRow.expires_at > utcnow()
            )
            if among is not None:
                query = query.where(LeaseRow.image_id.in_(among))
            held = session.scalar(query)
            if held is not None and self._take(session, held, annotator):
                return self._task(session, held)
            for image_id in self._free_images(session, among):
                if self._take(session, image_id, annotator):
                    return self._task(session, image_id)
        return None

    def upcoming(self, count: int) -> list[int]:
        """The ids of the next ``count`` free images in queue order: what to prepare ahead."""
        with self.project.session() as session:
            return self._free_images(session)[: max(0, count)]

    def _free_images(self, session: Session, among: Collection[int] | None = None) -> list[int]:
        now = utcnow()
        leased = select(LeaseRow.image_id).where(LeaseRow.expires_at > now)
        query = (
            select(ImageRow.id)
            .where(ImageRow.error.is_(None), ~is_done(ImageRow.id), ImageRow.id.not_in(leased))
            .order_by(ImageRow.id)
            .limit(20)
        )
        if among is not None:
            query = query.where(ImageRow.id.in_(among))
        return list(session.scalars(query))

    def _take(self, session: Session, image_id: int, annotator: str, commit: bool = True) -> bool:
        """Acquire or renew the lease atomically: an insert, or an update that only matches an
        expired lease or one this annotator holds (one statement, so two annotators racing
        for an image cannot both win). An image finished meanwhile is not taken. A write passes
        ``commit=False`` so that the renewal commits with the write itself (one durable commit)."""
        expires = utcnow() + self.lease
        try:
            session.add(LeaseRow(image_id=image_id, annotator=annotator, expires_at=expires))
            session.commit() if commit else session.flush()
        except IntegrityError:
            session.rollback()
            result = session.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.image_id == image_id,
                    (LeaseRow.annotator == annotator) | (LeaseRow.expires_at <= utcnow()),
                )
                .values(annotator=annotator, expires_at=expires)
            )
            session.commit() if commit else session.flush()
            if result.rowcount != 1:
                return False
        # Finishing deletes the lease, so an insert can follow another annotator's "image done"
        # (the caller read the image as open before that commit): give such an image back.
        if self._finished(session, image_id):
            self._drop_lease(session, image_id, annotator)
            return False
        return True

    @staticmethod
    def _finished(session: Session, image_id: int) -> bool:
        query = select(ImageRunRow.id).where(ImageRunRow.image_id == image_id)
        return session.scalar(query.limit(1)) is not None

    def _task(self, session: Session, image_id: int) -> ImageTask:
        image = session.get(ImageRow, image_id)
        lease = session.get(LeaseRow, image_id)
        assert image is not None and lease is not None
        return ImageTask(
            image_id=image.id,
            path=image.path,
            width=image.width or 0,
            height=image.height or 0,
            gear=2 if was_prefilled(session, image_id) else 1,
            split=image.split,
            expires_at=_aware(lease.expires_at),
            proposals=tuple(image_masks(session, image_id, ("proposal",))),
            accepted=tuple(
                m for m in image_masks(session, image_id, ("accepted",)) if m.annotator is not None
            ),
        )

    def _check_lease(self, session: Session, image_id: int, annotator: str) -> None:
        """Writes need the lease; an expired lease nobody took yet is renewed, not refused,
        so that work saved after a long pause is never lost."""
        if self._take(session, image_id, annotator, commit=False):
            return
        if self._finished(session, image_id):
            raise NotAllowedError(f"image {image_id} is finished already")
        raise LeaseLostError(f"image {image_id} is being annotated by someone else")

    def renew(self, annotator: str, image_id: int) -> datetime:
        """Extend this annotator's lease while they work on the image (taken again if it ran
        out and nobody else took it); the new end."""
        with self.project.session() as session:
            self._check_lease(session, image_id, annotator)
            session.commit()
            lease = session.get(LeaseRow, image_id)
            assert lease is not None
            return _aware(lease.expires_at)

    def release(self, annotator: str, image_id: int) -> None:
        """Give the image back to the queue unfinished (what was accepted stays)."""
        with self.project.session() as session:
            self._drop_lease(session, image_id, annotator)

    @staticmethod
    def _drop_lease(session: Session, image_id: int, annotator: str) -> None:
        session.execute(
            delete(LeaseRow).where(LeaseRow.image_id == image_id, LeaseRow.annotator == annotator)
        )
        session.commit()

    # -- the writes ----------------------------------------------------------------------------
    def accept(
        self,
        annotator: str,
        image_id: int,
        mask: NewMask,
        *,
        clicks: int,
        seconds: float,
        model_version_id: int | None,
        client_key: str | None = None,
        corrects_id: int | None = None,
    ) -> int:
        """Commit an accepted mask now and return its id (the same id again for a retried
        ``client_key``). ``corrects_id`` names the proposal this mask replaces."""
        with self.project.session() as session:
            if client_key is not None:
                known = session.scalar(select(MaskRow.id).where(MaskRow.client_key == client_key))
                if known is not None:
                    return known
            self._check_lease(session, image_id, annotator)
            gear = 2 if was_prefilled(session, image_id) else 1
            if corrects_id is not None:
                self._decide(session, image_id, corrects_id, "corrected")
            row = mask_row(
                image_id,
                gear,
                "accepted",
                mask,
                model_version_id=model_version_id,
                annotator=annotator,
                clicks=clicks,
                seconds=seconds,
                corrects_id=corrects_id,
                client_key=client_key,
                decided_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # the same client_key committed by a concurrent retry
                session.rollback()
                known = session.scalar(select(MaskRow.id).where(MaskRow.client_key == client_key))
                if known is None:
                    raise
                return known
            return row.id

    def _decide(self, session: Session, image_id: int, mask_id: int, status: str) -> None:
        proposal = session.get(MaskRow, mask_id)
        if proposal is None or proposal.image_id != image_id or proposal.status != "proposal":
            raise NotAllowedError(f"mask {mask_id} is not an open proposal of image {image_id}")
        proposal.status = status
        proposal.decided_at = utcnow()

    def reject(self, annotator: str, image_id: int, mask_id: int) -> None:
        """Reject a pre-filled proposal."""
        with self.project.session() as session:
            self._check_lease(session, image_id, annotator)
            self._decide(session, image_id, mask_id, "rejected")
            session.commit()

    def restore(self, annotator: str, image_id: int, mask_id: int) -> None:
        """Take back a rejection: the proposal is open again."""
        with self.project.session() as session:
            self._check_lease(session, image_id, annotator)
            row = session.get(MaskRow, mask_id)
            if row is None or row.image_id != image_id or row.status != "rejected":
                raise NotAllowedError(f"mask {mask_id} is not a rejected proposal")
            row.status, row.decided_at = "proposal", None
            session.commit()

    def undo(self, annotator: str, image_id: int, mask_id: int) -> None:
        """Take back one's own accepted mask; a proposal it corrected is open again."""
        with self.project.session() as session:
            self._check_lease(session, image_id, annotator)
            row = session.get(MaskRow, mask_id)
            if (
                row is None
                or row.image_id != image_id
                or row.status != "accepted"
                or row.annotator != annotator
            ):
                raise NotAllowedError(f"mask {mask_id} is not an accepted mask of yours")
            row.status, row.decided_at = "undone", utcnow()
            if row.corrects_id is not None:
                corrected = session.get(MaskRow, row.corrects_id)
                if corrected is not None and corrected.status == "corrected":
                    corrected.status, corrected.decided_at = "proposal", None
            session.commit()

    def finish(self, annotator: str, image_id: int, seconds: float | None = None) -> None:
        """ "Image done": open proposals count as accepted unchanged, the image leaves the
        queue (an image_run row) and the lease ends, in one transaction."""
        with self.project.session() as session:
            self._check_lease(session, image_id, annotator)
            gear = 2 if was_prefilled(session, image_id) else 1
            session.execute(
                update(MaskRow)
                .where(MaskRow.image_id == image_id, MaskRow.status == "proposal")
                .values(status="accepted", decided_at=utcnow())
            )
            mark_finished(session, image_id, gear, None, annotator=annotator, seconds=seconds)
            session.execute(delete(LeaseRow).where(LeaseRow.image_id == image_id))
            session.commit()


def mask_json(row: MaskRow) -> dict[str, Any]:
    """A stored mask as the annotation API returns it."""
    return {
        "id": row.id,
        "gear": row.gear,
        "status": row.status,
        "segmentation": {"size": [row.height, row.width], "counts": row.counts},
        "bbox": [row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h],
        "area": row.area,
        "annotator": row.annotator,
        "predicted_iou": row.predicted_iou,
        "corrects_id": row.corrects_id,
    }
