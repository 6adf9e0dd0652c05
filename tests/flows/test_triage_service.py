"""Triage service end to end: simulator webhooks → service → tags on the simulator's tickets, exactly once;
the loaded champion keeps scoring while MLflow is down; a moved ``champion`` alias is picked up."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from tests.support.triage import (
    MODEL,
    SECRET,
    champion_registry,
    create_tickets,
    fresh,
    pushes_per_ticket,
    register_champion,
    serving_triage,
    tagged,
    wait_until,
)
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine, migrate
from ticketlens.adapters.warehouse.schema import ticket_predictions, triage_inbox, writeback_state
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import running_simulator
from ticketlens.services.triage.app import INTAKE_PATH
from ticketlens.services.triage.payload import Delivery
from ticketlens.services.triage.service import TriageService
from ticketlens.services.triage.settings import TriageSettings


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=31, start=datetime(2026, 6, 1, tzinfo=UTC), days=8,
                                            tickets_per_day=60))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, dataset):
    return champion_registry(tmp_path_factory, dataset)


def settings_for(url: str, sim, registry) -> Settings:
    return Settings(warehouse_url=url, helpdesk_base_url=sim.base_url, helpdesk_email=sim.email,
                    helpdesk_api_token=sim.api_token, helpdesk_requests_per_minute=60_000,
                    helpdesk_backoff_base_seconds=0.01, helpdesk_backoff_max_seconds=0.05,
                    mlflow_tracking_uri=registry["uri"], mlflow_artifact_location=registry["artifacts"],
                    model_name=MODEL, sentiment_model_name=f"{MODEL}-sentiment")


def rows(url: str, table, *where) -> list[dict]:
    with get_engine(url).connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]


def test_simulator_webhooks_end_with_tags_on_every_ticket_exactly_once(warehouse_url, dataset, registry, monkeypatch):
    # The Prefect event feed: one event per flushed micro-batch (recorded here instead of sent to a server).
    import prefect.events

    from ticketlens.services.triage import service as service_module

    events: list[dict] = []
    monkeypatch.setattr(service_module, "prefect_api_configured", lambda: True)
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: events.append(kw))
    afternoon = int(datetime(2026, 6, 8, 14, tzinfo=UTC).timestamp())  # the last day, when tickets arrive
    with running_simulator(fresh(dataset), clock=afternoon) as sim:
        settings = settings_for(warehouse_url, sim, registry)
        triage = TriageSettings(webhook_secret=SECRET, batch_interval_seconds=0.3, job_poll_seconds=0.1,
                                model_poll_seconds=60)
        service = TriageService(settings, triage)
        with serving_triage(service) as url:
            sim_hooks = f"{sim.base_url}/_sim/webhooks"
            # Zendesk-like faults: some deliveries twice, out of order; half the bodies carry only the ticket id.
            httpx.post(sim_hooks, json={"url": url + INTAKE_PATH, "secret": SECRET, "duplicate_rate": 0.4,
                                        "reorder_window": 4, "seed": 3}).raise_for_status()
            ids = create_tickets(sim, dataset, 12)
            httpx.post(sim_hooks, json={"body": "id"}).raise_for_status()
            ids += create_tickets(sim, dataset, 12, offset=12)
            wait_until(lambda: tagged(sim, ids), 90, "tags on all 24 tickets")
            # Live-style creation: tickets whose creation time the clock passes are announced too.
            now = sim.now()
            arriving = [t.id for t in dataset.tickets if now < t.created_at <= now + 1800]
            assert arriving
            sim.advance(1800)
            wait_until(lambda: tagged(sim, arriving), 90, f"tags on the {len(arriving)} tickets the clock reached")
            ids += arriving
            # A forged delivery (wrong secret) is refused and stores nothing.
            httpx.post(sim_hooks, json={"bad_signature_rate": 1.0, "duplicate_rate": 0.0}).raise_for_status()
            forged = create_tickets(sim, dataset, 1, offset=30)
            wait_until(lambda: httpx.get(sim_hooks).json()["stats"]["rejected"] == 1, 30, "the forged delivery")
            stats = httpx.get(sim_hooks).json()["stats"]
            metrics = httpx.get(f"{url}/metrics").text
            ready = httpx.get(f"{url}/readyz").json()
        pushes = pushes_per_ticket(sim)
    assert {i: pushes[i] for i in ids} == dict.fromkeys(ids, 1)  # every ticket pushed exactly once
    assert stats["duplicated"] > 0 and stats["delivered"] >= len(ids)
    inbox = rows(warehouse_url, triage_inbox)
    assert sorted(r["ticket_id"] for r in inbox) == sorted(ids)  # duplicates stored once; the forgery not at all
    assert forged[0] not in {r["ticket_id"] for r in inbox}, (stats, [r for r in inbox if r["ticket_id"] == forged[0]])
    assert all(r["status"] == "scored" and r["model_version"] == registry["version"] for r in inbox)
    predictions = rows(warehouse_url, ticket_predictions, ticket_predictions.c.ticket_id.in_(ids))
    assert len(predictions) == len(ids) and all(p["realtime"] and p["run_id"] == "triage-service" for p in predictions)
    states = rows(warehouse_url, writeback_state, writeback_state.c.ticket_id.in_(ids))
    assert [s["status"] for s in states] == ["done"] * len(ids)
    assert 'triage_webhooks_rejected_total{reason="bad_signature"} 1.0' in metrics
    assert f"triage_tickets_confirmed_total {len(ids)}.0" in metrics
    assert f"triage_created_to_tagged_seconds_count {len(ids)}.0" in metrics
    assert ready["ready"] is True and ready["champion"] == f"v{registry['version']}"
    batches = int(float(next(line.split()[-1] for line in metrics.splitlines()
                             if line.startswith("triage_batches_flushed_total "))))
    assert len(events) == batches > 0
    assert all(e["event"] == "ticketlens.triage.batch.submitted" and e["resource"]["prefect.resource.id"] ==
               "ticketlens.triage-service" for e in events)
    assert sum(e["payload"]["tickets"] for e in events) == len(ids)

    # The hourly run's write-back steps find nothing to push again (same state machine, same desired tags).
    from ticketlens.tasks.writeback import plan_writeback, push_writeback

    assert plan_writeback.fn(settings) == 0
    assert push_writeback.fn(settings, "hourly").submitted == 0


def deliver(service: TriageService, dataset, specs, at: str) -> None:
    for n, spec in enumerate(specs):
        service.accept(Delivery(ticket_id=spec.id, event_key=f"evt-{at}-{n}", created_at=None, ticket={
            "id": spec.id, "subject": spec.subject, "description": spec.description, "tags": list(spec.tags),
            "updated_at": at, "created_at": at}))


def drain(service: TriageService) -> None:
    wait_until(lambda: not service.step() and service.depth == 0 and not service.pending, 60, "the worker to drain",
               interval=0)


def test_mlflow_down_keeps_scoring_and_a_moved_alias_reloads(sqlite_url, dataset, registry, tmp_path):
    migrate(sqlite_url)
    with running_simulator(fresh(dataset)) as sim:
        settings = settings_for(sqlite_url, sim, registry)
        service = TriageService(settings, TriageSettings(webhook_secret=SECRET, batch_interval_seconds=0.01,
                                                         job_poll_seconds=0.01))
        service.start(threads=False)
        first = registry["version"]
        assert service.models.current.version == first
        deliver(service, dataset, dataset.tickets[:5], "2026-06-09T10:00:00+00:00")
        drain(service)

        # MLflow goes away: the alias cannot be read, the loaded version keeps scoring.
        service.models.settings = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path}"})
        assert service.models.refresh() == "unavailable"
        deliver(service, dataset, dataset.tickets[5:10], "2026-06-09T11:00:00+00:00")
        drain(service)
        assert service.ready()[0]

        # MLflow is back and the alias moved to a new version: the next check loads it, no restart.
        service.models.settings = settings
        second = register_champion(registry["uri"], registry["artifacts"], MODEL, dataset, seed=1)
        assert second != first
        assert service.models.refresh() == "loaded"
        deliver(service, dataset, dataset.tickets[10:15], "2026-06-09T12:00:00+00:00")
        drain(service)
        register_champion_back = first  # restore the alias for other tests of this module
        from ticketlens.adapters.tracking import set_alias

        set_alias(registry["uri"], MODEL, "champion", register_champion_back)
    by_version = Counter((p["ticket_id"] in {t.id for t in dataset.tickets[10:15]}, p["model_version"])
                         for p in rows(sqlite_url, ticket_predictions))
    assert by_version == {(False, first): 10, (True, second): 5}
    assert [s["status"] for s in rows(sqlite_url, writeback_state)] == ["done"] * 15
