"""Shared fixtures, and the markers every test gets from where it lives.

Layout (a newcomer can tell what a test needs from its folder; ``-m`` selects by the same names):
  tests/unit/       pure: no warehouse, no Prefect API (the simulator in-process or on loopback is fine)
  tests/warehouse/  data access: the warehouse on SQLite and PostgreSQL (``warehouse_url``), the MLflow store;
                    no Prefect API
  tests/flows/      flows and tasks under the session's Prefect test harness (``prefect_harness``)
  tests/e2e/        a real Prefect server and worker, subprocesses, deployments, kill/outage slices
  tests/support/    helpers the tests share (never a test module: tests import helpers only from here)
Markers added here: the folder's (``unit``, ``warehouse``, ``flows``, ``e2e``); ``slow`` on every e2e test
and every test that starts the Prefect test harness; ``postgres`` on every test that runs on PostgreSQL.

The warehouse fixture runs every test that uses it on SQLite and on PostgreSQL. PostgreSQL comes from
TICKETLENS_TEST_POSTGRES_URL (default: the local server at 127.0.0.1:5432, database ``test``); each test gets
its own schema. When the server is unreachable the PostgreSQL variant is skipped locally but FAILS in CI
(CI=true), so a green CI run always means both backends were exercised.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
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


@pytest.fixture
def settings_env(monkeypatch):
    """``settings_env({"TICKETLENS_...": "..."})`` sets variables for this test only; ``get_settings()`` reads them
    at once (its cache is cleared on every call) and forgets them afterwards. The one way tests configure a run."""
    from ticketlens.adapters.settings import get_settings

    def apply(values) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session; its server can take 20-30 s to start here."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


TESTS = Path(__file__).resolve().parent
FOLDERS = ("unit", "warehouse", "flows", "e2e")


def pytest_collection_modifyitems(config, items) -> None:
    """Mark each test with its folder, ``slow`` when it starts the Prefect harness or is e2e, and ``postgres``
    when it runs on PostgreSQL (the ``postgresql`` variant of ``warehouse_url``, or ``postgres_url``)."""
    for item in items:
        try:
            folder = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            folder = None
        if folder in FOLDERS:
            item.add_marker(getattr(pytest.mark, folder))
        fixtures = set(getattr(item, "fixturenames", ()))
        if (folder == "e2e" or "prefect_harness" in fixtures) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres_url" in fixtures or params.get("warehouse_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)

