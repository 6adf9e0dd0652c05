"""Write-back jobs whose status Zendesk dropped (404 after about an hour) or that stay open too long are settled
by reading the tickets back, through the hourly pipeline against the simulator with its clock advanced."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import ticket_predictions, writeback_jobs, writeback_state
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, running_simulator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=21, start=datetime(2026, 6, 20, tzinfo=UTC), days=20,
                                            tickets_per_day=120))


def _states(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                 .group_by(writeback_state.c.status)).all())


def _jobs(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return dict(conn.execute(sa.select(writeback_jobs.c.status, sa.func.count())
                                 .group_by(writeback_jobs.c.status)).all())


def test_expired_and_overdue_jobs_are_settled_by_reading_tickets_back(prefect_harness, monkeypatch, tmp_path,
                                                                       warehouse_url, dataset):
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    # Jobs stay "working" however often they are polled, as a busy Zendesk job queue does; the simulator drops
    # a job status one simulated hour after the job (its documented default).
    with running_simulator(dataset, job_polls_before_complete=10_000, job_ttl_seconds=3600) as sim:
        env = client_env(warehouse_url, sim,
                         TICKETLENS_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                         TICKETLENS_MLFLOW_ARTIFACT_LOCATION=str(tmp_path / "mlartifacts"),
                         TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS="10",
                         TICKETLENS_WRITEBACK_JOB_POLLS="1", TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS="0")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            ingest()
            assert nightly_retrain()["promoted"]
            first = hourly_pipeline()
            submitted = first["push"]["submitted"]
            assert submitted > 0 and first["poll"]["open_jobs"] > 0
            assert _states(warehouse_url) == {"submitted": submitted}
            open_jobs = _jobs(warehouse_url)
            pushes = len(sim.updates())

            # Two simulated hours later every job status is gone (404). Before this change the tickets stayed
            # "submitted" for good; now the run reads them back and confirms them without pushing them again.
            sim.advance(2 * 3600)
            second = hourly_pipeline()
            assert second["poll"]["settled_by_read_back"] >= submitted
            states = _states(warehouse_url)
            jobs = _jobs(warehouse_url)
            assert jobs.get("expired") == sum(open_jobs.values())
            new_pushed = [t["id"] for call in sim.updates()[pushes:] for t in call["tickets"]]
            first_pushed = [t["id"] for call in sim.updates()[:pushes] for t in call["tickets"]]
            assert not set(new_pushed) & set(first_pushed), "an expired job's tickets were pushed twice"
            with get_engine(warehouse_url).connect() as conn:
                done = set(conn.execute(sa.select(writeback_state.c.ticket_id)
                                        .where(writeback_state.c.status == "done")).scalars())
            assert set(first_pushed) <= done
            # This run's own new jobs are still open (not expired yet): their tickets wait for the next run.
            assert states.get("submitted", 0) == len(new_pushed)

            # A job still open past the deadline (its status not expired yet) is settled the same way: a new
            # prediction for one ticket makes the next run push it, and its job never finishes.
            some = first_pushed[0]
            with get_engine(warehouse_url).begin() as conn:
                current = (ticket_predictions.c.ticket_id == some) & ticket_predictions.c.is_current.is_(True)
                old = conn.execute(sa.select(ticket_predictions.c.category).where(current)).scalar_one()
                new = "account.hacked" if old != "account.hacked" else "account.two_factor"
                conn.execute(sa.update(ticket_predictions).where(current).values(
                    category=new, parent_category="account", predicted_at=datetime.now(UTC)))
            monkeypatch.setenv("TICKETLENS_WRITEBACK_JOB_DEADLINE_SECONDS", "0.001")
            get_settings.cache_clear()
            third = hourly_pipeline()
            assert third["push"]["submitted"] >= 1
            assert third["poll"]["settled_by_read_back"] >= third["push"]["submitted"]
            assert _jobs(warehouse_url).get("overdue", 0) >= 1
            assert "submitted" not in _states(warehouse_url)
            with get_engine(warehouse_url).connect() as conn:
                row = conn.execute(sa.select(writeback_state).where(writeback_state.c.ticket_id == some)
                                   ).mappings().one()
            assert row["status"] == "done" and "tl_cat_" + new.replace(".", "-") in row["pushed_tags"]
        finally:
            get_settings.cache_clear()
