"""Zendesk's documented behaviour through the ``ingest`` flow against the simulator (SQLite and PostgreSQL):
both CSAT APIs in one table, offered/unoffered counted as not-ratings, multiselect contact reasons, integer via
ids, and the admin-only 403."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ticketlens.adapters.helpdesk import HelpdeskAuthError
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import csat_ratings, quarantine, tickets
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, running_simulator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=11, start=datetime(2026, 8, 1, tzinfo=UTC), days=4,
                                            tickets_per_day=250))


def _configure(monkeypatch, warehouse_url, sim, **extra):
    for key, value in client_env(warehouse_url, sim, rate_per_minute=6000, **extra).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def _rows(url, *columns, where=None):
    query = sa.select(*columns)
    if where is not None:
        query = query.where(where)
    with get_engine(url).connect() as conn:
        return conn.execute(query).all()


def test_both_csat_apis_land_in_one_table(prefect_harness, monkeypatch, warehouse_url, dataset):
    """An account that switched to the current CSAT: older ratings via the legacy API, newer ones as survey
    responses. ``auto`` reads both, says so in the summary, and offered/unoffered are counted, never rated."""
    from ticketlens.flows.ingest import ingest

    with running_simulator(dataset, csat_api="both", offered_share=0.2) as sim:
        _configure(monkeypatch, warehouse_url, sim)
        try:
            result = ingest()
        finally:
            get_settings.cache_clear()
    assert result["csat_api"]["used"] == ["satisfaction_ratings", "survey_responses"]
    assert "survey_responses" in result["csat_api"]["line"] and "offered/unoffered" in result["csat_api"]["line"]
    legacy, survey = result["satisfaction_ratings"], result["csat_survey_responses"]
    assert legacy["quarantined"] == 0 and survey["quarantined"] == 0
    assert legacy["not_ratings"] > 0 and survey["fetched"] > 0
    rows = _rows(warehouse_url, csat_ratings.c.id, csat_ratings.c.ticket_id, csat_ratings.c.score,
                 csat_ratings.c.source, csat_ratings.c.source_id, csat_ratings.c.rating)
    by_source = {}
    for r in rows:
        by_source.setdefault(r.source, []).append(r)
    assert len(by_source["survey_responses"]) == survey["fetched"]
    assert all(r.id < 0 and len(r.source_id) == 26 and r.score in ("good", "bad") and 1 <= r.rating <= 5
               for r in by_source["survey_responses"])
    legacy_scores = {r.score for r in by_source["satisfaction_ratings"]}
    assert {"good", "offered", "unoffered"} <= legacy_scores <= {"good", "bad", "offered", "unoffered"}
    offered = sum(r.score in ("offered", "unoffered") for r in by_source["satisfaction_ratings"])
    assert offered == legacy["not_ratings"]
    # Every rated ticket appears once, whichever API rated it.
    expected = {t.id for t in dataset.tickets if t.rating is not None and t.rating.created_at <= dataset.end}
    rated = {r.ticket_id for r in rows if r.score in ("good", "bad")}
    assert rated == expected

    # A second run re-reads the survey look-back window: nothing duplicated, nothing changed.
    with running_simulator(dataset, csat_api="both", offered_share=0.2) as sim:
        _configure(monkeypatch, warehouse_url, sim)
        try:
            again = ingest()
        finally:
            get_settings.cache_clear()
    assert again["csat_survey_responses"]["inserted"] == 0
    assert len(_rows(warehouse_url, csat_ratings.c.id)) == len(rows)


def test_account_without_survey_api_is_reported_not_failed(prefect_harness, monkeypatch, sqlite_url, dataset):
    """``auto`` on an account whose token may not read survey responses: legacy ratings load, the summary says
    why survey responses were skipped. Asking for survey_responses explicitly makes it an error."""
    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.flows.ingest import ingest

    migrate(sqlite_url)
    with running_simulator(dataset) as sim:
        _configure(monkeypatch, sqlite_url, sim)
        try:
            result = ingest()
            assert result["csat_api"]["used"] == ["satisfaction_ratings"]
            # Now an endpoint the account does not have: point survey responses at a 404.
            from ticketlens.adapters import helpdesk

            monkeypatch.setattr(helpdesk, "SURVEY_RESPONSES_PATH", "/api/v2/guide/no_such_endpoint")
            skipped = ingest()
            assert "not available" in skipped["csat_api"]["line"] and "csat_survey_responses" not in skipped
            monkeypatch.setenv("TICKETLENS_HELPDESK_CSAT_API", "survey_responses")
            get_settings.cache_clear()
            with pytest.raises(Exception, match="404"):
                ingest()
        finally:
            get_settings.cache_clear()


def test_multiselect_reasons_and_via_ids_load_without_quarantine(prefect_harness, monkeypatch, warehouse_url,
                                                                 dataset):
    from ticketlens.flows.ingest import ingest

    with running_simulator(dataset, multiselect_reasons=True, channel_ids=True) as sim:
        _configure(monkeypatch, warehouse_url, sim)
        try:
            result = ingest()
        finally:
            get_settings.cache_clear()
    assert result["tickets"]["quarantined"] == 0
    assert _rows(warehouse_url, quarantine.c.record_id) == []
    rows = _rows(warehouse_url, tickets.c.id, tickets.c.channel, tickets.c.contact_reason, tickets.c.contact_reasons,
                 tickets.c.custom_fields)
    spec = {t.id: t for t in dataset.tickets}
    multi = [r for r in rows if r.contact_reasons and len(r.contact_reasons) == 2]
    assert multi and all(r.contact_reason is None for r in multi)
    single = [r for r in rows if r.contact_reasons and len(r.contact_reasons) == 1]
    assert all(r.contact_reason == r.contact_reasons[0] == spec[r.id].contact_reason for r in single)
    # Via ids 29/56 (sent as integers and numeric strings) come back as the names the other tickets carry.
    assert {r.channel for r in rows} <= {"web", "email", "chat", "api", "mobile"}
    assert all(r.channel == spec[r.id].channel for r in rows)
    typed = {f["id"]: f["value"] for f in rows[0].custom_fields}
    assert isinstance(typed[360020], bool) and isinstance(typed[360021], int | float)


def test_an_agent_token_gets_a_403_that_asks_for_an_admin(prefect_harness, monkeypatch, sqlite_url, dataset):
    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.flows.ingest import ingest

    migrate(sqlite_url)
    with running_simulator(dataset, user_role="agent") as sim:
        _configure(monkeypatch, sqlite_url, sim)
        try:
            with pytest.raises(HelpdeskAuthError, match=r"admin-only.*admin role"):
                ingest()
        finally:
            get_settings.cache_clear()
