"""``segany annotate``: gears 1 and 2 in the browser, over a project made by ``segany engine
init``: each image goes to one annotator at a time, every accepted mask is committed at once."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from ..fast.precision import PRECISIONS
from . import CliError

if TYPE_CHECKING:  # segany.engine is imported when the command runs (the CLI starts fast)
    from ..engine import Project

EXAMPLES = """examples:
  segany annotate project                        # http://127.0.0.1:8000/annotate
  segany annotate project --model models/r1/model.safetensors --port 8080
  segany annotate project --host 0.0.0.0         # a team: asks for the project token
"""
LARGEST_FILE_MB = 128  # an image file of the project (and the largest request body)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "annotate",
        help="annotate a project's images in the browser (gears 1 and 2)",
        description="Serve the annotation page: the model proposes a mask for every click, "
        "the annotator accepts, touches up or rejects; every mask is stored with who made "
        "it, how many clicks and seconds it took, and the model version.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("project", help="project folder (from `segany engine init`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (localhost)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        help="how long an image stays with an annotator without a write (default 900)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="embedding cache (default: the project's cache/ folder)"
    )
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", help="a bundled name or weights file (default: the project's newest version)"
    )
    group.add_argument("--checkpoint", help="weights file for an official model type")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    group.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="image encoder precision"
    )
    parser.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port} is not a port number (0-65535)")
    if args.lease_seconds is not None and not 0 < args.lease_seconds < 7 * 86400:
        raise CliError(f"--lease-seconds {args.lease_seconds:g}: expected between 0 and a week")


def open_project(path: str) -> Project:
    from sqlalchemy.exc import SQLAlchemyError

    from ..engine import Project

    if not Path(path).is_dir():
        raise CliError(f"{path}: no such project folder")
    try:
        return Project.open(path)
    except SQLAlchemyError as exc:  # a damaged database file, say
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError(f"{path}: the project database cannot be used: {reason}") from None


def addresses(host: str, port: int, token: str | None) -> list[str]:
    """Where to open the page: the bound address (and this machine's name when bound to every
    interface), with the token for a first visit."""
    hosts = [host] if host not in ("0.0.0.0", "::") else [socket.gethostname(), "127.0.0.1"]
    query = f"?token={token}" if token else ""
    return [f"http://{f'[{h}]' if ':' in h else h}:{port}/annotate{query}" for h in hosts]


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import AnnotationService, Limits, SegmentService, create_app
        from ..server.auth import required_token
    except ImportError as exc:
        raise CliError(
            f"the web app needs the web extra ({exc.name} is missing): pip install 'segany[web]'"
        ) from None
    from ..engine.annotation import LEASE_SECONDS
    from ..engine.models import load_gear_model
    from ..engine.store import MAX_IMAGE_PIXELS

    check_options(args)
    project = open_project(args.project)
    model, version = load_gear_model(
        project, args.model, args.checkpoint, device=args.device, precision=args.precision
    )
    cache_dir = args.cache_dir or project.path / "cache"
    limits = Limits(max_upload_bytes=LARGEST_FILE_MB * 2**20, max_pixels=MAX_IMAGE_PIXELS)
    segment = SegmentService(model, cache_dir, limits)
    annotation = AnnotationService(
        project, segment, version, lease_seconds=args.lease_seconds or LEASE_SECONDS
    )
    token = required_token(args.host, project.token)
    print(f"segany annotate: {args.project} with model {version.name}; preparing the decoder…")
    segment.ensure_decoder()
    app = create_app(segment, annotation=annotation, token=token)
    if token:
        print(f"warning: listening on {args.host}: anyone with the token can annotate")
    for address in addresses(args.host, args.port, token):
        print(f"segany annotate: {address}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
