"""The retrain loop: fine-tune the project's model on the masks people made or verified, score
the old and the new model on the held-out images, and register the new version (which later
gears then use).

Training data are the accepted masks of gears 1 and 2 on ``train`` images: masks a person drew
(gear 1, gear-2 corrections and additions) or looked at and left (gear-2 proposals accepted
unchanged), as the paper retrained on the newly annotated masks during those gears. Gear 3's
masks are the model's own output without review and are left out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..checkpoints import load
from ..data.datasets import MaskSample
from ..evaluate.protocol import evaluate
from ..formats.images import read_image
from ..formats.sa1b import Sa1bAnnotation, Sa1bImage, write_sa1b
from ..inference.predictor import Predictor
from ..modeling.sam import Sam
from ..train import TrainConfig, Trainer
from .models import load_gear_model
from .project import Project
from .schema import ImageRow, MaskRow, TrainingRoundRow, utcnow
from .store import register_model, row_mask, row_rle

HUMAN_GEARS = (1, 2)
HELDOUT_CLICKS = (1, 5)  # the held-out mIoU stored is the 1-click one, the paper's headline
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class RetrainResult:
    """The new version and the figures of its training round."""

    version_id: int
    name: str
    weights: str
    base_id: int
    steps: int
    train_images: int
    train_masks: int
    heldout_images: int
    heldout_masks: int
    heldout_miou: dict[int, float] | None  # clicks -> mIoU; None without held-out masks
    base_heldout_miou: dict[int, float] | None


def accepted_masks(session: Session, split: str) -> dict[ImageRow, list[MaskRow]]:
    """The accepted gear-1/2 masks of each readable ``split`` image that has any."""
    query = (
        select(ImageRow, MaskRow)
        .join(MaskRow, MaskRow.image_id == ImageRow.id)
        .where(
            ImageRow.split == split,
            ImageRow.error.is_(None),
            MaskRow.status == "accepted",
            MaskRow.gear.in_(HUMAN_GEARS),
            MaskRow.area > 0,
        )
        .order_by(ImageRow.id, MaskRow.id)
    )
    grouped: dict[ImageRow, list[MaskRow]] = {}
    for image, mask in session.execute(query):
        grouped.setdefault(image, []).append(mask)
    return grouped


def _stored_upright(path: Path) -> bool:
    """Whether the file's pixels are stored upright (no EXIF rotation), so that a dataset
    reader, which keeps the stored orientation, sees the frame the masks were drawn in."""
    with Image.open(path) as image:
        return image.getexif().get(EXIF_ORIENTATION, 1) == 1


def _place_image(source: Path, folder: Path, stem: str) -> str:
    """Link the image into the training folder (or write its upright pixels when stored
    rotated); returns its file name there."""
    if _stored_upright(source):
        name = stem + source.suffix.lower()
        target = folder / name
        target.unlink(missing_ok=True)
        try:
            target.symlink_to(source.resolve())
        except OSError:  # no symlinks here (some filesystems): a copy
            target.write_bytes(source.read_bytes())
        return name
    name = stem + ".png"
    Image.fromarray(read_image(source)).save(folder / name)
    return name


def write_training_set(folder: Path, images: dict[ImageRow, list[MaskRow]]) -> tuple[int, int]:
    """An SA-1B folder of the images and their masks (what the trainer reads); returns
    (images, masks) written. Images whose file is gone are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    written = masks = 0
    for image, rows in images.items():
        source = Path(image.path)
        if not source.is_file():
            continue
        name = _place_image(source, folder, f"{image.id:08d}")
        records = [
            Sa1bAnnotation(
                id=row.id,
                segmentation=row_rle(row),
                bbox=[row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h],  # type: ignore[list-item]
                area=row.area,
            )
            for row in rows
        ]
        info = Sa1bImage(image.id, image.width or 0, image.height or 0, name)
        write_sa1b(folder / f"{image.id:08d}.json", info, records)
        written, masks = written + 1, masks + len(rows)
    return written, masks


