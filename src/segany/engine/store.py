"""Reads and writes of the project store that every gear shares: images by content hash, model
versions, and masks written with their image's run in one transaction (so that a crash loses
nothing committed and a rerun duplicates nothing)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..formats.boxes import mask_bbox_xywh
from ..formats.images import COMMON_FORMATS, decode_image, list_images
from ..formats.rle import decode_coco_rle, encode_coco_rle
from .schema import ImageRow, ImageRunRow, MaskRow, ModelVersionRow

# Images over this many pixels are recorded as unreadable: the gears would spend minutes on
# one, and PIL's decompression-bomb guard sits near here anyway.
MAX_IMAGE_PIXELS = 64_000_000
HELDOUT_EVERY = 10  # one image in ten (by hash) is held out from retraining


@dataclass(frozen=True)
class NewMask:
    """A mask to store: compressed COCO RLE in the image's frame, its box and scores.

    The box is XYWH in SAM's convention (as SA-1B and gear 3 write it: ``w = x1 - x0`` of the
    extreme pixel indices, one less than COCO's pixel-count width)."""

    rle: dict[str, Any]
    bbox: tuple[float, float, float, float]
    area: int
    predicted_iou: float | None = None
    stability_score: float | None = None
    point_coords: list[list[float]] | None = None
    crop_box: list[float] | None = None

    @classmethod
    def from_mask(cls, mask: np.ndarray, **scores: Any) -> NewMask:
        """From an ``(H, W)`` bool mask."""
        bbox = tuple(float(v) for v in mask_bbox_xywh(mask))
        return cls(encode_coco_rle(mask), bbox, int(np.count_nonzero(mask)), **scores)  # type: ignore[arg-type]

    @classmethod
    def from_record(cls, record: Any) -> NewMask:
        """From a :class:`~segany.formats.sa1b.Sa1bAnnotation` (a gear-3 result)."""
        return cls(
            rle=record.segmentation,
            bbox=tuple(float(v) for v in record.bbox),  # type: ignore[arg-type]
            area=int(record.area),
            predicted_iou=float(record.predicted_iou),
            stability_score=float(record.stability_score),
            point_coords=[list(map(float, p)) for p in record.point_coords],
            crop_box=[float(v) for v in record.crop_box],
        )


def mask_row(image_id: int, gear: int, status: str, mask: NewMask, **provenance: Any) -> MaskRow:
    counts = mask.rle["counts"]
    height, width = mask.rle["size"]
    return MaskRow(
        image_id=image_id,
        gear=gear,
        status=status,
        counts=counts.decode() if isinstance(counts, bytes) else counts,
        height=int(height),
        width=int(width),
        bbox_x=mask.bbox[0],
        bbox_y=mask.bbox[1],
        bbox_w=mask.bbox[2],
        bbox_h=mask.bbox[3],
        area=mask.area,
        predicted_iou=mask.predicted_iou,
        stability_score=mask.stability_score,
        point_coords=mask.point_coords,
        crop_box=mask.crop_box,
        **provenance,
    )


def row_rle(row: MaskRow) -> dict[str, Any]:
    return {"size": [row.height, row.width], "counts": row.counts}


def row_mask(row: MaskRow) -> np.ndarray:
    """The ``(H, W)`` bool mask of a stored row."""
    return decode_coco_rle(row_rle(row))


# -- images ----------------------------------------------------------------------------------
@dataclass
class AddReport:
    added: int = 0
    known: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_images(session: Session, folder: str | os.PathLike[str]) -> AddReport:
    """Add every image file in ``folder`` not already in the project (by content hash), one
    commit per image; unreadable or oversized files are recorded with the reason."""
    report = AddReport()
    for path in list_images(folder):
        add_image_file(session, path, report)
    return report


def add_image_file(session: Session, path: Path, report: AddReport | None = None) -> ImageRow:
    """The project's row of the image file at ``path``: added (one commit) unless its bytes
    are known already; ``report`` counts what happened."""
    report = report if report is not None else AddReport()
    data = path.read_bytes()
    digest = file_sha256(data)
    known = session.scalar(select(ImageRow).where(ImageRow.sha256 == digest))
    if known is not None:
        report.known += 1
        return known
    row = ImageRow(sha256=digest, path=str(path.resolve()), split=split_for(digest))
    try:
        pixels = decode_image(
            data, label=str(path), max_pixels=MAX_IMAGE_PIXELS, formats=COMMON_FORMATS
        )
        row.height, row.width = pixels.shape[:2]
    except ValueError as exc:
        row.error = str(exc)
        report.unreadable.append((str(path), str(exc)))
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another process added the same bytes a moment ago
        session.rollback()
        report.known += 1
        known = session.scalar(select(ImageRow).where(ImageRow.sha256 == digest))
        assert known is not None
        return known
    if row.error is None:
        report.added += 1
    return row


