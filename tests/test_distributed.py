"""Scale-out on Ray, on a real local Ray instance (started once for the module, 2 CPUs): gear 3,
segment-everything and embeddings give the files and rows the single process gives; a worker
killed by pid and a driver killed mid-run lose and duplicate nothing; drivers and write tasks
at once store each image once, on SQLite and PostgreSQL; bad input is one ``error:`` line."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from segany.cli import main  # noqa: E402
from segany.data.scenes import SceneConfig, generate_scene  # noqa: E402
from segany.distributed import ClusterError, ScaleOptions  # noqa: E402
from segany.distributed.gear import run_automatic_gear_on_ray  # noqa: E402
from segany.distributed.jobs import embed_images  # noqa: E402
from segany.distributed.workers import ModelSpec  # noqa: E402
from segany.engine import Project  # noqa: E402
from segany.engine.schema import ImageRow, ImageRunRow, MaskRow, ModelVersionRow  # noqa: E402
from segany.inference.embedding import Embedding  # noqa: E402

SEEDS = (0, 1, 2, 3)
SCENE = SceneConfig(height=96, width=128)
PRESET = "tiny"  # the official grid without crops: about 2 s an image with the tiny model
SRC = str(Path(__file__).resolve().parents[1] / "src")
MASK_FIELDS = ("counts", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area", "predicted_iou",
               "stability_score", "point_coords", "crop_box", "gear", "status", "annotator")  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for the module; its GCS address for drivers in other processes."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_client(cluster):
    """A Ray Client server (``ray://``) in front of the module's instance."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ray.util.client.server", "--address", cluster,
         "--host", "127.0.0.1", "--port", str(port), "--mode", "legacy"],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no client server"
                time.sleep(0.2)
        yield f"ray://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for seed in SEEDS:
        Image.fromarray(generate_scene(seed, SCENE).image).save(folder / f"scene{seed}.png")
    return folder


