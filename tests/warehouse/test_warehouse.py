"""Warehouse behaviour on SQLite and PostgreSQL: migrations, versioned upserts, landing, quarantine, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import current_revision, get_engine, migrate
from ticketlens.adapters.warehouse.load import (
    get_stream_state,
    land_raw,
    quarantine_rows,
    save_stream_state,
    upsert_replace,
    upsert_versioned,
)
from ticketlens.adapters.warehouse.schema import groups, metadata, quarantine, raw_records, tickets

T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 9, 1, tzinfo=UTC)


def ticket(id_: int, updated: datetime, status: str = "open", **extra) -> dict:
    row = {
        "id": id_, "created_at": T0, "updated_at": updated, "generated_timestamp": int(updated.timestamp()),
        "subject": f"subject {id_}", "description": "text", "status": status, "priority": "normal",
        "type": "question", "tags": ["a", "b"], "channel": "web", "requester_id": 7, "submitter_id": 7,
        "assignee_id": None, "group_id": None, "organization_id": None, "custom_fields": [{"id": 1, "value": "x"}],
        "contact_reason": "password_reset", "confirmed_category": None, "is_deleted": status == "deleted",
        "deleted_at": updated if status == "deleted" else None, "extracted_at": NOW, "run_id": "r1",
    }
    row.update(extra)
    return row


def all_tickets(url: str) -> dict[int, dict]:
    with get_engine(url).connect() as conn:
        return {r.id: r._asdict() for r in conn.execute(sa.select(tickets))}


def test_migrations_are_idempotent_and_match_the_schema(warehouse_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate(warehouse_url)  # second time: a no-op
    from alembic.script import ScriptDirectory

    from ticketlens.adapters.warehouse.engine import alembic_config

    assert current_revision(warehouse_url) == ScriptDirectory.from_config(alembic_config(warehouse_url)).get_current_head()
    with get_engine(warehouse_url).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_upsert_inserts_updates_newer_and_ignores_older(warehouse_url):
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:
        counts = upsert_versioned(conn, tickets, [ticket(1, T0), ticket(2, T0)], version_cols=("updated_at", "generated_timestamp"))
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)

    newer, older = T0 + timedelta(hours=2), T0 - timedelta(hours=1)
    with engine.begin() as conn:
        counts = upsert_versioned(
            conn, tickets,
            [ticket(1, newer, status="solved"), ticket(2, older, status="closed"), ticket(3, T0)],
            version_cols=("updated_at", "generated_timestamp"),
        )
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    rows = all_tickets(warehouse_url)
    assert rows[1]["status"] == "solved" and rows[1]["updated_at"] == newer
    assert rows[2]["status"] == "open" and rows[2]["updated_at"] == T0  # the older version was ignored
    assert rows[1]["updated_at"].tzinfo is not None  # timestamps come back UTC-aware on both backends
    assert rows[1]["tags"] == ["a", "b"] and rows[1]["custom_fields"] == [{"id": 1, "value": "x"}]


def test_replaying_the_same_batch_changes_nothing(warehouse_url):
    engine = get_engine(warehouse_url)
    batch = [ticket(i, T0 + timedelta(minutes=i)) for i in range(1, 51)]
    with engine.begin() as conn:
        upsert_versioned(conn, tickets, batch)
    before = all_tickets(warehouse_url)
    with engine.begin() as conn:
        counts = upsert_versioned(conn, tickets, batch)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 50)
    assert all_tickets(warehouse_url) == before


def test_same_id_twice_in_a_batch_keeps_the_newest(warehouse_url):
    later = T0 + timedelta(hours=1)
    with get_engine(warehouse_url).begin() as conn:
        counts = upsert_versioned(conn, tickets, [ticket(5, later, status="pending"), ticket(5, T0)])
    assert counts.inserted == 1 and counts.unchanged == 1
    assert all_tickets(warehouse_url)[5]["status"] == "pending"


def test_generated_timestamp_breaks_updated_at_ties(warehouse_url):
    engine = get_engine(warehouse_url)
    cols = ("updated_at", "generated_timestamp")
    with engine.begin() as conn:
        upsert_versioned(conn, tickets, [ticket(9, T0)], version_cols=cols)
    bumped = ticket(9, T0, tags=["a", "b", "tl_category_x"], generated_timestamp=int(T0.timestamp()) + 5)
    with engine.begin() as conn:
        counts = upsert_versioned(conn, tickets, [bumped], version_cols=cols)
    assert counts.updated == 1
    assert all_tickets(warehouse_url)[9]["tags"] == ["a", "b", "tl_category_x"]


def test_deleted_ticket_is_soft_deleted(warehouse_url):
    engine = get_engine(warehouse_url)
    deleted_at = T0 + timedelta(days=1)
    with engine.begin() as conn:
        upsert_versioned(conn, tickets, [ticket(4, T0)])
    with engine.begin() as conn:
        upsert_versioned(conn, tickets, [ticket(4, deleted_at, status="deleted")])
    row = all_tickets(warehouse_url)[4]
    assert row["is_deleted"] is True and row["deleted_at"] == deleted_at and row["subject"] == "subject 4"


def test_landing_is_idempotent_per_payload(warehouse_url):
    engine = get_engine(warehouse_url)
    recs = [("1", '{"id":1}', "a" * 64), ("2", '{"id":2}', "b" * 64)]
    for _ in range(2):
        with engine.begin() as conn:
            land_raw(conn, "tickets", recs, run_id="r", extracted_at=NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_records)).scalar_one() == 2


def test_quarantine_keeps_reasons_and_counts_repeats(warehouse_url):
    engine = get_engine(warehouse_url)
    bad = {"record_id": "77", "payload": '{"id":77,"status":"bogus"}', "payload_sha256": "c" * 64,
           "failed_checks": ["expect_column_values_to_be_in_set(status)"]}
    for run in ("r1", "r2"):
        with engine.begin() as conn:
            quarantine_rows(conn, "tickets", [bad], run_id=run, at=NOW)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(quarantine)).all()
    assert len(rows) == 1
    assert rows[0].times_seen == 2 and rows[0].run_id == "r2"
    assert rows[0].failed_checks == ["expect_column_values_to_be_in_set(status)"]


def test_stream_state_watermark_only_moves_forward(warehouse_url):
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:
        assert get_stream_state(conn, "tickets") is None
        save_stream_state(conn, "tickets", cursor="c1", watermark=100, run_id="r1")
        save_stream_state(conn, "tickets", cursor="c2", watermark=50, run_id="r1")
        state = get_stream_state(conn, "tickets")
    assert (state.cursor, state.watermark, state.pages) == ("c2", 100, 2)


def test_a_failed_transaction_leaves_neither_rows_nor_cursor(warehouse_url):
    engine = get_engine(warehouse_url)
    with pytest.raises(RuntimeError, match="killed"), engine.begin() as conn:
        upsert_versioned(conn, tickets, [ticket(1, T0)])
        save_stream_state(conn, "tickets", cursor="c1", watermark=1, run_id="r1")
        raise RuntimeError("killed between page and commit")
    with engine.connect() as conn:
        assert get_stream_state(conn, "tickets") is None
    assert all_tickets(warehouse_url) == {}


def test_dimension_upsert_replaces(warehouse_url):
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:
        upsert_replace(conn, groups, [{"id": 1, "name": "Tier 1", "extracted_at": NOW}])
        upsert_replace(conn, groups, [{"id": 1, "name": "Tier 1 General", "extracted_at": NOW}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(groups.c.name)).scalar_one() == "Tier 1 General"


def _migrate_in_child(url: str, start_at: float) -> str:
    """Runs in a separate process: wait for the shared start moment, then migrate."""
    import time as _time

    from ticketlens.adapters.warehouse.engine import migrate as _migrate

    _time.sleep(max(0.0, start_at - _time.time()))
    _migrate(url)
    return "ok"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_first_migrations_do_not_race(backend, request):
    """Several workers starting at once on an empty warehouse (e.g. the first hourly runs after a deploy): the
    migration is serialised by a database lock, so each one either applies it or finds it applied."""
    import multiprocessing
    import time as _time
    from concurrent.futures import ProcessPoolExecutor

    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    start_at = _time.time() + 4.0  # all children are up (imports done) before any of them starts
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(_migrate_in_child, url, start_at) for _ in range(4)]]
    assert results == ["ok"] * 4
    from alembic.script import ScriptDirectory

    from ticketlens.adapters.warehouse.engine import alembic_config

    assert current_revision(url) == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with get_engine(url).connect() as conn:
        assert set(metadata.tables) <= set(sa.inspect(conn).get_table_names())
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
