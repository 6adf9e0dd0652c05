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

from ticketlens.adapters.helpdesk import CursorRejectedError, RatingPage, TicketPage, client_from_settings
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import (
    StreamState,
    UpsertCounts,
    get_stream_state,
    land_raw,
    quarantine_rows,
    save_stream_state,
    upsert_replace,
    upsert_versioned,
)
from ticketlens.adapters.warehouse.schema import (
    agents,
    csat_ratings,
    extraction_state,
    groups,
    ticket_fields,
    tickets,
)
from ticketlens.models import sanitize
from ticketlens.models.dimensions import normalize_dimension
from ticketlens.models.records import (
    FieldMap,
    canonical_json,
    field_map_from_ticket_fields,
    normalize_ratings,
    normalize_tickets,
    text_anomalies,
)
from ticketlens.models.windows import as_utc
from ticketlens.models.zendesk_via import unknown_channels

TICKET_STREAM = "tickets"
RATING_STREAM = "satisfaction_ratings"
SURVEY_STREAM = "csat_survey_responses"  # current CSAT (tasks.csat_survey)
TICKET_VERSION = ("updated_at", "generated_timestamp")
RATING_VERSION = ("updated_at",)


# --------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Position:
    """Where a stream read starts: an API cursor / next link, or a unix start_time."""

    cursor: str | None = None
    start_time: int | None = None

    def describe(self) -> str:
        return "cursor" if self.cursor else f"start_time={self.start_time}"


class PaginationLoopError(RuntimeError):
    """The helpdesk handed back a cursor or next link already read in this run: it would page forever."""


def page_budget(settings: Settings, max_pages: int | None) -> int:
    """Pages one stream may read in one run: the ``max_pages`` parameter, never above the configured budget."""
    budget = settings.ingest_max_pages_per_run
    return budget if max_pages is None else max(0, min(int(max_pages), budget))


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


def dimension_rows(kind: str, records: Sequence[Mapping[str, Any]], extracted_at: datetime) -> list[dict]:
    """Zendesk group / user / ticket_field JSON → warehouse rows (records that fail the checks are left out;
    ``load_dimensions`` quarantines them, see ``models.dimensions``)."""
    return normalize_dimension(kind, records, extracted_at)[0]


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
    not_ratings: int = 0  # CSAT streams: offered/unoffered/skipped surveys (loaded, never good or bad)
    checks: dict[str, int] = field(default_factory=dict)
    end_of_stream: bool = False
    stopped: str | None = None  # why the stream stopped before its end (page budget, repeated cursor)

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


_LOGGED_CHANNELS: set[str] = set()


def log_unknown_channels(records: Sequence[Mapping[str, Any]]) -> None:
    """One info line per undocumented via.channel value per process: stored as is, never quarantined."""
    for name, raw in unknown_channels(records).items():
        if name not in _LOGGED_CHANNELS:
            _LOGGED_CHANNELS.add(name)
            get_run_logger().info("Undocumented via.channel %r: stored as %r (channels never quarantine a ticket; "
                                  "models/zendesk_via.py lists the documented ones).", raw, name)


# ----------------------------------------------------------------------------------------------- tasks


@task(name="read-stream-state", cache_policy=NO_CACHE)
def read_stream_state(warehouse_url: str, stream: str, latest: int | None = None) -> StreamState | None:
    """The stream's stored cursor and watermark. A watermark later than ``latest`` (the run's clock plus the
    tolerance) was poisoned by a far-future record before such records were quarantined: it is brought back to
    the newest loaded row that is not in the future, with a warning, so later rows are not skipped forever."""
    with get_engine(warehouse_url).begin() as conn:
        state = get_stream_state(conn, stream)
        if state is None or latest is None or state.watermark is None or state.watermark <= latest:
            return state
        col = tickets.c.generated_timestamp if stream == TICKET_STREAM else csat_ratings.c.updated_at
        top = conn.execute(sa.select(sa.func.max(col)).where(
            col <= (latest if stream == TICKET_STREAM else datetime.fromtimestamp(latest, UTC)))).scalar()
        repaired = _unix(top)
        conn.execute(sa.update(extraction_state).where(extraction_state.c.stream == stream)
                     .values(watermark=repaired))
    get_run_logger().warning(
        "The stored %s watermark %s is in the future (a far-future record moved it before such records were "
        "quarantined); reset to the newest loaded row, %s.", stream, _iso(min(state.watermark, 253402300799)),
        _iso(repaired) if repaired is not None else "none (the stream restarts from its cursor or initial time)")
    return StreamState(**{**vars(state), "watermark": repaired})


