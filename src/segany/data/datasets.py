"""Datasets of images with instance masks: SA-1B folders, COCO instance files and generated
scenes, all read as the same :class:`MaskSample`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats.images import read_image
from ..formats.sa1b import read_sa1b
from .scenes import SceneConfig, generate_scene

GENERATED_PREFIX = "generated:"


@dataclass(frozen=True)
class MaskSample:
    """An ``(H, W, 3)`` uint8 RGB image and its ``(M, H, W)`` bool instance masks."""

    image: np.ndarray
    masks: np.ndarray
    image_id: str


class Sa1bFolder(Sequence[MaskSample]):
    """A folder of SA-1B json files, each naming its image file in the same folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a folder of SA-1B json files")
        self.files = sorted(self.root.glob("*.json"))
        if not self.files:
            raise ValueError(f"{self.root}: holds no SA-1B json files")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> MaskSample:  # type: ignore[override]
        info, annotations = read_sa1b(self.files[index])
        image = read_image(self.root / info.file_name, upright=False)
        masks = [a.mask() for a in annotations]
        stacked = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), dtype=bool)
        return MaskSample(image, stacked, str(info.image_id))


class CocoInstances(Sequence[MaskSample]):
    """COCO instance annotations (polygons or RLE, crowd regions skipped) via pycocotools."""

    def __init__(
        self, annotation_file: str | os.PathLike[str], image_dir: str | os.PathLike[str]
    ) -> None:
        from pycocotools.coco import COCO

        self.coco = COCO(str(annotation_file))
        self.image_dir = Path(image_dir)
        self.image_ids = sorted(self.coco.getImgIds())

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> MaskSample:  # type: ignore[override]
        info = self.coco.loadImgs(self.image_ids[index])[0]
        image = read_image(self.image_dir / info["file_name"], upright=False)
        return MaskSample(image, self.object_masks(index), str(info["id"]))

    def object_masks(self, index: int) -> np.ndarray:
        """The ``(M, H, W)`` bool masks of image ``index`` without reading the image."""
        image_id = self.image_ids[index]
        info = self.coco.loadImgs(image_id)[0]
        ann_ids = self.coco.getAnnIds(imgIds=image_id, iscrowd=False)
        masks = [self.coco.annToMask(a).astype(bool) for a in self.coco.loadAnns(ann_ids)]
        shape = (int(info["height"]), int(info["width"]))
        return np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool)


class GeneratedScenes(Sequence[MaskSample]):
    """Scenes ``seed_start .. seed_start + count - 1`` made on the fly."""

    def __init__(self, seed_start: int, count: int, config: SceneConfig = SceneConfig()) -> None:
        self.seed_start, self.count, self.config = seed_start, count, config

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> MaskSample:  # type: ignore[override]
        if not 0 <= index < self.count:
            raise IndexError(index)
        seed = self.seed_start + index
        scene = generate_scene(seed, self.config)
        return MaskSample(scene.image, scene.masks, f"scene-{seed}")


def open_dataset(spec: str, images: str | None = None) -> Sequence[MaskSample]:
    """``generated:START:COUNT``, a folder of SA-1B json, or a COCO json (with ``images``)."""
    if spec.startswith(GENERATED_PREFIX):
        try:
            start, count = (int(v) for v in spec[len(GENERATED_PREFIX) :].split(":"))
        except ValueError:
            raise ValueError(f"{spec!r}: expected generated:START:COUNT") from None
        return GeneratedScenes(start, count)
    path = Path(spec)
    if path.is_dir():
        return Sa1bFolder(path)
    if path.suffix == ".json" and path.is_file():
        if images is None:
            raise ValueError(f"{spec}: a COCO annotation file needs the image folder too")
        return CocoInstances(path, images)
    raise ValueError(
        f"{spec}: not a dataset (expected a folder of SA-1B json files, a COCO json file, "
        "or generated:START:COUNT)"
    )
