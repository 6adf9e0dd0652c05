"""``ingest`` flow: helpdesk → validated warehouse.

Reads like its table of contents: migrate → dimensions → for each page of tickets and of CSAT ratings:
fetch → validate → load (rows + cursor in one transaction) → publish a summary. A run killed anywhere resumes
from the last committed page; re-running is harmless because every write is an idempotent upsert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from ticketlens.adapters.settings import Settings, get_settings
from ticketlens.adapters.warehouse.engine import describe_url
from ticketlens.models.csat_api import not_a_rating
from ticketlens.models.windows import as_utc
from ticketlens.tasks.csat_survey import SURVEY_STREAM, csat_plan, fetch_survey_page, validate_survey_page
from ticketlens.tasks.ingest import (
    RATING_STREAM,
    TICKET_STREAM,
    PaginationLoopError,
    Position,
    StreamSummary,
    fetch_rating_page,
    fetch_ticket_page,
    load_dimensions,
    load_page,
    not_after,
    page_budget,
    read_stream_state,
    resume_position,
    validate_rating_page,
    validate_ticket_page,
)
from ticketlens.tasks.run_names import ingest_run_name
from ticketlens.tasks.runlock import flow_lock
from ticketlens.tasks.runstate import skipped_state
from ticketlens.tasks.warehouse import prepare_warehouse


@flow(name="ingest", log_prints=True, flow_run_name=ingest_run_name)
def ingest(start_time: datetime | None = None, max_pages: int | None = None) -> dict[str, dict]:
    """Extract tickets, CSAT ratings, agents, groups and ticket fields into the warehouse.

    Args:
        start_time: re-extract from this UTC time instead of the stored cursor (the first run of a fresh
            warehouse starts at TICKETLENS_INGEST_INITIAL_START_TIME).
        max_pages: stop each stream after this many pages (the next run continues from there); never more
            than TICKETLENS_INGEST_MAX_PAGES_PER_RUN.

    A stream whose next cursor (or ``links.next``) repeats one already read in this run stops after committing
    the page that repeated it; the other stream still runs, then the run fails naming the stream and cursor.
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
    plan = csat_plan(settings.helpdesk_csat_api)
    summaries = [ingest_tickets(settings, field_map, start_time, max_pages, run_id)]
    # The legacy stream's summary is always there (zero when not read): callers read its counts.
    summaries.append(ingest_ratings(settings, start_time, max_pages, run_id) if plan.legacy
                     else StreamSummary(RATING_STREAM, end_of_stream=True))
    unavailable = None
    if plan.survey:
        survey, unavailable = ingest_survey_responses(settings, start_time, max_pages, run_id, plan.strict_survey)
        if survey is not None:
            summaries.append(survey)
    csat = csat_api_report(settings.helpdesk_csat_api, summaries, plan, unavailable)
    publish_summary(summaries, settings, notes=[csat.line])
    loops = [s for s in summaries if s.stopped and s.stopped.startswith("repeated")]
    if loops:
        raise PaginationLoopError(
            "; ".join(f"The {s.stream} stream {s.stopped}" for s in loops)
            + ". The helpdesk is paginating in a circle; what was read is committed and the run lock released. "
            "Check the helpdesk (TICKETLENS_HELPDESK_BASE_URL) before the next run, which resumes from that cursor."
        )
    result = {s.stream: {k: v for k, v in vars(s).items() if k != "checks"} for s in summaries}
    result["csat_api"] = asdict(csat)  # the flow result stays plain dicts
    return result


def ingest_tickets(settings: Settings, field_map, start_time, max_pages, run_id) -> StreamSummary:
    summary = StreamSummary(TICKET_STREAM)
    state = read_stream_state(settings.warehouse_url, TICKET_STREAM, not_after(settings))
    position = resume_position(state, start_time, settings.ingest_initial_start_time)
    fallback = state.watermark if state else None
    budget = page_budget(settings, max_pages)
    seen = {position.cursor} if position.cursor else set()
    while summary.pages < budget:
        page = fetch_ticket_page(settings, position, fallback)
        outcome = validate_ticket_page(settings, page, field_map)
        watermark = outcome.watermark  # loaded rows only, never past this run's clock + tolerance
        counts, quarantined = load_page(
            settings.warehouse_url, TICKET_STREAM, page.tickets, outcome,
            # An empty last page may carry no cursor: keep the one we have rather than forget it.
            next_cursor=page.after_cursor or position.cursor, watermark=watermark, run_id=run_id,
        )
        summary.add(len(page.tickets), counts, quarantined, outcome.checks)
        if page.end_of_stream:
            summary.end_of_stream = True
            break
        if page.after_cursor in seen:
            summary.stopped = f"repeated after_cursor {_short(page.after_cursor)} (end_of_stream false)"
            break
        seen.add(page.after_cursor)
        position = Position(cursor=page.after_cursor)
        if watermark is not None:
            fallback = max(fallback or 0, watermark)
    else:
        summary.stopped = f"page budget of {budget} reached"
    return summary


def ingest_ratings(settings: Settings, start_time, max_pages, run_id) -> StreamSummary:
    """Legacy satisfaction ratings → ``csat_ratings``, page by page."""
    def judge(page):
        outcome = validate_rating_page(settings, page)
        return outcome, not_a_rating(outcome.valid["score"]) if len(outcome.valid) else 0

    summary, _ = _link_paged_stream(settings, RATING_STREAM, start_time, max_pages, run_id,
                                    lambda position: (fetch_rating_page(settings, position), None), judge)
    return summary


