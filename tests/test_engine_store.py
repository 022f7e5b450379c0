"""The project store on SQLite and on a real PostgreSQL server: the migrations build exactly the
ORM's schema, images are known by content, a gear's result is written atomically and once, and
projects open or fail with clear errors."""

from __future__ import annotations

import shutil
import socket
import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from engine_helpers import blob, png_header, write_images
from postgres_server import free_port
from segany.engine import DatabaseError, NotAProjectError, Project, add_images, database, store
from segany.engine.database import MIGRATIONS, migrate, schema_revision
from segany.engine.project import PROJECT_FILE
from segany.engine.schema import Base, ImageRow, ImageRunRow, MaskRow, SettingRow
from segany.engine.store import pending_images, write_image_result


@pytest.fixture
def project(tmp_path, database_url):
    with Project.create(tmp_path / "project", database_url) as opened:
        yield opened


def count(project: Project, column) -> int:
    with project.session() as session:
        return session.scalar(select(func.count(column)))


# -- migrations --------------------------------------------------------------------------------
def schema_differences(project: Project) -> list:
    with project.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def alembic(project: Project, action, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with project.engine.begin() as connection:
        config.attributes["connection"] = connection
        action(config, revision)


def test_the_migrations_build_the_orm_schema_and_rerun_as_no_ops(project):
    assert schema_differences(project) == []
    head = schema_revision(project.engine)
    token = project.token
    migrate(project.engine)  # twice: a no-op
    assert schema_revision(project.engine) == head
    assert project.token == token
    assert schema_differences(project) == []


def test_downgrade_to_base_then_upgrade(project):
    alembic(project, command.downgrade, "base")
    assert set(inspect(project.engine).get_table_names()) <= {"alembic_version"}
    assert schema_revision(project.engine) is None
    alembic(project, command.upgrade, "head")
    assert schema_differences(project) == []
    assert schema_revision(project.engine) is not None


# -- images ------------------------------------------------------------------------------------
def test_the_same_image_is_added_once_whatever_its_name(project, tmp_path):
    images = tmp_path / "images"
    first, second = write_images(images, 2)
    with project.session() as session:
        report = add_images(session, images)
        assert (report.added, report.known, report.unreadable) == (2, 0, [])
        shutil.copy(first, images / "copy_of_first.png")
        again = add_images(session, images)
        assert (again.added, again.known) == (0, 3)
        rows = session.scalars(select(ImageRow).order_by(ImageRow.id)).all()
    assert [row.path for row in rows] == [str(first.resolve()), str(second.resolve())]
    assert all((row.height, row.width, row.error) == (24, 32, None) for row in rows)
    assert {row.split for row in rows} <= {"train", "heldout"}


def test_unreadable_files_are_recorded_with_the_reason_and_skipped(project, tmp_path):
    images = tmp_path / "images"
    (good,) = write_images(images, 1)
    broken = {
        "text.png": (b"not an image", "not an image"),
        "empty.jpg": (b"", "empty"),
        "truncated.png": (good.read_bytes()[:60], "truncated"),
        # 9000 x 8000 = 72M pixels: over the store's 64M limit, under PIL's own bomb limit,
        # refused from the header (the file is 70 bytes).
        "huge.png": (png_header(9000, 8000), "too many pixels"),
    }
    for name, (data, _) in broken.items():
        (images / name).write_bytes(data)
    with project.session() as session:
        report = add_images(session, images)
        assert (report.added, report.known) == (1, 0)
        reasons = dict(report.unreadable)
        assert set(reasons) == {str(images / name) for name in broken}
        for name, (_, reason) in broken.items():
            assert reason in reasons[str(images / name)], name
        stored = dict(session.execute(select(ImageRow.path, ImageRow.error)).all())
        assert stored == {str(good.resolve()): None} | {
            str((images / name).resolve()): reasons[str(images / name)] for name in broken
        }
        assert [row.path for row in pending_images(session)] == [str(good.resolve())]
        rerun = add_images(session, images)  # known by hash: not tried or reported again
        assert (rerun.added, rerun.known, rerun.unreadable) == (0, 5, [])


def test_the_pixel_limit_is_the_stores(project, tmp_path, monkeypatch):
    images = tmp_path / "images"
    write_images(images, 1, size=(20, 20))
    write_images(tmp_path / "big", 1, size=(30, 30), seed=1)
    shutil.copy(tmp_path / "big" / "img_000.png", images / "big.png")
    monkeypatch.setattr(store, "MAX_IMAGE_PIXELS", 800)  # 20x20 passes, 30x30 does not
    with project.session() as session:
        report = add_images(session, images)
    assert report.added == 1
    assert [path for path, _ in report.unreadable] == [str(images / "big.png")]
    assert "too many pixels (over 800)" in report.unreadable[0][1]


# -- one gear's result per image ---------------------------------------------------------------
def one_image(project: Project, tmp_path) -> int:
    write_images(tmp_path / "images", 1, size=(40, 50))
    with project.session() as session:
        add_images(session, tmp_path / "images")
        return session.scalar(select(ImageRow.id))


def test_write_image_result_is_written_once(project, tmp_path):
    image_id = one_image(project, tmp_path)
    masks = [blob(40, 50, seed) for seed in range(5)]
    with project.session() as session:
        assert write_image_result(session, image_id, 3, masks, None, seconds=1.5) is True
        assert write_image_result(session, image_id, 3, masks, None) is False
        assert pending_images(session) == []
        rows = session.scalars(select(MaskRow).order_by(MaskRow.id)).all()
    assert [row.counts for row in rows] == [m.rle["counts"] for m in masks]
    assert {(row.gear, row.status) for row in rows} == {(3, "accepted")}
    assert rows[0].point_coords == masks[0].point_coords
    assert count(project, ImageRunRow.id) == 1


def test_write_image_result_is_atomic(project, tmp_path):
    image_id = one_image(project, tmp_path)
    masks = [blob(40, 50, seed) for seed in range(5)]
    with project.session() as session:
        real_commit = session.commit

        def lost_at_commit() -> None:
            session.flush()  # the masks and the image's run are sent, then the line drops
            raise ConnectionError("connection lost")

        session.commit = lost_at_commit
        with pytest.raises(ConnectionError):
            write_image_result(session, image_id, 3, masks, None)
        session.commit = real_commit
    assert count(project, MaskRow.id) == 0 and count(project, ImageRunRow.id) == 0

    def failing_midway():
        yield from masks[:2]
        raise RuntimeError("the generator failed on mask 3")

    with project.session() as session, pytest.raises(RuntimeError):
        write_image_result(session, image_id, 3, failing_midway(), None)
    assert count(project, MaskRow.id) == 0 and count(project, ImageRunRow.id) == 0
    with project.session() as session:  # the image is still to do, and can be done
        assert [row.id for row in pending_images(session)] == [image_id]
        assert write_image_result(session, image_id, 3, masks, None) is True
    assert count(project, MaskRow.id) == 5


def test_racing_writers_store_one_result_per_image(project, tmp_path):
    write_images(tmp_path / "images", 6)
    with project.session() as session:
        add_images(session, tmp_path / "images")
        image_ids = sorted(session.scalars(select(ImageRow.id)))
    masks = [blob(24, 32, seed) for seed in range(4)]
    wins: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def worker() -> None:
        try:
            start.wait()
            for image_id in image_ids:
                with project.session() as session:
                    if write_image_result(session, image_id, 3, masks, None):
                        wins.append(image_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(wins) == image_ids
    assert count(project, MaskRow.id) == len(image_ids) * len(masks)


# -- opening and creating ----------------------------------------------------------------------
def test_open_refuses_folders_that_are_not_projects(tmp_path):
    with pytest.raises(NotAProjectError, match="not a segany project"):
        Project.open(tmp_path)
    (tmp_path / PROJECT_FILE).write_text("{broken")
    with pytest.raises(NotAProjectError, match="unreadable"):
        Project.open(tmp_path)
    (tmp_path / PROJECT_FILE).write_text('{"segany_project": 99}')
    with pytest.raises(NotAProjectError, match="format"):
        Project.open(tmp_path)


def test_reopening_finds_the_same_project(tmp_path, database_url):
    with Project.create(tmp_path / "p", database_url) as created:
        token = created.token
    with Project.open(tmp_path / "p") as reopened:
        assert reopened.token == token
        with reopened.session() as session:
            assert session.get(SettingRow, "token").value == token
    with Project.create(tmp_path / "p", database_url) as again:  # create on a project: opens it
        assert again.token == token


def test_create_on_a_database_that_does_not_answer(tmp_path):
    url = f"postgresql://annotator:s3cret@127.0.0.1:{free_port()}/project"
    with pytest.raises(DatabaseError) as failure:
        Project.create(tmp_path / "team", url)
    message = str(failure.value)
    assert f"postgresql://annotator:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "s3cret" not in message and "+psycopg" not in message
    assert not (tmp_path / "team").exists()


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    """A listening socket that accepts no conversation (a hung server): the connect timeout
    ends the wait with a DatabaseError; nothing is written."""
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_S", 2)
    outcome: list[BaseException] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]

        def create() -> None:
            try:
                Project.create(tmp_path / "team", f"postgresql://u@127.0.0.1:{port}/p")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=create, daemon=True)
        thread.start()
        thread.join(60)  # a hang guard only: libpq without a timeout would wait for ever
        assert not thread.is_alive(), "the connect timeout was not applied"
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseError), outcome
    assert "does not answer" in str(outcome[0])
    assert not (tmp_path / "team").exists()
