"""``segany serve``: the web app (FastAPI + uvicorn) on localhost."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from . import CliError
from .common import add_model_options, bundled_preset, load_predictor
from .text import load_detector

EXAMPLES = """examples:
  segany serve                                  # the bundled model on http://127.0.0.1:8000
  segany serve --model vit_b --checkpoint sam_vit_b_01ec64.pth --port 8080
  segany serve --host 0.0.0.0                   # reachable from other machines: on purpose only
  segany serve --label-studio --port 9090 --label-studio-url http://localhost:8080 \
      --label-studio-token TOKEN --project project   # a Label Studio ML backend (README)
  segany serve --detector ./grounding-dino-tiny # and a text field: "a dog" -> its mask
"""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "segany" / "server"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="the web app: open an image, click, get the object",
        description="Serve the page and its JSON API (OpenAPI at /docs). The server embeds each "
        "image once; the browser runs the decoder for every click.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (localhost)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--cache-dir", type=Path, help=f"embedding cache (default {default_cache_dir()})"
    )
    parser.add_argument("--cache-mb", type=int, default=2048, help="cache size before eviction")
    parser.add_argument("--max-upload-mb", type=float, default=32, help="largest upload accepted")
    parser.add_argument(
        "--max-megapixels", type=float, default=40, help="largest image accepted (width x height)"
    )
    parser.add_argument(
        "--max-video-frames", type=int, default=300, help="longest video accepted, in frames"
    )
    parser.add_argument(
        "--max-video-seconds", type=float, default=60, help="longest video accepted, in seconds"
    )
    parser.add_argument(
        "--decoder", type=Path, help="serve this decoder graph (from `segany export onnx`)"
    )
    parser.add_argument(
        "--detector",
        metavar="PATH_OR_NAME",
        help="a zero-shot detector of transformers for the page's text prompts: a folder "
        "(save_pretrained) or a Hub name in the local cache; never downloaded",
    )
    add_model_options(parser)
    group = parser.add_argument_group("Label Studio")
    group.add_argument(
        "--label-studio",
        action="store_true",
        help="also answer as a Label Studio ML backend (/health, /setup, /predict, /webhook)",
    )
    group.add_argument(
        "--label-studio-url",
        default=os.environ.get("LABEL_STUDIO_URL"),
        help="Label Studio's address, to fetch task images (LABEL_STUDIO_URL; else the one "
        "Label Studio sends when it connects)",
    )
    group.add_argument(
        "--label-studio-token",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="Label Studio API token (LABEL_STUDIO_API_KEY; else the project owner's token "
        "Label Studio sends when it connects)",
    )
    group.add_argument(
        "--project",
        help="a data-engine project (segany engine init): masks submitted in Label Studio are "
        "recorded there as gear-1 work",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import Limits, SegmentService, create_app
        from ..server.auth import LOCAL_HOSTS
    except ImportError as exc:
        raise CliError(
            f"the web app needs the web extra ({exc.name} is missing): pip install 'segany[web]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port} is not a port number (0-65535)")
    try:
        limits = Limits(
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=int(args.max_megapixels * 1e6),
            cache_bytes=int(args.cache_mb) * 2**20,
            max_video_frames=args.max_video_frames,
            max_video_seconds=args.max_video_seconds,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    cache_dir = args.cache_dir or default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the cache folder {cache_dir}: {exc.strerror}") from None
    project = open_label_studio_project(args)
    predictor = load_predictor(args)
    detector = load_detector(args) if args.detector else None
    preset = bundled_preset(args)
    head = None if detector is not None or args.checkpoint else bundled_text_head(args.model)
    service = SegmentService(
        predictor.model,
        cache_dir,
        limits,
        decoder_path=args.decoder,
        everything_options={"preset": preset} if preset else None,
        text_detector=detector,
        text_head=head,
    )
    print(f"segany serve: model {service.name}; exporting/checking the decoder graph…")
    service.ensure_decoder()
    app = create_app(service, label_studio=label_studio_backend(args, service, project))
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}: other machines can reach this server")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"segany serve: http://{shown}:{args.port}/  (API docs: /docs; cache: {cache_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def bundled_text_head(model: str) -> Any:
    """The text head shipped with a bundled model (the page's Text field without a detector)."""
    from ..text.prompt import TextPromptHead
    from ..text.weights import bundled_text_head_path

    return TextPromptHead.bundled(model) if bundled_text_head_path(model) else None


def open_label_studio_project(args: argparse.Namespace) -> Any:
    """Check the Label Studio options before the model loads; the ``--project``, opened."""
    if not args.label_studio:
        if args.project:
            raise CliError("--project goes with --label-studio (it records Label Studio's masks)")
        return None
    url = args.label_studio_url
    if url and not url.startswith(("http://", "https://")):
        raise CliError(f"--label-studio-url {url!r}: expected http://host:port")
    if not args.project:
        return None
    from .annotate import open_project

    return open_project(args.project)


def label_studio_backend(args: argparse.Namespace, service: Any, project: Any) -> Any:
    """The ML backend of ``--label-studio`` (None without it), recording in ``project``."""
    if not args.label_studio:
        return None
    from ..server.label_studio_backend import LabelStudioBackend
    from ..server.label_studio_client import LabelStudioClient

    url = args.label_studio_url
    client = LabelStudioClient(
        url.rstrip("/") if url else None,
        args.label_studio_token or None,
        max_bytes=service.limits.max_upload_bytes,
    )
    version_id = None
    if project is not None:
        from ..engine.models import gear_model_version

        version_id = gear_model_version(project, args.model, args.checkpoint).id
    print(
        "segany serve: Label Studio ML backend at this address"
        + (f"; recording submitted masks in {args.project}" if project else "")
    )
    return LabelStudioBackend(service, client, project, version_id)
