"""``segany engine init`` on SQLite and on a real PostgreSQL server: creates, reruns as a no-op,
and fails on bad input with one ``error:`` line, exit status 2, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine_helpers import write_images
from postgres_server import free_port
from segany.cli import main
from segany.engine import Project
from segany.engine.project import PROJECT_FILE

SRC = Path(__file__).resolve().parents[1] / "src"


def init(capsys, project: Path, images: Path, *more: str) -> tuple[int, str, str]:
    code = main(["engine", "init", str(project), "--images", str(images), *more])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_init_creates_then_adds_only_new_images(tmp_path, capsys, database_url):
    images, project = tmp_path / "images", tmp_path / "project"
    write_images(images, 2)
    db = ["--db", database_url] if database_url else []
    code, out, err = init(capsys, project, images, *db)
    assert (code, err) == (0, "")
    assert out == f"{project}: 2 images added, 0 already known, 0 unreadable (recorded, skipped)\n"
    code, out, _ = init(capsys, project, images, *db)
    assert code == 0 and "0 images added, 2 already known" in out
    write_images(tmp_path / "more", 3, seed=7)
    (tmp_path / "more" / "img_000.png").rename(images / "new.png")
    code, out, _ = init(capsys, project, images)  # the project file knows the database
    assert code == 0 and "1 images added, 2 already known" in out
    with Project.open(project) as opened:
        assert opened.url == (database_url or f"sqlite:///{(project / 'project.db').resolve()}")


def test_init_warns_of_unreadable_files(tmp_path, capsys):
    images = tmp_path / "images"
    write_images(images, 1)
    (images / "notes.jpg").write_text("not a picture")
    code, out, err = init(capsys, tmp_path / "project", images)
    assert (code, err) == (0, "")
    warning, summary = out.splitlines()
    assert (
        warning
        == f"warning: skipped {images / 'notes.jpg'}: not an image file (or an unsupported format)"
    )
    assert summary.endswith("1 images added, 0 already known, 1 unreadable (recorded, skipped)")


def test_init_refuses_a_path_that_is_no_project_folder(tmp_path, capsys):
    write_images(tmp_path / "images", 1)
    (tmp_path / "file").write_text("a file")
    code, out, err = init(capsys, tmp_path / "file", tmp_path / "images")
    assert (code, out) == (2, "") and "not a folder" in one_error_line(err)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / PROJECT_FILE).write_text("{not json")
    code, out, err = init(capsys, broken, tmp_path / "images")
    assert (code, out) == (2, "") and "unreadable" in one_error_line(err)
    assert sorted(p.name for p in broken.iterdir()) == [PROJECT_FILE]


def test_init_without_its_images_folder(tmp_path, capsys):
    code, out, err = init(capsys, tmp_path / "project", tmp_path / "missing")
    assert (code, out) == (2, "") and "not a folder of images" in one_error_line(err)
    assert not (tmp_path / "project").exists()


def test_init_on_a_database_that_does_not_answer(tmp_path, capsys):
    write_images(tmp_path / "images", 1)
    port = free_port()  # nothing listens there
    db = f"postgresql://team:s3cret@127.0.0.1:{port}/project"
    code, out, err = init(capsys, tmp_path / "project", tmp_path / "images", "--db", db)
    line = one_error_line(err)
    assert (code, out) == (2, "")
    assert f"database postgresql://team:***@127.0.0.1:{port}/project does not answer" in line
    assert "s3cret" not in line
    assert not (tmp_path / "project").exists()


def test_a_project_keeps_its_database(tmp_path, capsys, postgres_url):
    write_images(tmp_path / "images", 1)
    assert init(capsys, tmp_path / "project", tmp_path / "images")[0] == 0
    code, out, err = init(capsys, tmp_path / "project", tmp_path / "images", "--db", postgres_url)
    assert (code, out) == (2, "") and "cannot move to postgresql://" in one_error_line(err)


def test_the_command_exits_2_without_a_traceback(tmp_path):
    """The real process, once: exit status and stderr as a shell sees them."""
    write_images(tmp_path / "images", 1)
    db = f"postgresql://u@127.0.0.1:{free_port()}/p"
    command = [sys.executable, "-m", "segany", "engine", "init", str(tmp_path / "project")]
    result = subprocess.run(
        [*command, "--images", str(tmp_path / "images"), "--db", db],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "does not answer" in one_error_line(result.stderr)
    assert not (tmp_path / "project").exists()
