"""Worker threads for the service's heavy steps, and single-flight jobs.

The encoder and the mask generator use every core, so they run one at a time; image decoding
runs two at a time to bound memory. Both run in worker threads, so the event loop keeps
answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from anyio import to_thread

T = TypeVar("T")


class Workers:
    """The compute and decode slots (made by :meth:`start`, inside the event loop) and the
    jobs in flight by (kind, key)."""

    def __init__(self) -> None:
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._compute: asyncio.Semaphore | None = None
        self._decode: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Create the loop's semaphores."""
        self._compute = asyncio.Semaphore(1)  # encoder and generator: all cores each
        self._decode = asyncio.Semaphore(2)  # image decoding: bounded memory

    def _slots(self) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        if self._compute is None or self._decode is None:
            raise RuntimeError("SegmentService.start() was not called")
        return self._compute, self._decode

    async def compute(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread, alone among compute steps."""
        compute, _ = self._slots()
        async with compute:
            return await to_thread.run_sync(work, *args)

    async def decode(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread, with at most one other decoding step."""
        _, decode = self._slots()
        async with decode:
            return await to_thread.run_sync(work, *args)

    def running(self, kind: str, key: str) -> bool:
        """Whether a job (kind, key) is in flight."""
        return (kind, key) in self._inflight

    async def single_flight(self, kind: str, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make`` once for concurrent callers with the same (kind, key); the work goes on
        if a caller disconnects, so an upload is never lost half-way."""
        token = (kind, key)
        future = self._inflight.get(token)
        if future is None:
            future = asyncio.ensure_future(make())
            self._inflight[token] = future
            future.add_done_callback(lambda _: self._inflight.pop(token, None))
        return await asyncio.shield(future)
