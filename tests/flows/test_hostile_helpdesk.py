"""The real ``ingest`` flow against a hostile helpdesk on 127.0.0.1 (helpdesk_sim/hostile.py), SQLite and
PostgreSQL: endless pagination, poisoned watermarks, poison records, NUL in JSON columns, bad list items,
a gzip bomb and loose timestamps (issue 15). Each case asserts what loaded, what was quarantined and why, the
error message, the stored watermark, and that a later run still loads newer rows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    csat_ratings,
    extraction_state,
    groups,
    quarantine,
    run_locks,
    tickets,
)
from ticketlens.helpdesk_sim.hostile import Page, Script, gzip_bomb, hostile_helpdesk, rating, ticket
from ticketlens.helpdesk_sim.testing import client_env

pytestmark = pytest.mark.slow

T0 = int(datetime(2026, 8, 1, tzinfo=UTC).timestamp())
FUTURE = int(datetime(2999, 1, 1, tzinfo=UTC).timestamp())


@pytest.fixture
def hostile(monkeypatch, warehouse_url, prefect_harness):
    """Start a hostile helpdesk for a script and point the settings at it and at this test's warehouse."""
    started = []

    def start(script: Script, **extra: str):
        cm = hostile_helpdesk(script)
        handle = cm.__enter__()
        started.append(cm)
        env = client_env(warehouse_url, handle, TICKETLENS_HELPDESK_MAX_RETRIES="1", **extra)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return handle

    yield start
    for cm in started:
        cm.__exit__(None, None, None)
    get_settings.cache_clear()


def loaded_ids(url: str, table=tickets) -> set[int]:
    with get_engine(url).connect() as conn:
        return set(conn.execute(sa.select(table.c.id)).scalars())


def quarantined(url: str, stream: str) -> dict[str | None, list[str]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(quarantine.c.record_id, quarantine.c.failed_checks)
                            .where(quarantine.c.stream == stream)).all()
    return {r.record_id: r.failed_checks for r in rows if r.record_id is not None} | {
        f"#{i}": r.failed_checks for i, r in enumerate(rows) if r.record_id is None}


def state(url: str) -> dict[str, tuple]:
    with get_engine(url).connect() as conn:
        return {r.stream: (r.cursor, r.watermark) for r in conn.execute(sa.select(extraction_state))}


def lock_free(url: str) -> bool:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(run_locks.c.name, run_locks.c.expires_at)).all()
    return all(r.expires_at <= datetime.now(UTC) for r in rows if r.name == "ingest")


def test_cycling_cursors_stop_each_stream_after_committing_with_a_clear_error(hostile, warehouse_url):
    """Tickets cycle A→B→A and ratings' links.next cycles R1→R2→R1, both with 'more to come': the run commits
    every page it read, fails naming both cursors, releases the lock; a repaired helpdesk then loads newer rows."""
    from ticketlens.flows.ingest import ingest

    script = Script(
        tickets={"start": Page([ticket(1, T0)], next="A", end=False),
                 "A": Page([ticket(2, T0 + 1)], next="B", end=False),
                 "B": Page([ticket(3, T0 + 2)], next="A", end=False)},
        ratings={"start": Page([rating(11, T0)], next="R1", end=False),
                 "R1": Page([rating(12, T0 + 1)], next="R2", end=False),
                 "R2": Page([rating(13, T0 + 2)], next="R1", end=False)},
    )
    hostile(script)
    started = time.monotonic()
    with pytest.raises(Exception, match="repeated after_cursor 'A'") as info:
        ingest()
    assert "repeated links.next" in str(info.value) and "page[after]=R1" in str(info.value)
    assert time.monotonic() - started < 120
    assert loaded_ids(warehouse_url) == {1, 2, 3}
    assert loaded_ids(warehouse_url, csat_ratings) == {11, 12, 13}
    assert state(warehouse_url)["tickets"][0] == "A"  # resumes at the repeating cursor, page committed
    assert lock_free(warehouse_url)

    # The helpdesk is repaired: the next hourly run is not starved and loads newer rows.
    script.tickets["A"] = Page([ticket(4, T0 + 10)], next="C", end=True)
    script.ratings["R1"] = Page([rating(14, T0 + 10)], end=True)
    result = ingest()
    assert result["tickets"]["end_of_stream"] and 4 in loaded_ids(warehouse_url)
    assert 14 in loaded_ids(warehouse_url, csat_ratings)


