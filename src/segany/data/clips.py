"""Procedural video clips with exact per-frame object masks: the video tracker's test data.

Each object is a shape of the scene generator (:mod:`segany.data.scenes`, the same outlines,
textures and inner parts), drawn once as a sprite and then moved, scaled and rotated frame by
frame over a textured background with a few static distractor shapes. Objects keep their depth
order, so they pass in front of and behind each other; some leave the frame and come back. The
masks are the visible parts (what lies in front hides the rest), computed from the same warped
sprite masks that decide which pixels each object paints, so they are exact. Every object is
visible on frame 0. Everything is determined by the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# the scene generator's drawing helpers, so that clips and training scenes draw shapes, parts
# and textures with one code
from .scenes import SHAPES, paint, random_part, random_texture, shape_mask

CLIPS_PREFIX = "clips:"


@dataclass(frozen=True)
class ClipConfig:
    """Clip size and motion. Sizes are fractions of the shorter side; ``rotation`` is the most
    degrees an object turns per frame; ``scale_change`` the most its size departs from 1."""

    height: int = 256
    width: int = 320
    frames: int = 24
    min_objects: int = 2
    max_objects: int = 4
    min_size: float = 0.18
    max_size: float = 0.4
    distractors: int = 3
    part_probability: float = 0.35
    leave_probability: float = 0.3
    speed: float = 0.015
    rotation: float = 4.0
    scale_change: float = 0.35
    min_visible_pixels: int = 64
    blur_sigma: float = 0.6
    noise_sigma: float = 3.0


@dataclass(frozen=True)
class Sprite:
    """One object drawn about the centre of its own square canvas: ``colour`` ``(S, S, 3)``
    float32 (texture everywhere, so resampling never blends in black), ``mask`` ``(S, S)``
    bool; ``reach`` is the farthest mask pixel from the centre, in pixels."""

    colour: np.ndarray
    mask: np.ndarray
    kind: str
    reach: float


@dataclass(frozen=True)
class Motion:
    """Per frame ``t``: ``centre[t]`` (x, y) in frame pixels, ``scale[t]``, ``angle[t]`` in
    degrees (counter-clockwise, as OpenCV)."""

    centre: np.ndarray
    scale: np.ndarray
    angle: np.ndarray


@dataclass(frozen=True)
class ClipScript:
    """What a clip shows, before rendering: the background and the objects back to front."""

    seed: int
    config: ClipConfig
    background: np.ndarray
    sprites: tuple[Sprite, ...]
    motions: tuple[Motion, ...]


@dataclass(frozen=True)
class Clip:
    """``frames`` ``(T, H, W, 3)`` uint8 RGB; ``masks[object_id]`` ``(T, H, W)`` bool visible
    masks, ids ``1..N`` back to front (the DAVIS label values); ``kinds[object_id]`` the shape."""

    name: str
    frames: np.ndarray
    masks: dict[int, np.ndarray]
    kinds: dict[int, str]

    def first_visible(self, object_id: int) -> int:
        """The first frame where the object shows (frame 0 for generated clips)."""
        return int(np.flatnonzero(self.masks[object_id].any(axis=(1, 2)))[0])

    def label_maps(self) -> np.ndarray:
        """``(T, H, W)`` uint8: 0 background, else the id of the object seen there."""
        labels = np.zeros(self.frames.shape[:3], dtype=np.uint8)
        for object_id, masks in self.masks.items():
            labels[masks] = object_id
        return labels


def _sprite(rng: np.random.Generator, radius: float, config: ClipConfig) -> Sprite:
    """A shape of the scene generator, with its texture and maybe an inner part."""
    side = 2 * int(np.ceil(1.6 * radius)) + 1  # blobs reach ~1.52 radius, bars radius
    centre = np.array([side // 2, side // 2], dtype=np.float64)
    kind = SHAPES[rng.integers(len(SHAPES))]
    mask = shape_mask(rng, kind, centre, radius, (side, side))
    colour = random_texture(rng, side, side).copy()
    part = random_part(rng, kind, centre, radius, mask, config.part_probability)
    if part is not None and part[1].any():
        paint(colour, part[1], rng)
    ys, xs = np.nonzero(mask)
    reach = float(np.hypot(xs - centre[0], ys - centre[1]).max()) + 1.0 if len(xs) else 0.0
    return Sprite(colour, mask, kind, reach)


def _motion(rng: np.random.Generator, sprite: Sprite, config: ClipConfig) -> Motion:
    """Drift plus a wobble; a leaver also swings out past one border and back."""
    t = np.arange(config.frames, dtype=np.float64)
    size = np.array([config.width, config.height], dtype=np.float64)
    start = rng.uniform(0.2, 0.8, 2) * size
    drift = rng.uniform(-1, 1, 2) * config.speed * size.min()
    wobble, phase = rng.uniform(0, 0.06, 2) * size.min(), rng.uniform(0, 2 * np.pi, 2)
    omega = rng.uniform(0.15, 0.4)
    centre = (
        start + drift * t[:, None] + wobble * (np.sin(omega * t[:, None] + phase) - np.sin(phase))
    )
    log_amp = np.log1p(rng.uniform(0, config.scale_change))
    scale = np.exp(log_amp * np.sin(rng.uniform(0.1, 0.35) * t + rng.uniform(0, 2 * np.pi)))
    if rng.random() < config.leave_probability:
        axis, sign = int(rng.integers(2)), float(rng.choice([-1.0, 1.0]))
        to_border = size[axis] - start[axis] if sign > 0 else start[axis]
        # out of sight wherever sin(pi t / (T-1)) > 0.9: at most the middle 29% of the clip
        reach = sprite.reach * scale.max() + abs(drift[axis]) * t[-1] + 2 * wobble[axis] + 2
        depth = (to_border + reach) / 0.9
        centre[:, axis] += sign * depth * np.sin(np.pi * t / max(t[-1], 1.0))
    angle = rng.uniform(0, 360) + rng.uniform(-1, 1) * config.rotation * t
    return Motion(centre, scale, angle)


def _warp(
    sprite: Sprite, motion: Motion, index: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The sprite placed in frame ``index``: ``(mask (H, W) bool, colour (H, W, 3) float32)``."""
    height, width = size
    middle = sprite.mask.shape[0] // 2
    matrix = cv2.getRotationMatrix2D(
        (float(middle), float(middle)), float(motion.angle[index]), float(motion.scale[index])
    )
    matrix[:, 2] += motion.centre[index] - middle
    mask = cv2.warpAffine(
        sprite.mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST
    ).astype(bool)
    colour = cv2.warpAffine(
        sprite.colour,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return mask, colour


def render_frame(script: ClipScript, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frame ``index``: ``(H, W, 3)`` uint8 RGB and each sprite's ``(H, W)`` visible mask."""
    config = script.config
    size = (config.height, config.width)
    image = script.background.copy()
    placed = [_warp(s, m, index, size) for s, m in zip(script.sprites, script.motions)]
    for mask, colour in placed:  # back to front: later objects paint over earlier ones
        image[mask] = colour[mask]
    visible, covered = [], np.zeros(size, dtype=bool)
    for mask, _ in reversed(placed):
        visible.append(mask & ~covered)
        covered |= mask
    if config.blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), config.blur_sigma)
    if config.noise_sigma > 0:
        noise = np.random.default_rng([script.seed, index]).normal(
            0, config.noise_sigma, image.shape
        )
        image = image + noise
    return np.clip(image, 0, 255).astype(np.uint8), visible[::-1]


