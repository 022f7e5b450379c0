"""``segany embed``: run the image encoder once and save the embedding; for a folder, one
embedding file per image (resumable), in this process or on Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from . import USAGE_ERROR, CliError, check_writable, describe
from .common import add_model_options, load_predictor, model_spec
from .scale import add_ray_options, quiet_ray, scale_options

if TYPE_CHECKING:
    from ..distributed import ScaleOptions
    from ..inference.predictor import Predictor

SUFFIX = ".emb"
EXAMPLES = """examples:
  segany embed photo.jpg --output photo.emb
  segany segment photo.jpg --embedding photo.emb --point 120,80 --output mask.png
  segany embed photos/ --output embeddings/                  # embeddings/<name>.emb
  segany embed photos/ --output embeddings/ --ray --workers 2 --batch-size 8
An interrupted folder run loses nothing: run the same command again and finished images are
skipped.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "embed",
        help="compute image embeddings once, for later segment runs",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="image file, or a folder of images")
    parser.add_argument(
        "--output",
        required=True,
        help="embedding file to write (safetensors); for a folder, a folder of <name>.emb",
    )
    add_model_options(parser)
    add_ray_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..formats.images import read_image

    options = scale_options(args)
    if Path(args.image).is_dir():
        return run_folder(args, options)
    if options is not None:
        raise CliError("--ray embeds a folder of images; give a folder")
    check_writable(args.output)
    image = read_image(args.image)
    predictor = load_predictor(args)
    embedding = predictor.embed(image)
    embedding.save(args.output)
    print(f"embedded {args.image} ({image.shape[1]}x{image.shape[0]}) -> {args.output}")
    return 0


def _embed_here(args: argparse.Namespace, todo: list[Path]) -> Iterator[tuple[Path, object]]:
    """Each image's embedding file in this process; the model is loaded now (if anything is
    to do), so that one that cannot load fails before anything is written."""
    return _each_here(load_predictor(args), todo) if todo else iter(())


def _each_here(predictor: Predictor, todo: list[Path]) -> Iterator[tuple[Path, object]]:
    from ..formats.images import read_image

    for path in todo:
        try:
            yield path, predictor.embed(read_image(path)).to_bytes()
        except (ValueError, OSError) as exc:
            yield path, exc


def _embed_on_ray(
    args: argparse.Namespace, todo: list[Path], options: ScaleOptions
) -> Iterator[tuple[Path, object]]:
    from ..distributed.jobs import embed_images
    from ..distributed.workers import Failed

    for path, result in embed_images(todo, model_spec(args), options):
        yield path, result.error if isinstance(result, Failed) else result


def run_folder(args: argparse.Namespace, options: ScaleOptions | None) -> int:
    from tqdm import tqdm

    from ..formats.files import atomic_write_bytes
    from .everything import image_inputs

    images = image_inputs(Path(args.image))
    output = Path(args.output)
    check_writable(output, folder=True)
    for stale in output.glob(".*.tmp"):  # left by a run killed mid-write
        stale.unlink()
    todo = [p for p in images if not (output / f"{p.stem}{SUFFIX}").exists()]
    failures = 0
    with quiet_ray(args) if options else nullcontext(sys.stderr) as terminal:
        results = _embed_on_ray(args, todo, options) if options else _embed_here(args, todo)
        for path, result in tqdm(results, total=len(todo), desc="embed", unit="img", file=terminal):
            if isinstance(result, bytes):
                atomic_write_bytes(output / f"{path.stem}{SUFFIX}", result)
                continue
            failures += 1
            tqdm.write(f"error: {path}: {describe(result)}", file=terminal)  # type: ignore[arg-type]
    done = len(todo) - failures
    print(
        f"{done} images embedded, {len(images) - len(todo)} already done, {failures} failed -> {output}"
    )
    return USAGE_ERROR if failures else 0
