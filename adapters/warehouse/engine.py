"""Engines and migrations for the warehouse.

Engines are cached per URL so tasks (which receive the URL, never an engine) share one pool per process.
The schema is created and evolved only through Alembic, so SQLite and PostgreSQL stay identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from ticketlens.models.sanitize import warehouse_json_dumps

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers (reports, the UI) work while a flow writes; busy_timeout waits out short locks."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per warehouse URL per process; created lazily, never at import time.

    JSON columns are written without NUL characters on both backends (PostgreSQL's jsonb cannot hold U+0000).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True,
                                  json_serializer=warehouse_json_dumps)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: a failing statement's error never carries ticket text (PII) into logs.
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True,
                            connect_args={"connect_timeout": 10}, json_serializer=warehouse_json_dumps)


def checkpoint_warehouse(url: str) -> None:
    """Fold a SQLite warehouse's write-ahead log back into the database file and close pooled connections.

    Without it the ``-wal`` file (megabytes after a demo) stays beside ``ticketlens.db`` until the next writer,
    and a copy of the .db file alone misses the latest commits. PostgreSQL needs nothing: a no-op there.
    """
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def alembic_config(url: str):
    """An Alembic config pointing at our migrations; the CLI equivalent is ``alembic upgrade head``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's ini interpolation treats '%' specially; URLs may contain %-escapes.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the warehouse schema to ``revision``; safe to call on every run (a no-op when current)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config(url)
    if revision == "head" and current_revision(url) == ScriptDirectory.from_config(config).get_current_head():
        return  # already current: no migration lock taken (every flow run calls this)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the warehouse is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class WarehouseUnavailableError(RuntimeError):
    """The warehouse connection failed mid-run (server restarted, network cut); the next run resumes."""


@contextmanager
def warehouse_errors(url: str, what: str) -> Iterator[None]:
    """Turn a lost warehouse connection into one clear error that names the warehouse (never its password)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if not (exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)):
            raise
        first = str(exc.orig).strip().splitlines()[0][:300] if exc.orig is not None else type(exc).__name__
        raise WarehouseUnavailableError(
            f"The warehouse {describe_url(url)} became unavailable during {what} ({type(exc.orig).__name__}: "
            f"{first}). Everything committed before stays; the next run resumes from there. Check that the "
            f"database at TICKETLENS_WAREHOUSE_URL is up."
        ) from None


def describe_url(url: str) -> str:
    """The URL with any password hidden, for logs and artifacts."""
    return make_url(url).render_as_string(hide_password=True)


def prepare_warehouse(warehouse_url: str) -> None:
    """Apply pending Alembic migrations (a no-op when the schema is current)."""
    check_warehouse(warehouse_url)
    migrate(warehouse_url)


class WarehouseUnreachableError(RuntimeError):
    """The warehouse URL is wrong or the database is down; the message names the setting."""


def check_warehouse(warehouse_url: str) -> None:
    """Fail early, with what to do, when the warehouse cannot be reached (before any data is fetched)."""
    try:
        with get_engine(warehouse_url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0][:300]
        raise WarehouseUnreachableError(
            f"Cannot reach the warehouse at TICKETLENS_WAREHOUSE_URL={describe_url(warehouse_url)} ({reason}). "
            f"Check the URL, that the database server is up and accepts this user, and that the worker's "
            f"environment (or .env in TICKETLENS_HOME) sets it; nothing was fetched, the next run starts from "
            f"the stored cursors."
        ) from None
