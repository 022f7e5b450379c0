"""Reading images for the model: any common file to ``(H, W, 3)`` uint8 RGB, EXIF orientation
applied, grayscale/RGBA/palette/16-bit/CMYK converted; every failure a clear ``ValueError``.

:func:`read_image` reads a file, :func:`decode_image` bytes already in memory (an upload);
both share the same checks. The failures a server maps to distinct status codes are
``ValueError`` subclasses: :class:`NotAnImageError` and :class:`ImageTooLargeError`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# PIL format names of the suffixes above: what an untrusted upload may be (PIL also opens
# formats that call external programs, such as EPS, which must never see untrusted bytes).
COMMON_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")


class NotAnImageError(ValueError):
    """The bytes are not an image of a supported format."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than allowed (decompression bombs included)."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # transparency: drop alpha, keep colours
    return image.convert("RGB")


def _decode(
    source: str | os.PathLike[str] | IO[bytes],
    label: str,
    max_pixels: int | None,
    formats: Sequence[str] | None,
    upright: bool = True,
) -> np.ndarray:
    """The shared decoder: header first (pixel count checked before any decoding), then the
    pixels, upright and RGB."""
    limits = [v for v in (max_pixels, Image.MAX_IMAGE_PIXELS) if v is not None]
    limit = int(min(limits)) if limits else None  # PIL's own bomb check stays in force
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=list(formats) if formats else None) as image:
                if limit is not None and image.width * image.height > limit:
                    raise Image.DecompressionBombError(image.width * image.height)
                image.load()
                if upright:
                    image = ImageOps.exif_transpose(image) or image
                return np.array(_to_rgb(image))
    except UnidentifiedImageError:
        raise NotAnImageError(f"{label}: not an image file (or an unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"{label}: too many pixels (over {limit or 0:,}); refusing to decode"
        ) from None
    except PermissionError:
        raise ValueError(f"{label}: permission denied") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{label}: unreadable or truncated image ({exc})") from None


def read_image(path: str | os.PathLike[str], *, upright: bool = True) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an image file, upright per its EXIF orientation (or,
    with ``upright=False``, as stored: the frame dataset annotations are drawn in)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image")
    return _decode(path, str(path), None, None, upright)


def decode_image(
    data: bytes,
    *,
    label: str = "upload",
    max_pixels: int | None = None,
    formats: Sequence[str] | None = COMMON_FORMATS,
) -> np.ndarray:
    """:func:`read_image` for bytes in memory (an upload): only ``formats`` are tried, and an
    image over ``max_pixels`` (default: PIL's bomb limit) is refused from its header alone."""
    if not data:
        raise NotAnImageError(f"{label}: empty; expected an image file")
    return _decode(io.BytesIO(data), label, max_pixels, formats)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
