"""Idempotent, set-based writes into the warehouse.

Every function takes an open ``Connection`` inside the caller's transaction, so a page's rows, its landing
records, its quarantined rows and the cursor that follows it commit together (or not at all): a run killed at
any point resumes from the last committed cursor with nothing lost and nothing duplicated.

Upserts are keyed on the helpdesk's natural id and guarded so an older version never overwrites a newer one.
PostgreSQL bulk paths COPY into a per-session staging table, then run one ``INSERT ... SELECT ... ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ticketlens.adapters.warehouse.schema import extraction_state, quarantine, raw_records
from ticketlens.models.sanitize import warehouse_json_dumps

# Statement batch sizes (not the scoring chunk, TICKETLENS_SCORING_CHUNK_SIZE, which may be larger): ids per
# ``IN (...)`` list, far below SQLite's 32,766 bound parameters, and rows per executemany batch.
IN_LIST_BATCH = 5000
INSERT_BATCH = 2000


@dataclass(frozen=True)
class UpsertCounts:
    """How a batch landed: new rows, rows replaced by a newer version, and rows that changed nothing."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted, self.updated + other.updated, self.unchanged + other.unchanged
        )


@dataclass(frozen=True)
class StreamState:
    """Where a stream resumes: an opaque API cursor and/or a unix-seconds watermark."""

    stream: str
    cursor: str | None
    watermark: int | None
    pages: int
    run_id: str | None
    updated_at: datetime


def dialect_insert(conn: Connection, table: sa.Table):
    """INSERT with ``on_conflict_do_*`` for the connection's dialect (SQLite and PostgreSQL share the API)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _version_key(row: Mapping[str, Any], version_cols: Sequence[str]) -> tuple:
    """Comparable version of a row: (updated_at, generated_timestamp, ...), with missing parts as minimal."""
    return tuple((row.get(col) is not None, row.get(col)) for col in version_cols)


def _is_newer_clause(table: sa.Table, excluded, version_cols: Sequence[str]):
    """SQL for 'the incoming row is strictly newer' over a lexicographic version tuple."""
    clauses = []
    for i, col in enumerate(version_cols):
        equal_before = [table.c[prev].is_not_distinct_from(excluded[prev]) for prev in version_cols[:i]]
        newer = sa.or_(
            sa.and_(table.c[col].is_(None), excluded[col].is_not(None)),
            table.c[col] < excluded[col],
        )
        clauses.append(sa.and_(*equal_before, newer))
    return sa.or_(*clauses)


def upsert_versioned(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str = "id",
    version_cols: Sequence[str] = ("updated_at",),
) -> UpsertCounts:
    """Insert new rows and replace existing ones only with a strictly newer version.

    Classifying against the stored versions first lets us send only rows that will change something, and
    report inserted/updated/unchanged the same way on both backends. The ``WHERE`` guard on the conflict
    clause keeps the rule true even if another writer raced us.
    """
    if not rows:
        return UpsertCounts()
    # The same id twice in one batch: keep the newest version (ON CONFLICT cannot touch a row twice).
    latest: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        current = latest.get(row[key])
        if current is None or _version_key(row, version_cols) > _version_key(current, version_cols):
            latest[row[key]] = row
    duplicates = len(rows) - len(latest)

    stored = _stored_versions(conn, table, key, list(latest), version_cols)
    to_write, inserted, updated, unchanged = [], 0, 0, duplicates
    for row_key, row in latest.items():
        old = stored.get(row_key)
        if old is None:
            inserted += 1
            to_write.append(row)
        elif _version_key(row, version_cols) > old:
            updated += 1
            to_write.append(row)
        else:
            unchanged += 1
    if to_write:
        _write_upsert(conn, table, to_write, key=key, version_cols=version_cols)
    return UpsertCounts(inserted, updated, unchanged)


def _stored_versions(
    conn: Connection, table: sa.Table, key: str, keys: list[Any], version_cols: Sequence[str]
) -> dict[Any, tuple]:
    found: dict[Any, tuple] = {}
    cols = [table.c[key], *(table.c[c] for c in version_cols)]
    for start in range(0, len(keys), IN_LIST_BATCH):
        chunk = keys[start : start + IN_LIST_BATCH]
        for rec in conn.execute(sa.select(*cols).where(table.c[key].in_(chunk))):
            mapping = rec._mapping
            found[mapping[key]] = _version_key(mapping, version_cols)
    return found


def _write_upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    version_cols: Sequence[str],
) -> None:
    columns = [c.name for c in table.columns if c.name in rows[0]]
    if conn.dialect.name == "postgresql":
        source = _copy_to_stage(conn, table, columns, rows)
        stmt = postgresql.insert(table).from_select(columns, sa.select(*(source.c[c] for c in columns)))
    else:
        stmt = sqlite.insert(table)
        source = None
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={c: excluded[c] for c in columns if c != key},
        where=_is_newer_clause(table, excluded, version_cols),
    )
    if source is None:
        conn.execute(stmt, [{c: row.get(c) for c in columns} for row in rows])
    else:
        conn.execute(stmt)


def upsert_replace(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], *, key: str = "id"
) -> int:
    """Upsert dimension rows (groups, agents, ticket fields): the helpdesk's current copy always wins."""
    if not rows:
        return 0
    columns = [c.name for c in table.columns if c.name in rows[0]]
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key], set_={c: stmt.excluded[c] for c in columns if c != key}
    )
    conn.execute(stmt, [{c: row.get(c) for c in columns} for row in rows])
    return len(rows)


