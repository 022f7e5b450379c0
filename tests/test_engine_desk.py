"""The annotation desk on SQLite and on a real PostgreSQL server: one annotator per image (also
when they race), leases that expire and are taken over, writes refused to a lost lease, and
accept / reject / restore / undo / finish with their meanings; accepted masks survive kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from engine_helpers import blob, write_images
from segany.engine import AnnotationDesk, LeaseLostError, NotAllowedError, Project, add_images
from segany.engine.schema import ImageRow, ImageRunRow, LeaseRow, MaskRow, utcnow
from segany.engine.store import write_proposals

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture
def project(tmp_path, database_url):
    with Project.create(tmp_path / "project", database_url) as opened:
        yield opened


def image_ids(project: Project, folder: Path, count: int) -> list[int]:
    write_images(folder, count)
    with project.session() as session:
        add_images(session, folder)
        return sorted(session.scalars(select(ImageRow.id)))


def accept(desk: AnnotationDesk, who: str, image_id: int, seed: int = 0, **extra) -> int:
    return desk.accept(
        who, image_id, blob(24, 32, seed), clicks=2, seconds=1.0, model_version_id=None, **extra
    )


def mask(project: Project, mask_id: int) -> MaskRow:
    with project.session() as session:
        row = session.get(MaskRow, mask_id)
        assert row is not None
        return row


def expire_leases(project: Project) -> None:
    """Time passes: every lease ran out a second ago."""
    with project.session() as session:
        session.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()


# -- the queue ---------------------------------------------------------------------------------
def test_two_annotators_never_get_the_same_image(project, tmp_path):
    first, second = image_ids(project, tmp_path / "images", 2)
    desk = AnnotationDesk(project)
    alice = desk.checkout("alice")
    bob = desk.checkout("bob")
    assert (alice.image_id, bob.image_id) == (first, second)
    assert (alice.gear, alice.width, alice.height) == (1, 32, 24)
    assert desk.checkout("carol") is None  # every image is held
    assert desk.checkout("alice").image_id == first  # her own image again, lease renewed
    desk.release("alice", first)
    assert desk.checkout("carol").image_id == first


def test_racing_annotators_never_share_an_image(project, tmp_path):
    ids = image_ids(project, tmp_path / "images", 16)
    desk = AnnotationDesk(project)
    names = [f"annotator{i}" for i in range(4)]
    taken: dict[str, list[int]] = {name: [] for name in names}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def annotate(name: str) -> None:
        try:
            start.wait()
            while (task := desk.checkout(name)) is not None:
                taken[name].append(task.image_id)
                accept(desk, name, task.image_id)
                desk.finish(name, task.image_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(i for got in taken.values() for i in got) == ids  # each image exactly once
    with project.session() as session:
        runs = session.execute(select(ImageRunRow.image_id, ImageRunRow.annotator)).all()
        assert sorted(runs) == sorted((i, n) for n, got in taken.items() for i in got)
        assert session.scalar(select(func.count()).select_from(LeaseRow)) == 0


def test_an_image_finished_after_the_queue_was_read_is_not_handed_out(project, tmp_path):
    first, second = image_ids(project, tmp_path / "images", 2)
    desk = AnnotationDesk(project)
    stale = desk._free_images  # bob's queue, read while alice still held the first image
    with project.session() as session:
        queue = [first, *stale(session)]
    assert desk.checkout("alice").image_id == first
    desk.finish("alice", first)
    desk._free_images = lambda session, among=None: queue
    assert desk.checkout("bob").image_id == second
    with project.session() as session:
        assert session.get(LeaseRow, first) is None


def test_an_expired_lease_is_taken_over_and_the_old_holder_may_not_write(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    desk = AnnotationDesk(project)
    assert desk.checkout("alice").image_id == image_id
    kept = accept(desk, "alice", image_id)
    assert desk.checkout("bob") is None
    expire_leases(project)
    task = desk.checkout("bob")
    assert task.image_id == image_id
    assert [m.id for m in task.accepted] == [kept]  # alice's saved work stays with the image
    with pytest.raises(LeaseLostError):
        accept(desk, "alice", image_id, seed=1)
    with pytest.raises(LeaseLostError):
        desk.undo("alice", image_id, kept)
    with pytest.raises(LeaseLostError):
        desk.finish("alice", image_id)
    assert desk.checkout("alice") is None
    with project.session() as session:
        assert session.scalar(select(func.count(MaskRow.id))) == 1
        assert session.get(LeaseRow, image_id).annotator == "bob"


def test_an_expired_lease_nobody_took_is_renewed_by_a_write(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    desk = AnnotationDesk(project)
    desk.checkout("alice")
    expire_leases(project)
    accept(desk, "alice", image_id)  # saved after a long pause: kept, not refused
    assert desk.checkout("bob") is None


# -- the writes --------------------------------------------------------------------------------
def test_accept_is_idempotent_on_its_client_key(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    desk = AnnotationDesk(project)
    desk.checkout("alice")
    first = accept(desk, "alice", image_id, client_key="alice:1")
    assert accept(desk, "alice", image_id, client_key="alice:1") == first  # a retried request
    second = accept(desk, "alice", image_id, seed=1, client_key="alice:2")
    assert second != first
    with project.session() as session:
        assert session.scalar(select(func.count(MaskRow.id))) == 2
    row = mask(project, first)
    assert (row.status, row.gear, row.annotator, row.clicks) == ("accepted", 1, "alice", 2)


def test_undo_takes_back_ones_own_mask_only(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    desk = AnnotationDesk(project)
    desk.checkout("alice")
    mask_id = accept(desk, "alice", image_id)
    desk.undo("alice", image_id, mask_id)
    assert mask(project, mask_id).status == "undone"
    with pytest.raises(NotAllowedError):
        desk.undo("alice", image_id, mask_id)  # undone already
    assert desk.checkout("alice").accepted == ()  # a reload no longer shows it


def proposals(project: Project, image_id: int, count: int) -> list[int]:
    with project.session() as session:
        assert write_proposals(session, image_id, [blob(24, 32, s) for s in range(count)], None)
        assert not write_proposals(session, image_id, [blob(24, 32, 9)], None)  # once only
        return sorted(session.scalars(select(MaskRow.id).where(MaskRow.image_id == image_id)))


def test_reject_restore_correct_undo_and_finish_a_prefilled_image(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    rejected, corrected, kept = proposals(project, image_id, 3)
    desk = AnnotationDesk(project)
    task = desk.checkout("alice")
    assert task.gear == 2 and [m.id for m in task.proposals] == [rejected, corrected, kept]
    desk.reject("alice", image_id, rejected)
    assert mask(project, rejected).status == "rejected"
    desk.restore("alice", image_id, rejected)
    assert mask(project, rejected).status == "proposal"
    with pytest.raises(NotAllowedError):
        desk.restore("alice", image_id, rejected)  # open again: nothing to restore
    desk.reject("alice", image_id, rejected)
    with pytest.raises(NotAllowedError):
        desk.reject("alice", image_id, rejected)  # not an open proposal any more
    fix = accept(desk, "alice", image_id, seed=5, corrects_id=corrected)
    assert mask(project, corrected).status == "corrected"
    assert (mask(project, fix).corrects_id, mask(project, fix).gear) == (corrected, 2)
    desk.undo("alice", image_id, fix)  # the proposal it corrected is open again
    assert mask(project, corrected).status == "proposal"
    fix = accept(desk, "alice", image_id, seed=6, corrects_id=corrected)
    added = accept(desk, "alice", image_id, seed=7)
    desk.finish("alice", image_id, seconds=12.0)
    statuses = {i: mask(project, i).status for i in (rejected, corrected, kept, fix, added)}
    assert statuses == {rejected: "rejected", corrected: "corrected", kept: "accepted",
                        fix: "accepted", added: "accepted"}  # fmt: skip
    with project.session() as session:
        run = session.scalar(select(ImageRunRow).where(ImageRunRow.image_id == image_id))
        assert (run.gear, run.annotator, run.seconds) == (2, "alice", 12.0)
        assert session.get(LeaseRow, image_id) is None
    assert desk.checkout("alice") is None and desk.checkout("bob") is None
    with pytest.raises(NotAllowedError):
        accept(desk, "alice", image_id, seed=8)
    with pytest.raises(NotAllowedError):
        desk.finish("alice", image_id)


def test_proposals_of_another_image_are_not_yours_to_decide(project, tmp_path):
    first, second = image_ids(project, tmp_path / "images", 2)
    (other,) = proposals(project, second, 1)
    desk = AnnotationDesk(project)
    assert desk.checkout("alice").image_id == first
    with pytest.raises(NotAllowedError):
        desk.reject("alice", first, other)
    with pytest.raises(NotAllowedError):
        accept(desk, "alice", first, corrects_id=other)
    assert mask(project, other).status == "proposal"


# -- kill -9 -----------------------------------------------------------------------------------
CHILD = """
import sys
from engine_helpers import blob
from segany.engine import AnnotationDesk, Project

