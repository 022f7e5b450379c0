"""Joining Ray for one run: a local instance started and stopped for it, or an existing
cluster (``auto``, ``host:port``; a ``ray://`` Ray Client address runs the command's driver in
the cluster instead, see :mod:`segany.distributed.client`), with failures as one-line errors."""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

LOCAL = "local"  # `--ray` without an address: a local instance for the run
RAY_EXTRA = "pip install 'segany[ray]'"
PROBE_SECONDS = 5.0  # how long an address may take to accept a TCP connection


class RayUnavailableError(ValueError):
    """Ray is not installed (or not importable) in this environment."""


class ClusterError(ValueError):
    """The Ray cluster cannot be reached, joined or is too small for the pool asked for."""


@dataclass(frozen=True)
class ScaleOptions:
    """Where a job runs and the shape of its actor pool.

    ``address``: None or ``"local"`` for a local instance, else what ``ray.init`` takes.
    ``workers``: actors in the pool, each loading the model once. ``batch_size``: images per
    call of an actor. ``gpus_per_worker`` / ``cpus_per_worker``: what each actor reserves (a
    fraction of a GPU shares one)."""

    address: str | None = None
    workers: int = 1
    batch_size: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker:g}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker:g}")

    @property
    def local(self) -> bool:
        return self.address in (None, LOCAL)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, whitespace collapsed."""
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else type(exc).__name__


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
        import ray.data  # the extra is ray[data]
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray needs Ray, which is not installed ({one_line(exc)}): {RAY_EXTRA}"
        ) from None
    return ray


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail fast on an address nothing listens at: Ray's own client retries for half a minute
    and a driver joining by GCS address for longer."""
    target = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or one_line(exc) or "timed out"
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def _local_cpus(options: ScaleOptions) -> int:
    """A local instance offers enough CPUs for the pool (a laptop may ask for more workers
    than it has cores: they share them); GPUs are what the machine has."""
    return math.ceil(max(os.cpu_count() or 1, options.workers * options.cpus_per_worker))


def _check_gpus(ray: ModuleType, options: ScaleOptions) -> None:
    wanted = options.workers * options.gpus_per_worker
    have = ray.cluster_resources().get("GPU", 0.0)
    if wanted > have:
        raise ClusterError(
            f"{options.workers} workers x {options.gpus_per_worker:g} GPUs need {wanted:g} GPUs; "
            f"this machine has {have:g}"
        )


def configure_ray_data(ray: ModuleType) -> None:
    """Ray Data without progress bars and execution banners (the commands print their own),
    raising a worker's own exception rather than a wrapper that loses its type."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for name, value in (
        ("print_on_execution_start", False),
        ("verbose_stats_logs", False),
        ("raise_original_map_exception", True),
    ):
        if hasattr(context, name):
            setattr(context, name, value)
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def refuse_ray_client(ray: ModuleType, address: str) -> None:
    """Ray Data's streaming executor needs a driver inside the cluster (it registers callbacks
    with the core worker, which a Ray Client connection does not have): a job started from
    Python with a ``ray://`` address is refused with what to do instead."""
    probe(address)
    raise ClusterError(
        f"Ray Data jobs cannot be driven through Ray Client ({address}) with Ray "
        f"{ray.__version__}: the segany command runs its driver in the cluster for a ray:// "
        "address (segany.distributed.client.run_in_cluster); from Python, connect with "
        "ray.init('auto') on a machine of the cluster"
    )


@contextmanager
def connected(options: ScaleOptions) -> Iterator[ModuleType]:
    """Ray, initialised for the run and shut down after it; a process already connected (a
    notebook, a test) keeps its connection and it is left open."""
    ray = import_ray()
    if options.address is not None and options.address.startswith("ray://"):
        refuse_ray_client(ray, options.address)
    if ray.is_initialized():
        configure_ray_data(ray)
        yield ray
        return
    settings: dict = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.local:
        settings.update(num_cpus=_local_cpus(options), include_dashboard=False)
    elif options.address != "auto":
        probe(options.address)  # type: ignore[arg-type]
    try:
        ray.init(address=None if options.local else options.address, **settings)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        where = "a local Ray instance" if options.local else f"the Ray cluster at {options.address}"
        if options.address == "auto" and isinstance(exc, ConnectionError):
            raise ClusterError(
                "no Ray cluster runs on this machine: start one with `ray start --head`, or "
                "give its address (--ray HOST:6379)"
            ) from None
        hint = ""
        if not options.local and isinstance(exc, ConnectionError):
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token)"
        raise ClusterError(f"cannot start or join {where}: {one_line(exc)}{hint}") from None
    try:
        if options.local and options.gpus_per_worker:
            _check_gpus(ray, options)
        configure_ray_data(ray)
        yield ray
    finally:
        ray.shutdown()
