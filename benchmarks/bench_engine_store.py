"""Writing masks into a project store, SQLite and PostgreSQL: masks per second as gear 3 writes
them (one transaction per image of ~100 masks, ``write_image_result``) and as gear 1 writes them
(one transaction per accepted mask, ``AnnotationDesk.accept`` with its lease check).

Masks are smooth random blobs at 256x256 to 1024x1024, compressed COCO RLE, with provenance
(scores, point, crop box, model version); encoding is done before the clock starts. PostgreSQL
is a throwaway local server (tests/postgres_server.py) with durable defaults (fsync on), on the
same disk as the SQLite file (WAL, synchronous=FULL).

    python benchmarks/bench_engine_store.py [--masks 10000] [--per-image 100]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the server starter
from common import machine
from postgres_server import start_postgres
from segany.engine import AnnotationDesk, NewMask, Project, register_model
from segany.engine.schema import ImageRow
from segany.engine.store import write_image_result

SIZES = ((256, 256), (512, 384), (683, 1024), (1024, 1024))


def blob(height: int, width: int, rng: np.random.Generator) -> NewMask:
    """A smooth irregular blob filling part of an ``(height, width)`` image: an upsampled
    random field, thresholded inside a random box (boundaries like a real object's)."""
    box_h, box_w = int(height * rng.uniform(0.1, 0.6)), int(width * rng.uniform(0.1, 0.6))
    field = cv2.resize(rng.random((6, 6)).astype(np.float32), (box_w, box_h))
    mask = np.zeros((height, width), bool)
    y, x = rng.integers(0, height - box_h), rng.integers(0, width - box_w)
    mask[y : y + box_h, x : x + box_w] = field > 0.5
    return NewMask.from_mask(
        mask,
        predicted_iou=float(rng.uniform(0.88, 1)),
        stability_score=float(rng.uniform(0.95, 1)),
        point_coords=[[float(x + box_w / 2), float(y + box_h / 2)]],
        crop_box=[0.0, 0.0, float(width), float(height)],
    )


def mask_pool(count: int, seed: int = 0) -> dict[tuple[int, int], list[NewMask]]:
    """``count`` masks per image size."""
    rng = np.random.default_rng(seed)
    return {size: [blob(*size, rng) for _ in range(count)] for size in SIZES}


def add_fake_images(project: Project, count: int) -> list[tuple[int, tuple[int, int]]]:
    """``count`` image rows (no files: only the masks' writes are measured)."""
    rows = []
    with project.session() as session:
        for i in range(count):
            height, width = SIZES[i % len(SIZES)]
            digest = hashlib.sha256(f"bench image {i}".encode()).hexdigest()
            row = ImageRow(sha256=digest, path=f"/bench/{i}.jpg", width=width, height=height)
            session.add(row)
            rows.append(row)
        session.commit()
        return [(row.id, (row.height, row.width)) for row in rows]


def per_image(project: Project, pool, masks: int, per: int) -> list[float]:
    """Gear 3: one transaction per image; seconds per transaction."""
    with project.session() as session:
        model = register_model(session, "bench").id
    times = []
    for image_id, size in add_fake_images(project, masks // per):
        batch = pool[size][:per]
        with project.session() as session:
            start = time.perf_counter()
            assert write_image_result(session, image_id, 3, batch, model, seconds=1.0)
            times.append(time.perf_counter() - start)
    return times


def per_mask(project: Project, pool, masks: int, per: int) -> list[float]:
    """Gear 1: one transaction per accepted mask (the desk's lease check included); seconds
    per mask. Each image is finished after its ``per`` masks."""
    with project.session() as session:
        model = register_model(session, "bench").id
    add_fake_images(project, masks // per)
    desk, times = AnnotationDesk(project), []
    while (task := desk.checkout("bench")) is not None:
        for i, mask in enumerate(pool[(task.height, task.width)][:per]):
            start = time.perf_counter()
            desk.accept("bench", task.image_id, mask, clicks=3, seconds=4.0,
                        model_version_id=model, client_key=f"{task.image_id}:{i}")  # fmt: skip
            times.append(time.perf_counter() - start)
        desk.finish("bench", task.image_id)
    return times


def run(name: str, url: str | None, folder: Path, pool, args) -> None:
    for mode, write in (("one transaction per image", per_image), ("one per mask", per_mask)):
        with Project.create(folder / f"{name}-{write.__name__}", url and url()) as project:
            times = write(project, pool, args.masks, args.per_image)
        total = sum(times)
        unit = args.per_image if write is per_image else 1
        print(
            f"| {name} | {mode} | {len(times) * unit} | {total:.2f} | "
            f"**{len(times) * unit / total:,.0f}** | {1000 * statistics.median(times):.2f} |",
            flush=True,
        )


def fsync_ms(folder: Path, repeats: int = 200) -> float:
    """Median ms of a 4 KiB write and fdatasync in ``folder``: the floor under each commit."""
    times = []
    with open(folder / "fsync-probe", "wb", buffering=0) as probe:
        for _ in range(repeats):
            start = time.perf_counter()
            probe.write(b"x" * 4096)
            os.fdatasync(probe.fileno())
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SHOW server_version").fetchone()[0].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=int, default=10_000)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    pool = mask_pool(args.per_image)
    counts = [len(m.rle["counts"]) for masks in pool.values() for m in masks]
    print(machine())
    print(f"SQLite {sqlite3.sqlite_version}; masks at {SIZES}, RLE counts of "
          f"{statistics.median(counts):.0f} chars median ({min(counts)}-{max(counts)})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as temporary:
        folder = Path(temporary)
        print(f"load average {os.getloadavg()[0]:.1f}; fsync of 4 KiB in {folder.parent}: "
              f"{fsync_ms(folder):.2f} ms median")  # fmt: skip
        print("| database | writes | masks | s | masks/s | median ms per transaction |")
        print("|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            if backend == "sqlite":
                run("SQLite", None, folder, pool, args)
            else:
                with start_postgres(durable=True) as server:
                    name = f"PostgreSQL {server_version(server.url())}"
                    run(name, server.create_database, folder, pool, args)
        print(f"at the end: load average {os.getloadavg()[0]:.1f}; fsync {fsync_ms(folder):.2f} ms")


if __name__ == "__main__":
    main()