def ingest_survey_responses(settings: Settings, start_time, max_pages, run_id,
                            strict: bool) -> tuple[StreamSummary | None, str | None]:
    """Current-CSAT survey responses → ``csat_ratings`` (``source = survey_responses``), page by page.

    Returns (None, why) when the account has no survey-responses API and the setting allows skipping it.
    """
    def judge(page):
        outcome, _watermark, not_rated = validate_survey_page(settings, page)
        return outcome, not_rated

    return _link_paged_stream(settings, SURVEY_STREAM, start_time, max_pages, run_id,
                              lambda position: fetch_survey_page(settings, position, strict), judge)


def _link_paged_stream(settings: Settings, stream: str, start_time, max_pages, run_id, fetch,
                       judge) -> tuple[StreamSummary | None, str | None]:
    """The page loop of the streams that follow ``links.next`` (legacy ratings, survey responses).

    Each page is committed with its cursor; a link already read in this run stops the stream (after that
    commit) instead of looping for ever; the page budget caps a run; the watermark moves only over loaded rows.
    ``fetch(position)`` gives (page, None), or (None, why) for an API the account does not have; ``judge(page)``
    gives (judged page, number of rows that are not ratings).
    """
    summary = StreamSummary(stream)
    state = read_stream_state(settings.warehouse_url, stream, not_after(settings))
    position = resume_position(state, start_time, settings.ingest_initial_start_time)
    budget = page_budget(settings, max_pages)
    seen = {position.cursor} if position.cursor else set()
    while summary.pages < budget:
        page, unavailable = fetch(position)
        if page is None:
            return None, unavailable
        outcome, not_rated = judge(page)
        # Mid-stream we keep links.next; at the end we clear it and restart next time from the watermark.
        counts, quarantined = load_page(
            settings.warehouse_url, stream, page.ratings, outcome,
            next_cursor=page.next_url if page.has_more else None, watermark=outcome.watermark, run_id=run_id,
        )
        summary.add(len(page.ratings), counts, quarantined, outcome.checks)
        summary.not_ratings += not_rated
        if not page.has_more:
            summary.end_of_stream = True
            break
        if page.next_url in seen:
            summary.stopped = f"repeated links.next {_short(page.next_url)} (a page already read in this run)"
            break
        seen.add(page.next_url)
        position = Position(cursor=page.next_url)
    else:
        summary.stopped = f"page budget of {budget} reached"
    return summary, None


def _short(cursor: str | None) -> str:
    """A cursor for a message: enough to recognise it (at most 80 characters)."""
    text = repr(cursor)
    return text if len(text) <= 80 else text[:77] + "...'"




@dataclass(frozen=True)
class CsatApiReport:
    """Which CSAT API(s) this run found ratings in, for the summary ``line`` and the flow's result."""

    setting: str  # TICKETLENS_HELPDESK_CSAT_API
    used: list[str]
    line: str
    survey_available: bool


def csat_api_report(setting: str, summaries: list[StreamSummary], plan, unavailable: str | None) -> CsatApiReport:
    """Which CSAT API this account uses, as the ingest summary states it."""
    by = {s.stream: s for s in summaries}
    legacy, survey = by.get(RATING_STREAM), by.get(SURVEY_STREAM)
    rated = {name: (s.fetched - s.not_ratings) for name, s in (("satisfaction_ratings", legacy),
                                                                 ("survey_responses", survey)) if s is not None}
    used = [name for name, n in rated.items() if n > 0]
    parts = []
    if plan.legacy and legacy is not None:
        parts.append(f"legacy satisfaction_ratings: {legacy.fetched - legacy.not_ratings} ratings, "
                     f"{legacy.not_ratings} offered/unoffered (not ratings)")
    if survey is not None:
        parts.append(f"survey_responses (current CSAT): {survey.fetched - survey.not_ratings} ratings, "
                     f"{survey.not_ratings} skipped (not ratings)")
    if unavailable:
        parts.append(unavailable)
    line = (f"CSAT API (TICKETLENS_HELPDESK_CSAT_API={setting}): this run found ratings in "
            f"{' and '.join(used) if used else 'neither API (no new ratings)'} — " + "; ".join(parts))
    return CsatApiReport(setting=setting, used=used, line=line, survey_available=plan.survey and unavailable is None)


def publish_summary(summaries: list[StreamSummary], settings: Settings, notes: list[str] | None = None) -> None:
    """A table artifact of counts per stream, one of validation results, and a short markdown note."""
    columns = ("stream", "pages", "fetched", "inserted", "updated", "unchanged", "quarantined", "not_ratings",
               "end_of_stream", "stopped")
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
            + ("" if s.end_of_stream else f" (stopped: {s.stopped or 'max_pages'}; the next run continues)")
        )
    for note in notes or ():
        lines.append(f"- {note}")
    if any(s.quarantined for s in summaries):
        lines += ["", "Quarantined rows keep their payload and failed checks in the `quarantine` table."]
    create_markdown_artifact(key="ingest-report", markdown="\n".join(lines), description="Ingest run summary")
    for line in lines[4:]:
        print(line)


if __name__ == "__main__":
    ingest()