def _copy_to_stage(
    conn: Connection, table: sa.Table, columns: list[str], rows: Sequence[Mapping[str, Any]]
) -> sa.Table:
    """COPY rows into a session-local staging table shaped like ``table`` (emptied at every commit)."""
    from psycopg.types.json import Jsonb

    stage_name = f"stage_{table.name}"
    # Identifiers only (our own table names, quoted by the dialect); values always travel as parameters/COPY.
    quote = conn.dialect.identifier_preparer.quote
    stage_sql, table_sql = quote(stage_name), quote(table.name)
    conn.exec_driver_sql(  # sql-identifiers-only
        f"CREATE TEMP TABLE IF NOT EXISTS {stage_sql} (LIKE {table_sql} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    conn.exec_driver_sql(f"TRUNCATE {stage_sql}")  # sql-identifiers-only
    stage = sa.Table(stage_name, sa.MetaData(), *(sa.Column(c, table.c[c].type) for c in columns))
    json_cols = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    raw = conn.connection.driver_connection
    column_sql = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{stage_name}" ({column_sql}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(
                [
                    Jsonb(row.get(c), dumps=warehouse_json_dumps) if c in json_cols and row.get(c) is not None else row.get(c)
                    for c in columns
                ]
            )
    return stage


def land_raw(
    conn: Connection,
    stream: str,
    records: Iterable[tuple[str | None, str, str]],
    *,
    run_id: str | None,
    extracted_at: datetime,
) -> int:
    """Append API records to the raw landing zone, once per distinct payload: (record_id, payload, sha256)."""
    batch = [
        {
            "stream": stream,
            "record_id": rid,
            "payload": payload,
            "payload_sha256": sha,
            "extracted_at": extracted_at,
            "run_id": run_id,
        }
        for rid, payload, sha in records
    ]
    if not batch:
        return 0
    stmt = dialect_insert(conn, raw_records).on_conflict_do_nothing(
        index_elements=["stream", "payload_sha256"]
    )
    return conn.execute(stmt, batch).rowcount or 0


def quarantine_rows(
    conn: Connection, stream: str, rows: Iterable[Mapping[str, Any]], *, run_id: str | None, at: datetime
) -> int:
    """Store rejected records with the checks they failed; seeing the same payload again bumps times_seen."""
    batch = [
        {
            "stream": stream,
            "record_id": r.get("record_id"),
            "payload": r["payload"],
            "payload_sha256": r["payload_sha256"],
            "failed_checks": list(r["failed_checks"]),
            "run_id": run_id,
            "quarantined_at": at,
        }
        for r in rows
    ]
    if not batch:
        return 0
    stmt = dialect_insert(conn, quarantine)
    stmt = stmt.on_conflict_do_update(
        index_elements=["stream", "payload_sha256"],
        set_={
            "times_seen": quarantine.c.times_seen + 1,
            "run_id": stmt.excluded.run_id,
            "quarantined_at": stmt.excluded.quarantined_at,
            "failed_checks": stmt.excluded.failed_checks,
        },
    )
    conn.execute(stmt, batch)
    return len(batch)


def get_stream_state(conn: Connection, stream: str) -> StreamState | None:
    row = conn.execute(sa.select(extraction_state).where(extraction_state.c.stream == stream)).first()
    return StreamState(**row._mapping) if row else None


def save_stream_state(
    conn: Connection,
    stream: str,
    *,
    cursor: str | None,
    watermark: int | None,
    run_id: str | None,
    pages: int = 1,
) -> None:
    """Record where the stream resumes. Call in the same transaction as the page it follows."""
    now = datetime.now(UTC)
    stmt = dialect_insert(conn, extraction_state).values(
        stream=stream, cursor=cursor, watermark=watermark, pages=pages, run_id=run_id, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["stream"],
        set_={
            "cursor": stmt.excluded.cursor,
            # The watermark only moves forward.
            "watermark": sa.func.coalesce(
                sa.case(
                    (extraction_state.c.watermark > stmt.excluded.watermark, extraction_state.c.watermark),
                    else_=stmt.excluded.watermark,
                ),
                extraction_state.c.watermark,
            ),
            "pages": extraction_state.c.pages + stmt.excluded.pages,
            "run_id": stmt.excluded.run_id,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    conn.execute(stmt)
