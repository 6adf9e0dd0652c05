"""``backfill`` flow: re-score history with a model version, month by month, resumably.

Partitions already done for the model version are skipped, so a killed or failed backfill is simply re-run.
Writes are idempotent upserts; memory is bounded by the chunk size of one partition task, not by history.
Partitions run on a thread pool of ``TICKETLENS_BACKFILL_WORKERS`` by default; with
``TICKETLENS_BACKFILL_DASK_ADDRESS`` set they run on a Dask cluster (``DaskTaskRunner`` from prefect-dask;
``local`` starts a local cluster of processes).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.tracking import CHAMPION
from ticketlens.models.windows import as_utc
from ticketlens.tasks.backfill import backfill_partition, plan_backfill
from ticketlens.tasks.run_names import backfill_run_name
from ticketlens.tasks.runlock import flow_lock
from ticketlens.tasks.runstate import skipped_state
from ticketlens.tasks.scoring import resolve_version


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
    with _terminal_bar(len(partitions)) as advance:
        for done, (partition, future) in enumerate(zip(partitions, futures, strict=True), start=1):
            scored += future.result()
            update_progress_artifact(progress, progress=100.0 * done / len(partitions))
            get_run_logger().info("Backfill progress: %d/%d partitions (%s done)", done, len(partitions),
                                  partition.key)
            advance()
    return scored


@contextmanager
def _terminal_bar(total: int):
    """A progress bar when a person runs the backfill in a terminal; nothing under a worker."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        job = bar.add_task("backfill partitions", total=total)
        yield lambda: bar.advance(job)


@flow(name="backfill", log_prints=True, flow_run_name=backfill_run_name)
def backfill(start: datetime | None = None, end: datetime | None = None, model_alias: str = CHAMPION,
             model_version: str | None = None) -> dict:
    """Re-score tickets created in [start, end) (whole history by default) with the aliased or given version."""
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    start, end = (None if v is None else as_utc(v) for v in (start, end))  # any datetime kind or ISO string → UTC
    with flow_lock(settings, "backfill", run_id) as held:
        if not held:
            return skipped_state("backfill", held.reason, {"skipped": True, "partitions": 0, "scored": 0})
        return _backfill(settings, run_id, start, end, model_alias, model_version)


def _backfill(settings, run_id: str, start, end, model_alias: str, model_version: str | None) -> dict:
    version = resolve_version(settings, model_alias, model_version)
    partitions = plan_backfill(settings, version, start, end)
    scored = 0
    if partitions:
        scored = run_partitions.with_options(task_runner=partition_runner(settings))(partitions, version, run_id)
    publish_summary(settings.model_name, version, start, end, partitions, scored)
    return {"model_version": version, "partitions": len(partitions), "scored": scored}


def publish_summary(model_name: str, version: str, start: datetime | None, end: datetime | None,
                    partitions: list, scored: int) -> None:
    """The ``backfill-summary`` markdown artifact: what was re-scored, with which version, and how to redo it."""
    span = f"{start.isoformat() if start else 'the first ticket'} → {end.isoformat() if end else 'the last ticket'}"
    lines = ["# Backfill summary", "", f"- model: {model_name} v{version}", f"- window: {span} (UTC, by creation)",
             f"- partitions scored this run: {len(partitions)}"
             + (f" ({', '.join(p.key for p in partitions)})" if partitions else ""),
             f"- tickets scored: {scored}"]
    if not partitions:
        lines += ["", "Nothing to do: every month in the window is already done for this version (see "
                      "`backfill_partitions`). To re-score anyway, delete those rows for this model version, "
                      "then run the backfill again."]
    create_markdown_artifact(key="backfill-summary", markdown="\n".join(lines),
                             description="What this backfill re-scored, and with which model version.")


def main(argv: list[str] | None = None) -> int:
    """``python -m ticketlens.flows.backfill [--start ISO] [--end ISO] [--version N | --alias champion]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Re-score ticket history with a registered model version.")
    parser.add_argument("--start", type=as_utc, help="UTC date/time, e.g. 2026-08-01")
    parser.add_argument("--end", type=as_utc)
    parser.add_argument("--alias", default=CHAMPION)
    parser.add_argument("--version")
    args = parser.parse_args(argv)
    print(backfill(start=args.start, end=args.end, model_alias=args.alias, model_version=args.version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
