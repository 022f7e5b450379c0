"""A throwaway PostgreSQL server for the engine's tests and benchmarks: Debian's (or any local)
server binaries run in a temporary folder, on a free localhost port, its unix socket in that
folder too; stopped and removed on exit. No system service is used or touched.

``initdb`` refuses to run as root, so under root the server runs as the ``postgres`` system user
(``runuser``), in a folder handed to that user."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

SUPERUSER = "segany"


class PostgresMissingError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The folder with ``initdb``/``pg_ctl``: ``pg_config --bindir``, else Debian's newest
    ``/usr/lib/postgresql/*/bin`` (Debian puts neither on PATH)."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(p) for p in versions), key=lambda p: int(p.parent.name), reverse=True
    )
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresMissingError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found; on Debian: "
        "apt-get install postgresql (no service needs to run)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server; ``url(name)`` is a ``postgresql://`` URL of database ``name``."""

    folder: Path
    bindir: Path
    port: int
    _names: count = field(default_factory=lambda: count(1))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database (a copy of template1: milliseconds); returns its URL."""
        import psycopg

        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        # Immediate: the folder is deleted next, nothing in it needs to be kept.
        _run_as_owner(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_owner(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a server command as ourselves, or as ``postgres`` when we are root."""
    if _as_root():
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        command = [runuser, "-u", "postgres", "--", *command]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def _make_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="segany-pg-"))
    if _as_root():
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            folder.rmdir()
            raise RuntimeError(
                "running as root, and initdb refuses root: a `postgres` user is needed to run "
                "the test server as (Debian's postgresql package creates it)"
            ) from None
        os.chown(folder, user.pw_uid, user.pw_gid)
    return folder


def start_postgres(durable: bool = False) -> PostgresServer:
    """Start a fresh server. ``durable=False`` turns fsync off (tests only kill clients, never
    the server, so a server crash is not what they check); benchmarks keep the defaults."""
    bindir = find_bindir()
    folder = _make_folder()
    data, log = folder / "data", folder / "log"
    try:
        initdb = f"-U {SUPERUSER} -A trust -E UTF8 --no-locale --no-sync".split()
        _run_as_owner([str(bindir / "initdb"), "-D", str(data), *initdb])
        options = f"-c listen_addresses=127.0.0.1 -k {folder}"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _attempt in range(3):  # the free port may be taken between probe and start
            port = free_port()
            pg_ctl = [
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(log),
                "-o",
                f"-p {port} {options}",
            ]
            started = _run_as_owner([str(bindir / "pg_ctl"), *pg_ctl, "start"], check=False)
            if started.returncode == 0:
                return PostgresServer(folder=folder, bindir=bindir, port=port)
        journal = log.read_text() if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}{journal}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
