"""Ground-truth masks for the simulated annotator: an SA-1B json folder or a COCO instances
file, each image matched to a project image by the SHA-256 of its bytes (the project's
identity), or by file name and size when the ground truth has no copy of the image."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from ..data.datasets import CocoInstances, Sa1bFolder
from ..formats.sa1b import read_sa1b
from .store import file_sha256, usable_images


@dataclass(frozen=True)
class TruthImage:
    """One ground-truth image: its file name, the ground truth's own copy of the image (if it
    has one), its size and a loader of its ``(M, H, W)`` bool object masks."""

    file_name: str
    image_file: Path | None
    height: int
    width: int
    load_masks: Callable[[], np.ndarray]


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _sa1b_masks(path: Path, shape: tuple[int, int]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        masks = [a.mask() for a in read_sa1b(path)[1]]
        return np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool)

    return load


def _read_sa1b_folder(folder: Path) -> list[TruthImage]:
    truths = []
    for path in Sa1bFolder(folder).files:
        info, _ = read_sa1b(path)  # a malformed file fails here, before any work is done
        shape = (int(info.height), int(info.width))
        truths.append(
            TruthImage(
                info.file_name,
                _existing(folder / info.file_name),
                *shape,
                _sa1b_masks(path, shape),
            )
        )
    return truths


def _read_coco(path: Path) -> list[TruthImage]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            dataset = CocoInstances(path, path.parent)
    except (AssertionError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a COCO instances json ({exc})") from None
    content = dataset.coco.dataset
    if not isinstance(content.get("images"), list) or not isinstance(
        content.get("annotations"), list
    ):
        raise ValueError(f"{path}: not a COCO instances json (no images or annotations list)")
    truths = []
    for index, image_id in enumerate(dataset.image_ids):
        info = dataset.coco.loadImgs(image_id)[0]
        truths.append(
            TruthImage(
                str(info["file_name"]),
                _existing(path.parent / str(info["file_name"])),
                int(info["height"]),
                int(info["width"]),
                lambda index=index: dataset.object_masks(index),
            )
        )
    return truths


def open_ground_truth(path: str | os.PathLike[str]) -> list[TruthImage]:
    """The images of an SA-1B json folder or a COCO instances json; ``ValueError`` for anything
    else (a folder of other files, a json of another format)."""
    path = Path(path)
    if path.is_dir():
        return _read_sa1b_folder(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return _read_coco(path)
    raise ValueError(
        f"{path}: not ground truth (expected a folder of SA-1B json files or a COCO "
        "instances json file)"
    )


@dataclass
class Matches:
    """Project image id -> its ground truth, and what matched nothing."""

    by_image: dict[int, TruthImage] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)


def match_ground_truth(session: Session, truths: Sequence[TruthImage]) -> Matches:
    """Pair ground-truth images with project images: by content hash when the ground truth has
    a copy of the image, else by file name when exactly one project image has that name and
    the same size. A project image claimed twice keeps the first."""
    rows = usable_images(session)
    by_hash = {row.sha256: row for row in rows}
    by_name: dict[str, list] = {}
    for row in rows:
        by_name.setdefault(Path(row.path).name, []).append(row)
    matches = Matches()
    for truth in truths:
        row = None
        if truth.image_file is not None:
            row = by_hash.get(file_sha256(truth.image_file.read_bytes()))
        if row is None:
            named = by_name.get(Path(truth.file_name).name, [])
            if len(named) == 1 and (named[0].height, named[0].width) == (
                truth.height,
                truth.width,
            ):
                row = named[0]
        if row is None or row.id in matches.by_image:
            matches.unmatched.append(truth.file_name)
        else:
            matches.by_image[row.id] = truth
    return matches
