"""An annotation project: a folder (``segany-project.json``, the SQLite file, retrained models)
and a database (SQLite in the folder, or PostgreSQL for a team)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from .database import (
    DatabaseError,
    create_database_engine,
    display_url,
    migrate,
    schema_revision,
    session_factory,
)
from .schema import SettingRow

PROJECT_FILE = "segany-project.json"
SQLITE_FILE = "project.db"
FORMAT = 1


class NotAProjectError(ValueError):
    """The folder holds no ``segany-project.json``."""


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    partial.replace(path)


class Project:
    """An open project; ``session()`` gives a SQLAlchemy session on its database."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.engine = create_database_engine(url)
        self.sessions = session_factory(self.engine)

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], db_url: str | None = None) -> Project:
        """Open the project at ``path``, creating it (folder, database, schema) if needed."""
        folder = Path(path)
        if (folder / PROJECT_FILE).is_file():
            project = cls.open(folder)
            if db_url is not None and project.url != db_url:
                project.close()
                raise ValueError(
                    f"{folder} is a project on {display_url(project.url)}; "
                    f"it cannot move to {display_url(db_url)}"
                )
            return project
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder}: exists and is not a folder")
        url = db_url or f"sqlite:///{(folder / SQLITE_FILE).resolve()}"
        if db_url is None:
            folder.mkdir(parents=True, exist_ok=True)
        project = cls(folder, url)  # checks the database answers before the folder is marked
        try:
            migrate(project.engine)
            with project.session() as session:
                if session.get(SettingRow, "token") is None:
                    session.add(SettingRow(key="token", value=secrets.token_urlsafe(24)))
                    session.commit()
            folder.mkdir(parents=True, exist_ok=True)
            stored = None if db_url is None else db_url
            _write_atomically(
                folder / PROJECT_FILE,
                json.dumps({"segany_project": FORMAT, "database": stored}, indent=2) + "\n",
            )
        except BaseException:
            project.close()
            raise
        return project

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Project:
        """Open an existing project; raises :class:`NotAProjectError` for any other folder."""
        folder = Path(path)
        marker = folder / PROJECT_FILE
        if not marker.is_file():
            raise NotAProjectError(
                f"{folder}: not a segany project (no {PROJECT_FILE}; create one with "
                "`segany engine init`)"
            )
        try:
            meta = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise NotAProjectError(f"{marker}: unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("segany_project") != FORMAT:
            raise NotAProjectError(f"{marker}: not a segany project file of format {FORMAT}")
        url = meta.get("database") or f"sqlite:///{(folder / SQLITE_FILE).resolve()}"
        project = cls(folder, url)
        if schema_revision(project.engine) is None:
            project.close()
            raise DatabaseError(f"{display_url(url)}: holds no segany project schema")
        migrate(project.engine)  # a project made by an older segany gets the newer tables
        return project

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- access ------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @property
    def token(self) -> str:
        """The secret an annotation server bound beyond localhost asks for."""
        with self.session() as session:
            row = session.get(SettingRow, "token")
            assert row is not None, "created with the project"
            return row.value

    @property
    def models_dir(self) -> Path:
        return self.path / "models"
