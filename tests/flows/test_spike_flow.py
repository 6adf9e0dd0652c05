"""The ``spike-detection`` flow under the Prefect test harness: Slack down never fails the run, the artifact lists
the alert, and the next run delivers the stored message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.slack import Receiver
from tests.support.spikes import SPIKE_AT, seed
from ticketlens.adapters.settings import get_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def slack():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def flow_env(monkeypatch, sqlite_url, tmp_path):
    from ticketlens.adapters.warehouse.engine import migrate

    migrate(sqlite_url)
    seed(sqlite_url)
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("TICKETLENS_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def test_spike_flow_survives_slack_failure_and_retries(prefect_harness, flow_env, slack, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from ticketlens.flows.spikes import spike_detection

    monkeypatch.setenv("TICKETLENS_SLACK_WEBHOOK_URL", slack.url)
    get_settings.cache_clear()
    slack.statuses = [500]
    state = spike_detection(as_of=SPIKE_AT + timedelta(hours=1), return_state=True)
    # The alert is committed and the message kept, but an undelivered alert is work not done: Failed, saying so.
    assert state.is_failed() and state.name == "Failed"
    assert "slack: 1 alert message(s) not delivered" in state.message and "retried next run" in state.message
    first = state.result(raise_on_failure=False).result
    assert first.opened == 1 and first.slack.failed == 1
    second = spike_detection(as_of=SPIKE_AT + timedelta(hours=2))
    assert second.opened == 0 and second.slack.sent == 1
    assert [r["status"] for r in slack.requests] == [500, 200]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["spike-alerts"])))
    latest = max(artifacts, key=lambda a: a.created)
    assert "App & technical › App crashes" in latest.data and "| ongoing |" in latest.data
    assert "s3cr3t" not in latest.data


def test_overlapping_spike_run_exits_cleanly_without_alerting(prefect_harness, flow_env, slack, monkeypatch):
    """While another run holds the spike-detection lock, a second run opens nothing and posts nothing."""
    import sqlalchemy as sa

    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.flows.spikes import spike_detection
    from ticketlens.tasks.runlock import run_lock

    monkeypatch.setenv("TICKETLENS_SLACK_WEBHOOK_URL", slack.url)
    get_settings.cache_clear()
    with run_lock(flow_env, "spike-detection", "another-run"):
        state = spike_detection(as_of=SPIKE_AT + timedelta(hours=1), return_state=True)
    assert state.is_cancelled() and state.name == "Skipped" and "another-run" in state.message
    assert slack.requests == []
    with get_engine(flow_env).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM spike_alerts")).scalar_one() == 0
    ran = spike_detection(as_of=SPIKE_AT + timedelta(hours=1))  # the lock is free again: the hour is evaluated
    assert ran.opened == 1 and len(slack.requests) == 1
