"""``hourly-pipeline`` flow: ingest → score new tickets → write category/sentiment/tier/routing back → spikes.

A failed write-back is recorded and retried on the next run; it never fails the pipeline. Spike detection runs
last, as the ``spike-detection`` subflow: by then scoring has committed, so a detection failure is logged and
reported but loses nothing (the next run catches the missed hour up). Scoring without a
champion model fails the run with a message that says to run ``nightly-retrain`` first.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.ingest import ingest
from flows.spikes import spike_detection
from tasks.scoring import score_new_tickets
from tasks.settings import get_settings
from tasks.writeback import plan_writeback, poll_writeback_jobs, push_writeback, writeback_summary


@flow(name="hourly-pipeline", log_prints=True)
def hourly_pipeline(max_pages: int | None = None, as_of: datetime | None = None) -> dict:
    """``as_of``: end of the hour spike detection evaluates (UTC); default the last complete hour."""
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    ingested = ingest(max_pages=max_pages)
    scored = score_new_tickets(settings, run_id)
    planned = plan_writeback(settings)
    pushed = push_writeback(settings, run_id)
    polled = poll_writeback_jobs(settings)
    states = writeback_summary(settings.warehouse_url)
    try:
        spikes = spike_detection(as_of=as_of)
        spike_line = (f"- spikes: {spikes['opened']} opened, {spikes['grew']} grew, {spikes['resolved']} resolved; "
                      f"Slack {spikes['slack']['sent']} sent, {spikes['slack']['failed']} failed (retried next run)")
    except Exception as exc:  # scoring and write-back are committed; the next run catches this hour up
        get_run_logger().error("spike detection failed: %s: %s", type(exc).__name__, exc)
        spikes = {"error": f"{type(exc).__name__}: {exc}"}
        spike_line = f"- spikes: detection FAILED ({type(exc).__name__}); the next run catches the hour up"
    lines = [
        "# Hourly pipeline",
        "",
        f"- ingest: {ingested['tickets']['fetched']} tickets, {ingested['satisfaction_ratings']['fetched']} ratings",
        f"- scored {scored['scored']} tickets with {settings.model_name} v{scored['model_version']}",
        f"- write-back: {planned} planned, {pushed['submitted']} submitted, {pushed['failed']} failed to submit, "
        f"{polled['done']} confirmed, {polled['failed']} rejected by the helpdesk, {polled['open_jobs']} jobs open"
        + (f", dry run: {pushed['dry_run']} would be pushed" if pushed["dry_run"] else ""),
        f"- write-back state: {states}",
        spike_line,
    ]
    create_markdown_artifact(key="hourly-pipeline-summary", markdown="\n".join(lines),
                             description="What this hour's run ingested, scored and pushed.")
    print("\n".join(lines[2:]))
    return {"ingest": ingested, "scoring": scored, "planned": planned, "push": pushed, "poll": polled,
            "writeback_states": states, "spikes": spikes}


if __name__ == "__main__":
    hourly_pipeline()
