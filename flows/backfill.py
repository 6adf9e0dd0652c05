"""``backfill`` flow: re-score history with a model version, month by month, resumably.

Partitions already done for the model version are skipped, so a killed or failed backfill is simply re-run.
Writes are idempotent upserts; memory is bounded by the chunk size of one partition task, not by history.
Partitions run on a thread pool of ``TICKETLENS_BACKFILL_WORKERS`` by default; with
``TICKETLENS_BACKFILL_DASK_ADDRESS`` set they run on a Dask cluster (``DaskTaskRunner`` from prefect-dask;
``local`` starts a local cluster of processes).
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.backfill import backfill_partition, plan_backfill
from tasks.scoring import resolve_version
from tasks.settings import get_settings
from tasks.tracking import CHAMPION


def partition_runner(settings):
    """Thread pool by default; DaskTaskRunner when a Dask scheduler (or ``local``) is configured."""
    if not settings.backfill_dask_address:
        return ThreadPoolTaskRunner(max_workers=settings.backfill_workers)
    from prefect_dask import DaskTaskRunner

    if settings.backfill_dask_address == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": settings.backfill_workers, "threads_per_worker": 1})
    return DaskTaskRunner(address=settings.backfill_dask_address)


@flow(name="backfill-partitions", log_prints=True)
def run_partitions(partitions: list, version: str, run_id: str) -> int:
    """Score the partitions on this flow's task runner; report progress as each finishes."""
    settings = get_settings()
    progress = create_progress_artifact(progress=0.0, key="backfill-progress",
                                        description=f"Backfill with {settings.model_name} v{version}")
    futures = [backfill_partition.submit(settings, p, version, run_id) for p in partitions]
    scored = 0
    for done, (partition, future) in enumerate(zip(partitions, futures, strict=True), start=1):
        scored += future.result()
        update_progress_artifact(progress, progress=100.0 * done / len(partitions))
        get_run_logger().info("Backfill progress: %d/%d partitions (%s done)", done, len(partitions), partition.key)
    return scored


@flow(name="backfill", log_prints=True)
def backfill(start: datetime | None = None, end: datetime | None = None, model_alias: str = CHAMPION,
             model_version: str | None = None) -> dict:
    """Re-score tickets created in [start, end) (whole history by default) with the aliased or given version."""
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    version = resolve_version(settings, model_alias, model_version)
    partitions = plan_backfill(settings, version, start, end)
    scored = 0
    if partitions:
        scored = run_partitions.with_options(task_runner=partition_runner(settings))(partitions, version, run_id)
    return {"model_version": version, "partitions": len(partitions), "scored": scored}


if __name__ == "__main__":
    backfill()
