"""A project's accepted masks as a dataset: SA-1B shards or COCO instances.

What goes out:

* **Masks**: accepted ones (status ``accepted``) on *finished* images (an image still being
  annotated is incomplete, and a dataset's images are meant to be annotated exhaustively).
  ``gears`` keeps only masks of those gears. ``min_iou`` drops model-made masks (gear 3's and
  gear 2's proposals accepted unchanged, :func:`~segany.engine.stats.model_made`) whose
  predicted IoU is below it; masks a person drew (gear 1, gear-2 additions and corrections)
  are kept whatever their score, and so is any mask without a predicted IoU.
* **Images**: those with at least one exported mask (both formats), copied byte for byte as
  ``sa_<image id><original extension>``. An image whose file carries an EXIF rotation is
  written upright as PNG instead, since its masks are drawn in the upright frame. An image
  whose file is gone or changed (its SHA-256 differs) is skipped and reported.
* **SA-1B** (``format="sa1b"``): beside each image, ``sa_<image id>.json`` in the official
  schema; annotation ids are the project's mask ids. ``bbox`` is XYWH with the SAM convention
  (``w = x_max - x_min``, as :class:`~segany.formats.sa1b.Sa1bAnnotation` writes it),
  recomputed from the RLE. For a mask a person drew, the fields a generator fills are filled
  as for ground truth: ``predicted_iou`` and ``stability_score`` 1.0 (unless stored),
  ``crop_box`` the whole image, ``point_coords`` empty (its clicks are not stored).
* **COCO** (``format="coco"``): ``annotations.json`` (image ids = project image ids,
  annotation ids = mask ids, ``bbox`` in the COCO convention, the scores as extra keys) and an
  ``images/`` folder the ``file_name`` entries are relative to.

Streaming and crash safety: images are read a page at a time and one image's masks at a time.
Everything is written into a hidden staging folder beside ``output`` and swapped in when
complete, so a crash leaves the previous export (or none) and no half file; a rerun replaces
an earlier export whole. A non-empty ``output`` that is not a segany export is refused.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from pycocotools import mask as mask_utils
from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from ..formats.coco import CocoWriter
from ..formats.files import atomic_write_bytes, atomic_write_text
from ..formats.images import decode_image
from ..formats.pictures import png_bytes
from ..formats.sa1b import Sa1bAnnotation, Sa1bImage, write_sa1b
from .project import Project
from .schema import GEARS, ImageRow, MaskRow
from .stats import model_made
from .store import file_sha256, is_done

FORMATS = ("sa1b", "coco")
MARKER = ".segany-export"  # names a folder this module wrote (a rerun may replace it)
PAGE = 200  # images read per query
EXIF_ORIENTATION = 0x0112


@dataclass
class ExportReport:
    """What an export wrote: images, masks, and the images skipped (path, reason)."""

    output: Path
    format: str
    images: int = 0
    masks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def mask_filter(gears: Sequence[int] | None = None, min_iou: float | None = None) -> Any:
    """SQL condition: the masks an export with these filters writes (finished images aside)."""
    condition = MaskRow.status == "accepted"
    if gears:
        unknown = sorted(set(gears) - set(GEARS))
        if unknown:
            raise ValueError(f"no gear {unknown[0]} (gears are 1, 2 and 3)")
        condition = condition & MaskRow.gear.in_(sorted(set(gears)))
    if min_iou is not None:
        if not -1e9 < min_iou < 1e9:  # NaN and infinities fail too
            raise ValueError(f"--min-iou {min_iou}: expected a number such as 0.88")
        condition = condition & (
            ~model_made() | MaskRow.predicted_iou.is_(None) | (MaskRow.predicted_iou >= min_iou)
        )
    return condition


def _images(session: Session, condition: Any) -> Iterator[ImageRow]:
    """Finished images with at least one mask matching ``condition``, by id, a page at a time."""
    last = 0
    while True:
        query: Select[tuple[ImageRow]] = (
            select(ImageRow)
            .where(
                ImageRow.id > last,
                is_done(ImageRow.id),
                exists().where(MaskRow.image_id == ImageRow.id, condition),
            )
            .order_by(ImageRow.id)
            .limit(PAGE)
        )
        page = session.scalars(query).all()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].id


def _masks(session: Session, image_id: int, condition: Any) -> Sequence[MaskRow]:
    query = select(MaskRow).where(MaskRow.image_id == image_id, condition).order_by(MaskRow.id)
    return session.scalars(query).all()


def image_file(row: ImageRow) -> tuple[bytes, str]:
    """The bytes to export for an image and their extension: the file as it is, or upright as
    PNG when it carries an EXIF rotation. ``ValueError`` when the file is gone or changed."""
    try:
        data = Path(row.path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror or exc})") from None
    if file_sha256(data) != row.sha256:
        raise ValueError("the file changed since it was added (its SHA-256 differs)")
    with Image.open(io.BytesIO(data)) as image:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in (0, 1):
        return data, Path(row.path).suffix.lower()
    return png_bytes(decode_image(data, label=row.path, formats=None)), ".png"


def _rle(row: MaskRow) -> dict[str, Any]:
    return {"size": [row.height, row.width], "counts": row.counts}


def _area(row: MaskRow) -> int:
    """Foreground pixels, from the RLE (the one source of truth for every derived field)."""
    return int(mask_utils.area({"size": [row.height, row.width], "counts": row.counts.encode()}))


def _coco_box(row: MaskRow) -> list[float]:
    """XYWH in the COCO convention (``w`` = columns covered), from the RLE."""
    rle = {"size": [row.height, row.width], "counts": row.counts.encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(rle)]


def _sam_box(row: MaskRow) -> list[int]:
    """XYWH in the SAM/SA-1B convention (``w = x_max - x_min``); zeros for an empty mask."""
    x, y, w, h = (int(round(v)) for v in _coco_box(row))
    return [x, y, w - 1, h - 1] if w and h else [0, 0, 0, 0]


def sa1b_annotation(row: MaskRow) -> Sa1bAnnotation:
    """The SA-1B record of a stored mask (ground-truth defaults for what a person drew)."""
    crop = row.crop_box or [0, 0, row.width, row.height]
    return Sa1bAnnotation(
        id=row.id,
        segmentation=_rle(row),
        bbox=_sam_box(row),
        area=_area(row),
        predicted_iou=1.0 if row.predicted_iou is None else row.predicted_iou,
        stability_score=1.0 if row.stability_score is None else row.stability_score,
        crop_box=[int(round(v)) for v in crop],
        point_coords=[[float(v) for v in p] for p in row.point_coords or []],
    )


def coco_record(row: MaskRow) -> dict[str, Any]:
    """A stored mask as a record for :class:`~segany.formats.coco.CocoWriter` (scores only
    where stored)."""
    record: dict[str, Any] = {"segmentation": _rle(row), "bbox": _coco_box(row), "area": _area(row)}
    for key in ("predicted_iou", "stability_score", "point_coords", "crop_box"):
        if getattr(row, key) is not None:
            record[key] = getattr(row, key)
    return record


# -- the folder ------------------------------------------------------------------------------
def _staging(output: Path) -> Path:
    """A fresh hidden folder beside ``output``, after checking ``output`` may be replaced."""
    if output.exists():
        if not output.is_dir():
            raise ValueError(f"{output}: exists and is not a folder")
        if any(output.iterdir()) and not (output / MARKER).is_file():
            raise ValueError(
                f"{output}: not empty and not a segany export; choose a new or empty folder"
            )
    staging = output.with_name(f".{output.name}.partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        for stale in (staging, output.with_name(f".{output.name}.old")):  # a crashed run's
            shutil.rmtree(stale, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise ValueError(f"cannot write {output}: {exc.strerror or exc}") from None
    return staging


def _publish(staging: Path, output: Path, manifest: dict[str, Any]) -> None:
    """Mark the staging folder as an export and put it where ``output`` was."""
    atomic_write_text(staging / MARKER, json.dumps(manifest, indent=2) + "\n")
    old = output.with_name(f".{output.name}.old")
    if output.exists():
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)


def _write_images(
    session: Session, condition: Any, folder: Path, report: ExportReport
) -> Iterator[tuple[ImageRow, str, Sequence[MaskRow]]]:
    """Copy each exported image into ``folder``; yields it, its file name and its masks."""
    for image in _images(session, condition):
        try:
            data, extension = image_file(image)
        except ValueError as exc:
            report.skipped.append((image.path, str(exc)))
            continue
        name = f"sa_{image.id}{extension}"
        atomic_write_bytes(folder / name, data)
        masks = _masks(session, image.id, condition)
        report.images += 1
        report.masks += len(masks)
        yield image, name, masks


def _write_sa1b(session: Session, condition: Any, folder: Path, report: ExportReport) -> None:
    for image, name, masks in _write_images(session, condition, folder, report):
        info = Sa1bImage(image.id, image.width or 0, image.height or 0, name)
        write_sa1b(folder / f"sa_{image.id}.json", info, [sa1b_annotation(m) for m in masks])


def _write_coco(session: Session, condition: Any, folder: Path, report: ExportReport) -> None:
    (folder / "images").mkdir()
    with CocoWriter(folder / "annotations.json") as writer:
        for image, name, masks in _write_images(session, condition, folder / "images", report):
            records = [(m.id, coco_record(m)) for m in masks]
            writer.add_image(image.id, name, image.height or 0, image.width or 0, records)


def export_project(
    project: Project,
    output: str | os.PathLike[str],
    format: str = "sa1b",
    gears: Sequence[int] | None = None,
    min_iou: float | None = None,
) -> ExportReport:
    """Write the project's accepted masks to ``output`` (see the module's docstring)."""
    if format not in FORMATS:
        raise ValueError(f"export format {format!r}: expected one of {', '.join(FORMATS)}")
    condition = mask_filter(gears, min_iou)
    target = Path(output).resolve()
    staging = _staging(target)
    report = ExportReport(target, format)
    try:
        with project.session() as session:
            write = _write_sa1b if format == "sa1b" else _write_coco
            write(session, condition, staging, report)
        manifest = {
            "segany_export": 1,
            "project": str(Path(project.path).resolve()),
            "format": format,
            "gears": sorted(set(gears)) if gears else None,
            "min_iou": min_iou,
            "images": report.images,
            "masks": report.masks,
            "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        }
        _publish(staging, target, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
