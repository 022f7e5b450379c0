"""Reading images for the model: any common file to ``(H, W, 3)`` uint8 RGB, EXIF orientation
applied, grayscale/RGBA/palette/16-bit/CMYK converted; every failure a clear ``ValueError``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # transparency: drop alpha, keep colours
    return image.convert("RGB")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an image file, upright per its EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                upright = ImageOps.exif_transpose(image) or image
                return np.array(_to_rgb(upright))
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file (or an unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"{path}: too many pixels (over {Image.MAX_IMAGE_PIXELS:,}); refusing to decode"
        ) from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: unreadable or truncated image ({exc})") from None


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