def split_for(digest: str) -> str:
    """Held-out or train, fixed by the hash so that every copy of the project agrees."""
    return "heldout" if int(digest[:8], 16) % HELDOUT_EVERY == 0 else "train"


def usable_images(session: Session) -> Sequence[ImageRow]:
    return session.scalars(
        select(ImageRow).where(ImageRow.error.is_(None)).order_by(ImageRow.id)
    ).all()


def is_done(image_id: Any) -> Any:
    """SQL condition: the image was finished by some gear."""
    return exists().where(ImageRunRow.image_id == image_id)


def pending_images(
    session: Session, *, after: int = 0, limit: int | None = None
) -> Sequence[ImageRow]:
    """Readable images no gear has finished, in the order they were added; a page of them
    with ``after`` (an image id) and ``limit``."""
    query = (
        select(ImageRow)
        .where(ImageRow.error.is_(None), ~is_done(ImageRow.id), ImageRow.id > after)
        .order_by(ImageRow.id)
        .limit(limit)
    )
    return session.scalars(query).all()


# -- model versions --------------------------------------------------------------------------
def register_model(
    session: Session,
    weights: str,
    name: str | None = None,
    parent_id: int | None = None,
    heldout_miou: float | None = None,
) -> ModelVersionRow:
    """The version row for ``weights`` (a bundled name or a file), created on first use."""
    name = name or weights
    row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
    if row is not None:
        return row
    row = ModelVersionRow(
        name=name, weights=weights, parent_id=parent_id, heldout_miou=heldout_miou
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # registered by another process meanwhile
        session.rollback()
        row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
        assert row is not None
    return row


def newest_model(session: Session) -> ModelVersionRow | None:
    """The most recently registered version: what later gears use unless told otherwise."""
    return session.scalar(select(ModelVersionRow).order_by(ModelVersionRow.id.desc()).limit(1))


# -- masks -----------------------------------------------------------------------------------
def gear_finished(session: Session, image_id: int, gear: int) -> bool:
    """Whether ``gear`` has finished the image already (its image_run row exists)."""
    query = select(ImageRunRow.id).where(ImageRunRow.image_id == image_id, ImageRunRow.gear == gear)
    return session.scalar(query) is not None


def mark_finished(
    session: Session,
    image_id: int,
    gear: int,
    model_version_id: int | None,
    *,
    annotator: str | None = None,
    seconds: float | None = None,
) -> None:
    """Add the image_run row saying ``gear`` finished the image (the caller commits)."""
    session.add(
        ImageRunRow(
            image_id=image_id,
            gear=gear,
            model_version_id=model_version_id,
            annotator=annotator,
            seconds=seconds,
        )
    )


def write_image_result(
    session: Session,
    image_id: int,
    gear: int,
    masks: Iterable[NewMask],
    model_version_id: int | None,
    *,
    annotator: str | None = None,
    seconds: float | None = None,
) -> bool:
    """Store one gear's masks for an image and mark it finished, atomically; False (and nothing
    written) when that gear had finished it already."""
    if gear_finished(session, image_id, gear):
        return False
    status = "accepted"
    session.add_all(
        mask_row(image_id, gear, status, m, model_version_id=model_version_id, annotator=annotator)
        for m in masks
    )
    mark_finished(session, image_id, gear, model_version_id, annotator=annotator, seconds=seconds)
    try:
        session.commit()
    except IntegrityError:  # the same image finished by another worker meanwhile
        session.rollback()
        return False
    return True


def write_proposals(
    session: Session, image_id: int, masks: Sequence[NewMask], model_version_id: int | None
) -> bool:
    """Gear 2's pre-filled masks for an image, once: False when it has proposals already."""
    rows = [
        mask_row(
            image_id,
            2,
            "proposal",
            m,
            model_version_id=model_version_id,
            client_key=f"prefill:{image_id}:{i}",
        )
        for i, m in enumerate(masks)
    ]
    if not rows or was_prefilled(session, image_id):
        return False
    session.add_all(rows)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def is_prefilled(image_id: Any) -> Any:
    """SQL condition: gear 2 pre-filled the image (masks of gear 2 written by no annotator)."""
    return exists().where(
        MaskRow.image_id == image_id, MaskRow.gear == 2, MaskRow.annotator.is_(None)
    )


def was_prefilled(session: Session, image_id: int) -> bool:
    query = select(MaskRow.id).where(
        MaskRow.image_id == image_id, MaskRow.gear == 2, MaskRow.annotator.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def image_masks(session: Session, image_id: int, statuses: Sequence[str]) -> Sequence[MaskRow]:
    query = (
        select(MaskRow)
        .where(MaskRow.image_id == image_id, MaskRow.status.in_(statuses))
        .order_by(MaskRow.id)
    )
    return session.scalars(query).all()


def count_masks(session: Session) -> int:
    return session.scalar(select(func.count(MaskRow.id))) or 0