def clip_script(seed: int, config: ClipConfig = ClipConfig()) -> ClipScript:
    """The objects, their motions and the background of clip ``seed``; objects under
    ``min_visible_pixels`` on frame 0 are dropped, so every kept object can be prompted there."""
    rng = np.random.default_rng(seed)
    height, width, short = config.height, config.width, min(config.height, config.width)
    background = random_texture(rng, height, width).copy()
    for _ in range(config.distractors):  # static clutter: shapes that are no object
        kind = SHAPES[rng.integers(len(SHAPES))]
        radius = 0.5 * short * rng.uniform(0.08, 0.3)
        centre = rng.uniform([0, 0], [width, height])
        clutter = shape_mask(rng, kind, centre, radius, (height, width))
        if clutter.any():
            paint(background, clutter, rng)
    sprites, motions = [], []
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        sprite = _sprite(rng, 0.5 * short * rng.uniform(config.min_size, config.max_size), config)
        sprites.append(sprite)
        motions.append(_motion(rng, sprite, config))
    script = ClipScript(seed, config, background, tuple(sprites), tuple(motions))
    _, first = render_frame(script, 0)
    keep = [i for i, mask in enumerate(first) if mask.sum() >= config.min_visible_pixels]
    return ClipScript(
        seed,
        config,
        background,
        tuple(sprites[i] for i in keep),
        tuple(motions[i] for i in keep),
    )


def render_clip(script: ClipScript, name: str | None = None) -> Clip:
    """Every frame of ``script`` and the per-object mask stacks (ids ``1..N``)."""
    frames, masks = [], []
    for index in range(script.config.frames):
        frame, visible = render_frame(script, index)
        frames.append(frame)
        masks.append(visible)
    count = len(script.sprites)
    stacked = {i + 1: np.stack([m[i] for m in masks]) for i in range(count)}
    kinds = {i + 1: script.sprites[i].kind for i in range(count)}
    return Clip(name or f"clip_{script.seed:08d}", np.stack(frames), stacked, kinds)


def generate_clip(seed: int, config: ClipConfig = ClipConfig()) -> Clip:
    """The clip for ``seed``: same seed, same frames and masks."""
    return render_clip(clip_script(seed, config))


def parse_clips_spec(spec: str) -> range:
    """``clips:START:COUNT`` -> the seeds ``START .. START + COUNT - 1``."""
    try:
        start, count = (int(v) for v in spec.removeprefix(CLIPS_PREFIX).split(":"))
    except ValueError:
        raise ValueError(f"{spec!r}: expected clips:START:COUNT, e.g. clips:1000000:10") from None
    if count < 1 or start < 0:
        raise ValueError(f"{spec!r}: START must be >= 0 and COUNT >= 1")
    return range(start, start + count)
