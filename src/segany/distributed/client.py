"""Ray Client (``ray://HOST:10001``): the command's driver runs inside the cluster.

Ray Data's streaming executor registers callbacks with the core worker, which a Ray Client
connection lacks, so a job cannot be driven from outside the cluster. Instead the client starts
a :class:`CommandRunner` actor on the cluster, which runs the same ``segany`` command with
``--ray auto`` as a subprocess of its node, and relays its output until it exits (Ray Client
has no streaming returns, so the client polls). The paths of the command are the cluster's:
the client's working folder is used on the node when the node has it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .cluster import ClusterError, import_ray, one_line, probe

POLL_SECONDS = 0.3
CHUNK = 65536
TOKEN_HINT = (
    "a cluster with token authentication needs its token: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
    "or ~/.ray/auth_token"
)


class CommandRunner:
    """An actor that runs ``python -m segany ARGV`` on its node and keeps its output.

    Output is kept as ``(stream, text)`` chunks (1 stdout, 2 stderr) in arrival order, so that a
    progress bar's carriage returns reach the client as they are written."""

    def __init__(self, argv: Sequence[str], cwd: str) -> None:
        self._chunks: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "segany", *argv],
            cwd=cwd if Path(cwd).is_dir() else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # stop() ends the command's own children too
        )
        self._readers = [
            threading.Thread(target=self._pump, args=(number, pipe), daemon=True)
            for number, pipe in ((1, self._process.stdout), (2, self._process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, number: int, pipe) -> None:
        while chunk := os.read(pipe.fileno(), CHUNK):
            with self._lock:
                self._chunks.append((number, chunk.decode(errors="replace")))

    def poll(self, seen: int) -> tuple[list[tuple[int, str]], int | None]:
        """Chunks after the first ``seen``, and the exit status once the command ended and
        all its output was read."""
        code = self._process.poll()
        if code is not None:
            for reader in self._readers:
                reader.join()
        with self._lock:
            return self._chunks[seen:], code

    def stop(self) -> None:
        """End the command (and what it started), as Ctrl-C on the client asks."""
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)


def token_available() -> bool:
    """Whether this machine holds a Ray token; Ray Client uses one only when told to."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def run_in_cluster(
    address: str, argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run ``segany ARGV`` (whose ``--ray`` says ``auto``) inside the cluster at the Ray Client
    ``address``; relay its output; return its exit status."""
    probe(address)
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        # as a driver joining by GCS address would; read when Ray is imported
        os.environ["RAY_AUTH_MODE"] = "token"
    ray = import_ray()
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot connect to the Ray Client server at {address}: {one_line(exc)} ({TOKEN_HINT})"
        ) from None
    streams = {1: out or sys.stdout, 2: err or sys.stderr}
    try:
        runner = ray.remote(num_cpus=0)(CommandRunner).remote(list(argv), os.getcwd())
        seen, code = 0, None
        try:
            while code is None:
                chunks, code = ray.get(runner.poll.remote(seen))
                seen += len(chunks)
                for number, text in chunks:
                    streams[number].write(text)
                    streams[number].flush()
                if code is None:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            ray.get(runner.stop.remote())
            raise
        return code
    finally:
        ray.shutdown()


def driver_argv(argv: Sequence[str], address: str) -> list[str]:
    """``argv`` with the Ray Client address replaced by ``auto``: the driver's own view of the
    cluster it runs in."""
    swapped = []
    for token in argv:
        if token == address:
            token = "auto"
        elif token.startswith("--ray=") and token.endswith(address):
            token = "--ray=auto"
        swapped.append(token)
    return swapped
