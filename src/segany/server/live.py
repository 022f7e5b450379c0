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


class PageDriver:
    """Drives the page in a Playwright ``Page``: prompts in image pixels, state read back
    through the page's test hooks (``window.segany``)."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def open(self, base_url: str, query: str = "") -> PageDriver:
        self.page.goto(f"{base_url}/{query}")
        self.page.evaluate("() => window.segany.ready")
        return self

    def idle(self) -> None:
        """Wait until no upload, decoder run or download is in progress."""
        self.page.evaluate("() => window.segany.idle()")

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("() => window.segany.state()")

    def load_sample(self, name: str) -> None:
        self.page.click(f"button[data-sample='{name}']")
        self.page.wait_for_function("() => window.segany.state().imageId !== null")
        self.idle()

    def upload(self, name: str, data: bytes, mime: str = "image/png") -> None:
        self.page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
        self.page.wait_for_timeout(50)
        self.idle()

    def client_xy(self, x: float, y: float) -> tuple[float, float]:
        """Viewport coordinates of image point (x, y)."""
        box = self.page.locator("#prompts").bounding_box()
        state = self.state()
        return (
            box["x"] + x / state["width"] * box["width"],
            box["y"] + y / state["height"] * box["height"],
        )

    def click(self, x: float, y: float, label: int = 1, how: str = "right") -> None:
        """A click at image point (x, y): foreground, or background by right click
        (``how="right"``) or Alt-click (``how="alt"``)."""
        cx, cy = self.client_xy(x, y)
        if label == 1:
            self.page.mouse.click(cx, cy)
        elif how == "alt":
            self.page.keyboard.down("Alt")
            self.page.mouse.click(cx, cy)
            self.page.keyboard.up("Alt")
        else:
            self.page.mouse.click(cx, cy, button="right")
        self.idle()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Draw a box from (x0, y0) to (x1, y1)."""
        start, end = self.client_xy(x0, y0), self.client_xy(x1, y1)
        self.page.mouse.move(*start)
        self.page.mouse.down()
        self.page.mouse.move(*end, steps=8)
        self.page.mouse.up()
        self.idle()

    def mask_runs(self) -> list[int] | None:
        """The current mask as uncompressed COCO RLE counts (``None`` without one)."""
        return self.page.evaluate("() => window.segany.maskRuns()")

    def mask(self) -> Any:
        """The current mask as an ``(H, W)`` bool array (all False without one)."""
        import numpy as np

        from ..formats.rle import decode_coco_rle

        state = self.state()
        runs = self.mask_runs()
        if runs is None:
            return np.zeros((state["height"], state["width"]), bool)
        return decode_coco_rle({"size": [state["height"], state["width"]], "counts": runs})

    def click_timings(self) -> list[float]:
        """Milliseconds inside the decoder for every click so far."""
        return self.page.evaluate("() => window.segany.timings.click")