class HeldoutSamples(Sequence[MaskSample]):
    """The held-out images with their accepted masks, read one at a time (images whose file
    is gone are left out)."""

    def __init__(self, images: dict[ImageRow, list[MaskRow]]) -> None:
        self.items = [
            (image.path, image.id, rows)
            for image, rows in images.items()
            if Path(image.path).is_file()
        ]
        self.masks = sum(len(rows) for _, _, rows in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MaskSample:  # type: ignore[override]
        path, image_id, rows = self.items[index]
        return MaskSample(read_image(path), np.stack([row_mask(r) for r in rows]), str(image_id))


def heldout_miou(model: Sam, samples: Sequence[MaskSample]) -> dict[int, float] | None:
    """mIoU of the zero-shot point protocol after each of ``HELDOUT_CLICKS`` clicks."""
    if len(samples) == 0:
        return None
    model.eval()
    report = evaluate(Predictor(model), {"heldout": samples}, HELDOUT_CLICKS, progress=False)
    return {k: report.miou(k) for k in report.clicks}


def fine_tune_config(data: Path, output: Path, init: str, steps: int, device: str) -> TrainConfig:
    """A short fine-tune of a trained model: a tenth of the from-scratch learning rate, a
    short warm-up, layer-wise decay, checkpoints often enough to resume a killed run."""
    return TrainConfig(
        data=[str(data)],
        output=str(output),
        init=init,
        steps=steps,
        batch_size=2,
        max_masks=16,
        lr=1e-4,
        layer_decay=0.8,
        warmup_steps=min(50, steps // 10),
        device=device,
        checkpoint_every=50,
        log_every=max(1, steps // 10),
    )


def version_name(output: Path) -> str:
    """A readable, unique name for the model written to ``output``."""
    digest = hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:8]
    return f"{output.name[:150]}-{digest}"


def _check_output(session: Session, output: Path) -> None:
    done = session.scalar(
        select(func.count(TrainingRoundRow.id)).where(
            TrainingRoundRow.output == str(output.resolve()),
            TrainingRoundRow.finished_at.is_not(None),
        )
    )
    if done:
        raise ValueError(
            f"{output}: a finished training round is there already; choose a new --output"
        )


# long: the round's steps in order, each one line or two
def retrain(
    project: Project,
    output: str | os.PathLike[str],
    *,
    init: str | None = None,
    steps: int = 200,
    device: str = "cpu",
    progress: bool = False,
) -> RetrainResult:
    """One retrain round: fine-tune ``init`` (default: the project's newest version) on the
    accepted masks of train images, write ``output/model.safetensors``, score base and new
    model on the held-out images and register the new version with a training-round row.
    A run killed midway resumes from ``output/last.pt``."""
    if steps < 1:
        raise ValueError(f"--steps {steps}: expected at least 1")
    output = Path(output)
    started = utcnow()
    with project.session() as session:
        _check_output(session, output)
        train = accepted_masks(session, "train")
        heldout = accepted_masks(session, "heldout")
    if not train:
        held = " (only held-out images have some)" if heldout else ""
        raise ValueError(f"{project.path}: no accepted gear-1/2 masks to train on{held}")
    base_model, base = load_gear_model(project, init, device=device)
    train_images, train_masks = write_training_set(output / "data", train)
    if not train_images:
        raise ValueError(f"{project.path}: the images with accepted masks are missing on disk")
    samples = HeldoutSamples(heldout)
    base_miou = heldout_miou(base_model, samples)
    del base_model
    config = fine_tune_config(output / "data", output, base.weights, steps, device)
    Trainer(config, progress=progress).train()
    weights = output / "model.safetensors"
    new_miou = heldout_miou(load(str(weights), device=device), samples)
    with project.session() as session:
        version = register_model(
            session,
            weights=str(weights.resolve()),
            name=version_name(output),
            parent_id=base.id,
            heldout_miou=None if new_miou is None else new_miou[1],
        )
        session.add(
            TrainingRoundRow(
                base_id=base.id,
                result_id=version.id,
                steps=steps,
                train_images=train_images,
                train_masks=train_masks,
                heldout_images=len(samples),
                heldout_miou=None if new_miou is None else new_miou[1],
                base_heldout_miou=None if base_miou is None else base_miou[1],
                output=str(output.resolve()),
                started_at=started,
                finished_at=utcnow(),
            )
        )
        session.commit()
        return RetrainResult(
            version.id,
            version.name,
            version.weights,
            base.id,
            steps,
            train_images,
            train_masks,
            len(samples),
            samples.masks,
            new_miou,
            base_miou,
        )
