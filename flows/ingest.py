"""``ingest`` flow: helpdesk → validated warehouse.

Reads like its table of contents: migrate → dimensions → for each page of tickets and of CSAT ratings:
fetch → validate → load (rows + cursor in one transaction) → publish a summary. A run killed anywhere resumes
from the last committed page; re-running is harmless because every write is an idempotent upsert.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from models.windows import as_utc
from tasks.ingest import (
    RATING_STREAM,
    TICKET_STREAM,
    Position,
    StreamSummary,
    fetch_rating_page,
    fetch_ticket_page,
    load_dimensions,
    load_page,
    max_unix,
    prepare_warehouse,
    read_stream_state,
    resume_position,
    validate_rating_page,
    validate_ticket_page,
)
from tasks.run_names import ingest_run_name
from tasks.runlock import flow_lock
from tasks.runstate import skipped_state
from tasks.settings import Settings, get_settings
from tasks.warehouse.engine import describe_url


@flow(name="ingest", log_prints=True, flow_run_name=ingest_run_name)
def ingest(start_time: datetime | None = None, max_pages: int | None = None) -> dict[str, dict]:
    """Extract tickets, CSAT ratings, agents, groups and ticket fields into the warehouse.

    Args:
        start_time: re-extract from this UTC time instead of the stored cursor (the first run of a fresh
            warehouse starts at TICKETLENS_INGEST_INITIAL_START_TIME).
        max_pages: stop each stream after this many pages (the next run continues from there).
    """
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    start_time = None if start_time is None else as_utc(start_time)  # any datetime kind or ISO string → UTC
    logger = get_run_logger()
    logger.info("Warehouse %s, helpdesk %s", describe_url(settings.warehouse_url), settings.helpdesk_base_url)

    prepare_warehouse(settings.warehouse_url)
    with flow_lock(settings, "ingest", run_id) as held:
        if not held:
            return skipped_state("ingest", held.reason, {"skipped": True})
        return _ingest(settings, start_time, max_pages, run_id)


def _ingest(settings: Settings, start_time, max_pages, run_id) -> dict[str, dict]:
    field_map = load_dimensions(settings)
    summaries = [
        ingest_tickets(settings, field_map, start_time, max_pages, run_id),
        ingest_ratings(settings, start_time, max_pages, run_id),
    ]
    publish_summary(summaries, settings)
    return {s.stream: {k: v for k, v in vars(s).items() if k != "checks"} for s in summaries}


def ingest_tickets(settings: Settings, field_map, start_time, max_pages, run_id) -> StreamSummary:
    summary = StreamSummary(TICKET_STREAM)
    state = read_stream_state(settings.warehouse_url, TICKET_STREAM)
    position = resume_position(state, start_time, settings.ingest_initial_start_time)
    fallback = state.watermark if state else None
    while max_pages is None or summary.pages < max_pages:
        page = fetch_ticket_page(settings, position, fallback)
        outcome = validate_ticket_page(settings, page, field_map)
        watermark = max_unix(page.tickets, "generated_timestamp")
        counts, quarantined = load_page(
            settings.warehouse_url, TICKET_STREAM, page.tickets, outcome,
            # An empty last page may carry no cursor: keep the one we have rather than forget it.
            next_cursor=page.after_cursor or position.cursor, watermark=watermark, run_id=run_id,
        )
        summary.add(len(page.tickets), counts, quarantined, outcome.checks)
        if page.end_of_stream:
            summary.end_of_stream = True
            break
        position = Position(cursor=page.after_cursor)
        if watermark is not None:
            fallback = max(fallback or 0, watermark)
    return summary


def ingest_ratings(settings: Settings, start_time, max_pages, run_id) -> StreamSummary:
    summary = StreamSummary(RATING_STREAM)
    state = read_stream_state(settings.warehouse_url, RATING_STREAM)
    position = resume_position(state, start_time, settings.ingest_initial_start_time)
    while max_pages is None or summary.pages < max_pages:
        page = fetch_rating_page(settings, position)
        outcome = validate_rating_page(settings, page)
        # Mid-stream we keep links.next; at the end we clear it and restart next time from the watermark.
        next_cursor = page.next_url if page.has_more else None
        counts, quarantined = load_page(
            settings.warehouse_url, RATING_STREAM, page.ratings, outcome,
            next_cursor=next_cursor, watermark=max_unix(page.ratings, "updated_at"), run_id=run_id,
        )
        summary.add(len(page.ratings), counts, quarantined, outcome.checks)
        if not page.has_more:
            summary.end_of_stream = True
            break
        position = Position(cursor=page.next_url)
    return summary


def publish_summary(summaries: list[StreamSummary], settings: Settings) -> None:
    """A table artifact of counts per stream, one of validation results, and a short markdown note."""
    columns = ("stream", "pages", "fetched", "inserted", "updated", "unchanged", "quarantined", "end_of_stream")
    create_table_artifact(
        key="ingest-summary",
        table=[{c: getattr(s, c) for c in columns} for s in summaries],
        description="Rows fetched and how they landed, per stream.",
    )
    create_table_artifact(
        key="ingest-validation",
        table=[
            {"stream": s.stream, "check": name, "failing_rows": count}
            for s in summaries for name, count in sorted(s.checks.items())
        ] or [{"stream": "-", "check": "no checks ran (no rows fetched)", "failing_rows": 0}],
        description="Great Expectations checks over this run's pages; failing rows went to quarantine.",
    )
    lines = ["# Ingest summary", "", f"Warehouse: `{describe_url(settings.warehouse_url)}`", ""]
    for s in summaries:
        lines.append(
            f"- **{s.stream}**: {s.fetched} fetched in {s.pages} pages → {s.inserted} new, {s.updated} updated, "
            f"{s.unchanged} unchanged, {s.quarantined} quarantined"
            + ("" if s.end_of_stream else " (stopped at max_pages; the next run continues)")
        )
    if any(s.quarantined for s in summaries):
        lines += ["", "Quarantined rows keep their payload and failed checks in the `quarantine` table."]
    create_markdown_artifact(key="ingest-report", markdown="\n".join(lines), description="Ingest run summary")
    for line in lines[4:]:
        print(line)


if __name__ == "__main__":
    ingest()
