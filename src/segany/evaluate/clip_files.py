"""Clips on disk in the DAVIS layout, written and read:

    ROOT/JPEGImages/<clip>/00000.jpg ...   the frames
    ROOT/Annotations/<clip>/00000.png ...  palette-indexed label maps: 0 background, k object k
    ROOT/Videos/<clip>.mp4                 the same frames as a video (video.VideoWriter)

A clip's ``Annotations`` folder is renamed into place last, so a clip with annotations is
complete; a rerun skips it. DAVIS's void label (255) reads as a separate void mask.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.clips import Clip, ClipConfig, generate_clip
from ..video import VideoWriter

VOID_LABEL = 255
FRAME_RATE = 24


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS and PASCAL VOC masks, flat ``[r, g, b, ...]``: label ``k``
    gets the bits of ``k`` spread over the high bits of the three channels."""
    palette = []
    for label in range(256):
        red = green = blue = 0
        bits = label
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette


def _encoded(array: np.ndarray, fmt: str, palette: list[int] | None = None) -> bytes:
    image = Image.fromarray(array)
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _write_folder(target: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a fresh folder beside ``target`` and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset is for sharing
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_clip(root: str | os.PathLike[str], clip: Clip, fps: int = FRAME_RATE) -> None:
    """Write ``clip`` under ``root`` in the DAVIS layout (module docstring), annotations last."""
    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    frames = {f"{i:05d}.jpg": _encoded(f, "JPEG") for i, f in enumerate(clip.frames)}
    _write_folder(root / "JPEGImages" / clip.name, frames)
    height, width = clip.frames.shape[1:3]
    video = VideoWriter(root / "Videos" / f"{clip.name}.mp4", fps, width, height)
    try:
        for frame in clip.frames:
            video.write(frame)
    except BaseException:
        video.abort()
        raise
    video.close()
    palette = davis_palette()
    labels = clip.label_maps()
    annotations = {f"{i:05d}.png": _encoded(m, "PNG", palette) for i, m in enumerate(labels)}
    _write_folder(root / "Annotations" / clip.name, annotations)


def write_generated_clips(
    root: str | os.PathLike[str],
    seeds: range,
    config: ClipConfig = ClipConfig(),
    progress: Callable[[str], None] | None = None,
) -> int:
    """Write the clips of ``seeds`` (skipping finished ones); returns how many were new."""
    written = 0
    for seed in seeds:
        name = f"clip_{seed:08d}"
        if (Path(root) / "Annotations" / name).is_dir():
            continue
        write_clip(root, generate_clip(seed, config))
        written += 1
        if progress:
            progress(name)
    return written


@dataclass(frozen=True)
class ClipTruth:
    """A clip's ground truth read from disk: ``masks[object_id]`` ``(T, H, W)`` bool, ``void``
    ``(T, H, W)`` bool (pixels DAVIS leaves out of the scores), and where the frames are."""

    name: str
    masks: dict[int, np.ndarray]
    void: np.ndarray
    frames: Path


def read_annotations(folder: str | os.PathLike[str]) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """A folder of per-frame label PNGs -> ``({object_id: (T, H, W) bool}, void (T, H, W))``."""
    files = sorted(Path(folder).glob("*.png"))
    if not files:
        raise ValueError(f"{folder}: no annotation PNGs")
    labels = np.stack([_read_labels(f) for f in files])
    ids = [int(v) for v in np.unique(labels) if v not in (0, VOID_LABEL)]
    if not ids:
        raise ValueError(f"{folder}: the annotations hold no object")
    return {i: labels == i for i in ids}, labels == VOID_LABEL


def _read_labels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: not a label map (mode {image.mode}; expected P or L)")
        return np.asarray(image.convert("L") if image.mode == "1" else image)


def davis_clips(root: str | os.PathLike[str]) -> list[str]:
    """The clip names of a DAVIS-layout folder: the subfolders of ``Annotations``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(2, "no such folder", str(root))
    annotations = root / "Annotations"
    names = (
        sorted(p.name for p in annotations.iterdir() if p.is_dir()) if annotations.is_dir() else []
    )
    if not names:
        raise ValueError(f"{root}: no clips (expected Annotations/<clip>/00000.png ...)")
    return names


def read_clip_truth(root: str | os.PathLike[str], name: str) -> ClipTruth:
    """Clip ``name`` of a DAVIS-layout folder: its masks and its frames (the JPEGImages folder,
    else ``Videos/<name>.mp4``)."""
    root = Path(root)
    masks, void = read_annotations(root / "Annotations" / name)
    frames = root / "JPEGImages" / name
    if not frames.is_dir():
        frames = root / "Videos" / f"{name}.mp4"
    if not frames.exists():
        raise ValueError(
            f"{root}: clip {name} has annotations but no frames in JPEGImages or Videos"
        )
    return ClipTruth(name, masks, void, frames)
