"""Final states a user sees on the Prefect runs page (issue 14 point 3, ``tasks.runstate``).

A run that did not do all its work must not end ``Completed``: a failed step after others committed → ``Failed``
naming the step; another run holding the lock → ``Skipped`` (type CANCELLED). Asserted on the state the Prefect
API stores for the run, for runs created the way the scheduler creates them (no parameters).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.scheduled import run_as_scheduled
from tests.support.warehouse import count
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import ticket_predictions, writeback_state

pytestmark = pytest.mark.slow
SLOT = datetime(2026, 7, 10, 10, 5, tzinfo=UTC)

LOCKED_FLOWS = [
    ("ticketlens.flows.hourly_pipeline", "hourly_pipeline", "hourly-pipeline"),
    ("ticketlens.flows.ingest", "ingest", "ingest"),
    ("ticketlens.flows.nightly_retrain", "nightly_retrain", "nightly-retrain"),
    ("ticketlens.flows.backfill", "backfill", "backfill"),
    ("ticketlens.flows.spikes", "spike_detection", "spike-detection"),
    ("ticketlens.flows.csat_drivers", "csat_drivers", "csat-drivers"),
]


@pytest.mark.parametrize(("module", "attr", "lock"), LOCKED_FLOWS, ids=[f[2] for f in LOCKED_FLOWS])
def test_a_run_that_finds_its_lock_held_ends_skipped_not_completed(prefect_harness, sqlite_url, monkeypatch,
                                                                   tmp_path, module, attr, lock):
    import importlib

    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.tasks.runlock import run_lock

    flow_obj = getattr(importlib.import_module(module), attr)
    migrate(sqlite_url)
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("TICKETLENS_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("TICKETLENS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    try:
        with run_lock(sqlite_url, lock, "the-other-run"):
            run, state = run_as_scheduled(flow_obj, SLOT)
            with get_engine(sqlite_url).connect() as conn:  # the other run's lock, untouched
                assert conn.execute(sa.text("SELECT owner FROM run_locks")).scalar_one().endswith(":the-other-run")
    finally:
        get_settings.cache_clear()
    # What the runs page shows and automations match on (event prefect.flow-run.Skipped): not green Completed.
    assert run.state.type.value == "CANCELLED" and run.state.name == "Skipped"
    assert state.name == "Skipped" and "the-other-run" in state.message and "nothing done" in state.message


def test_hourly_pipeline_ends_failed_naming_the_steps_that_did_not_finish(prefect_harness, env, sqlite_url,
                                                                         monkeypatch):
    from prefect import task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    import ticketlens.flows.spikes
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    sim = env
    monkeypatch.setenv("TICKETLENS_BACKFILL_AFTER_PROMOTION", "false")  # not what this test is about: save time
    get_settings.cache_clear()
    ingest()
    assert nightly_retrain()["promoted"]

    # A scheduler-created run (pendulum start time, no parameters) does all its work: Completed, spikes evaluated.
    run, state = run_as_scheduled(hourly_pipeline, SLOT)
    assert run.state.type.value == "COMPLETED", state.message
    done = state.result()
    assert done["spikes"] is not None and done["spikes"].as_of == SLOT.replace(minute=0).isoformat()
    assert done["failed_steps"] == {}

    # Spike detection breaks: scoring and write-back still commit, then the run ends Failed, saying so.
    @task(name="detect-spikes")
    def broken(settings, run_id, as_of=None):
        raise RuntimeError("detector exploded")

    working = ticketlens.flows.spikes.detect_spikes_task
    monkeypatch.setattr(ticketlens.flows.spikes, "detect_spikes_task", broken)
    sim.advance(3600)
    before = count(sqlite_url, ticket_predictions)
    run, state = run_as_scheduled(hourly_pipeline, SLOT + timedelta(hours=1))
    assert run.state.type.value == "FAILED" and run.state.name == "Failed"
    assert "spike-detection" in run.state.message and "detector exploded" in run.state.message
    assert "write-back" not in run.state.message
    assert count(sqlite_url, ticket_predictions) > before  # the hour's new tickets were scored and kept
    partial = state.result(raise_on_failure=False).result
    assert partial["scoring"]["scored"] > 0 and set(partial["failed_steps"]) == {"spike-detection"}
    with get_client(sync_client=True) as client:
        summary = next(a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))) if a.key == "hourly-pipeline-summary")
    assert "final state: Failed" in summary.data and "spike-detection" in summary.data
    monkeypatch.setattr(ticketlens.flows.spikes, "detect_spikes_task", working)

    # The helpdesk rejects a write (the ticket was deleted there after it was scored): write-back failed → Failed.
    with get_engine(sqlite_url).begin() as conn:
        row = dict(conn.execute(sa.select(writeback_state).limit(1)).mappings().one())
        conn.execute(sa.insert(writeback_state).values({**row, "ticket_id": 987654321, "status": "pending",
                                                        "pushed_tags": None, "pushed_sha256": None}))
    run, state = run_as_scheduled(hourly_pipeline, SLOT + timedelta(hours=2))
    assert run.state.type.value == "FAILED"
    assert "write-back: 0 ticket(s) failed to submit, 1 rejected by the helpdesk" in run.state.message
    assert "spike-detection" not in run.state.message
    with get_engine(sqlite_url).connect() as conn:
        error = conn.execute(sa.select(writeback_state.c.last_error)
                             .where(writeback_state.c.ticket_id == 987654321)).scalar_one()
    assert "notfound" in error.lower().replace(" ", "")  # the helpdesk's reason (TicketNotFound) is kept
