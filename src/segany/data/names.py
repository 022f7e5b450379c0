"""Names of the objects of a generated scene: the words the bundled text-prompt head knows.

Each visible object gets a set of words read off the generator and the pixels: its shape
(``star``, ``ring``…; a ring is the shape "with a hole"), the colour name of its mean visible
colour, and ``part`` for the inner part of another object. A phrase names an object when every
word of the phrase is among the object's words (``"red star"``, ``"star"``, ``"red part"``), so
the same phrase may name one object or several. Everything is deterministic given the scene.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

import numpy as np

from .scenes import SHAPES, Scene

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "grey", "black")
PART_WORD = "part"
VOCABULARY: tuple[str, ...] = (*COLOURS, *SHAPES, PART_WORD)

# Hue bins in degrees (upper bounds) for saturated colours; cyan is called blue.
_HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (255, "blue"))
_HUES_WRAP = ((295, "purple"), (340, "pink"), (361, "red"))


class UnknownWordError(ValueError):
    """A phrase uses a word outside :data:`VOCABULARY`."""


def colour_name(rgb: np.ndarray) -> str:
    """The colour word for a mean ``(3,)`` RGB colour in 0..255."""
    hue, saturation, value = colorsys.rgb_to_hsv(*(float(c) / 255 for c in rgb))
    if saturation < 0.25 or value < 0.2:
        return "black" if value < 0.3 else "white" if value > 0.8 else "grey"
    degrees = hue * 360
    for bound, name in (*_HUES, *_HUES_WRAP):
        if degrees < bound:
            return name
    return "red"


def phrase_words(phrase: str) -> tuple[str, ...]:
    """The words of a phrase, lower-cased, ``the``/``a``/``of`` dropped; ``UnknownWordError``
    names the vocabulary when a word is not in it."""
    words = [w for w in re.findall(r"[a-z]+", phrase.lower()) if w not in ("the", "a", "an", "of")]
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown or not words:
        what = f"unknown word(s) {', '.join(map(repr, unknown))}" if unknown else "no word"
        raise UnknownWordError(
            f"{what} in {phrase!r}: the bundled text head knows only the scene generator's "
            f"vocabulary: {' '.join(VOCABULARY)}"
        )
    return tuple(words)


@dataclass(frozen=True)
class NamedObject:
    """Object ``index`` of a scene and its words."""

    index: int
    words: frozenset[str]


def scene_objects(scene: Scene) -> list[NamedObject]:
    """Every visible object of ``scene`` with its words, in the scene's mask order."""
    objects = []
    for i, (mask, kind, parent) in enumerate(zip(scene.masks, scene.shapes, scene.parents)):
        colour = colour_name(scene.image[mask].mean(axis=0))
        shape = PART_WORD if parent >= 0 else kind
        objects.append(NamedObject(i, frozenset((colour, shape))))
    return objects


def matching(objects: list[NamedObject], words: tuple[str, ...]) -> list[int]:
    """Indices of the objects a phrase's words name."""
    return [o.index for o in objects if set(words) <= o.words]


def scene_phrases(scene: Scene) -> list[tuple[str, list[int]]]:
    """Every phrase of one or two words that names at least one object of the scene, with the
    objects it names: ``[("red star", [2]), ("star", [2, 5]), …]`` in a fixed order."""
    objects = scene_objects(scene)
    phrases: dict[str, list[int]] = {}
    for obj in objects:
        colour = next(w for w in obj.words if w in COLOURS)
        shape = next(w for w in obj.words if w not in COLOURS)
        for phrase in (f"{colour} {shape}", shape, colour):
            phrases.setdefault(phrase, matching(objects, tuple(phrase.split())))
    return list(phrases.items())
