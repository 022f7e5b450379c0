"""``segany serve``: the web app (FastAPI + uvicorn) on localhost."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import CliError
from .common import add_model_options, bundled_preset, load_predictor
from .text import load_detector

EXAMPLES = """examples:
  segany serve                                  # the bundled model on http://127.0.0.1:8000
  segany serve --model vit_b --checkpoint sam_vit_b_01ec64.pth --port 8080
  segany serve --host 0.0.0.0                   # reachable from other machines: on purpose only
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
        "--decoder", type=Path, help="serve this decoder graph (from `segany export onnx`)"
    )
    parser.add_argument(
        "--detector",
        metavar="PATH_OR_NAME",
        help="a zero-shot detector of transformers for the page's text prompts: a folder "
        "(save_pretrained) or a Hub name in the local cache; never downloaded",
    )
    add_model_options(parser)
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
    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        cache_bytes=int(args.cache_mb) * 2**20,
    )
    cache_dir = args.cache_dir or default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the cache folder {cache_dir}: {exc.strerror}") from None
    predictor = load_predictor(args)
    detector = load_detector(args) if args.detector else None
    preset = bundled_preset(args)
    service = SegmentService(
        predictor.model,
        cache_dir,
        limits,
        decoder_path=args.decoder,
        everything_options={"preset": preset} if preset else None,
        text_detector=detector,
    )
    print(f"segany serve: model {service.name}; exporting/checking the decoder graph…")
    service.ensure_decoder()
    app = create_app(service)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}: other machines can reach this server")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"segany serve: http://{shown}:{args.port}/  (API docs: /docs; cache: {cache_dir})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
