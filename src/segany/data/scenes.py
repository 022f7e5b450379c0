"""Procedural scenes with exact instance masks: the training and test data of the bundled model.

A scene is a textured background with shapes drawn in depth order (later shapes occlude
earlier ones): polygons, ellipses, stars, rings with holes, thin bars and blobs, each with a
flat, gradient, striped or noisy texture. Some shapes carry an inner part of another colour,
so a click on the part is ambiguous between part and whole, as in SAM's multimask design.
Everything is determined by the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("polygon", "ellipse", "star", "ring", "bar", "blob")
TEXTURES = ("flat", "gradient", "stripes", "noise")


@dataclass(frozen=True)
class SceneConfig:
    """Scene size and how crowded it is. Sizes are fractions of the shorter image side."""

    height: int = 256
    width: int = 256
    min_objects: int = 3
    max_objects: int = 10
    min_size: float = 0.12
    max_size: float = 0.5
    part_probability: float = 0.35
    min_visible_pixels: int = 48
    blur_sigma: float = 0.6


@dataclass(frozen=True)
class Scene:
    """``image`` ``(H, W, 3)`` uint8; ``masks`` ``(M, H, W)`` bool visible instance masks;
    ``parents[i]`` is the index of the whole object a part belongs to, else -1."""

    image: np.ndarray
    masks: np.ndarray
    shapes: tuple[str, ...]
    parents: tuple[int, ...]


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``(H, W, 3)`` float texture: flat, gradient, stripes or smooth noise around 2 colours."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    first, second = _random_colour(rng), _random_colour(rng)
    if kind == "flat":
        return np.broadcast_to(first, (height, width, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = (xx * np.cos(angle) + yy * np.sin(angle)) / max(height, width)
    if kind == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == "stripes":
        second = first + rng.uniform(-80, 80, 3)  # stripes stay within one colour family
        period = rng.uniform(0.04, 0.2)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
    else:
        cells = int(rng.integers(3, 9))
        coarse = rng.random((cells, cells)).astype(np.float32)
        t = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t + rng.normal(0, 0.05, t.shape), 0, 1)
        second = first + rng.uniform(-90, 90, 3)
    return (first * (1 - t[..., None]) + second * t[..., None]).astype(np.float32)


def paint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``mask`` in ``image`` with a fresh texture computed over the mask's bounding box."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    texture = random_texture(rng, int(y1 - y0), int(x1 - x0))
    window, inside = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    window[inside] = texture[inside]


def _outline(rng: np.random.Generator, kind: str, radius: float) -> np.ndarray:
    """Polygon vertices ``(V, 2)`` around the origin for a shape of about ``radius``."""
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = radius * rng.uniform(0.6, 1.0, n)
    elif kind == "star":
        n = int(rng.integers(4, 8))
        angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
        radii = np.where(np.arange(2 * n) % 2 == 0, radius, radius * rng.uniform(0.35, 0.6))
    elif kind == "blob":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        harmonics = sum(
            rng.uniform(-0.18, 0.18) * np.sin(k * angles + rng.uniform(0, 2 * np.pi))
            for k in range(1, 5)
        )
        radii = radius * (0.8 + harmonics)
    else:  # ellipse, ring, bar: handled as ellipses/rectangles below
        raise ValueError(kind)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def shape_mask(
    rng: np.random.Generator, kind: str, centre: np.ndarray, radius: float, size: tuple[int, int]
) -> np.ndarray:
    """Rasterise one shape as an ``(H, W)`` bool mask."""
    height, width = size
    canvas = np.zeros((height, width), dtype=np.uint8)
    cx, cy = (int(np.rint(v)) for v in centre)
    angle = float(rng.uniform(0, 180))
    if kind in ("ellipse", "ring"):
        axes = (max(int(radius), 2), max(int(radius * rng.uniform(0.45, 1.0)), 2))
        cv2.ellipse(canvas, (cx, cy), axes, angle, 0, 360, 1, -1)
        if kind == "ring":
            hole = rng.uniform(0.35, 0.7)
            inner = (max(int(axes[0] * hole), 1), max(int(axes[1] * hole), 1))
            cv2.ellipse(canvas, (cx, cy), inner, angle, 0, 360, 0, -1)
    elif kind == "bar":
        length, thickness = 2 * radius, max(radius * rng.uniform(0.08, 0.22), 2.0)
        box = cv2.boxPoints(((cx, cy), (length, thickness), angle))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], 1)
    else:
        points = _outline(rng, kind, radius) + centre
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def random_part(
    rng: np.random.Generator,
    kind: str,
    centre: np.ndarray,
    radius: float,
    mask: np.ndarray,
    probability: float,
) -> tuple[str, np.ndarray] | None:
    """With ``probability`` (never for bars and rings), an inner part of the shape ``kind`` of
    about ``radius`` drawn at ``centre`` with the ``(H, W)`` ``mask``: the part's kind and its
    ``(H, W)`` bool mask (within ``mask``, maybe empty); else None."""
    if kind in ("bar", "ring") or rng.random() >= probability:
        return None
    part_kind = ("ellipse", "polygon", "blob")[rng.integers(3)]
    offset = rng.uniform(-0.25, 0.25, 2) * radius
    part_radius = radius * rng.uniform(0.3, 0.55)
    return part_kind, shape_mask(rng, part_kind, centre + offset, part_radius, mask.shape) & mask


def generate_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """The scene for ``seed``: same seed, same pixels and masks."""
    rng = np.random.default_rng(seed)
    height, width = config.height, config.width
    short = min(height, width)
    image = random_texture(rng, height, width)
    layers: list[tuple[np.ndarray, str, int]] = []  # (full mask, shape, parent layer index)
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        kind = SHAPES[rng.integers(len(SHAPES))]
        radius = 0.5 * short * rng.uniform(config.min_size, config.max_size)
        centre = rng.uniform([0.05 * width, 0.05 * height], [0.95 * width, 0.95 * height])
        mask = shape_mask(rng, kind, centre, radius, (height, width))
        if mask.sum() < config.min_visible_pixels:
            continue
        paint(image, mask, rng)
        whole = len(layers)
        layers.append((mask, kind, -1))
        part = random_part(rng, kind, centre, radius, mask, config.part_probability)
        if part is not None and part[1].sum() >= config.min_visible_pixels:
            part_kind, part_mask = part
            paint(image, part_mask, rng)
            layers.append((part_mask, f"part-{part_kind}", whole))
    # Visible masks, front to back: what lies in front of a layer hides it. A whole object's
    # mask includes its parts, which are painted on it rather than in front of it.
    kept: dict[int, np.ndarray] = {}
    covered = np.zeros((height, width), dtype=bool)
    for i in range(len(layers) - 1, -1, -1):
        mask, _, parent = layers[i]
        seen = mask & ~covered
        if parent < 0:
            covered = covered | mask
        if seen.sum() >= config.min_visible_pixels:
            kept[i] = seen
    order = [i for i in sorted(kept) if layers[i][2] < 0 or layers[i][2] in kept]
    remap = {i: n for n, i in enumerate(order)}
    masks = [kept[i] for i in order]
    kinds = tuple(layers[i][1] for i in order)
    parent_ids = tuple(remap.get(layers[i][2], -1) for i in order)
    image = np.clip(image, 0, 255)
    if config.blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), config.blur_sigma)
    image = np.clip(image + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)
    empty = np.zeros((0, height, width), dtype=bool)
    return Scene(image, np.stack(masks) if masks else empty, kinds, parent_ids)
