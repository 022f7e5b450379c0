"""The ``segany`` command: a thin shell over the library, one module per subcommand.

Bad input never shows a traceback: it prints one line starting with ``error:`` and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .. import __version__
from ..checkpoints import CheckpointError
from ..fast.allocator import keep_freed_memory

USAGE_ERROR = 2


class CliError(Exception):
    """A user-facing failure: its message is printed after ``error:``."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line ``error:`` messages (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from . import (
        annotate,
        data,
        demo,
        embed,
        engine,
        eval_video,
        evaluate,
        everything,
        export,
        segment,
        serve,
        track,
        train,
        train_text,
    )

    parser = Parser(prog="segany", description="Segment Anything, from scratch.")
    parser.add_argument("--version", action="version", version=f"segany {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for room in (
        segment,
        everything,
        embed,
        demo,
        serve,
        annotate,
        data,
        train,
        train_text,
        evaluate,
        eval_video,
        export,
        engine,
        track,
    ):
        room.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # a process of its own: reuse freed tensors' pages (segany.fast.allocator)
    try:
        if str(getattr(args, "ray", None) or "").startswith("ray://"):
            from .scale import run_through_ray_client

            return run_through_ray_client(args, sys.argv[1:] if argv is None else argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line, unless --debug
        if args.debug:
            raise
        print(f"error: {describe(exc)}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, (CliError, ValueError, OSError)) else 1


def describe(exc: BaseException) -> str:
    """A one-line message for a failure."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return "out of memory: try a smaller model, --device cpu, or fewer points per batch"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename or exc}"
    if isinstance(exc, (CliError, ValueError, CheckpointError, OSError)):
        return " ".join(str(exc).split())
    return (
        f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); rerun with --debug"
    )


def check_writable(path: str | os.PathLike[str], folder: bool = False) -> None:
    """Fail fast (before any model work) if ``path`` cannot be written."""
    target = os.fspath(path)
    directory = target if folder else (os.path.dirname(target) or ".")
    if folder:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create output folder {directory}: {exc.strerror}") from None
    if not os.path.isdir(directory):
        raise CliError(f"cannot write {target}: folder {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise CliError(f"cannot write {target}: folder {directory} is not writable")
