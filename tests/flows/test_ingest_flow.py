"""The ``ingest`` flow end to end: simulator over real HTTP on loopback → GX → warehouse (SQLite and PostgreSQL).

Runs under one session-scoped Prefect test harness. Each test gets a fresh simulator and warehouse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.warehouse import assert_warehouse_equals_source, warehouse_tickets
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    extraction_state,
    quarantine,
    raw_records,
    tickets,
)
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, running_simulator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    """~2,400 tickets over 6 days: three export pages of 1,000, dozens of ratings, a few deletions."""
    return generate_dataset(GeneratorConfig(seed=7, start=datetime(2026, 8, 1, tzinfo=UTC), days=6,
                                            tickets_per_day=400))


@pytest.fixture
def sim(dataset):
    with running_simulator(dataset) as handle:
        yield handle


@pytest.fixture
def configure(settings_env, warehouse_url, sim):
    """Point the settings at this test's simulator and warehouse; fast retries, no client-side throttling."""

    def apply(**extra: str) -> None:
        settings_env(client_env(warehouse_url, sim, rate_per_minute=6000, **extra))

    apply()
    return apply


def cursor_rows(url: str) -> dict[str, tuple]:
    with get_engine(url).connect() as conn:
        return {r.stream: (r.cursor, r.watermark, r.pages) for r in conn.execute(sa.select(extraction_state))}


def test_ingest_loads_everything_and_is_idempotent(prefect_harness, configure, warehouse_url, sim, dataset):
    from ticketlens.flows.ingest import ingest

    first = ingest()
    assert first["tickets"]["pages"] >= 3 and first["tickets"]["end_of_stream"]
    assert first["tickets"]["inserted"] == first["tickets"]["fetched"] > 2000
    assert first["satisfaction_ratings"]["inserted"] > 0
    assert_warehouse_equals_source(warehouse_url, sim)

    with get_engine(warehouse_url).connect() as conn:
        reasons = conn.execute(sa.select(sa.func.count()).where(tickets.c.contact_reason.is_not(None))).scalar_one()
        deleted = conn.execute(sa.select(sa.func.count()).where(tickets.c.is_deleted)).scalar_one()
        landed = conn.execute(sa.select(sa.func.count()).select_from(raw_records)).scalar_one()
        groups_n = conn.execute(sa.text("SELECT COUNT(*) FROM groups")).scalar_one()
        agents_n = conn.execute(sa.text("SELECT COUNT(*) FROM agents")).scalar_one()
    assert reasons == first["tickets"]["fetched"]  # custom field resolved through ticket_fields
    assert deleted > 0  # the generator deletes some spam: soft-deleted, not removed
    assert landed >= first["tickets"]["fetched"] + first["satisfaction_ratings"]["fetched"]
    assert groups_n > 0 and agents_n > 0

    before = warehouse_tickets(warehouse_url)
    second = ingest()  # resumes from the stored cursor: nothing new at the same simulated time
    assert second["tickets"]["inserted"] == 0 and second["tickets"]["updated"] == 0
    assert warehouse_tickets(warehouse_url) == before


