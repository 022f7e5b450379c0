"""Text prompts at the command line: the options, the dispatch to a text route, the messages."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import CliError

if TYPE_CHECKING:
    import numpy as np

    from ..inference.embedding import Embedding
    from ..inference.predictor import Predictor
    from ..text import TextMask
    from ..text.detectors import Detector

NO_DETECTOR = (
    "--text needs --detector FOLDER_OR_NAME: a zero-shot detector of transformers (Grounding "
    "DINO, OWLv2, OmDet-Turbo) saved in a folder or in the local Hugging Face cache"
)


def add_text_options(parser: argparse.ArgumentParser, text_help: str) -> None:
    group = parser.add_argument_group(
        "text prompts (a detector, or without one the bundled tiny model's text head)"
    )
    group.add_argument("--text", metavar="PHRASE", help=text_help)
    add_detector_options(group)


def add_detector_options(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--detector",
        metavar="PATH_OR_NAME",
        help="a zero-shot detector of transformers: a folder (save_pretrained) or a Hub name in "
        "the local cache; never downloaded",
    )
    group.add_argument(
        "--box-threshold",
        type=float,
        help="lowest detector score kept (default: the family's, 0.3; OWL 0.1)",
    )
    group.add_argument(
        "--nms-threshold",
        type=float,
        default=0.5,
        help="of two boxes overlapping more than this IoU keep the better (any phrases)",
    )
    group.add_argument("--max-objects", type=int, help="keep at most this many, best first")


def load_detector(args: argparse.Namespace) -> Detector:
    """The detector ``--detector`` names, on ``--device``; one ``error:`` line if absent."""
    from ..text.detectors import Detector

    if not args.detector:
        raise CliError(NO_DETECTOR)
    return Detector(args.detector, device=args.device)


def text_masks(
    args: argparse.Namespace,
    predictor: Predictor,
    image: np.ndarray,
    embedding: Embedding | None = None,
) -> list[TextMask]:
    """The masks ``--text`` names, by the route the options choose: the detector given, else
    the model's own text-prompt head (the bundled ``tiny`` has one)."""
    from ..text.segment import segment_text

    if not args.detector:
        return head_masks(args, predictor, image, embedding)
    detector = load_detector(args)
    return segment_text(
        predictor,
        detector,
        image,
        args.text,
        box_threshold=args.box_threshold,
        nms_threshold=args.nms_threshold,
        max_objects=args.max_objects,
        embedding=embedding,
    )


def head_masks(
    args: argparse.Namespace,
    predictor: Predictor,
    image: np.ndarray,
    embedding: Embedding | None = None,
) -> list[TextMask]:
    """``--text`` through the model's text-prompt head: one mask per phrase, empty ones
    dropped; without a head, the message asking for a detector."""
    from ..data.names import UnknownWordError, phrase_words
    from ..text.detectors import split_phrases
    from ..text.prompt import TextPromptHead
    from ..text.weights import bundled_text_head_path

    if args.checkpoint is not None or bundled_text_head_path(args.model) is None:
        raise CliError(f"{NO_DETECTOR} (only the bundled tiny model has a text head of its own)")
    head = TextPromptHead.bundled(args.model)
    phrases = split_phrases(args.text)
    try:
        for phrase in phrases:
            phrase_words(phrase)
    except UnknownWordError as exc:
        raise CliError(f"{exc}. For other words, {NO_DETECTOR}") from None
    found = head.segment_phrases(predictor, image, phrases, embedding)
    return [m for m in found if m.mask.any()]


def nothing_found(args: argparse.Namespace) -> str:
    """The message when no object passes: which phrases, which threshold, what to try."""
    from ..text.detectors import split_phrases

    phrases = ", ".join(repr(p) for p in split_phrases(args.text))
    if not args.detector:
        return f"no object found for {phrases}: the text head's mask is empty; try other words"
    threshold = f"{args.box_threshold:g}" if args.box_threshold is not None else "its default"
    return (
        f"no object found for {phrases}: the detector scored none above {threshold}; try a "
        "lower --box-threshold, or other words"
    )
