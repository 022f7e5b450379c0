"""Small inputs for the data engine's tests: image folders and masks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from segany.engine import NewMask


def write_images(folder: Path, count: int, size: tuple[int, int] = (24, 32), seed: int = 0):
    """``count`` distinct random PNGs ``img_000.png`` … of ``size`` (H, W); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, in a few dozen bytes (what a
    decompression bomb looks like from its header): IHDR, one tiny IDAT, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def blob(height: int, width: int, seed: int) -> NewMask:
    """A filled ellipse somewhere in an ``(height, width)`` image, with scores."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    ry, rx = rng.uniform(0.05, 0.2) * height + 1, rng.uniform(0.05, 0.2) * width + 1
    yy, xx = np.mgrid[0:height, 0:width]
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return NewMask.from_mask(
        mask,
        predicted_iou=float(rng.uniform(0.8, 1)),
        stability_score=float(rng.uniform(0.9, 1)),
        point_coords=[[float(cx), float(cy)]],
        crop_box=[0.0, 0.0, float(width), float(height)],
    )
