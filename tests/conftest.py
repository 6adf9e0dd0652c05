"""Shared fixtures.

The warehouse fixture runs every test that uses it on SQLite and on PostgreSQL. PostgreSQL comes from
TICKETLENS_TEST_POSTGRES_URL (default: the local server at 127.0.0.1:5432, database ``test``); each test gets
its own schema. When the server is unreachable the PostgreSQL variant is skipped locally but FAILS in CI
(CI=true), so a green CI run always means both backends were exercised.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
import sqlalchemy as sa

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_base_url() -> str:
    return os.environ.get("TICKETLENS_TEST_POSTGRES_URL", DEFAULT_PG_URL)


def _pg_unreachable_reason() -> str | None:
    try:
        engine = sa.create_engine(_pg_base_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not reachable"
        return f"PostgreSQL at {_pg_base_url()} is unreachable: {type(exc).__name__}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def postgres_available() -> str:
    reason = _pg_unreachable_reason()
    if reason is None:
        return _pg_base_url()
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — in CI the PostgreSQL suite is mandatory")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_available: str):
    """A fresh schema on the PostgreSQL server, selected through search_path, dropped afterwards."""
    schema = f"tl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_available)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_available else "?"
    url = f"{postgres_available}{sep}options={quote(f'-csearch_path={schema}')}"
    yield url
    from ticketlens.adapters.warehouse.engine import get_engine

    get_engine.cache_clear()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request) -> str:
    """An empty, migrated warehouse on each backend."""
    from ticketlens.adapters.warehouse.engine import migrate

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session; its server can take 20-30 s to start here."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
