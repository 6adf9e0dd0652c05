"""Kill -9 the triage service mid-stream, restart it, run one hourly-pipeline: every ticket is tagged exactly
once — no duplicate pushes, none missing — on SQLite and PostgreSQL.

The service runs as a real process (``python -m ticketlens.services.triage``); the simulator sends it signed
webhooks while tickets are created at ~15/s; the kill lands while batches are being scored and pushed. Tickets
created while it is down get no webhook through (the simulator gives up after its retries), so the hourly
sweep must route them; tickets the service already routed must not be pushed again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
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
    wait_until,
)
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import ticket_predictions, triage_inbox
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, free_port, running_simulator
from ticketlens.services.triage.app import INTAKE_PATH

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=32, start=datetime(2026, 6, 1, tzinfo=UTC), days=6,
                                            tickets_per_day=40))


@pytest.fixture(scope="module")
def registry(tmp_path_factory, dataset):
    return champion_registry(tmp_path_factory, dataset)


def start_service(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "ticketlens.services.triage", "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        assert proc.poll() is None, "the triage service exited during start-up"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 120, "the triage service to be ready")
    return proc


def queued(url: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(triage_inbox)
                            .where(triage_inbox.c.status == "queued")).scalar_one()


def test_kill_9_mid_stream_then_restart_and_one_hourly_run_tags_every_ticket_once(
        prefect_harness, warehouse_url, dataset, registry, monkeypatch):
    from ticketlens.flows.hourly_pipeline import hourly_pipeline

    with running_simulator(fresh(dataset), clock=dataset.end) as sim:
        port = free_port()
        env = client_env(warehouse_url, sim, **{
            "TICKETLENS_MLFLOW_TRACKING_URI": registry["uri"],
            "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": registry["artifacts"],
            "TICKETLENS_MODEL_NAME": MODEL, "TICKETLENS_SENTIMENT_MODEL_NAME": f"{MODEL}-sentiment",
            "TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS": "0.05",
            "TICKETLENS_TRIAGE_WEBHOOK_SECRET": SECRET, "TICKETLENS_TRIAGE_BATCH_INTERVAL_SECONDS": "0.2",
            "TICKETLENS_TRIAGE_JOB_POLL_SECONDS": "0.1", "TICKETLENS_TRIAGE_ALLOW_ROOT": "true"})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        service = start_service(env, port)
        httpx.post(f"{sim.base_url}/_sim/webhooks", json={
            "url": f"http://127.0.0.1:{port}{INTAKE_PATH}", "secret": SECRET, "max_attempts": 2,
            "backoff_seconds": 0.2, "timeout_seconds": 2.0}).raise_for_status()
        created: list[int] = []

        def stream() -> None:  # ~15 tickets/s for 60 tickets
            for n in range(60):
                created.extend(create_tickets(sim, dataset, 1, offset=n))
                time.sleep(1 / 15)

        producer = threading.Thread(target=stream)
        producer.start()
        wait_until(lambda: len(created) >= 20, 60, "20 tickets created")
        os.kill(service.pid, signal.SIGKILL)  # mid-stream: webhooks arriving, batches in flight
        service.wait()
        time.sleep(1.0)  # a few tickets are created while the service is down
        service = start_service(env, port)
        try:
            producer.join()
            wait_until(lambda: queued(warehouse_url) == 0, 120, "the restarted service to drain its inbox")
            time.sleep(2.0)  # its last micro-batch and job poll
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
        realtime_before = sum(1 for n in pushes_per_ticket(sim).values() if n)
        sim.advance(180)  # past the export's one-minute horizon: the hourly ingest sees every new ticket
        hourly_pipeline()
        pushes = pushes_per_ticket(sim)
        tags = {i: sim.ticket(i)["tags"] for i in created}
    get_settings.cache_clear()
    assert len(created) == 60
    assert {i: pushes[i] for i in created} == dict.fromkeys(created, 1), "each new ticket pushed exactly once"
    assert all(any(t.startswith("tl_cat_") for t in tags[i]) for i in created)
    assert max(pushes.values()) == 1  # the history the hourly run routed too: nothing pushed twice
    assert realtime_before >= 10  # the service did route tickets in real time before and after the kill
    with get_engine(warehouse_url).connect() as conn:
        flags = Counter(conn.execute(sa.select(ticket_predictions.c.realtime).where(
            ticket_predictions.c.ticket_id.in_(created))).scalars())
    assert flags[True] >= 10
