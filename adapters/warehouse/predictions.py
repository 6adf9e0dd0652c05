"""Warehouse data access of scoring and backfill: which tickets to score, and predictions stored as history.

Prefect-free: every function takes an open ``Connection`` inside the caller's transaction (or an engine for the
overlapped reads and writes of ``tasks.scoring.rescore_in_chunks``), so a chunk's predictions and the watermark
that follows it commit together. The tasks decide *what* to score; the SQL that finds and stores it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from ticketlens.adapters.warehouse.load import IN_LIST_BATCH, INSERT_BATCH, StreamState, dialect_insert
from ticketlens.adapters.warehouse.schema import ticket_predictions, tickets
from ticketlens.models.echoes import CONTENT_FIELDS, INPUT_FIELDS, fingerprints

if TYPE_CHECKING:
    from ticketlens.adapters.settings import Settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


TICKET_COLUMNS = (tickets.c.id, tickets.c.updated_at, tickets.c.subject, tickets.c.description, tickets.c.tags,
                  tickets.c.extracted_at)
_FRAME_COLUMNS = ["id", "updated_at", "subject", "description", "tags", "extracted_at"]
# The further columns the echo fingerprints read (models.echoes), fetched only when fingerprints are wanted.
FINGERPRINT_COLUMNS = tuple(tickets.c[name] for name in (*INPUT_FIELDS, *CONTENT_FIELDS, "custom_fields")
                            if name not in {c.name for c in TICKET_COLUMNS})


@dataclass(frozen=True)
class EchoMarks:
    """What TicketLens itself writes to a ticket: tags with ``prefix`` and the custom fields ``field_ids``."""

    prefix: str
    field_ids: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings) -> EchoMarks:
        """From TICKETLENS_WRITEBACK_TAG_PREFIX and TICKETLENS_WRITEBACK_CUSTOM_FIELDS."""
        return cls(settings.writeback_tag_prefix, tuple(sorted(int(i) for i in settings.writeback_custom_fields.values())))


def read_tickets(conn: sa.Connection, where, limit: int, order=tickets.c.extracted_at,
                 marks: EchoMarks | None = None) -> pd.DataFrame:
    """Tickets to score; with ``marks``, also their ``input_sha256`` / ``content_sha256`` (models.echoes),
    computed from the rows as the database returns them (plain Python values, the same on every path)."""
    columns = TICKET_COLUMNS + (FINGERPRINT_COLUMNS if marks else ())
    rows = conn.execute(sa.select(*columns).where(where).order_by(order, tickets.c.id).limit(limit)).all()
    frame = pd.DataFrame([tuple(r)[:len(_FRAME_COLUMNS)] for r in rows], columns=_FRAME_COLUMNS)
    if marks is not None:
        pairs = [fingerprints(r._mapping, marks.prefix, marks.field_ids) for r in rows]
        frame["input_sha256"] = [p[0] for p in pairs]
        frame["content_sha256"] = [p[1] for p in pairs]
    return frame


def read_partition(conn: sa.Connection, start: datetime, end: datetime, after_id: int, limit: int,
                   marks: EchoMarks | None = None) -> pd.DataFrame:
    """Non-deleted tickets created in [start, end) with id > ``after_id`` (keyset pagination by id)."""
    where = sa.and_(tickets.c.is_deleted.is_(False), tickets.c.created_at >= start, tickets.c.created_at < end,
                    tickets.c.id > after_id)
    return read_tickets(conn, where, limit, order=tickets.c.id, marks=marks)


def current_fingerprints(conn: sa.Connection, model_name: str, version: str,
                         ids: list[int]) -> dict[int, tuple[Any, str | None, str | None]]:
    """Per ticket, (scored version's updated_at, fingerprints) of its current prediction by this model version."""
    p = ticket_predictions
    out: dict[int, tuple[Any, str | None, str | None]] = {}
    for start in range(0, len(ids), IN_LIST_BATCH):
        rows = conn.execute(sa.select(p.c.ticket_id, p.c.ticket_updated_at, p.c.input_sha256, p.c.content_sha256)
                            .where(p.c.ticket_id.in_(ids[start:start + IN_LIST_BATCH]), p.c.is_current.is_(True),
                                   p.c.model_name == model_name, p.c.model_version == version))
        out.update({int(r.ticket_id): (r.ticket_updated_at, r.input_sha256, r.content_sha256) for r in rows})
    return out


def read_new_tickets(conn: sa.Connection, state: StreamState | None, limit: int,
                     marks: EchoMarks | None = None) -> pd.DataFrame:
    """Non-deleted tickets loaded after the scoring watermark ``state`` (``tickets.extracted_at`` in µs, and the
    last scored id as the cursor), oldest first.

    Keyset on (extracted_at, id): a page of 1,000 tickets shares one extracted_at, and a chunk smaller than that
    must not skip the rest of the group.
    """
    where = tickets.c.is_deleted.is_(False)
    if state and state.watermark:
        since = EPOCH + timedelta(microseconds=state.watermark)
        after = tickets.c.extracted_at > since
        if state.cursor is not None:
            after = sa.or_(after, sa.and_(tickets.c.extracted_at == since, tickets.c.id > int(state.cursor)))
        where = sa.and_(where, after)
    return read_tickets(conn, where, limit, marks=marks)


def update_content_fingerprints(conn: sa.Connection, model_name: str, version: str,
                                content_by_id: dict[int, str]) -> None:
    """Store new content fingerprints on the current predictions of this model version (the ticket changed in a
    way scoring does not read, so the prediction stays, but its next write-back echo must be recognised)."""
    if not content_by_id:
        return
    p = ticket_predictions
    conn.execute(sa.update(p).where(p.c.ticket_id == sa.bindparam("tid"), p.c.is_current.is_(True),
                                    p.c.model_name == model_name, p.c.model_version == version)
                 .values(content_sha256=sa.bindparam("sha")),
                 [{"tid": i, "sha": sha} for i, sha in content_by_id.items()])


def unscored_in_window(conn: sa.Connection, model_name: str, version: str, start: datetime, end: datetime,
                       after_id: int, limit: int, marks: EchoMarks | None = None) -> pd.DataFrame:
    """Non-deleted tickets whose current version was updated in [start, end) and has no current prediction
    by this model version (keyset pagination by id)."""
    p = ticket_predictions
    scored = sa.exists().where(p.c.ticket_id == tickets.c.id, p.c.is_current.is_(True),
                               p.c.ticket_updated_at == tickets.c.updated_at, p.c.model_name == model_name,
                               p.c.model_version == version)
    where = sa.and_(tickets.c.is_deleted.is_(False), tickets.c.updated_at >= start, tickets.c.updated_at < end,
                    tickets.c.id > after_id, ~scored)
    return read_tickets(conn, where, limit, order=tickets.c.id, marks=marks)


def write_predictions(conn: sa.Connection, scored: pd.DataFrame, run_id: str) -> int:
    """Insert predictions as the current ones; older predictions of those tickets stay as history.

    Idempotent: the same ticket version scored again by the same model version updates nothing but the flag.
    """
    if scored.empty:
        return 0
    now = datetime.now(UTC)
    ids = [int(i) for i in scored["ticket_id"]]
    for start in range(0, len(ids), IN_LIST_BATCH):
        conn.execute(sa.update(ticket_predictions)
                     .where(ticket_predictions.c.ticket_id.in_(ids[start:start + IN_LIST_BATCH]),
                            ticket_predictions.c.is_current.is_(True))
                     .values(is_current=False))
    # Column lists zipped into rows: ~3x cheaper than DataFrame.to_dict("records"), which boxes every cell, and
    # this runs on the backfill's I/O thread where it competes with the classifier for the GIL.
    columns = list(scored.columns)
    values = [scored[c].tolist() for c in columns]
    at = columns.index("ticket_updated_at")
    values[at] = [ts.to_pydatetime() if hasattr(ts, "to_pydatetime") else ts for ts in values[at]]
    extra = {"is_current": True, "predicted_at": now, "run_id": run_id}
    rows = [{**dict(zip(columns, row, strict=True)), **extra} for row in zip(*values, strict=True)]
    stmt = dialect_insert(conn, ticket_predictions)
    stmt = stmt.on_conflict_do_update(
        index_elements=["ticket_id", "model_name", "model_version", "ticket_updated_at"],
        # A re-score makes the row current again and "new" for the write-back planner (e.g. after a rollback).
        set_={"is_current": True, "predicted_at": stmt.excluded.predicted_at, "run_id": stmt.excluded.run_id,
              "input_sha256": sa.func.coalesce(stmt.excluded.input_sha256, ticket_predictions.c.input_sha256),
              "content_sha256": sa.func.coalesce(stmt.excluded.content_sha256, ticket_predictions.c.content_sha256)},
    )
    for start in range(0, len(rows), INSERT_BATCH):
        conn.execute(stmt, rows[start:start + INSERT_BATCH])
    return len(rows)
