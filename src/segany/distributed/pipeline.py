"""Ray Data's streaming pattern, once for every job: pages of image rows → ``from_items`` →
``map_batches`` over an actor pool (each actor loads the model once) → result rows streamed to
the driver (:func:`stream`) or handed to a Datasink in the cluster (:func:`write`).

The driver holds one page of rows (an index and a path each) at a time, never the images or
the masks: Ray Data's backpressure keeps the results in flight bounded, and each result is
written and dropped as it arrives. Actors restart when their process dies and the batches they
held run again (Ray Data creates its actors with ``max_restarts=-1`` and
``max_task_retries=-1`` unless told otherwise, since Ray 2.9), so a killed worker costs the
images in flight, which the idempotent writers then store once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from .cluster import ScaleOptions, import_ray

# Image rows per dataset: what the driver holds at a time. Each page starts a new actor pool
# (each worker loads the model again), so a page gives every worker at least PAGE_PER_WORKER
# images: the reload then costs a few percent even for ViT-H (see ARCHITECTURE.md).
PAGE_SIZE = 10_000
PAGE_PER_WORKER = 200
# PostgreSQL write tasks at a time, at most: each holds a connection (the server's default
# limit is 100), and 16 write far more than any pool produces (ARCHITECTURE.md, scale plan).
MAX_WRITERS = 16
Row = dict[str, Any]


class ModelLoadError(ValueError):
    """A worker could not load the model (weights missing on its node, out of memory …)."""


def pages(rows: Iterable[Row], size: int = PAGE_SIZE) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size``; only one list is held at a time."""
    iterator = iter(rows)
    while page := list(islice(iterator, size)):
        yield page


def page_size_for(options: ScaleOptions) -> int:
    return max(PAGE_SIZE, PAGE_PER_WORKER * options.workers)


def threads_per_worker(options: ScaleOptions) -> int:
    return max(1, math.floor(options.cpus_per_worker))


def _mapped(page: list[Row], worker: type, args: tuple, options: ScaleOptions) -> Any:
    """The lazy dataset of one page's results: one block per batch, so every actor gets work."""
    ray = import_ray()
    dataset = ray.data.from_items(
        page, override_num_blocks=math.ceil(len(page) / options.batch_size)
    )
    remote: dict[str, Any] = {"num_cpus": options.cpus_per_worker}
    if options.gpus_per_worker:
        remote["num_gpus"] = options.gpus_per_worker
    return dataset.map_batches(
        worker,
        fn_constructor_args=args,
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        batch_size=options.batch_size,
        batch_format="numpy",
        **remote,
    )


def model_load_error(exc: BaseException) -> ModelLoadError | None:
    """The :class:`ModelLoadError` inside Ray's wrappers of a failed job, if that is the cause:
    Ray keeps the original as ``cause`` (with ``raise_original_map_exception``), else only in
    the text of the worker's traceback."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, ModelLoadError):  # its first line: Ray appends retry advice
            return ModelLoadError(str(cause.args[0]).splitlines()[0])
        if type(error) is ModelLoadError:
            return ModelLoadError(str(error.args[0]).splitlines()[0])
        stack += [cause, error.__cause__, error.__context__]
    marker = f"{ModelLoadError.__name__}: "
    lines = [line for line in str(exc).splitlines() if marker in line]
    return ModelLoadError(lines[-1].split(marker, 1)[1].strip()) if lines else None


def _translated(exc: Exception) -> Exception:
    found = model_load_error(exc)
    if found is not None:
        return found
    return exc


def stream(
    rows: Iterable[Row],
    worker: type,
    args: tuple,
    options: ScaleOptions,
    page_size: int | None = None,
) -> Iterator[Row]:
    """Each image's result row as a worker finishes it (in no particular order)."""
    for page in pages(rows, page_size or page_size_for(options)):
        try:
            yield from _mapped(page, worker, args, options).iter_rows()
        except Exception as exc:
            error = _translated(exc)
            if error is exc:
                raise
            raise error from None


def write(
    rows: Iterable[Row],
    worker: type,
    args: tuple,
    sink: Any,
    options: ScaleOptions,
    page_size: int | None = None,
) -> None:
    """Each page's results written by ``sink`` (a Ray Data ``Datasink``) in the cluster: as
    many write tasks at a time as workers, up to MAX_WRITERS; they reserve no CPU (they wait
    on the database) so that they run beside a pool that holds every CPU."""
    writers = min(options.workers, MAX_WRITERS)
    for page in pages(rows, page_size or page_size_for(options)):
        try:
            _mapped(page, worker, args, options).write_datasink(
                sink, ray_remote_args={"num_cpus": 0}, concurrency=writers
            )
        except Exception as exc:
            error = _translated(exc)
            if error is exc:
                raise
            raise error from None