@task(name="load-dimensions", cache_policy=NO_CACHE)
def load_dimensions(settings: Settings) -> FieldMap:
    """Refresh groups, agents and ticket fields; return which custom fields hold reason and category."""
    client = client_from_settings(settings)
    now = datetime.now(UTC)
    fetched = {
        "groups": client.list_groups(),
        "agents": client.list_agents(),
        "ticket_fields": client.list_ticket_fields(),
    }
    logger = get_run_logger()
    loaded: dict[str, list[dict]] = {}
    with get_engine(settings.warehouse_url).begin() as conn:
        for kind, table in (("groups", groups), ("agents", agents), ("ticket_fields", ticket_fields)):
            loaded[kind], rejected = store_dimension(conn, kind, table, fetched[kind], now)
            if rejected:
                logger.warning("%d %s record(s) quarantined (ids %s): %s.", len(rejected), kind,
                               _ids(r.record_id for r in rejected), "; ".join(sorted({
                                   reason for r in rejected for reason in r.reasons}))[:500])
    field_map = field_map_from_ticket_fields(
        loaded["ticket_fields"], settings.contact_reason_field_title, settings.confirmed_category_field_title
    )
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
    client = client_from_settings(settings)
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
    client = client_from_settings(settings)
    pages = client.export_satisfaction_ratings(
        start_time=position.start_time, next_url=position.cursor, page_size=settings.helpdesk_csat_page_size
    )
    return next(iter(pages))


@dataclass
class JudgedPage:
    """A page split into rows to load and rows to quarantine, and the watermark the loaded rows allow.

    Quacks like ``tasks.validation.ValidationOutcome`` (``valid``, ``quarantined``, ``checks``, ``rows``).
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    checks: list[dict[str, Any]]
    rows: int
    watermark: int | None
    poisoned: int = 0
    future: int = 0


def text_limits(table: sa.Table) -> dict[str, int]:
    """Column → longest text it holds (``String(n)`` columns), so an over-long value is quarantined, not a
    PostgreSQL error on the whole page (SQLite would store it; both backends judge alike)."""
    return {c.name: c.type.length for c in table.columns
            if isinstance(c.type, sa.String) and getattr(c.type, "length", None)}


def _int_limits(table: sa.Table) -> dict[str, int]:
    """Column → largest value (32-bit ``Integer`` columns; BIGINT ranges are checked at normalization)."""
    return {c.name: 2**31 - 1 for c in table.columns
            if isinstance(c.type, sa.Integer) and not isinstance(c.type, sa.BigInteger)}


def not_after(settings: Settings, now: datetime | None = None) -> int:
    """The latest timestamp a row may carry: this run's clock plus TICKETLENS_INGEST_FUTURE_TOLERANCE_SECONDS."""
    return int((now or datetime.now(UTC)).timestamp()) + settings.ingest_future_tolerance_seconds


def _poison_rows(poisoned: Sequence[sanitize.Poisoned]) -> list[dict[str, Any]]:
    """Quarantine rows, one per distinct payload (ON CONFLICT cannot touch one row twice in a statement)."""
    unique = {p.payload_sha256: p for p in poisoned}
    return [{"record_id": p.record_id, "payload": p.payload, "payload_sha256": p.payload_sha256,
             "failed_checks": [f"poison record: {r}" for r in p.reasons]} for p in unique.values()]


def store_dimension(conn, kind: str, table: sa.Table, records: Sequence[Any], now: datetime):
    """Upsert a dimension's valid records and quarantine the rest (stream = ``kind``), in the caller's
    transaction; returns (rows loaded, records rejected)."""
    rows, rejected = normalize_dimension(kind, records, now, text_limits(table))
    upsert_replace(conn, table, rows)
    if rejected:
        quarantine_rows(conn, kind, _poison_rows(rejected), run_id=None, at=now)
    return rows, rejected