def env() -> dict[str, str]:
    """For a driver in another process: this source tree, and the environment as it is now
    (after ``ray.init``, which turns on the local instance's token authentication here)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}


def new_project(folder: Path, images: Path, db: str | None = None) -> Path:
    project = folder / "project"
    command = ["engine", "init", str(project), "--images", str(images)]
    assert main(command + (["--db", db] if db else [])) == 0
    return project


def contents(project: Path) -> dict:
    """Everything gear 3 stored, by image name: the masks in order, the runs, the versions."""
    with Project.open(project) as p, p.session() as session:
        names = {row.id: Path(row.path).name for row in session.scalars(select(ImageRow))}
        masks: dict[str, list] = {}
        for row in session.scalars(select(MaskRow).order_by(MaskRow.id)):
            version = session.get(ModelVersionRow, row.model_version_id)
            values = tuple(getattr(row, f) for f in MASK_FIELDS)
            masks.setdefault(names[row.image_id], []).append((*values, version.name))
        runs = sorted(
            (names[r.image_id], r.gear, r.model_version_id is not None)
            for r in session.scalars(select(ImageRunRow))
        )
        versions = sorted(v.name for v in session.scalars(select(ModelVersionRow)))
    return {"masks": masks, "runs": runs, "versions": versions}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, images) -> dict:
    """Gear 3 in one process, without Ray: what every Ray run must store."""
    project = new_project(tmp_path_factory.mktemp("reference"), images)
    assert main(["engine", "auto", str(project), "--preset", PRESET]) == 0
    stored = contents(project)
    assert len(stored["masks"]) == len(SEEDS) and all(stored["masks"].values())
    return stored


def committed(project: Path) -> int:
    with Project.open(project) as p, p.session() as session:
        return session.scalar(select(func.count(ImageRunRow.id))) or 0


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segany", *args],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_commit(project: Path, process: subprocess.Popen, deadline_s: float = 240) -> int:
    deadline = time.monotonic() + deadline_s
    while (done := committed(project)) == 0:
        assert process.poll() is None, f"ended before the kill: {process.communicate()}"
        assert time.monotonic() < deadline, "no image finished in time"
        time.sleep(0.05)
    return done


def map_workers() -> list[int]:
    """Pids of this module's Ray Data actors: processes below this one (the local instance's
    raylet starts them) whose title Ray sets to ``ray::MapWorker(…)``."""

    def parent(pid: int) -> int:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])

    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            if not (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                continue
            pid = int(entry.name)
            while pid > 1 and pid != os.getpid():
                pid = parent(pid)
        except OSError:  # ended meanwhile
            continue
        if pid == os.getpid():
            found.append(int(entry.name))
    return found


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- the same rows and files as one process ---------------------------------------------------
def test_engine_auto_on_ray_stores_what_one_process_does(
    tmp_path, images, reference, cluster, capsys
):
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    project = new_project(tmp_path, folder)
    (folder / "scene2.png").write_bytes(b"truncated")  # unreadable now: reported, left pending
    capsys.readouterr()
    command = ["engine", "auto", str(project), "--preset", PRESET, "--ray", "--workers", "2"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "3 images segmented" in out and "1 unreadable" in out and "on Ray with 2 workers" in out
    assert f"warning: {(folder / 'scene2.png').resolve()}: " in out
    stored = contents(project)
    expected = {k: v for k, v in reference["masks"].items() if k != "scene2.png"}
    assert stored["masks"] == expected
    assert stored["runs"] == [r for r in reference["runs"] if r[0] != "scene2.png"]
    assert stored["versions"] == reference["versions"] == ["tiny"]


def test_postgres_write_tasks_store_each_image_once(
    tmp_path, images, reference, cluster, postgres_url
):
    # Results are written by a Datasink's write tasks in the cluster, two at a time, in two
    # pages (3 images, then 1).
    project = new_project(tmp_path, images, postgres_url)
    spec = ModelSpec("tiny")
    options = ScaleOptions(workers=2)
    report = run_automatic_gear_on_ray(str(project), spec, PRESET, options, page_size=3)
    assert (report.segmented, report.already_done, report.unreadable) == (4, 0, [])
    assert report.version is not None and report.version[1] == "tiny"
    assert contents(project) == reference

    again = run_automatic_gear_on_ray(str(project), spec, PRESET, options, page_size=3)
    assert (again.segmented, again.masks) == (0, 0)  # a no-op: nothing pending
    assert contents(project) == reference


def test_everything_and_embed_on_ray_write_the_same_files(tmp_path, images, cluster):
    sa1b = ["--points-per-side", "8"]
    for name, extra in (("one", []), ("ray", ["--ray", "--workers", "2", "--batch-size", "2"])):
        assert main(["everything", str(images), "--output", str(tmp_path / f"masks-{name}"),
                     *sa1b, *extra]) == 0  # fmt: skip
        assert main(["embed", str(images), "--output", str(tmp_path / f"emb-{name}"), *extra]) == 0
    for seed in SEEDS:
        one = json.loads((tmp_path / "masks-one" / f"scene{seed}.json").read_text())
        on_ray = json.loads((tmp_path / "masks-ray" / f"scene{seed}.json").read_text())
        assert one == on_ray and one["annotations"], "a scene with no mask proves nothing"
        a = Embedding.load(tmp_path / "emb-one" / f"scene{seed}.emb")
        b = Embedding.load(tmp_path / "emb-ray" / f"scene{seed}.emb")
        assert torch.equal(a.features, b.features)
        assert (a.original_size, a.input_size, a.encoder_id) == (
            b.original_size, b.input_size, b.encoder_id)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "masks-ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "masks-one").iterdir()
    )


# -- kills ------------------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
def test_a_worker_killed_mid_run_costs_nothing(tmp_path, images, reference, cluster):
    project = new_project(tmp_path, images)
    driver = start_cli("engine", "auto", str(project), "--preset", PRESET,
                       "--ray", cluster, "--workers", "2")  # fmt: skip
    wait_for_commit(project, driver)
    victims = map_workers()
    assert victims, "no Ray Data worker found"
    os.kill(victims[0], signal.SIGKILL)
    assert committed(project) < len(SEEDS), "the kill landed after the run"
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert "4 images segmented" in out
    assert contents(project) == reference  # every image once, every mask once


def test_a_killed_driver_resumes_with_two_drivers_at_once(tmp_path, images, reference, cluster):
    project = new_project(tmp_path, images)
    command = ("engine", "auto", str(project), "--preset", PRESET, "--ray", cluster)
    driver = start_cli(*command, "--workers", "2")
    wait_for_commit(project, driver)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    done = committed(project)
    assert 0 < done < len(SEEDS), "the kill landed halfway"
    # Two drivers resume at once, each with its own worker: on SQLite each is the one writer
    # of its results, and an image the other stored first is skipped, never stored twice.
    reruns = [start_cli(*command, "--workers", "1") for _ in range(2)]
    outputs = [rerun.communicate(timeout=300) for rerun in reruns]
    for rerun, (_, err) in zip(reruns, outputs):
        assert rerun.returncode == 0, err
    segmented = [int(re.search(r"(\d+) images segmented", out)[1]) for out, _ in outputs]
    assert sum(segmented) == len(SEEDS) - done  # each image stored by one of them
    assert contents(project) == reference


# -- bad input --------------------------------------------------------------------------------
def test_an_unreachable_cluster_fails_fast(tmp_path, images):
    project = new_project(tmp_path, images)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "segany", "engine", "auto", str(project), "--ray", "ray://127.0.0.1:1"],
        env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot reach the Ray cluster at ray://127.0.0.1:1" in one_error_line(result.stderr)
    assert time.monotonic() - start < 60
    assert committed(project) == 0


def test_a_ray_client_address_runs_the_driver_in_the_cluster(
    tmp_path, images, reference, ray_client
):
    # `--ray ray://…` from outside: the same command runs inside the cluster (relative paths
    # from the client's folder) and stores what one process does; its output comes back.
    new_project(tmp_path, images)
    result = subprocess.run(
        [sys.executable, "-m", "segany", "engine", "auto", "project", "--preset", PRESET,
         "--ray", ray_client],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(SEEDS)} images segmented" in result.stdout
    assert contents(tmp_path / "project") == reference
    bad = subprocess.run(
        [sys.executable, "-m", "segany", "everything", "missing", "--output", "out",
         "--ray", ray_client],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2  # the driver's own error line, relayed
    assert "missing" in one_error_line(bad.stderr)


def test_a_ray_data_job_from_python_refuses_ray_client(tmp_path, images):
    # Ray Data cannot be driven through Ray Client: from Python a ray:// job is refused with
    # advice, once the address answers.
    with socket.create_server(("127.0.0.1", 0)) as server:
        options = ScaleOptions(address=f"ray://127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(ClusterError, match="driven through Ray Client"):
            next(embed_images([images / "scene0.png"], ModelSpec(), options))


def test_without_ray_installed(tmp_path, images):
    # Every path without --ray works, and --ray says how to install Ray.
    project = new_project(tmp_path, images)
    script = f"""
