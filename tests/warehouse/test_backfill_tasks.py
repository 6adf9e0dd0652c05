"""``tasks.backfill`` called directly on SQLite and PostgreSQL: which months a backfill plans, that a partition
scores every live ticket of its month once in chunks of ``scoring_chunk_size`` and is then marked done, so a
rerun of the same model version skips it. The model is a stand-in (the flow tests run the registered one):
these tests are about the partition bookkeeping, which a flow test only sees as a total."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.logging import disable_run_logger

import ticketlens.tasks.backfill as backfill
from tests.support.warehouse import prediction_row
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine, migrate
from ticketlens.adapters.warehouse.schema import backfill_partitions, ticket_predictions
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.seed import seed_warehouse
from ticketlens.helpdesk_sim.server import SimConfig, SimState
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.tasks.backfill import Partition, mark_partition_done, month_partitions, plan_backfill

MAY, JUNE, JULY = (datetime(2026, m, 1, tzinfo=UTC) for m in (5, 6, 7))


@pytest.fixture(scope="module")
def dataset():
    """Twelve days across the May/June boundary: two partitions, spam deletions among them."""
    return generate_dataset(GeneratorConfig(seed=6, start=datetime(2026, 5, 25, tzinfo=UTC), days=12,
                                            tickets_per_day=60))


@pytest.fixture
def seeded(warehouse_url, dataset) -> Settings:
    seed_warehouse(warehouse_url, dataset)
    return Settings(warehouse_url=warehouse_url, scoring_chunk_size=64)


def live_ids(dataset, start: datetime, end: datetime) -> set[int]:
    """Tickets created in [start, end) that are not deleted at the dataset's end (what the warehouse holds)."""
    state = SimState(dataset, SimConfig())
    lo, hi = start.timestamp(), end.timestamp()
    return {t.id for t in dataset.tickets if lo <= t.created_at < hi and state.status_at(t, state.now) != "deleted"}


def test_month_partitions_are_utc_calendar_months_across_a_year_end():
    parts = month_partitions(datetime(2026, 11, 30, 23, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
    assert [p.key for p in parts] == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert parts[1] == Partition("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert all(a.end == b.start for a, b in pairwise(parts))


def test_plan_covers_the_months_with_tickets_clipped_to_the_window_minus_those_done(warehouse_url, seeded):
    with disable_run_logger():
        assert [p.key for p in plan_backfill.fn(seeded, "3", None, None)] == ["2026-05", "2026-06"]
        window = plan_backfill.fn(seeded, "3", datetime(2026, 5, 28, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
        assert window == [Partition("2026-05", datetime(2026, 5, 28, tzinfo=UTC), JUNE),
                          Partition("2026-06", JUNE, datetime(2026, 6, 2, tzinfo=UTC))]
        mark_partition_done(seeded, Partition("2026-05", MAY, JUNE), "3", "run-a", 10)
        assert [p.key for p in plan_backfill.fn(seeded, "3", None, None)] == ["2026-06"]
        # "done" is per model version: a new version backfills every month again.
        assert [p.key for p in plan_backfill.fn(seeded, "4", None, None)] == ["2026-05", "2026-06"]


def test_plan_on_an_empty_warehouse_is_empty(warehouse_url):
    migrate(warehouse_url)
    with disable_run_logger():
        assert plan_backfill.fn(Settings(warehouse_url=warehouse_url), "1", None, None) == []


def test_a_partition_scores_each_live_ticket_once_in_chunks_then_is_done(warehouse_url, seeded, dataset,
                                                                         monkeypatch):
    taxonomy = load_taxonomy()
    chunks: list[list[int]] = []

    def stand_in_model(settings, frame: pd.DataFrame, version: str) -> pd.DataFrame:
        chunks.append([int(i) for i in frame["id"]])
        return pd.DataFrame([prediction_row(int(r.id), r.updated_at, "account.password_reset", taxonomy, version)
                             for r in frame.itertuples()])

    monkeypatch.setattr(backfill, "predict_frame", stand_in_model)
    with disable_run_logger():
        total = backfill.backfill_partition.fn(seeded, Partition("2026-06", JUNE, JULY), "3", "run-b")

    expected = live_ids(dataset, JUNE, JULY)
    scored = [i for chunk in chunks for i in chunk]
    assert total == len(expected) == len(scored) and set(scored) == expected  # each once, none from May
    assert len(chunks) > 2 and max(map(len, chunks)) == 64  # chunked by settings.scoring_chunk_size
    with get_engine(warehouse_url).connect() as conn:
        written = conn.execute(sa.select(ticket_predictions.c.ticket_id).where(
            ticket_predictions.c.model_version == "3", ticket_predictions.c.is_current.is_(True))).scalars().all()
        done = conn.execute(sa.select(backfill_partitions)).mappings().one()
    assert set(written) == expected
    assert (done["partition_key"], done["model_version"], done["status"], done["tickets"], done["run_id"]) == \
        ("2026-06", "3", "done", total, "run-b")
    with disable_run_logger():
        assert [p.key for p in plan_backfill.fn(seeded, "3", None, None)] == ["2026-05"]
