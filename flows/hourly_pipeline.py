"""``hourly-pipeline`` flow: ingest → score new tickets → write category/sentiment/tier/routing back.

A failed write-back is recorded and retried on the next run; it never fails the pipeline. Scoring without a
champion model fails the run with a message that says to run ``nightly-retrain`` first.
"""

from __future__ import annotations

from uuid import uuid4

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.ingest import ingest
from tasks.runlock import flow_lock
from tasks.scoring import score_new_tickets
from tasks.settings import get_settings
from tasks.writeback import plan_writeback, poll_writeback_jobs, push_writeback, writeback_summary


@flow(name="hourly-pipeline", log_prints=True)
def hourly_pipeline(max_pages: int | None = None) -> dict:
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    with flow_lock(settings, "hourly-pipeline", run_id) as held:
        if not held:
            return {"skipped": True}
        return _hourly(settings, run_id, max_pages)


def _hourly(settings, run_id: str, max_pages: int | None) -> dict:
    ingested = ingest(max_pages=max_pages)
    if ingested.get("skipped"):  # a separate ingest run is busy: score what is already loaded
        ingested = {"tickets": {"fetched": 0}, "satisfaction_ratings": {"fetched": 0}, "skipped": True}
    scored = score_new_tickets(settings, run_id)
    planned = plan_writeback(settings)
    pushed = push_writeback(settings, run_id)
    polled = poll_writeback_jobs(settings)
    states = writeback_summary(settings.warehouse_url)
    lines = [
        "# Hourly pipeline",
        "",
        f"- ingest: {ingested['tickets']['fetched']} tickets, {ingested['satisfaction_ratings']['fetched']} ratings",
        f"- scored {scored['scored']} tickets with {settings.model_name} v{scored['model_version']}",
        f"- write-back: {planned} planned, {pushed['submitted']} submitted, {pushed['failed']} failed to submit, "
        f"{polled['done']} confirmed, {polled['failed']} rejected by the helpdesk, {polled['open_jobs']} jobs open"
        + (f", dry run: {pushed['dry_run']} would be pushed" if pushed["dry_run"] else ""),
        f"- write-back state: {states}",
    ]
    create_markdown_artifact(key="hourly-pipeline-summary", markdown="\n".join(lines),
                             description="What this hour's run ingested, scored and pushed.")
    print("\n".join(lines[2:]))
    return {"ingest": ingested, "scoring": scored, "planned": planned, "push": pushed, "poll": polled,
            "writeback_states": states}


if __name__ == "__main__":
    hourly_pipeline()
