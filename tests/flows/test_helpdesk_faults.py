"""The helpdesk fault matrix end to end: each fault → a clear log line, bad rows quarantined with a reason,
good rows loaded, and the warehouse equal to the source once the fault clears (SQLite and PostgreSQL).

Faults already proven elsewhere: truncated JSON (test_ingest_flow::test_malformed_page_is_retried_then_fails_
clearly), a page with duplicate ids (::test_duplicate_ids_in_a_page_load_once), a rejected cursor
(::test_rejected_cursor_falls_back_to_the_watermark), 429 with Retry-After under a server budget
(::test_rate_limited_helpdesk_is_honoured) and the client-level cases in test_helpdesk_client.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.support.leak_scan import configure_prefect_logging
from tests.support.warehouse import assert_warehouse_equals_source
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import extraction_state, quarantine, tickets
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, running_simulator
from ticketlens.models.text import prepare_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    """~600 tickets over 2 days: three export pages of 200."""
    return generate_dataset(GeneratorConfig(seed=5, start=datetime(2026, 9, 1, tzinfo=UTC), days=2,
                                            tickets_per_day=300))


@pytest.fixture
def sim(dataset):
    with running_simulator(dataset, retry_after="0.05") as handle:
        yield handle


@pytest.fixture
def configure(settings_env, warehouse_url, sim):
    def apply(**extra: str) -> None:
        settings_env(client_env(warehouse_url, sim, TICKETLENS_HELPDESK_EXPORT_PAGE_SIZE="200", **extra))

    apply()
    return apply


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs(prefect_harness):
    """Records of the flow/task run loggers and the helpdesk client (Prefect's logging config bypasses caplog)."""
    configure_prefect_logging()
    handler = Records()
    names = ("prefect.flow_runs", "prefect.task_runs", "ticketlens")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in names:
        logging.getLogger(name).removeHandler(handler)


def messages(handler) -> str:
    return "\n".join(r.getMessage() for r in handler.records)


def quarantined(url: str) -> list:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(quarantine.c.record_id, quarantine.c.failed_checks)).all()


def ticket_cursor(url: str):
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(extraction_state.c.cursor).where(extraction_state.c.stream == "tickets")
                            ).scalar_one_or_none()


def test_a_429_storm_is_waited_out(prefect_harness, configure, warehouse_url, sim, logs):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(rate_limit_storm=6)  # six 429s in a row, whatever the budget
    ingest()
    assert sim.stats()["rate_limited"] == 6
    assert "rate limited, Retry-After '0.05'" in messages(logs)
    assert_warehouse_equals_source(warehouse_url, sim)


def test_a_5xx_burst_is_retried(prefect_harness, configure, warehouse_url, sim, logs):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(error_burst=4)
    ingest()
    assert sim.stats()["errors_served"] == 4
    assert "(status 50" in messages(logs)
    assert_warehouse_equals_source(warehouse_url, sim)


def test_timeouts_fail_clearly_and_the_next_run_resumes(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    ingest(max_pages=1)
    cursor = ticket_cursor(warehouse_url)
    configure(TICKETLENS_HELPDESK_TIMEOUT_SECONDS="0.2", TICKETLENS_HELPDESK_MAX_RETRIES="1")
    sim.set_faults(slow_ms=600)
    with pytest.raises(Exception, match=r"timeout.*TICKETLENS_HELPDESK_TIMEOUT_SECONDS"):
        ingest()
    assert ticket_cursor(warehouse_url) == cursor  # nothing half-committed
    sim.set_faults(slow_ms=0)
    ingest()
    assert_warehouse_equals_source(warehouse_url, sim)


def test_ids_repeated_across_pages_load_once(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(repeat_across_pages=2)  # later pages repeat tickets served on the first page
    result = ingest()
    assert result["tickets"]["unchanged"] >= 10  # seen again, recognised as the same version
    assert result["tickets"]["inserted"] == len(sim.snapshot()["tickets"])
    assert_warehouse_equals_source(warehouse_url, sim)


def test_tickets_deleted_between_runs_become_soft_deletes(prefect_harness, configure, warehouse_url, sim, dataset):
    from ticketlens.flows.ingest import ingest

    end = sim.now()
    deleted_later = {t.id for t in dataset.tickets
                     if any(st == "deleted" and ts > end - 12 * 3600 for ts, st in t.events)
                     and t.created_at <= end - 12 * 3600}
    assert deleted_later, "the dataset should delete some spam in its last 12 hours"
    sim.set_clock(end - 12 * 3600)
    ingest()
    sim.set_clock(end)
    ingest()
    with get_engine(warehouse_url).connect() as conn:
        flags = dict(conn.execute(sa.select(tickets.c.id, tickets.c.is_deleted).where(tickets.c.id.in_(deleted_later))
                                  ).all())
    assert flags == dict.fromkeys(deleted_later, True)  # kept as history, flagged, not scored any more
    assert_warehouse_equals_source(warehouse_url, sim)


def test_fields_of_an_unexpected_type_are_quarantined_with_the_field_named(prefect_harness, configure,
                                                                           warehouse_url, sim, logs):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(wrong_type_pages=1)
    result = ingest()
    rows = quarantined(warehouse_url)
    assert result["tickets"]["quarantined"] == len(rows) == 30  # 3 of every 20 tickets on the first page
    reasons = " ".join(str(r.failed_checks) for r in rows)
    assert "requester_id" in reasons and "tags" in reasons and "subject" in reasons
    assert "with not text" in messages(logs)
    good = {t["id"] for t in sim.snapshot()["tickets"]} - {int(r.record_id) for r in rows}
    with get_engine(warehouse_url).connect() as conn:
        loaded = set(conn.execute(sa.select(tickets.c.id)).scalars())
    assert loaded == good  # every good row of the same page loaded


def test_a_1_mb_ticket_body_is_quarantined_with_a_reason(prefect_harness, configure, warehouse_url, sim, logs):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(huge_body_pages=1)
    ingest()
    rows = quarantined(warehouse_url)
    assert len(rows) == 1 and "description" in str(rows[0].failed_checks)
    assert "with oversized" in messages(logs) and "TICKETLENS_MAX_TEXT_CHARS" in messages(logs)
    with get_engine(warehouse_url).connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(tickets)).scalar_one()
    assert n == len(sim.snapshot()["tickets"]) - 1


def test_invalid_utf8_control_chars_and_script_content_load_safely(prefect_harness, configure, warehouse_url,
                                                                   sim, logs):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(dirty_text_pages=1)
    ingest()
    assert_warehouse_equals_source(warehouse_url, sim)  # nothing lost, nothing quarantined for its text
    text = messages(logs)
    for kind in ("invalid UTF-8 sequence", "with control chars", "with invalid utf8", "with script"):
        assert kind in text, kind
    with get_engine(warehouse_url).connect() as conn:
        dirty = conn.execute(sa.select(tickets.c.subject, tickets.c.description)
                             .where(tickets.c.subject.like("Refund%please%"))).all()
    assert len(dirty) == 20
    for subject, description in dirty:
        assert subject == "Refund please\x1b[31m now".replace("\x1b", "")  # control characters stripped
        assert "caf\ufffd" in description and "<script>" in description  # stored verbatim, bad bytes marked
        cleaned = prepare_text(subject, description)
        assert "script" not in cleaned and "alert" not in cleaned and "<p>" not in cleaned  # never reaches a model