def _ids(ids) -> str:
    ids = [i if isinstance(i, str) and i else "(no id)" for i in ids]
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")


def _unix(value: Any) -> int | None:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return int(value.timestamp())
    return int(value)


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def judge_page(
    stream: str, records: Sequence[Any], metric_sets: Sequence[Any] | None, *, field_map: FieldMap | None,
    max_failure_share: float, max_text_chars: int, latest: int, tolerance: int,
) -> JudgedPage:
    """Screen poison records, normalize, run the GX suite, hold back far-future and over-long rows; compute the
    watermark over the rows that will load only, never past ``latest``.

    Raises only the documented page-level errors (schema drift, too large a share of bad rows), before anything
    is written.
    """
    from ticketlens.tasks.validation import ValidationFailedError, validate_batch

    screened = sanitize.screen_records(records, metric_sets if stream == TICKET_STREAM else None)
    if stream == TICKET_STREAM:
        frame = normalize_tickets(screened.clean, screened.metric_sets, field_map or FieldMap())
        table, watermark_col, time_cols = tickets, "generated_timestamp", ("generated_timestamp", "updated_at",
                                                                           "created_at")
    elif stream == SURVEY_STREAM:  # current CSAT: the list endpoint filters on creation time
        from ticketlens.models.csat_api import normalize_survey_responses

        frame = normalize_survey_responses(screened.clean)
        table, watermark_col, time_cols = csat_ratings, "created_at", ("updated_at", "created_at")
    else:
        frame = normalize_ratings(screened.clean)
        table, watermark_col, time_cols = csat_ratings, "updated_at", ("updated_at", "created_at")
    outcome = validate_batch(stream, frame, max_failure_share=max_failure_share, max_text_chars=max_text_chars)
    valid = outcome.valid
    held: dict[int, list[str]] = {}
    for col in time_cols:
        if col in valid.columns:
            for row, value in zip(valid["_row"], valid[col], strict=True):
                unix = _unix(value)
                if unix is not None and unix > latest:
                    held.setdefault(int(row), []).append(
                        f"{col} {_iso(unix)} is in the future: later than this run's clock plus "
                        f"TICKETLENS_INGEST_FUTURE_TOLERANCE_SECONDS={tolerance}")
    for col, limit in text_limits(table).items():
        if col in valid.columns:
            for row, value in zip(valid["_row"], valid[col], strict=True):
                if isinstance(value, str) and len(value) > limit:
                    held.setdefault(int(row), []).append(f"{col} longer than {limit} characters")
    for col, limit in _int_limits(table).items():
        if col in valid.columns:
            for row, value in zip(valid["_row"], valid[col], strict=True):
                if _unix(value) is not None and abs(int(value)) > limit:
                    held.setdefault(int(row), []).append(f"{col} outside the 32-bit integer range")
    held_mask = valid["_row"].isin(held.keys()) if len(valid) else pd.Series([], dtype=bool)
    held_rows = valid[held_mask]
    valid = valid[~held_mask]
    extra = pd.DataFrame({
        "record_id": [*held_rows["_record_id"].tolist(), *(p.record_id for p in screened.poisoned)],
        "payload": [*held_rows["_payload"].tolist(), *(p.payload for p in screened.poisoned)],
        "payload_sha256": [*held_rows["_sha256"].tolist(), *(p.payload_sha256 for p in screened.poisoned)],
        "failed_checks": [*(held[int(r)] for r in held_rows["_row"]),
                          *([f"poison record: {r}" for r in p.reasons] for p in screened.poisoned)],
    })
    quarantined = pd.concat([q for q in (outcome.quarantined, extra) if len(q)], ignore_index=True) \
        if len(outcome.quarantined) or len(extra) else outcome.quarantined
    quarantined = quarantined.drop_duplicates("payload_sha256") if len(quarantined) else quarantined
    total = len(frame) + len(screened.poisoned)
    if total and len(quarantined) / total > max_failure_share:
        kinds = sorted({c.split(":")[0] for checks in quarantined["failed_checks"] for c in checks})
        raise ValidationFailedError(
            f"{len(quarantined)} of {total} {stream} records ({len(quarantined) / total:.0%}) are invalid, above "
            f"TICKETLENS_VALIDATION_MAX_FAILURE_SHARE={max_failure_share:g} (ids {_ids(quarantined['record_id'])}; "
            f"{', '.join(kinds)[:300]}). Nothing from this page was loaded and the cursor did not move."
        )
    wm = None
    if watermark_col in valid.columns and len(valid):
        wm = _unix(valid[watermark_col].max())
        wm = None if wm is None else min(wm, latest)
    return JudgedPage(valid=valid, quarantined=quarantined, checks=outcome.checks, rows=total, watermark=wm,
                      poisoned=len(screened.poisoned), future=len(held))


