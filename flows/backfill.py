"""``backfill`` flow: re-score history with a model version, month by month, resumably.

Partitions already done for the model version are skipped, so a killed or failed backfill is simply re-run.
Writes are idempotent upserts; memory is bounded by the chunk size of one partition task, not by history.
Partitions run on a thread pool (``TICKETLENS_BACKFILL_WORKERS``).
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


@flow(name="backfill", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def backfill(start: datetime | None = None, end: datetime | None = None, model_alias: str = CHAMPION,
             model_version: str | None = None) -> dict:
    """Re-score tickets created in [start, end) (whole history by default) with the aliased or given version."""
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    version = resolve_version(settings, model_alias, model_version)
    partitions = plan_backfill(settings, version, start, end)
    progress = create_progress_artifact(progress=0.0, key="backfill-progress",
                                        description=f"Backfill with {settings.model_name} v{version}")
    done = 0
    scored = 0
    futures = [backfill_partition.submit(settings, p, version, run_id) for p in partitions]
    for partition, future in zip(partitions, futures, strict=True):
        scored += future.result()
        done += 1
        update_progress_artifact(progress, progress=100.0 * done / max(1, len(partitions)))
        get_run_logger().info("Backfill progress: %d/%d partitions (%s done)", done, len(partitions), partition.key)
    if not partitions:
        update_progress_artifact(progress, progress=100.0)
    return {"model_version": version, "partitions": len(partitions), "scored": scored}


if __name__ == "__main__":
    backfill()
