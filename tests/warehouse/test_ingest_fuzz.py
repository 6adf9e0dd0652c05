"""Property: arbitrary JSON in ticket, rating, user and group fields ends as a loaded row or a quarantined row
with a reason — never an exception, never a partial page, never a watermark beyond what was loaded — on SQLite
and PostgreSQL. Drives the same functions the ``ingest`` flow's tasks run (``judge_page`` → ``load_page``;
``normalize_dimension`` → upsert + quarantine), without a Prefect run per example. Examples are bounded so
this stays about a minute of ``make test``; ``make fuzz`` runs 200 examples per test.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    agents,
    csat_ratings,
    extraction_state,
    groups,
    quarantine,
    tickets,
)
from ticketlens.models.records import FieldMap, _as_int
from ticketlens.models.sanitize import canonical_json, payload_sha256
from ticketlens.tasks.ingest import RATING_STREAM, TICKET_STREAM, judge_page, load_page, store_dimension

EXAMPLES = int(os.environ.get("TICKETLENS_FUZZ_EXAMPLES", "10"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
T0 = int(datetime(2026, 8, 1, tzinfo=UTC).timestamp())
LATEST = int(datetime.now(UTC).timestamp()) + 600

NASTY_TEXT = st.sampled_from(["\ud800", "a\udfffb", "now", "today", "--5", "²", "\x00", "a\x00b", "", " ",
                              "2999-01-01T00:00:00Z", "2026-08-01T00:00:00Z", "1e309", "x" * 300, "open"])
NASTY_INT = st.sampled_from([2**63, 2**64, 2**70, -(2**63) - 1, 2**31, 0, -1, 32503680000])
SCALARS = (st.none() | st.booleans() | st.integers() | NASTY_INT | st.floats() | st.text(max_size=8)
           | NASTY_TEXT)
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.text(max_size=4) | NASTY_TEXT, kids, max_size=3), max_leaves=10)
DEEP = st.integers(30, 400).map(lambda n: {"v": _nest(n)})


def _nest(depth: int):
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


_ids = itertools.count(1_000)


def _ticket(tid: int) -> dict:
    iso = datetime.fromtimestamp(T0 + tid, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": tid, "created_at": iso, "updated_at": iso, "generated_timestamp": T0 + tid, "status": "open",
            "subject": "Card declined", "description": "help", "priority": "normal", "type": "question",
            "tags": ["billing"], "via": {"channel": "email"}, "custom_fields": [{"id": 1, "value": "x"}],
            "requester_id": 5}


def _rating(rid: int) -> dict:
    iso = datetime.fromtimestamp(T0 + rid, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": rid, "ticket_id": rid, "score": "good", "comment": "ok", "reason": None, "created_at": iso,
            "updated_at": iso, "assignee_id": 3, "group_id": 4}


TICKET_FIELDS = [*_ticket(1), "extra"]
RATING_FIELDS = [*_rating(1), "extra"]


def _mutations(fields):
    return st.lists(st.tuples(st.sampled_from(fields), JSON | DEEP), min_size=1, max_size=3)


@st.composite
def pages(draw, make, fields):
    """One untouched record (so a page never lacks a required column everywhere) plus 1-4 hostile ones: a
    record with fields replaced by arbitrary JSON, or an arbitrary JSON value instead of a record."""
    records = [make(next(_ids))]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 5)) == 0:
            records.append(draw(JSON))
            continue
        rec = make(next(_ids))
        for name, value in draw(_mutations(fields)):
            rec[name] = value
        records.append(rec)
    return records


def _quarantined_shas(conn, stream: str) -> dict[str, list]:
    rows = conn.execute(sa.select(quarantine.c.payload_sha256, quarantine.c.failed_checks)
                        .where(quarantine.c.stream == stream)).all()
    return {r.payload_sha256: r.failed_checks for r in rows}


def _check_page(url: str, stream: str, records: list) -> None:
    table, wm_col = (tickets, "generated_timestamp") if stream == TICKET_STREAM else (csat_ratings, "updated_at")
    judged = judge_page(stream, records, [], field_map=FieldMap(1, None), max_failure_share=1.0,
                        max_text_chars=1_000_000, latest=LATEST, tolerance=600)
    load_page.fn(url, stream, records, judged, next_cursor="c", watermark=judged.watermark, run_id="fuzz")
    with get_engine(url).connect() as conn:
        loaded = set(conn.execute(sa.select(table.c.id)).scalars())
        shas = _quarantined_shas(conn, stream)
        wm = conn.execute(sa.select(extraction_state.c.watermark).where(extraction_state.c.stream == stream)).scalar()
        top = conn.execute(sa.select(sa.func.max(table.c[wm_col]))).scalar()
    for rec in records:  # every record landed somewhere: loaded, or quarantined with a reason
        sha = payload_sha256(canonical_json(rec))
        rid = _as_int(rec.get("id"))[0] if isinstance(rec, dict) else None
        assert (rid is not None and rid in loaded) or (shas.get(sha)), rec
    assert judged.valid["id"].isin(loaded).all()  # never a partial page
    if wm is not None:  # never a watermark beyond what was loaded, nor past the run's clock
        top_unix = top if isinstance(top, int) else int(top.timestamp())
        assert wm <= top_unix and wm <= LATEST


@FUZZ
@given(records=pages(_ticket, TICKET_FIELDS))
def test_fuzzed_ticket_pages_load_or_quarantine(warehouse_url, records):
    _check_page(warehouse_url, TICKET_STREAM, records)


@FUZZ
@given(records=pages(_rating, RATING_FIELDS))
def test_fuzzed_rating_pages_load_or_quarantine(warehouse_url, records):
    _check_page(warehouse_url, RATING_STREAM, records)


def _user(uid: int) -> dict:
    return {"id": uid, "name": "Agent", "email": "a@example.com", "role": "agent", "default_group_id": 1,
            "active": True, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"}


def _group(gid: int) -> dict:
    return {"id": gid, "name": "Support", "description": "d", "deleted": False,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"}


@FUZZ
@given(users=pages(_user, [*_user(1), "extra"]), group_list=pages(_group, [*_group(1), "extra"]))
def test_fuzzed_users_and_groups_load_or_quarantine(warehouse_url, users, group_list):
    now = datetime.now(UTC)
    for kind, table, records in (("agents", agents, users), ("groups", groups, group_list)):
        with get_engine(warehouse_url).begin() as conn:
            store_dimension(conn, kind, table, records, now)
        with get_engine(warehouse_url).connect() as conn:
            loaded = set(conn.execute(sa.select(table.c.id)).scalars())
            shas = _quarantined_shas(conn, kind)
        for rec in records:
            sha = payload_sha256(canonical_json(rec))
            rid = _as_int(rec.get("id"))[0] if isinstance(rec, dict) else None
            assert (rid is not None and rid in loaded) or (shas.get(sha)), rec