def test_new_and_updated_tickets_arrive_as_the_clock_advances(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    ingest()
    before = warehouse_tickets(warehouse_url)
    sim.advance(6 * 3600)
    result = ingest()
    assert result["tickets"]["updated"] > 0  # open tickets moved on (solved, closed, ...)
    after = warehouse_tickets(warehouse_url)
    assert all(after[i][0] >= before[i][0] for i in before)  # an older version never overwrote a newer one
    assert_warehouse_equals_source(warehouse_url, sim)


def test_server_errors_are_retried(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(error_rate=0.3)
    ingest()
    assert sim.stats()["errors_served"] > 0
    sim.set_faults(error_rate=0.0)
    assert_warehouse_equals_source(warehouse_url, sim)


def test_bad_credentials_fail_fast_with_a_clear_message(prefect_harness, configure, sim):
    from ticketlens.flows.ingest import ingest

    configure(TICKETLENS_HELPDESK_API_TOKEN="wrong-token")
    with pytest.raises(Exception, match="TICKETLENS_HELPDESK_API_TOKEN") as info:
        ingest()
    assert "wrong-token" not in str(info.value)


def test_schema_drift_fails_without_moving_the_cursor(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    ingest(max_pages=1)
    state = cursor_rows(warehouse_url)
    sim.set_faults(missing_field_pages=1, missing_field="created_at")
    with pytest.raises(Exception, match="created_at"):
        ingest()
    assert cursor_rows(warehouse_url)["tickets"] == state["tickets"]
    ingest()  # the drifted page is served clean on the retry: nothing lost
    assert_warehouse_equals_source(warehouse_url, sim)


def test_malformed_page_is_retried_then_fails_clearly(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(malformed_pages=1)  # one truncated body: the client retries and the run succeeds
    ingest(max_pages=1)
    state = cursor_rows(warehouse_url)
    configure(TICKETLENS_HELPDESK_MAX_RETRIES="1")
    sim.set_faults(malformed_pages=50)  # persistently broken: the run fails, cursor stays
    with pytest.raises(Exception, match=r"(?i)json"):
        ingest()
    assert cursor_rows(warehouse_url)["tickets"] == state["tickets"]
    sim.set_faults(malformed_pages=0)
    ingest()
    assert_warehouse_equals_source(warehouse_url, sim)


def test_invalid_rows_are_quarantined_with_reasons(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(invalid_row_pages=1)
    result = ingest()
    assert result["tickets"]["quarantined"] > 0
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(quarantine.c.stream, quarantine.c.failed_checks, quarantine.c.payload)).all()
    assert rows and all(r.stream == "tickets" and r.failed_checks and r.payload for r in rows)
    checks = {c for r in rows for c in r.failed_checks}
    assert any("status" in c for c in checks)


def test_a_killed_ingest_resumes_without_loss_or_duplicates(prefect_harness, configure, warehouse_url, sim, tmp_path):
    """kill -9 the ingest process after its first committed pages, rerun, compare with the source."""
    from prefect.settings import PREFECT_API_URL

    from ticketlens.flows.ingest import ingest

    sim.set_faults(slow_ms=400)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flows.ingest import ingest; ingest()"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "killed.log").open("w"),
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            pages = cursor_rows(warehouse_url).get("tickets", (None, None, 0))[2] if _has_state(warehouse_url) else 0
            if pages >= 1 or proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    partial = warehouse_tickets(warehouse_url)
    assert 0 < len(partial) < len(sim.snapshot()["tickets"])

    sim.set_faults(slow_ms=0)
    ingest()
    assert_warehouse_equals_source(warehouse_url, sim)


def _has_state(url: str) -> bool:
    try:
        return bool(cursor_rows(url))
    except sa.exc.OperationalError:
        return False


def test_rate_limited_helpdesk_is_honoured(prefect_harness, configure, warehouse_url, dataset):
    """The server answers 429 + Retry-After once its per-minute budget is spent; the run still completes."""
    from ticketlens.flows.ingest import ingest

    with running_simulator(dataset, requests_per_minute=3, rate_window_seconds=5.0, retry_after="0.3") as limited:
        configure(TICKETLENS_HELPDESK_BASE_URL=limited.base_url, TICKETLENS_HELPDESK_MAX_RETRIES="400")
        started = time.monotonic()
        ingest(max_pages=2)
        assert limited.stats()["rate_limited"] > 0
        assert time.monotonic() - started >= 0.3  # it waited instead of failing


def test_rejected_cursor_falls_back_to_the_watermark(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    ingest()
    sim.advance(12 * 3600)
    sim.set_faults(reject_cursors=True)  # e.g. the stored cursor expired
    result = ingest()
    assert result["tickets"]["updated"] > 0
    assert_warehouse_equals_source(warehouse_url, sim)


def test_duplicate_ids_in_a_page_load_once(prefect_harness, configure, warehouse_url, sim):
    from ticketlens.flows.ingest import ingest

    sim.set_faults(duplicate_id_pages=1)
    ingest()
    assert_warehouse_equals_source(warehouse_url, sim)
