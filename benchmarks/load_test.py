"""Load test of `segany serve` on localhost: concurrent uploads while embeddings are fetched.

Starts the real server (uvicorn, its own process) with a fresh cache, then at once: N uploads
of distinct images, and M embedding fetches (spread over the images as each upload returns,
so fetches are served while the encoder is busy with the other uploads). Checks that every
request succeeds, every upload is in the cache (none lost), every embedding has the right
size; bounded in count and time (``--deadline``). Exit status 1 on any failure.

Run: .venv/bin/python benchmarks/load_test.py [--uploads 20] [--fetches 200] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def distinct_png(index: int) -> bytes:
    """A smooth random image of its own size and content."""
    rng = np.random.default_rng(index)
    height, width = 180 + 20 * (index % 7), 240 + 30 * (index % 5)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, (xx + yy) / (height + width)], -1)
    image = (255 * (0.6 * base + 0.4 * rng.random((height, width, 3)))).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_model_file(folder: Path) -> Path:
    """The bundled architecture with seeded random weights (cost does not depend on them)."""
    from segany import build_model, save_checkpoint
    from segany.config import TINY
    from segany.testing import random_state_dict

    model = build_model(TINY)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
    path = folder / "tiny-random.safetensors"
    save_checkpoint(model, path)
    return path


async def run_load(base: str, uploads: int, fetches: int) -> dict[str, object]:
    images = [distinct_png(i) for i in range(uploads)]
    per_image = [fetches // uploads + (1 if i < fetches % uploads else 0) for i in range(uploads)]
    errors: list[str] = []
    upload_ms: list[float] = []
    fetch_ms: list[float] = []
    ids: list[str] = []
    limits = httpx.Limits(max_connections=uploads + 16)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        shape = (await client.get("/api/model")).json()["embedding_shape"]
        expected_bytes = int(np.prod(shape)) * 2  # float16

        async def fetch(url: str) -> None:
            start = time.perf_counter()
            response = await client.get(url)
            fetch_ms.append(1000 * (time.perf_counter() - start))
            if response.status_code != 200 or len(response.content) != expected_bytes:
                errors.append(f"fetch {url}: {response.status_code} {response.text[:100]}")

        async def upload_then_fetch(data: bytes, count: int) -> None:
            start = time.perf_counter()
            response = await client.post("/api/images", content=data)
            upload_ms.append(1000 * (time.perf_counter() - start))
            if response.status_code != 200:
                errors.append(f"upload: {response.status_code} {response.text[:200]}")
                return
            info = response.json()
            ids.append(info["id"])
            await asyncio.gather(*(fetch(info["embedding"]["url"]) for _ in range(count)))

        start = time.perf_counter()
        await asyncio.gather(*(upload_then_fetch(d, n) for d, n in zip(images, per_image)))
        wall = time.perf_counter() - start
        status = (await client.get("/api/status")).json()
        for key in ids:  # every upload is still there
            if (await client.get(f"/api/images/{key}/embedding")).status_code != 200:
                errors.append(f"lost upload {key}")
    if len(set(ids)) != uploads:
        errors.append(f"{len(set(ids))} distinct ids for {uploads} uploads")
    if status["encoder_runs"] != uploads or status["cache_entries"] != uploads:
        errors.append(f"server status after the run: {status}")
    return {
        "uploads": uploads,
        "fetches": len(fetch_ms),
        "errors": errors,
        "wall_s": round(wall, 2),
        "upload_ms_median": round(statistics.median(upload_ms), 1) if upload_ms else None,
        "upload_ms_max": round(max(upload_ms), 1) if upload_ms else None,
        "fetch_ms_median": round(statistics.median(fetch_ms), 1) if fetch_ms else None,
        "fetch_ms_p99": round(float(np.percentile(fetch_ms, 99)), 1) if fetch_ms else None,
        "fetch_ms_max": round(max(fetch_ms), 1) if fetch_ms else None,
        "server_status": status,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--fetches", type=int, default=200)
    parser.add_argument("--model", help="model for the server (default: random tiny weights)")
    parser.add_argument("--deadline", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(random_model_file(Path(tmp)))
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "segany",
            "serve",
            "--model",
            model,
            "--port",
            str(port),
            "--cache-dir",
            str(Path(tmp) / "cache"),
        ]
        server = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/api/model", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("error: the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            result = asyncio.run(
                asyncio.wait_for(run_load(base, args.uploads, args.fetches), args.deadline)
            )
        except asyncio.TimeoutError:
            result = {"errors": [f"not finished within {args.deadline} s"]}
        finally:
            server.terminate()
            server.wait(timeout=30)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
