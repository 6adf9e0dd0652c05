"""Ingest tasks: fetch one API page, validate it, load it with its cursor — plus the plain helpers they use.

Tasks receive settings, URLs and ids, never clients or connections. The HTTP client is rebuilt from settings
once per process (so its rate limiter spans all pages of a run). Every task here does I/O or writes, so none
is cached; retries live in the HTTP client (429 / 5xx / timeouts), not on top of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.records import (
    FieldMap,
    canonical_json,
    field_map_from_ticket_fields,
    normalize_ratings,
    normalize_tickets,
    payload_sha256,
    text_anomalies,
)
from models.windows import as_utc
from tasks.helpdesk import CursorRejectedError, HelpdeskClient, RatingPage, TicketPage
from tasks.settings import Settings
from tasks.warehouse.engine import describe_url, get_engine, migrate
from tasks.warehouse.load import (
    StreamState,
    UpsertCounts,
    get_stream_state,
    land_raw,
    quarantine_rows,
    save_stream_state,
    upsert_replace,
    upsert_versioned,
)
from tasks.warehouse.schema import agents, csat_ratings, groups, ticket_fields, tickets

TICKET_STREAM = "tickets"
RATING_STREAM = "satisfaction_ratings"
TICKET_VERSION = ("updated_at", "generated_timestamp")
RATING_VERSION = ("updated_at",)


# --------------------------------------------------------------------------------------------- helpers


_CLIENTS: dict[tuple, HelpdeskClient] = {}


def helpdesk_client(settings: Settings) -> HelpdeskClient:
    """One client per distinct settings per process, so the client-side rate limiter spans the whole run.

    The key includes the secret values (a rotated token gets a fresh client) but is never logged.
    """
    secrets = tuple(
        s.get_secret_value() if s is not None else None
        for s in (settings.helpdesk_api_token, settings.helpdesk_oauth_token)
    )
    key = (settings.model_dump_json(), secrets)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = HelpdeskClient.from_settings(settings)
    return client


@dataclass(frozen=True)
class Position:
    """Where a stream read starts: an API cursor / next link, or a unix start_time."""

    cursor: str | None = None
    start_time: int | None = None

    def describe(self) -> str:
        return "cursor" if self.cursor else f"start_time={self.start_time}"


def resume_position(state: StreamState | None, explicit_start: datetime | None, initial: datetime) -> Position:
    """Explicit start wins (re-extraction); then the stored cursor; then the watermark; then the initial time."""
    if explicit_start is not None:
        return Position(start_time=int(explicit_start.timestamp()))
    if state is not None and state.cursor:
        return Position(cursor=state.cursor)
    if state is not None and state.watermark is not None:
        return Position(start_time=int(state.watermark))
    return Position(start_time=int(initial.timestamp()))


def frame_to_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """DataFrame → list of plain-Python dicts (None for missing, datetime for timestamps, int for ids)."""
    out: dict[str, list[Any]] = {}
    for col in columns:
        series = frame[col]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            values = [None if pd.isna(v) else v.to_pydatetime() for v in series]
        elif pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            values = [None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in series.astype(object)]
        else:
            values = [None if _is_missing(v) else v for v in series.tolist()]
        out[col] = values
    return [dict(zip(columns, vals, strict=True)) for vals in zip(*out.values(), strict=True)]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, dict, tuple)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _parse_ts(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(value if isinstance(value, datetime) else str(value))
    except ValueError:
        return None


def max_unix(records: Sequence[Mapping[str, Any]], field_name: str) -> int | None:
    """Largest unix-seconds value of a field (ints or ISO strings), ignoring unparseable values."""
    best: int | None = None
    for rec in records:
        value = rec.get(field_name)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            ts = int(value)
        else:
            parsed = _parse_ts(value)
            if parsed is None:
                continue
            ts = int(parsed.timestamp())
        best = ts if best is None or ts > best else best
    return best


def dimension_rows(kind: str, records: Sequence[Mapping[str, Any]], extracted_at: datetime) -> list[dict]:
    """Zendesk group / user / ticket_field JSON → warehouse rows."""
    rows = []
    for rec in records:
        if kind == "groups":
            row = {"id": rec["id"], "name": rec.get("name"), "description": rec.get("description"),
                   "is_deleted": bool(rec.get("deleted", False))}
        elif kind == "agents":
            row = {"id": rec["id"], "name": rec.get("name"), "email": rec.get("email"), "role": rec.get("role"),
                   "default_group_id": rec.get("default_group_id"), "active": rec.get("active")}
        else:
            row = {"id": rec["id"], "title": rec.get("title") or "", "type": rec.get("type"),
                   "active": rec.get("active"), "options": rec.get("custom_field_options")}
        if kind != "ticket_fields":
            row["created_at"] = _parse_ts(rec.get("created_at"))
        row["updated_at"] = _parse_ts(rec.get("updated_at"))
        row["extracted_at"] = extracted_at
        rows.append(row)
    return rows


@dataclass
class StreamSummary:
    """Per-stream counters for the run summary artifact."""

    stream: str
    pages: int = 0
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    checks: dict[str, int] = field(default_factory=dict)
    end_of_stream: bool = False

    def add(self, fetched: int, counts: UpsertCounts, quarantined: int, checks: Sequence[Mapping[str, Any]]):
        self.pages += 1
        self.fetched += fetched
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.unchanged += counts.unchanged
        self.quarantined += quarantined
        for check in checks:
            name = f"{check['expectation']}({check.get('column') or ''})"
            self.checks[name] = self.checks.get(name, 0) + int(check.get("unexpected_count") or 0)


ANOMALY_ACTIONS = {
    "control_chars": "control characters stripped on load",
    "invalid_utf8": "invalid UTF-8 bytes replaced with U+FFFD",
    "html": "HTML markup stored verbatim, stripped before scoring",
    "script": "<script> content stored verbatim (never rendered), stripped before scoring",
    "oversized": "longer than TICKETLENS_MAX_TEXT_CHARS: quarantined",
    "not_text": "subject/description of a non-text type: quarantined",
}


def log_text_anomalies(records: Sequence[Mapping[str, Any]], max_chars: int) -> dict[str, list[str]]:
    """One warning per kind of suspicious ticket text in a page (ids, not content: it may hold PII)."""
    found = text_anomalies(records, max_chars=max_chars)
    logger = get_run_logger()
    for kind, ids in sorted(found.items()):
        level = logging.INFO if kind == "html" else logging.WARNING  # HTML e-mail is normal; the rest is not
        logger.log(level, "%d ticket(s) with %s (ids %s%s): %s.", len(ids), kind.replace("_", " "),
                       ", ".join(ids[:5]), ", ..." if len(ids) > 5 else "", ANOMALY_ACTIONS[kind])
    return found


# ----------------------------------------------------------------------------------------------- tasks


@task(name="prepare-warehouse", cache_policy=NO_CACHE)
def prepare_warehouse(warehouse_url: str) -> None:
    """Apply pending Alembic migrations (a no-op when the schema is current)."""
    check_warehouse(warehouse_url)
    migrate(warehouse_url)


class WarehouseUnreachableError(RuntimeError):
    """The warehouse URL is wrong or the database is down; the message names the setting."""


def check_warehouse(warehouse_url: str) -> None:
    """Fail early, with what to do, when the warehouse cannot be reached (before any data is fetched)."""
    try:
        with get_engine(warehouse_url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0][:300]
        raise WarehouseUnreachableError(
            f"Cannot reach the warehouse at TICKETLENS_WAREHOUSE_URL={describe_url(warehouse_url)} ({reason}). "
            f"Check the URL, that the database server is up and accepts this user, and that the worker's "
            f"environment (or .env in TICKETLENS_HOME) sets it; nothing was fetched, the next run starts from "
            f"the stored cursors."
        ) from None


@task(name="read-stream-state", cache_policy=NO_CACHE)
def read_stream_state(warehouse_url: str, stream: str) -> StreamState | None:
    with get_engine(warehouse_url).connect() as conn:
        return get_stream_state(conn, stream)


@task(name="load-dimensions", cache_policy=NO_CACHE)
def load_dimensions(settings: Settings) -> FieldMap:
    """Refresh groups, agents and ticket fields; return which custom fields hold reason and category."""
    client = helpdesk_client(settings)
    now = datetime.now(UTC)
    fetched = {
        "groups": client.list_groups(),
        "agents": client.list_agents(),
        "ticket_fields": client.list_ticket_fields(),
    }
    with get_engine(settings.warehouse_url).begin() as conn:
        for kind, table in (("groups", groups), ("agents", agents), ("ticket_fields", ticket_fields)):
            upsert_replace(conn, table, dimension_rows(kind, fetched[kind], now))
    field_map = field_map_from_ticket_fields(
        fetched["ticket_fields"], settings.contact_reason_field_title, settings.confirmed_category_field_title
    )
    logger = get_run_logger()
    logger.info(
        "Dimensions: %d groups, %d agents, %d ticket fields", *(len(v) for v in fetched.values())
    )
    for title, field_id in ((settings.contact_reason_field_title, field_map.contact_reason_field_id),
                            (settings.confirmed_category_field_title, field_map.confirmed_category_field_id)):
        if field_id is None:
            logger.warning(
                "No ticket field titled %r: its column stays empty. Check TICKETLENS_CONTACT_REASON_FIELD_TITLE / "
                "TICKETLENS_CONFIRMED_CATEGORY_FIELD_TITLE against /api/v2/ticket_fields.", title,
            )
    return field_map


@task(name="fetch-ticket-page", cache_policy=NO_CACHE)
def fetch_ticket_page(settings: Settings, position: Position, fallback_start: int | None) -> TicketPage:
    """GET one incremental-export page. A rejected cursor falls back to the stored watermark."""
    client = helpdesk_client(settings)
    try:
        return next(iter(client.export_tickets(cursor=position.cursor, start_time=position.start_time,
                                              per_page=settings.helpdesk_export_page_size)))
    except CursorRejectedError as exc:
        if position.cursor is None:
            raise
        start = fallback_start if fallback_start is not None else int(settings.ingest_initial_start_time.timestamp())
        get_run_logger().warning(
            "The helpdesk rejected the stored ticket cursor (%s); restarting the export at start_time=%d. "
            "Tickets seen again are absorbed by the idempotent upsert.", exc, start,
        )
        return next(iter(client.export_tickets(start_time=start, per_page=settings.helpdesk_export_page_size)))


@task(name="fetch-rating-page", cache_policy=NO_CACHE)
def fetch_rating_page(settings: Settings, position: Position) -> RatingPage:
    """GET one page of satisfaction ratings (start_time first, then links.next)."""
    client = helpdesk_client(settings)
    pages = client.export_satisfaction_ratings(
        start_time=position.start_time, next_url=position.cursor, page_size=settings.helpdesk_csat_page_size
    )
    return next(iter(pages))


@task(name="validate-ticket-page", cache_policy=NO_CACHE)
def validate_ticket_page(settings: Settings, page: TicketPage, field_map: FieldMap):
    """Normalize to warehouse shape and run the GX suite; raises on schema drift or too many bad rows."""
    from tasks.validation import validate_batch

    log_text_anomalies(page.tickets, settings.max_text_chars)
    frame = normalize_tickets(page.tickets, page.metric_sets, field_map)
    return validate_batch(
        TICKET_STREAM, frame, max_failure_share=settings.validation_max_failure_share,
        max_text_chars=settings.max_text_chars,
    )


@task(name="validate-rating-page", cache_policy=NO_CACHE)
def validate_rating_page(settings: Settings, page: RatingPage):
    from tasks.validation import validate_batch

    frame = normalize_ratings(page.ratings)
    return validate_batch(
        RATING_STREAM, frame, max_failure_share=settings.validation_max_failure_share,
        max_text_chars=settings.max_text_chars,
    )


@task(name="load-page", cache_policy=NO_CACHE)
def load_page(
    warehouse_url: str,
    stream: str,
    records: list[dict[str, Any]],
    outcome,
    *,
    next_cursor: str | None,
    watermark: int | None,
    run_id: str,
) -> tuple[UpsertCounts, int]:
    """One transaction: land raw records, upsert valid rows, quarantine bad rows, advance the cursor."""
    now = datetime.now(UTC)
    table, version = (tickets, TICKET_VERSION) if stream == TICKET_STREAM else (csat_ratings, RATING_VERSION)
    columns = [c.name for c in table.columns if c.name in outcome.valid.columns]
    rows = frame_to_rows(outcome.valid, columns)
    for row in rows:
        row["extracted_at"] = now
        row["run_id"] = run_id
    landing = [
        (None if rec.get("id") is None else str(rec.get("id")), payload, payload_sha256(rec))
        for rec in records
        for payload in (canonical_json(rec),)
    ]
    with get_engine(warehouse_url).begin() as conn:
        land_raw(conn, stream, landing, run_id=run_id, extracted_at=now)
        counts = upsert_versioned(conn, table, rows, version_cols=version)
        quarantined = quarantine_rows(conn, stream, frame_to_rows(outcome.quarantined, [
            "record_id", "payload", "payload_sha256", "failed_checks"]), run_id=run_id, at=now)
        save_stream_state(conn, stream, cursor=next_cursor, watermark=watermark, run_id=run_id)
    return counts, quarantined
