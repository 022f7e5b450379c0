"""A server in a background thread, and headless Chromium options: for tests, benchmarks
and notebooks that drive the page."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium on a machine with a closed network, run as root, without a GPU.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    return CHROMIUM if shutil.which(CHROMIUM) else shutil.which("chromium")


def chromium_options(headless: bool = True) -> dict[str, Any]:
    """Keyword arguments for Playwright's ``chromium.launch`` (never a downloaded browser)."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium")
    return {"executable_path": path, "headless": headless, "args": list(CHROMIUM_ARGS)}


@contextmanager
def live_server(
    app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 120
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL (a free port by
    default) once it accepts connections, and stops it afterwards."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start (see its log above)")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
