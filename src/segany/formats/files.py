"""Crash-safe file writing: a file is either absent or complete, never half written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

_Output = TypeVar("_Output", bound="StreamedOutput")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def temporary_text_beside(path: Path, part: str = "") -> tuple[IO[str], Path]:
    """A text stream to a new temporary file beside ``path`` (``part`` tells several apart),
    for :func:`commit_text` to rename into place."""
    prefix = f".{path.name}.{part}." if part else f".{path.name}."
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    return os.fdopen(handle, "w", encoding="utf-8"), Path(name)


def commit_text(stream: IO[str], tmp: Path, path: Path) -> None:
    """Flush, fsync and close ``stream`` (writing ``tmp``), then rename ``tmp`` to ``path``."""
    stream.flush()
    os.fsync(stream.fileno())
    stream.close()
    os.replace(tmp, path)


class StreamedOutput:
    """Files written bit by bit into temporary ones: :meth:`close` completes them, :meth:`abort`
    removes what was unfinished. Used as a context manager, a clean exit closes and an error
    aborts, so a failure leaves no file (and no temporary one) behind."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Output) -> _Output:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
