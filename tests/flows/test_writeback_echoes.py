"""The write-back feedback loop (issue 14 point 4), through the flows, on SQLite and PostgreSQL.

TicketLens's own ``update_many`` gives each tagged ticket a new ``updated_at``, so the next incremental export
returns all of them. Those echoes must not be re-scored or re-pushed, and the hourly summary counts them; a real
edit (a changed subject, a human re-categorising the ticket, an agent's tag) is still re-scored.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import ticket_predictions
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.server import SimConfig, create_app
from ticketlens.helpdesk_sim.testing import SimHandle, _wait_healthy, free_port

pytestmark = pytest.mark.slow
FIELDS = {"category": 360010, "tier": 360011}


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=23, start=datetime(2026, 6, 20, tzinfo=UTC), days=14,
                                            tickets_per_day=90))


@contextlib.contextmanager
def simulator_with_state(dataset):
    """Like ``helpdesk_sim.testing.running_simulator``, also handing back the simulator's state so the test can
    play an agent editing a ticket's subject in the helpdesk UI (something ``update_many`` is not used for)."""
    import uvicorn

    # The simulator's clock stands still between runs here (so no generated change blurs the echo counts), so its
    # Zendesk-like "last minute left out of the export" horizon would hide the write-backs themselves: it is off
    # in this test only (tests/unit/test_simulator_zendesk.py covers it).
    config = SimConfig(port=free_port(), export_exclude_recent_seconds=0)
    app = create_app(dataset, config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="helpdesk-sim", daemon=True)
    thread.start()
    url = f"http://{config.host}:{config.port}"
    try:
        _wait_healthy(url, 30, thread.is_alive)
        yield SimHandle(url, config.email, config.api_token, config.oauth_token), app.state.sim
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def agent_edits_subject(state, ticket_id: int, subject: str) -> None:
    """A new ticket version whose subject changed, stamped at the simulator's clock (as an edit in the UI)."""
    import bisect

    with state.lock:
        state.static[ticket_id] = {**state.static[ticket_id], "subject": subject, "raw_subject": subject}
        if state.now not in state.changes[ticket_id]:
            bisect.insort(state.changes[ticket_id], state.now)
            bisect.insort(state.entries, (state.now, ticket_id))


def agent_update(sim: SimHandle, ticket_id: int, **body) -> None:
    """A person's edit through the documented API (update_many with one ticket)."""
    response = httpx.put(f"{sim.base_url}/api/v2/tickets/update_many.json", auth=(f"{sim.email}/token", sim.api_token),
                         json={"tickets": [{"id": ticket_id, **body}]}, timeout=30)
    response.raise_for_status()


def current_predictions(url: str) -> dict[int, datetime]:
    p = ticket_predictions
    with get_engine(url).connect() as conn:
        return dict(conn.execute(sa.select(p.c.ticket_id, p.c.predicted_at).where(p.c.is_current.is_(True))).all())


def test_write_back_echoes_are_not_rescored_or_pushed_but_real_edits_are(prefect_harness, warehouse_url, dataset,
                                                                          monkeypatch, tmp_path):
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    with simulator_with_state(dataset) as (sim, state):
        env = {
            "TICKETLENS_WAREHOUSE_URL": warehouse_url,
            "TICKETLENS_HELPDESK_BASE_URL": sim.base_url,
            "TICKETLENS_HELPDESK_EMAIL": sim.email,
            "TICKETLENS_HELPDESK_API_TOKEN": sim.api_token,
            "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "60000",
            "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": "60000",
            "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
            "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "5",
            "TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS": "0.05",
            "TICKETLENS_WRITEBACK_CUSTOM_FIELDS": '{"category": 360010, "tier": 360011}',
            "TICKETLENS_REPORTS_DIR": str(tmp_path / "reports"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            ingest()
            assert nightly_retrain()["promoted"]  # promotes, then backfills history (with fingerprints)
            sim.advance(60)
            first = hourly_pipeline()
            pushed = {u["id"] for job in sim.updates() for u in job["tickets"]}
            n = len(pushed)
            assert n > 100 and first["push"]["submitted"] == n
            assert first["scoring"]["scored"] == 0  # the backfill already scored these very versions
            assert first["scoring"]["already_current"] > 0
            before = current_predictions(warehouse_url)

            # Next run: the export returns every ticket TicketLens just tagged — all echoes. (The simulator's
            # clock stands still, so no other change reaches these tickets in between.)
            second = hourly_pipeline()
            assert second["ingest"]["tickets"]["fetched"] == n
            assert second["scoring"]["scored"] == 0 and second["window_scoring"]["scored"] == 0
            assert second["scoring"]["echoes"] == n and second["scoring"]["unchanged_inputs"] == 0
            assert second["planned"] == 0 and second["push"]["submitted"] == 0
            assert {u["id"] for job in sim.updates() for u in job["tickets"]} == pushed  # nothing pushed again
            assert current_predictions(warehouse_url) == before  # no prediction re-written
            assert f"- not re-scored: {n} write-back echoes" in latest_summary()

            # Real edits are re-scored: a changed subject, a human re-categorising, an agent's own tag.
            a, b, c = sorted(pushed)[:3]
            edited_at = sim.advance(1)
            assert not [e for e in state.entries if edited_at - 1 < e[0] <= edited_at]  # no generated change now
            agent_edits_subject(state, a, "Refund for the double charge on my card, please")
            spec = {t.id: t for t in dataset.tickets}
            other = next(t.contact_reason for t in dataset.tickets
                         if t.contact_reason and t.contact_reason != spec[b].contact_reason)
            agent_update(sim, b, custom_fields=[{"id": dataset.contact_reason_field_id, "value": other}])
            agent_update(sim, c, additional_tags=["vip"])
            third = hourly_pipeline()
            after = current_predictions(warehouse_url)
            rescored = {t for t in after if after[t] != before.get(t)}
            assert rescored == {a, b, c}
            assert third["ingest"]["tickets"]["fetched"] == 3
            assert third["scoring"]["scored"] == 3 and third["scoring"]["echoes"] == 0
            with get_engine(warehouse_url).connect() as conn:
                fresh = conn.execute(sa.select(ticket_predictions.c.ticket_id).where(
                    ticket_predictions.c.is_current.is_(True), ticket_predictions.c.ticket_id.in_([a, b, c]),
                    ticket_predictions.c.input_sha256.is_not(None))).scalars().all()
            assert sorted(fresh) == sorted([a, b, c])
        finally:
            get_settings.cache_clear()


def latest_summary() -> str:
    """The newest ``hourly-pipeline-summary`` artifact, as a user reads it in the Prefect UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["hourly-pipeline-summary"])))
    return max(artifacts, key=lambda a: a.created).data
