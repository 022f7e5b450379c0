"""Scale-out on Ray: gear 3's throughput in one process and on a local Ray instance with 1 and
2 workers (images per minute, bundled tiny model, the ``tiny`` preset on generated scenes), and
the driver's peak memory for 50 against 500 images.

Every figure is a whole ``segany`` command in a fresh process, as a user runs it. Throughput is
the marginal rate between a small and a large folder (``(n_large - n_small) / (t_large -
t_small)``), so Ray's start and each worker's model load (the fixed cost, reported too) do not
hide it. Memory is the driver's peak RSS (``ru_maxrss``) for ``segany everything`` and ``segany
embed`` on Ray with 2 workers over 64x64 scenes with a 2x2 grid (a cheap image, so that 500
cost seconds): flat when nothing grows with the folder.

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py [--small 4] [--large 16] [--memory 50,500,2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from common import machine
from segany.data.scenes import SceneConfig, generate_scene

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Runs a command in this process and reports its peak RSS after it returns.
PEAK = (
    "import resource, sys; from segany.cli import main; code = main(sys.argv[1:]); "
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)
# One thread per worker everywhere (run with OMP_NUM_THREADS=1): on a shared 2-core machine
# torch's 2-thread OpenMP spin-waits under load and runs 20x slower, which would measure the
# neighbours, not the scale-out.
GEAR3 = {
    "one process": [],
    "one process, --workers 2 (worker processes)": ["--workers", "2"],
    "Ray, 1 worker": ["--ray", "--workers", "1"],
    "Ray, 2 workers": ["--ray", "--workers", "2"],
}


def scenes(folder: Path, count: int, config: SceneConfig) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        Image.fromarray(generate_scene(seed, config).image).save(folder / f"scene{seed:04d}.png")
    return folder


def segany(*args: str) -> tuple[float, str]:
    """Seconds a ``segany`` command takes in a fresh process, and its stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK, *args], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"segany {' '.join(args)} failed:\n{result.stderr}")
    return seconds, result.stderr


def gear3_seconds(work: Path, images: Path, extra: list[str]) -> float:
    project = work / f"project-{time.monotonic_ns()}"
    segany("engine", "init", str(project), "--images", str(images))
    seconds, _ = segany("engine", "auto", str(project), "--preset", "tiny", *extra)
    return seconds


def throughput(work: Path, small: int, large: int) -> None:
    config = SceneConfig(height=96, width=128)
    folders = {n: scenes(work / f"scenes-{n}", n, config) for n in (small, large)}
    print("| command | fixed cost (s) | images/min | speed-up |")
    print("|---|---|---|---|")
    base = None
    for name, extra in GEAR3.items():
        t_small = gear3_seconds(work, folders[small], extra)
        t_large = gear3_seconds(work, folders[large], extra)
        per_image = (t_large - t_small) / (large - small)
        rate = 60 / per_image
        base = base or rate
        fixed = t_small - small * per_image
        print(f"| {name} | {fixed:.1f} | **{rate:.1f}** | {rate / base:.2f}x |", flush=True)


def peak_rss(work: Path, counts: list[int]) -> None:
    config = SceneConfig(height=64, width=64)
    grid = ["--points-per-side", "2"]
    print("| command | " + " | ".join(f"{n} images: peak RSS (MiB), s" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    commands = {
        "everything --ray --workers 2": lambda src, out: ["everything", src, "--output", out, *grid,
                                                           "--ray", "--workers", "2"],
        "embed --ray --workers 2 --batch-size 8": lambda src, out: ["embed", src, "--output", out,
            "--ray", "--workers", "2", "--batch-size", "8"],
    }  # fmt: skip
    folders = {n: scenes(work / f"small-{n}", n, config) for n in counts}
    for name, command in commands.items():
        cells = []
        for n in counts:
            out = work / f"out-{time.monotonic_ns()}"
            seconds, stderr = segany(*command(str(folders[n]), str(out)))
            kib = int(stderr.rsplit("peak_kib", 1)[1].split()[0])
            cells.append(f"{kib / 1024:.0f}, {seconds:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=4, help="images in the small folder")
    parser.add_argument("--large", type=int, default=16, help="images in the large folder")
    parser.add_argument("--memory", default="50,500,2000", help="folder sizes for the driver's RSS")
    parser.add_argument("--skip", choices=("throughput", "memory"), help="leave one part out")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.skip != "throughput":
            throughput(work, args.small, args.large)
        if args.skip != "memory":
            peak_rss(work, [int(n) for n in args.memory.split(",")])


if __name__ == "__main__":
    main()
