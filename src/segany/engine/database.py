"""Opening a project database: SQLite (one WAL file, the embedded default) or PostgreSQL (a
team), brought to the newest schema by the versioned migrations in ``migrations/``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATING = threading.Lock()
CONNECT_TIMEOUT_S = 5


class DatabaseError(ValueError):
    """The database cannot be reached, or its URL or schema is not one segany can use."""


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (the driver segany installs), not psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def display_url(url: str) -> str:
    """``url`` as the user typed it, any password hidden: what error messages show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the annotation server read while a writer commits; synchronous=FULL makes each
    # commit durable before it returns, so an accepted mask survives a crash or kill -9.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_database_engine(url: str) -> Engine:
    """An engine for ``url``, checked to answer; raises :class:`DatabaseError` if it does not."""
    shown = display_url(url)  # the user's spelling: not the driver-qualified one below
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"{shown!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql":
        try:
            engine = create_engine(
                url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
            )
        except (NoSuchModuleError, ModuleNotFoundError):
            raise DatabaseError(
                "PostgreSQL needs psycopg: pip install 'segany[postgresql]'"
            ) from None
    else:
        raise DatabaseError(f"{backend!r} databases are not supported (use sqlite or postgresql)")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"database {shown} does not answer: {reason}") from None
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is there already)."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if schema_revision(engine) == ScriptDirectory.from_config(config).get_current_head():
        return
    # Alembic's migration context is global to the process: two threads opening projects at
    # once would share it.
    with _MIGRATING, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for a database segany never set up."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