import sys
sys.modules["ray"] = None  # `import ray` fails as if it were not installed
import segany, segany.distributed
from segany.cli import main
assert main(["everything", {str(images / "scene0.png")!r}, "--output", {str(tmp_path / "out")!r},
             "--points-per-side", "4"]) == 0
sys.exit(main(["engine", "auto", {str(project)!r}, "--ray"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], env=env(), capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'segany[ray]'" in one_error_line(result.stderr)
    assert (tmp_path / "out" / "scene0.json").is_file()
    assert committed(project) == 0


def test_a_worker_that_cannot_load_the_model_writes_nothing(tmp_path, images, cluster):
    project = new_project(tmp_path, images)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    for command in (
        ["engine", "auto", str(project), "--model", str(broken)],
        ["everything", str(images), "--output", str(tmp_path / "out"), "--model", str(broken)],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "segany", *command, "--ray", cluster],
            env=env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert "could not load the model" in line and "not a PyTorch checkpoint" in line
    with Project.open(project) as p, p.session() as session:
        assert session.scalar(select(func.count(ModelVersionRow.id))) == 0
        assert session.scalar(select(func.count(MaskRow.id))) == 0
    assert committed(project) == 0
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


def test_pool_options_need_ray_and_sense(tmp_path, images, capsys):
    project = new_project(tmp_path, images)
    capsys.readouterr()
    for command in (
        ["engine", "auto", str(project), "--gpus-per-worker", "1"],
        ["everything", str(images), "--output", str(tmp_path / "o"), "--workers", "2"],
        ["embed", str(images), "--output", str(tmp_path / "e"), "--batch-size", "4"],
        ["engine", "auto", str(project), "--ray", "--device", "cuda"],
        ["engine", "auto", str(project), "--ray", "--gpus-per-worker", "1"],
        ["embed", str(images / "scene0.png"), "--output", str(tmp_path / "x.emb"), "--ray"],
        ["everything", str(images), "--output", str(tmp_path / "o"), "--ray", "--batch-size", "0"],
    ):
        assert main(command) == 2, command
    assert capsys.readouterr().err.count("error:") == 7
    assert committed(project) == 0
