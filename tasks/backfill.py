"""Backfill tasks: re-score history in partitions (calendar months), resumable per model version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.predictions import EchoMarks, read_partition
from ticketlens.adapters.warehouse.schema import backfill_partitions, tickets
from ticketlens.models.states import PartitionStatus
from ticketlens.models.windows import as_utc
from ticketlens.tasks.scoring import predict_frame, rescore_in_chunks


@dataclass(frozen=True)
class Partition:
    key: str  # "2026-08"
    start: datetime
    end: datetime


def month_partitions(first: datetime, last: datetime) -> list[Partition]:
    """Calendar months (UTC) covering [first, last]."""
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        out.append(Partition(f"{y:04d}-{m:02d}", datetime(y, m, 1, tzinfo=UTC), datetime(ny, nm, 1, tzinfo=UTC)))
        y, m = ny, nm
    return out


@task(name="plan-backfill", cache_policy=NO_CACHE)
def plan_backfill(settings: Settings, version: str, start: datetime | None, end: datetime | None) -> list[Partition]:
    """Months holding tickets in the window, minus those already done for this model version."""
    with get_engine(settings.warehouse_url).connect() as conn:
        where = tickets.c.is_deleted.is_(False)
        if start is not None:
            where = sa.and_(where, tickets.c.created_at >= start)
        if end is not None:
            where = sa.and_(where, tickets.c.created_at < end)
        first, last = conn.execute(sa.select(sa.func.min(tickets.c.created_at), sa.func.max(tickets.c.created_at))
                                   .where(where)).one()
        done = set(conn.execute(sa.select(backfill_partitions.c.partition_key).where(
            backfill_partitions.c.model_name == settings.model_name,
            backfill_partitions.c.model_version == version)).scalars())
    if first is None:
        return []
    parts = [p for p in month_partitions(as_utc(first), as_utc(last)) if p.key not in done]
    get_run_logger().info("Backfill with v%s: %d partitions to do, %d already done", version, len(parts), len(done))
    return [Partition(p.key, max(p.start, start) if start else p.start, min(p.end, end) if end else p.end)
            for p in parts]


@task(name="backfill-partition", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def backfill_partition(settings: Settings, partition: Partition, version: str, run_id: str,
                       chunk: int | None = None) -> int:
    """Score one month in chunks of ``chunk`` tickets (memory bounded by the chunk), then mark it done."""
    chunk = chunk or settings.scoring_chunk_size
    marks = EchoMarks.of(settings)  # fingerprints stored with the new predictions: their write-back echoes are
    # recognised by the next hourly run instead of being re-scored (models.echoes)
    # The query is built in adapters.warehouse.predictions (not here) so that it references the worker's own
    # table objects even when this function is shipped by value to a Dask worker.
    total = rescore_in_chunks(
        get_engine(settings.warehouse_url),
        lambda conn, after_id: read_partition(conn, partition.start, partition.end, after_id, chunk, marks),
        lambda frame: predict_frame(settings, frame, version),
        run_id,
    )
    mark_partition_done(settings, partition, version, run_id, total)
    get_run_logger().info("Partition %s: %d tickets scored with v%s", partition.key, total, version)
    return total


def mark_partition_done(settings: Settings, partition: Partition, version: str, run_id: str, total: int) -> None:
    with get_engine(settings.warehouse_url).begin() as conn:
        conn.execute(sa.insert(backfill_partitions).values(
            model_name=settings.model_name, model_version=version, partition_key=partition.key, status=PartitionStatus.DONE,
            tickets=total, finished_at=datetime.now(UTC), run_id=run_id))
