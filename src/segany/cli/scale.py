"""``--ray [ADDRESS]`` and the actor pool's options, shared by ``engine auto``, ``everything``
and ``embed``; and the driver's quiet output while Ray runs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from . import CliError

if TYPE_CHECKING:
    from ..distributed import ScaleOptions

POOL_OPTIONS = {"batch_size": 1, "gpus_per_worker": 0.0, "cpus_per_worker": 1.0}
RAY_HELP = """on Ray (pip install 'segany[ray]'): --ray alone starts a local Ray instance for the
run; --ray auto joins the cluster this machine belongs to (after `ray start --head`, or
`ray start --address HEAD:6379` on the others), --ray HOST:6379 names it, and from outside the
cluster --ray ray://HEAD:10001 (Ray Client) runs the command's driver on the cluster. Every node
must see the input and output paths (and a weights file) at the same place."""


class RayJobError(RuntimeError):
    """Ray failed in a way segany did not foresee; its messages are in the named log."""


def add_ray_options(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    group = parser.add_argument_group("scale-out", RAY_HELP)
    group.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS", help="run on Ray (see above)"
    )
    if workers:
        group.add_argument(
            "--workers", type=int, default=None, help="Ray workers, each with the model (default 1)"
        )
    # engine auto's --workers (processes without Ray) is its own option
    parser.set_defaults(ray_owns_workers=workers)
    group.add_argument(
        "--batch-size", type=int, default=None, help="images per call of a Ray worker (default 1)"
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="GPUs each Ray worker reserves, with --device cuda (default 0; 0.5 shares one)",
    )
    group.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="CPUs each Ray worker reserves, and its torch threads (default 1)",
    )


def scale_options(args: argparse.Namespace) -> ScaleOptions | None:
    """The Ray run the options ask for, or None without ``--ray`` (then the pool's options
    are refused: they would do nothing)."""
    names = [*POOL_OPTIONS, "workers"] if args.ray_owns_workers else list(POOL_OPTIONS)
    given = [name for name in names if getattr(args, name, None) is not None]
    if args.ray is None:
        if given:
            raise CliError(f"--{given[0].replace('_', '-')} sizes Ray workers; add --ray")
        return None
    from ..distributed import ScaleOptions

    pool = {
        n: getattr(args, n) if getattr(args, n) is not None else d for n, d in POOL_OPTIONS.items()
    }
    cuda = str(getattr(args, "device", "cpu")).startswith("cuda")
    if pool["gpus_per_worker"] and not cuda:
        raise CliError("--gpus-per-worker reserves GPUs for each worker; add --device cuda")
    if cuda and not pool["gpus_per_worker"]:
        raise CliError("--device cuda on Ray needs --gpus-per-worker (Ray hides GPUs otherwise)")
    workers = args.workers if args.workers is not None else 1
    return ScaleOptions(address=args.ray, workers=workers, **pool)


def run_through_ray_client(args: argparse.Namespace, argv: list[str]) -> int:
    """``--ray ray://…``: Ray Data cannot drive a job through Ray Client, so the same command,
    with ``--ray auto``, runs inside the cluster and its output comes back here."""
    scale_options(args)  # the pool's options are checked before anything connects
    from ..distributed.client import driver_argv, run_in_cluster

    return run_in_cluster(args.ray, driver_argv(argv, args.ray))


@contextmanager
def quiet_ray(args: argparse.Namespace) -> Iterator[TextIO]:
    """Ray prints its own messages (tracebacks of retried tasks, its core's warnings) on the
    driver's stdout and stderr, below Python: they go to a log file for the run, kept only
    if the run fails in a way segany did not foresee. Yields the terminal's stderr for the
    progress bar. With ``--debug`` nothing is hidden."""
    if args.debug:
        yield sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd, log_path = tempfile.mkstemp(prefix="segany-ray-", suffix=".log")
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1)
    for fd in saved:
        os.dup2(log_fd, fd)
    keep = False
    try:
        yield terminal
    except (ValueError, OSError, KeyboardInterrupt):
        raise  # segany's own errors explain themselves
    except Exception as exc:
        keep = True
        message = " ".join(str(exc).split())[:300]
        raise RayJobError(f"{message} (Ray's messages: {log_path})") from exc
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()
        os.close(log_fd)
        if not keep:
            os.unlink(log_path)
