"""``segany track``: prompt objects on frames of a video, follow them through the clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import CliError, check_writable
from .common import add_model_options, load_predictor, parse_box, parse_point, point_arrays

if TYPE_CHECKING:
    from ..inference.predictor import Predictor
    from ..video import TrackSettings

EXAMPLES = """examples:
  segany track clip.mp4 --frame 0 --point 320,240 --output tracked/
  segany track clip.mp4 --object 1 --frame 0 --point 320,240 \\
                        --object 2 --frame 40 --box 10,20,200,180 --output tracked/ --format png --format coco
  segany track frames/ --frame 12 --point 100,80 --point 140,60,0 --output tracked/ --format overlay

Prompts apply to the current --object (default 1) on the current --frame (default 0): give
--object and --frame first, then that object's --point/--box on that frame. Each object is
followed forwards and backwards from the first frame it is prompted on; a later prompt on
another frame re-conditions it from there. masklets.json (per-frame RLE) is always written.
"""


class PromptItem(argparse.Action):
    """Keeps --object, --frame, --point and --box in the order given (they group)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        items = list(getattr(namespace, "prompt_items", None) or [])
        items.append((self.dest, values))
        namespace.prompt_items = items


def register(sub: argparse._SubParsersAction) -> None:
    from ..video.outputs import FORMATS

    parser = sub.add_parser(
        "track",
        help="follow prompted objects through a video",
        description="Points are X,Y in frame pixels with label 1 (foreground, default) or 0.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", help="video file (anything FFmpeg reads) or a folder of frames")
    prompts = parser.add_argument_group("prompts (in order; repeatable)")
    prompts.add_argument("--object", type=int, action=PromptItem, metavar="ID", help="object id")
    prompts.add_argument("--frame", type=int, action=PromptItem, metavar="N", help="frame index")
    prompts.add_argument(
        "--point", type=parse_point, action=PromptItem, metavar="X,Y[,LABEL]", help="a point"
    )
    prompts.add_argument("--box", type=parse_box, action=PromptItem, metavar="X0,Y0,X1,Y1")
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        action="append",
        help="png: a mask per frame and object; overlay: overlay.mp4; sa1b: a json per frame; "
        "coco: coco.json; repeatable (default: png and overlay)",
    )
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="predicted IoU below which an object is lost"
    )
    add_model_options(parser)
    parser.set_defaults(func=run, prompt_items=[])


def collect_prompts(items: list[tuple[str, Any]]) -> list[Any]:
    """``ObjectPrompt``s from the ordered --object/--frame/--point/--box items."""
    from ..video import ObjectPrompt

    object_id, frame = 1, 0
    grouped: dict[tuple[int, int], dict[str, Any]] = {}
    for kind, value in items:
        if kind == "object":
            object_id = value
        elif kind == "frame":
            frame = value
        else:
            entry = grouped.setdefault((object_id, frame), {"points": [], "box": None})
            if kind == "point":
                entry["points"].append(value)
            else:
                entry["box"] = value
    if not grouped:
        raise CliError("no prompt: give at least one --point X,Y[,LABEL] or --box X0,Y0,X1,Y1")
    prompts = []
    for (object_id, frame), entry in grouped.items():
        points, labels = point_arrays(entry["points"])
        box = None if entry["box"] is None else np.array(entry["box"])
        prompts.append(ObjectPrompt(object_id, frame, points=points, labels=labels, box=box))
    return prompts


def run(args: argparse.Namespace) -> int:
    from ..video import TrackSettings, open_frames
    from ..video.propagation import check_prompts

    prompts = collect_prompts(args.prompt_items)
    settings = TrackSettings(min_score=args.min_score)
    frames = open_frames(args.video)
    check_prompts(frames, prompts)
    check_writable(args.output, folder=True)  # all before the model loads
    predictor = load_predictor(args)
    try:
        lost = track_into_folder(args, frames, prompts, predictor, settings)
    finally:
        print(file=sys.stderr)  # ends the progress line, before any error message
    objects = len({p.object_id for p in prompts})
    print(
        f"tracked {objects} object(s) over {len(frames)} frames "
        f"({lost} object-frames lost) -> {args.output}"
    )
    return 0


def track_into_folder(
    args: argparse.Namespace,
    frames: Any,
    prompts: list[Any],
    predictor: Predictor,
    settings: TrackSettings,
) -> int:
    """Track, writing each frame's results as they come; returns the lost object-frames."""
    from ..video import track
    from ..video.outputs import TrackOutputs

    formats = tuple(dict.fromkeys(args.format or ("png", "overlay")))
    height, width = frames[prompts[0].frame_index].shape[:2]
    lost = 0
    with TrackOutputs(
        args.output,
        formats,
        video_name=Path(args.video).name,
        size=(height, width),
        frame_count=len(frames),
        fps=frames.fps,
        object_ids=sorted({p.object_id for p in prompts}),
    ) as outputs:
        for index, masks in track(predictor, frames, prompts, settings):
            outputs.add(index, frames[index] if "overlay" in formats else None, masks)
            lost += sum(m.lost for m in masks.values())
            print(f"\rframe {index + 1}/{len(frames)}", end="", file=sys.stderr, flush=True)
    return lost
