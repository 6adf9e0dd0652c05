"""Hourly scoring and write-back against the simulator, and the resumable backfill."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from prefect import flow

from tests.support.warehouse import count
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    backfill_partitions,
    ticket_predictions,
    writeback_jobs,
    writeback_state,
)
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.tasks.writeback import plan_writeback, poll_writeback_jobs, push_writeback

pytestmark = pytest.mark.slow


def test_scoring_without_a_champion_fails_clearly(prefect_harness, env, sqlite_url):
    from ticketlens.flows.hourly_pipeline import hourly_pipeline

    with pytest.raises(Exception, match="nightly-retrain"):
        hourly_pipeline()


def test_hourly_scoring_and_write_back(prefect_harness, env, sqlite_url, dataset):
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    sim = env
    ingest()
    trained = nightly_retrain()
    assert trained["promoted"]
    first = hourly_pipeline()
    n_tickets = count(sqlite_url, ticket_predictions, ticket_predictions.c.is_current.is_(True))
    # nightly-retrain's backfill already scored these very ticket versions with the champion: kept, not redone
    assert n_tickets > 0 and first["scoring"]["scored"] == 0 and first["scoring"]["already_current"] == n_tickets
    with get_engine(sqlite_url).connect() as conn:
        versions = set(conn.execute(sa.select(ticket_predictions.c.model_version).distinct()).scalars())
        states = dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                   .group_by(writeback_state.c.status)).all())
        jobs = conn.execute(sa.select(writeback_jobs.c.status, writeback_jobs.c.results)).all()
    assert versions == {trained["version"]}
    assert states == {"done": n_tickets}
    assert jobs and all(j.status == "completed" and j.results for j in jobs)  # job results kept
    updates = sim.updates()
    assert all(len(u["tickets"]) <= 100 for u in updates)
    assert sum(len(u["tickets"]) for u in updates) == n_tickets
    # tags were added, not replaced: the ticket keeps its own tags
    some = updates[0]["tickets"][0]["id"]
    spec = next(t for t in dataset.tickets if t.id == some)
    tags = sim.ticket(some)["tags"]
    assert set(spec.tags) <= set(tags) and any(t.startswith("tl_cat_") for t in tags)
    fields = {f["id"]: f["value"] for f in sim.ticket(some)["custom_fields"]}
    assert load_taxonomy().is_leaf(fields[360010])  # the category custom field holds a taxonomy leaf
    assert fields[360011].startswith("tier_")

    # Next hour: write-back made new ticket versions; they are re-scored, but nothing changed → nothing pushed.
    second = hourly_pipeline()
    assert second["push"]["submitted"] == 0 and len(sim.updates()) == len(updates)

    # A failing helpdesk: the push fails without failing anything, and the next run delivers it.
    with get_engine(sqlite_url).begin() as conn:  # a new prediction for one ticket changes its category
        current = (ticket_predictions.c.ticket_id == some) & ticket_predictions.c.is_current.is_(True)
        old = conn.execute(sa.select(ticket_predictions.c.category).where(current)).scalar_one()
        new = "account.hacked" if old != "account.hacked" else "account.two_factor"
        conn.execute(sa.update(ticket_predictions).where(current).values(
            category=new, parent_category="account", predicted_at=datetime.now(UTC)))
    sim.set_faults(rate_limit_storm=3)  # 429 on every attempt (max retries 2): certainly not applied
    failed = push_only()
    assert failed["push"] == {"submitted": 0, "failed": 1, "in_doubt": 0, "dry_run": 0}
    with get_engine(sqlite_url).connect() as conn:
        row = conn.execute(sa.select(writeback_state).where(writeback_state.c.ticket_id == some)).mappings().one()
    assert row["status"] == "failed" and row["attempts"] == 1 and "attempts" in row["last_error"]
    assert len(sim.updates()) == len(updates)
    delivered = push_only()
    assert delivered["push"]["submitted"] == 1 and delivered["poll"]["done"] == 1
    pushed = sim.updates()[-1]["tickets"][0]
    assert pushed["id"] == some and "tl_cat_" + new.replace(".", "-") in pushed["additional_tags"]
    assert "tl_cat_" + old.replace(".", "-") in pushed["remove_tags"]  # only our own outdated tag goes


def test_a_write_whose_answer_is_lost_is_read_back_not_sent_twice(prefect_harness, env, sqlite_url):
    """update_many applied by the helpdesk but answered 504: the batch stays in doubt, the next run reads the
    tickets back and finds the tags there, and nothing is pushed a second time (no double write-back)."""
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    sim = env
    ingest()
    assert nightly_retrain()["promoted"]
    sim.set_faults(lost_write_responses=1)
    first = hourly_pipeline()
    assert first["push"]["in_doubt"] > 0
    calls = sim.updates()
    with get_engine(sqlite_url).connect() as conn:
        doubt = conn.execute(sa.select(writeback_state.c.ticket_id, writeback_state.c.last_error)
                             .where(writeback_state.c.status == "pushing")).all()
    assert len(doubt) == first["push"]["in_doubt"] and all("not re-sent" in r.last_error for r in doubt)
    lost = {t["id"] for t in calls[0]["tickets"]}  # the first batch is the one whose answer was lost
    assert {r.ticket_id for r in doubt} == lost

    settled = push_only()
    assert settled["push"]["submitted"] == 0 and len(sim.updates()) == len(calls)
    pushed = [t["id"] for call in sim.updates() for t in call["tickets"]]
    assert len(pushed) == len(set(pushed)), "a ticket was pushed twice"
    with get_engine(sqlite_url).connect() as conn:
        states = dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                   .group_by(writeback_state.c.status)).all())
    assert states == {"done": len(pushed)}


@flow(name="push-only")
def push_only() -> dict:
    """Plan, push and poll without ingest or scoring (so a faulty helpdesk only affects the write-back)."""
    settings = get_settings()
    plan_writeback(settings)
    return {"push": asdict(push_writeback(settings, "test")), "poll": asdict(poll_writeback_jobs(settings))}


def test_backfill_is_resumable(prefect_harness, env, sqlite_url):
    from ticketlens.flows.backfill import backfill
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    ingest()
    trained = nightly_retrain()  # a promotion starts a backfill with the new champion
    version = trained["version"]
    assert trained["backfill"]["partitions"] >= 1 and trained["backfill"]["scored"] > 0
    assert count(sqlite_url, backfill_partitions) == trained["backfill"]["partitions"]
    again = backfill()
    assert again["partitions"] == 0  # everything done for this version: nothing redone
    with get_engine(sqlite_url).begin() as conn:  # as if the run had been killed during the last partition
        last = conn.execute(sa.select(sa.func.max(backfill_partitions.c.partition_key))).scalar_one()
        conn.execute(sa.delete(backfill_partitions).where(backfill_partitions.c.partition_key == last))
    resumed = backfill()
    assert resumed["partitions"] == 1 and resumed["model_version"] == version
    predictions = count(sqlite_url, ticket_predictions)
    assert predictions == count(sqlite_url, ticket_predictions, ticket_predictions.c.is_current.is_(True))


def test_backfill_partitions_run_on_dask(prefect_harness, env, sqlite_url, monkeypatch):
    from ticketlens.flows.backfill import backfill
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    monkeypatch.setenv("TICKETLENS_BACKFILL_AFTER_PROMOTION", "false")
    ingest()
    nightly_retrain()
    monkeypatch.setenv("TICKETLENS_BACKFILL_DASK_ADDRESS", "local")  # a local Dask cluster of worker processes
    get_settings.cache_clear()
    result = backfill()
    from ticketlens.adapters.warehouse.schema import tickets

    live = count(sqlite_url, tickets, tickets.c.is_deleted.is_(False))
    assert result["partitions"] >= 1 and result["scored"] == live
    assert count(sqlite_url, ticket_predictions, ticket_predictions.c.is_current.is_(True)) == live