def test_a_stream_stops_at_its_page_budget_and_the_next_run_continues(hostile, warehouse_url):
    """A helpdesk that hands out a fresh cursor forever: each run reads its page budget, then ends normally."""
    from ticketlens.flows.ingest import ingest

    pages = {"start": Page([ticket(1, T0)], next="c1", end=False)}
    for n in range(1, 30):
        pages[f"c{n}"] = Page([ticket(n + 1, T0 + n)], next=f"c{n + 1}", end=False)
    hostile(Script(tickets=pages, ratings={"start": Page([])}), TICKETLENS_INGEST_MAX_PAGES_PER_RUN="3")
    first = ingest()
    assert first["tickets"]["pages"] == 3 and not first["tickets"]["end_of_stream"]
    assert first["tickets"]["stopped"] == "page budget of 3 reached"
    assert loaded_ids(warehouse_url) == {1, 2, 3}
    second = ingest()
    assert second["tickets"]["pages"] == 3 and loaded_ids(warehouse_url) == {1, 2, 3, 4, 5, 6}
    assert lock_free(warehouse_url)


DEEP_300 = "[" * 300 + "]" * 300
DEEP_5000 = "[" * 5000 + "]" * 5000
POISON = {  # ticket id (or a label) → (record JSON, the reason that must be recorded)
    101: (ticket(101, T0 + 1, subject='"broken \\ud800 text"'), "lone UTF-16 surrogate (invalid Unicode) in subject"),
    102: (ticket(102, T0 + 1, via='{"\\udfff": 1}'), "lone UTF-16 surrogate (invalid Unicode) in a key"),
    "18446744073709551616": (ticket(2**64, T0 + 1), "integer outside the signed 64-bit range in id"),
    104: (ticket(104, T0 + 1, generated_timestamp=str(2**64)), "integer outside the signed 64-bit range in generated_timestamp"),
    105: (ticket(105, T0 + 1, custom_fields=f'[{{"id": 1, "value": {DEEP_300}}}]'),
          "nested deeper than 32 levels in custom_fields"),
    106: (ticket(106, T0 + 1, custom_fields=f'[{{"id": 1, "value": {DEEP_5000}}}]'),
          "nested deeper than 32 levels in custom_fields"),
    "--5": (ticket("--5", T0 + 1), "wrong type in id"),
    "\\xb2": (ticket("²", T0 + 1), "wrong type in id"),
    108: (ticket(108, T0 + 1, generated_timestamp="Infinity"), "non-finite number (NaN or Infinity) in generated_timestamp"),
    109: (ticket(109, T0 + 1, generated_timestamp="NaN"), "non-finite number (NaN or Infinity) in generated_timestamp"),
    110: (ticket(110, T0 + 1, created_at='"now"'), "wrong type in created_at"),
    111: (ticket(111, T0 + 1, tags='[{"a": 1}, "vip"]'), "wrong type in tags"),
    112: (ticket(112, FUTURE), "generated_timestamp 2999-01-01T00:00:00Z is in the future"),
    113: (ticket(113, T0 + 1), "metric set: an integer outside the signed 64-bit range in reply_time_in_minutes"),
}
NOT_OBJECTS = ("1", '"x"', "null")