def _log_judgement(stream: str, judged: JudgedPage) -> None:
    if not judged.poisoned and not judged.future:
        return
    logger = get_run_logger()
    logged = 0
    for checks, rid in zip(judged.quarantined["failed_checks"], judged.quarantined["record_id"], strict=True):
        special = [c for c in checks if c.startswith("poison record") or " in the future" in c or "longer than" in c
                   or "32-bit" in c]
        if special and logged < 20:  # one line per record, up to 20 a page; the quarantine table has them all
            logger.warning("%s record %s quarantined: %s.", stream, _ids([rid]), "; ".join(special)[:500])
            logged += 1
    if judged.poisoned + judged.future > logged:
        logger.warning("%d more %s record(s) quarantined on this page; see the quarantine table.",
                       judged.poisoned + judged.future - logged, stream)


@task(name="validate-ticket-page", cache_policy=NO_CACHE)
def validate_ticket_page(settings: Settings, page: TicketPage, field_map: FieldMap) -> JudgedPage:
    """Screen, normalize and run the GX suite; raises on schema drift or too many bad rows."""
    log_text_anomalies([t for t in page.tickets if not sanitize.record_reasons(t)], settings.max_text_chars)
    judged = judge_page(
        TICKET_STREAM, page.tickets, page.metric_sets, field_map=field_map,
        max_failure_share=settings.validation_max_failure_share, max_text_chars=settings.max_text_chars,
        latest=not_after(settings), tolerance=settings.ingest_future_tolerance_seconds,
    )
    _log_judgement(TICKET_STREAM, judged)
    return judged


@task(name="validate-rating-page", cache_policy=NO_CACHE)
def validate_rating_page(settings: Settings, page: RatingPage) -> JudgedPage:
    judged = judge_page(
        RATING_STREAM, page.ratings, None, field_map=None,
        max_failure_share=settings.validation_max_failure_share, max_text_chars=settings.max_text_chars,
        latest=not_after(settings), tolerance=settings.ingest_future_tolerance_seconds,
    )
    _log_judgement(RATING_STREAM, judged)
    return judged


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
        (sanitize.record_label(rec.get("id")) if isinstance(rec, Mapping) else None, payload,
         sanitize.payload_sha256(payload))
        for rec in records
        for payload in (canonical_json(rec),)
    ]
    try:
        with get_engine(warehouse_url).begin() as conn:
            land_raw(conn, stream, landing, run_id=run_id, extracted_at=now)
            counts = upsert_versioned(conn, table, rows, version_cols=version)
            quarantined = quarantine_rows(conn, stream, frame_to_rows(outcome.quarantined, [
                "record_id", "payload", "payload_sha256", "failed_checks"]), run_id=run_id, at=now)
            save_stream_state(conn, stream, cursor=next_cursor, watermark=watermark, run_id=run_id)
    except sa.exc.StatementError as exc:
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise  # a lost connection: adapters.warehouse.engine.warehouse_errors names the warehouse
        # The driver's message can quote a row's content (COPY ... line 1, column custom_fields: "..."); say
        # what failed without it.
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None) or "-"
        raise WarehouseLoadError(
            f"Loading a page of {len(records)} {stream} records failed in the warehouse "
            f"({type(orig).__name__ if orig is not None else type(exc).__name__}, code {code}); the page was rolled "
            f"back and the cursor did not move. Record ids on the page: {_ids([r[0] for r in landing])}."
        ) from None
    return counts, quarantined


class WarehouseLoadError(RuntimeError):
    """The warehouse refused a page; the message names the error class and record ids, never field content."""
