"""``hourly-pipeline`` flow: ingest → score → write category/sentiment/tier/routing back → spike detection.

Each run owns one clock hour, its *window*, derived from the scheduled start time (``tasks.runtime``): a run
scheduled at 10:05 owns [09:00, 10:00) even if it starts late, is retried, or is re-run tomorrow. Explicit
``start``/``end`` parameters override it for re-runs. What the window means for each step:

- ingest is cursor-based (Zendesk incremental export): a scheduled run always catches up from the stored
  cursor to now, whatever its window. A run with an explicit window re-extracts from ``start`` instead (the
  export cannot stop at ``end``; the overlap with what is stored is absorbed by the newest-wins upserts).
- scoring: ``score-new-tickets`` scores everything loaded since the scoring watermark, then
  ``score-window-tickets`` makes sure every ticket updated in the window has a current champion prediction
  (usually none left; after a failed or re-run hour, exactly the missing ones).
- write-back picks up every prediction written since its last plan (so the window's new predictions) and
  retries pending/failed tickets from earlier hours.
- spike detection evaluates the hour ending at ``window.end`` (its ``as_of``), catching up missed hours.

Final state (``tasks.runstate``): a run whose write-back failed for some tickets (recorded, retried next run) or
whose ``spike-detection`` subflow failed (it runs last, after scoring and write-back committed; the next run
catches the hour up) still commits everything that succeeded, then ends ``Failed`` with a message naming each
failed step — never ``Completed``. A run that finds its lock held ends ``Skipped``. Scoring without a champion
model fails the run with a message that says to run ``nightly-retrain`` first.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ticketlens.adapters.settings import get_settings
from ticketlens.flows.ingest import ingest
from ticketlens.flows.spikes import spike_detection
from ticketlens.tasks.run_names import hourly_run_name
from ticketlens.tasks.runlock import flow_lock, run_lock
from ticketlens.tasks.runstate import RunSkippedError, final_state, is_skipped, skipped_state, subflow_outcome
from ticketlens.tasks.runtime import hourly_window
from ticketlens.tasks.scoring import score_new_tickets, score_window_tickets
from ticketlens.tasks.writeback import (
    WRITEBACK_LOCK,
    plan_writeback,
    poll_writeback_jobs,
    push_writeback,
    routing_latency,
    writeback_summary,
)


@flow(name="hourly-pipeline", log_prints=True, flow_run_name=hourly_run_name)
def hourly_pipeline(start: datetime | None = None, end: datetime | None = None,
                    max_pages: int | None = None) -> dict:
    """Ingest, score, write back and detect spikes for one hour.

    Args:
        start: UTC start of the window to (re)process; default: the clock hour before the scheduled start.
            Given explicitly, ingest also re-extracts from here (idempotent).
        end: UTC end of the window (exclusive); with only one of start/end the window is one hour.
        max_pages: stop each ingest stream after this many pages (the next run continues from there).
    """
    settings = get_settings()
    window = hourly_window(start, end)
    run_id = str(flow_run.id or uuid4())
    get_run_logger().info("Window %s", window)
    with flow_lock(settings, "hourly-pipeline", run_id) as held:
        if not held:
            return skipped_state("hourly-pipeline", held.reason, {"skipped": True, "window": window.as_dict()})
        result, failures = _hourly(settings, run_id, window, max_pages)
    return final_state("hourly-pipeline", result, failures)


def _hourly(settings, run_id: str, window, max_pages: int | None) -> tuple[dict, dict[str, str]]:
    explicit = window.source == "parameters"
    failures: dict[str, str] = {}
    try:
        ingested = ingest(start_time=window.start if explicit else None, max_pages=max_pages)
    except RunSkippedError:  # a separate ingest run is busy loading: score what is already loaded
        ingested = {"tickets": {"fetched": 0}, "satisfaction_ratings": {"fetched": 0}, "skipped": True}
    scored = score_new_tickets(settings, run_id)
    in_window = score_window_tickets(settings, run_id, window.start, window.end)
    # The triage service pushes under the same warehouse lock: never both reading back or pushing one batch.
    with run_lock(settings.warehouse_url, WRITEBACK_LOCK, run_id, wait_seconds=120,
                  lease_seconds=settings.run_lock_lease_seconds):
        planned = plan_writeback(settings)
        pushed = push_writeback(settings, run_id)
        polled = poll_writeback_jobs(settings)
    states = writeback_summary(settings.warehouse_url)
    if pushed.failed or polled.failed:
        failures["write-back"] = (f"{pushed.failed} ticket(s) failed to submit, {polled.failed} rejected by "
                                  "the helpdesk (status 'failed' in writeback_state; retried next run)")
    # Last: scoring and write-back are committed, so a failure here loses nothing (the next run catches up).
    spike_state = spike_detection(as_of=window.end, return_state=True)
    spikes, spike_failure = subflow_outcome(spike_state)
    if spike_failure:
        get_run_logger().error("spike detection did not finish: %s", spike_failure)
        failures["spike-detection"] = spike_failure + "; the next run catches the hour up"
    if is_skipped(spike_state):
        spike_line = "- spikes: skipped, another spike-detection run holds its lock (the next run catches up)"
    elif spikes is not None:
        spike_line = (f"- spikes: {spikes.opened} opened, {spikes.grew} grew, {spikes.resolved} resolved; "
                      f"Slack {spikes.slack.sent} sent, {spikes.slack.failed} failed (retried next run)")
    else:  # detection did not finish: failed_steps says why
        spike_line = f"- spikes: detection FAILED ({spike_failure}); the next run catches the hour up"
    lines = [
        "# Hourly pipeline",
        "",
        f"- window: {window}" + (" — ingest re-extracted from its start" if explicit else ""),
        f"- ingest: {ingested['tickets']['fetched']} tickets, {ingested['satisfaction_ratings']['fetched']} ratings"
        + (f", {ingested['csat_survey_responses']['fetched']} CSAT survey responses"
           if "csat_survey_responses" in ingested else ""),
        f"- scored {scored.scored} new tickets with {settings.model_name} v{scored.model_version}, "
        f"{in_window.scored} more updated in the window that had no current prediction",
        f"- not re-scored: {scored.echoes} write-back echoes (only TicketLens's own tags/fields changed), "
        f"{scored.unchanged_inputs} changed in fields scoring does not read",
        f"- write-back: {planned} planned, {pushed.submitted} submitted, {pushed.failed} failed to submit, "
        f"{pushed.in_doubt} sent without a clear answer (read back next run), "
        f"{polled.done} confirmed, {polled.failed} rejected by the helpdesk, {polled.open_jobs} jobs open, "
        f"{polled.settled_by_read_back} settled by reading tickets back (job status expired or overdue)"
        + (f", dry run: {pushed.dry_run} would be pushed" if pushed.dry_run else ""),
        f"- write-back state: {states}",
        routing_latency(settings.warehouse_url, window.start, window.end).line(),
        spike_line,
    ]
    if pushed.failed or polled.failed:
        lines.append("- failed write-backs are retried by the next run; `SELECT ticket_id, attempts, last_error "
                     "FROM writeback_state WHERE status = 'failed'` shows why")
    lines.append("- final state: " + ("Failed — did not finish: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
                                      if failures else "Completed"))
    create_markdown_artifact(key="hourly-pipeline-summary", markdown="\n".join(lines),
                             description="What this hour's run ingested, scored and pushed.")
    print("\n".join(lines[2:]))
    # The flow's result (what a caller and the Prefect UI see) stays plain JSON-friendly dicts.
    return {"window": window.as_dict(), "ingest": ingested, "scoring": asdict(scored),
            "window_scoring": asdict(in_window), "planned": planned, "push": asdict(pushed), "poll": asdict(polled), "writeback_states": states, "spikes": spikes,
            "failed_steps": failures}, failures


if __name__ == "__main__":
    hourly_pipeline()