def test_poison_records_are_quarantined_with_reasons_while_the_page_loads(hostile, warehouse_url):
    from ticketlens.flows.ingest import ingest

    good = [ticket(i, T0 + i) for i in range(1, 11)]
    nul = ticket(50, T0 + 20, tags='["vi\\u0000p"]', custom_fields='[{"id": 7, "value": "a\\u0000b"}]')
    records = [*good, nul, *(rec for rec, _ in POISON.values()), *NOT_OBJECTS]
    metric = ('{"ticket_id": 113, "reply_time_in_minutes": {"calendar": 1180591620717411303424}}')
    script = Script(
        tickets={"start": Page(records, metric_sets=[metric], next="end-1", end=True)},
        rating_feed=[(T0 + 5, rating(21, T0 + 5)), (T0 + 6, rating(22, T0 + 6)),
                     (FUTURE, rating(23, FUTURE)), (T0 + 7, rating(24, T0 + 7, updated_at='"now"'))],
        groups=['{"id": 1, "name": "Support"}', '{"id": "²", "name": "Bad id"}', '{"id": 3, "name": {"x": 1}}',
                '{"id": 4, "name": "N\\u0000UL", "created_at": "yesterday"}', "null"],
    )
    hostile(script, TICKETLENS_VALIDATION_MAX_FAILURE_SHARE="0.9")
    result = ingest()

    assert loaded_ids(warehouse_url) == {*range(1, 11), 50}
    q = quarantined(warehouse_url, "tickets")
    for label, (_, reason) in POISON.items():
        assert any(reason in check for check in q[str(label)]), (label, q.get(str(label)))
    not_objects = [checks for key, checks in q.items() if key.startswith("#")]
    assert sum(any("record is not a JSON object" in c for c in checks) for checks in not_objects) == 3
    assert result["tickets"]["quarantined"] == len(POISON) + len(NOT_OBJECTS)
    with get_engine(warehouse_url).connect() as conn:
        tags, custom = conn.execute(sa.select(tickets.c.tags, tickets.c.custom_fields).where(tickets.c.id == 50)).one()
    assert tags == ["vip"] and custom == [{"id": 7, "value": "ab"}]  # NUL stripped on both backends

    # Watermarks only over loaded rows: not 2999, not the quarantined 'now'.
    st = state(warehouse_url)
    assert st["tickets"][1] == T0 + 20
    assert st["satisfaction_ratings"][1] == T0 + 6
    assert loaded_ids(warehouse_url, csat_ratings) == {21, 22}
    rq = quarantined(warehouse_url, "satisfaction_ratings")
    assert any("updated_at 2999-01-01T00:00:00Z is in the future" in c for c in rq["23"])
    assert any("wrong type in updated_at" in c for c in rq["24"])

    # Dimensions: the good group loads, every bad one is quarantined with its reason.
    assert loaded_ids(warehouse_url, groups) == {1}
    gq = quarantined(warehouse_url, "groups")
    assert gq["\\xb2"] == ["poison record: wrong type in id"]
    assert gq["3"] == ["poison record: wrong type in name"]
    assert gq["4"] == ["poison record: wrong type in created_at"]

    # A later run: newer real rows still load (the ticket stream restarts from its watermark, ratings too).
    script.reject_cursors = True
    script.tickets.clear()
    script.ticket_feed = [(T0 + 30, ticket(60, T0 + 30)), (T0 + 40, ticket(61, T0 + 40))]
    script.rating_feed.append((T0 + 30, rating(25, T0 + 30)))
    ingest()
    assert {60, 61} <= loaded_ids(warehouse_url)
    assert 25 in loaded_ids(warehouse_url, csat_ratings)
    assert state(warehouse_url)["tickets"][1] == T0 + 40


def test_a_gzip_bomb_fails_clearly_without_loading_or_keeping_the_lock(hostile, warehouse_url):
    """305 KB on the wire, 300 MiB inflated: reading stops at TICKETLENS_HELPDESK_MAX_RESPONSE_MB (64 MiB)."""
    from ticketlens.flows.ingest import ingest

    bomb = gzip_bomb(300)
    assert len(bomb) < 400_000
    script = Script(tickets={"start": Page([], raw_body=bomb, headers={"Content-Encoding": "gzip"})})
    hostile(script)
    with pytest.raises(Exception, match=r"TICKETLENS_HELPDESK_MAX_RESPONSE_MB=64 MiB after decompression"):
        ingest()
    assert loaded_ids(warehouse_url) == set()
    assert lock_free(warehouse_url)
    script.tickets["start"] = Page([ticket(1, T0)], next="x", end=True)
    ingest()
    assert loaded_ids(warehouse_url) == {1}


def test_a_watermark_poisoned_by_an_older_version_is_repaired(hostile, warehouse_url):
    """A ratings watermark left in 2999 by a version that did not quarantine far-future rows: the next run
    resets it to the newest loaded rating (with a warning) and newer ratings load again."""
    from ticketlens.flows.ingest import ingest

    script = Script(tickets={"start": Page([ticket(1, T0)], next="x", end=True)},
                    rating_feed=[(T0 + 5, rating(21, T0 + 5))])
    hostile(script)
    ingest()
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.update(extraction_state).where(extraction_state.c.stream == "satisfaction_ratings")
                     .values(watermark=FUTURE))
    script.rating_feed.append((T0 + 30, rating(22, T0 + 30)))
    ingest()
    assert loaded_ids(warehouse_url, csat_ratings) == {21, 22}
    assert state(warehouse_url)["satisfaction_ratings"][1] == T0 + 30