desk = AnnotationDesk(Project.open(sys.argv[1]))
task = desk.checkout("crashy")
masks = [blob(24, 32, seed) for seed in range(8)]
i = 0
while True:
    mask_id = desk.accept("crashy", task.image_id, masks[i % 8], clicks=1, seconds=0.5,
                          model_version_id=None, client_key=f"crashy:{i}")
    print(mask_id, flush=True)  # reported only once accept has returned (committed)
    i += 1
"""


def test_accepted_masks_survive_kill_9(project, tmp_path):
    (image_id,) = image_ids(project, tmp_path / "images", 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(project.path)], stdout=subprocess.PIPE, text=True, env=env
    )
    reported = []
    try:
        for line in child.stdout:
            reported.append(int(line))
            if len(reported) == 30:
                child.send_signal(signal.SIGKILL)  # while it accepts the next masks
                break
    finally:
        child.kill()
        reported += [int(line) for line in child.stdout if line.endswith("\n")]  # whole lines
        child.wait()
    assert len(reported) >= 30, f"the child stopped early (exit {child.returncode})"
    with Project.open(project.path) as reopened, reopened.session() as session:
        if reopened.engine.dialect.name == "sqlite":
            assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        rows = session.execute(select(MaskRow.id, MaskRow.client_key, MaskRow.status)).all()
    stored = {row.id: row for row in rows}
    assert set(reported) <= set(stored)  # every mask reported committed is there
    assert len(reported) == len(set(reported))
    # No duplicates: one row per client key, keys 0..n-1 (at most one committed but unreported).
    assert sorted(int(r.client_key.split(":")[1]) for r in rows) == list(range(len(rows)))
    assert len(reported) <= len(rows) <= len(reported) + 1
    assert {r.status for r in rows} == {"accepted"}
    with Project.open(project.path) as reopened:  # the same annotator carries on
        desk = AnnotationDesk(reopened)
        task = desk.checkout("crashy")
        assert task.image_id == image_id and len(task.accepted) == len(rows)
        assert accept(desk, "crashy", image_id, client_key="crashy:0") == reported[0]
