"""The project database's tables (SQLAlchemy 2 declarative), one schema for SQLite and PostgreSQL.

The migrations in ``engine/migrations`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Gears of the data engine (the paper's §4): 1 assisted-manual, 2 semi-automatic, 3 automatic.
GEARS = (1, 2, 3)

# A mask's life: gear 2 and 3 write proposals; an annotator accepts, rejects or corrects them
# (a correction is a new accepted mask that names the proposal in ``corrects_id``); "undone" is an
# accepted mask its annotator took back. Gear 3's masks are accepted as written.
MASK_STATUSES = ("proposal", "accepted", "rejected", "corrected", "undone")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class ImageRow(Base):
    """One image, known by the SHA-256 of its bytes; ``error`` says why an unreadable one is skipped."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    split: Mapped[str] = mapped_column(String(8), default="train")  # "train" | "heldout"
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersionRow(Base):
    """A model the gears ran with: the bundled one, a file, or a retrained one."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    weights: Mapped[str] = mapped_column(Text)  # a bundled model name or a weights file
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    heldout_miou: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRoundRow(Base):
    """One retrain: from ``base_id`` on the accepted masks of ``train_images`` images."""

    __tablename__ = "training_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    result_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    steps: Mapped[int] = mapped_column(Integer)
    train_images: Mapped[int] = mapped_column(Integer)
    train_masks: Mapped[int] = mapped_column(Integer)
    heldout_images: Mapped[int] = mapped_column(Integer)
    heldout_miou: Mapped[float | None] = mapped_column(Float)
    base_heldout_miou: Mapped[float | None] = mapped_column(Float)
    output: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class MaskRow(Base):
    """One mask (COCO RLE in the image's frame) and its provenance."""

    __tablename__ = "masks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    gear: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    counts: Mapped[str] = mapped_column(Text)  # compressed COCO RLE counts
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    bbox_x: Mapped[float] = mapped_column(Float)
    bbox_y: Mapped[float] = mapped_column(Float)
    bbox_w: Mapped[float] = mapped_column(Float)
    bbox_h: Mapped[float] = mapped_column(Float)
    area: Mapped[int] = mapped_column(Integer)
    predicted_iou: Mapped[float | None] = mapped_column(Float)
    stability_score: Mapped[float | None] = mapped_column(Float)
    point_coords: Mapped[list[Any] | None] = mapped_column(JSON)
    crop_box: Mapped[list[float] | None] = mapped_column(JSON)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    annotator: Mapped[str | None] = mapped_column(String(200))
    clicks: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("masks.id"))
    # Set by the writer of an interactive mask so that a retried request or a rerun of a
    # simulation never stores the same mask twice.
    client_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()


class ImageRunRow(Base):
    """An image finished by one gear: written in the same transaction as that gear's masks."""

    __tablename__ = "image_runs"
    __table_args__ = (UniqueConstraint("image_id", "gear", name="uq_image_runs_image_gear"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    gear: Mapped[int] = mapped_column(Integer)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    annotator: Mapped[str | None] = mapped_column(String(200))
    seconds: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeaseRow(Base):
    """Which annotator holds an image until when; one row per image at most."""

    __tablename__ = "leases"

    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


class SettingRow(Base):
    """Project-wide values (the project token, the images folders)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
