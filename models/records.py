"""Zendesk API records → warehouse-shaped DataFrames (pure: no Prefect, no I/O, no Great Expectations).

Normalization never drops a record. Everything a validator needs to judge a row travels with it: the row's
position (``_row``) so failed checks can point back at it, the canonical payload and its SHA-256 (so a
quarantined row keeps exactly what the API sent), and ``_type_errors`` naming fields whose values had the
wrong type (coerced to null here, judged by the validation suite, never silently accepted).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from ticketlens.models import sanitize
from ticketlens.models.custom_fields import custom_value, single_text, value_list
from ticketlens.models.zendesk_via import channel_name

# Control characters (except tab, newline, carriage return) break terminals, CSV exports and some drivers
# (PostgreSQL rejects NUL in text); they carry no meaning in a ticket, so they are stripped.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: Zendesk vocabularies checked by the validation suites.
STATUSES = ("new", "open", "pending", "hold", "solved", "closed", "deleted")
PRIORITIES = ("urgent", "high", "normal", "low")
TYPES = ("problem", "incident", "question", "task")

#: Fields the ticket export must carry. A page where one is absent from every record is schema drift.
TICKET_REQUIRED = ("id", "created_at", "updated_at", "status")
#: Same for satisfaction ratings.
RATING_REQUIRED = ("id", "ticket_id", "score", "created_at", "updated_at")

TICKET_ID_FIELDS = ("requester_id", "submitter_id", "assignee_id", "group_id", "organization_id")
RATING_ID_FIELDS = ("assignee_id", "group_id", "requester_id")


class SchemaDriftError(ValueError):
    """The API stopped sending a required field: loading would silently null a column, so the run stops."""


@dataclass(frozen=True)
class FieldMap:
    """Which Zendesk custom ticket fields hold the user's contact reason and the agent-confirmed category."""

    contact_reason_field_id: int | None = None
    confirmed_category_field_id: int | None = None


def field_map_from_ticket_fields(
    fields: Iterable[Mapping[str, Any]], reason_title: str, category_title: str
) -> FieldMap:
    """Find the two custom fields by title (case-insensitive); ids differ between Zendesk accounts."""

    def find(title: str) -> int | None:
        wanted = title.strip().casefold()
        for f in fields:
            if str(f.get("title") or "").strip().casefold() == wanted and f.get("id") is not None:
                return int(f["id"])
        return None

    fields = list(fields)
    return FieldMap(find(reason_title), find(category_title))


def canonical_json(record: Any) -> str:
    """Stable JSON text of a record (sorted keys), so identical payloads hash identically; never raises
    (poison values fall back to an escaped form, see ``models.sanitize.canonical_json``)."""
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return sanitize.canonical_json(record)


def payload_sha256(record: Any) -> str:
    return hashlib.sha256(canonical_json(record).encode("utf-8", "backslashreplace")).hexdigest()


def clean_text(value: Any) -> str | None:
    """Text field → str without control characters; non-text values are stringified, never dropped."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return _CONTROL_CHARS.sub("", text)


def _as_int(value: Any) -> tuple[int | None, bool]:
    """(value, ok). Accepts ints and integral strings/floats; bools and anything else are a type error."""
    if value is None:
        return None, True
    if isinstance(value, bool):
        return None, False
    if isinstance(value, float) and value.is_integer():  # is_integer() is False for NaN and Infinity
        value = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):  # ASCII digits only: not "--5", not "²"
        value = int(value.strip())
    if isinstance(value, int) and sanitize.INT64_MIN <= value <= sanitize.INT64_MAX:
        return value, True
    return None, False


# Optional sign, then 1-19 ASCII digits: what int() accepts and a BIGINT column can hold (range checked after).
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
# ISO 8601 date or date-time (what Zendesk sends; unix seconds come as JSON numbers); never "now", "today" or
# prose, which pandas would turn into the ingest time.
_ISO_8601 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?",
    re.ASCII | re.IGNORECASE,
)


def _as_timestamp(value: Any) -> tuple[pd.Timestamp | None, bool]:
    """ISO-8601 string or unix seconds (a JSON number) → UTC Timestamp. Anything else → (None, False)."""
    if value is None or value == "":
        return None, True
    try:
        if isinstance(value, bool):
            return None, False
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                return None, False
            ts = pd.Timestamp(int(value), unit="s", tz="UTC")
        elif isinstance(value, str):
            if not _ISO_8601.fullmatch(value.strip()):
                return None, False
            ts = pd.Timestamp(value.strip())
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        else:
            return None, False
    except (ValueError, TypeError, OverflowError):
        return None, False
    if pd.isna(ts):
        return None, False
    return ts, True


def _as_text(value: Any) -> tuple[str | None, bool]:
    if value is None:
        return None, True
    if isinstance(value, (dict, list)):
        return None, False
    return clean_text(value), True


def _as_list(value: Any, name: str | None = None) -> tuple[list | None, bool]:
    """A JSON list field; with ``name``, its items are type-checked too (``tags`` must be strings, ...)."""
    if value is None:
        return [], True
    if isinstance(value, list) and not (name and sanitize.list_item_errors(name, value)):
        return value, True
    return None, False


def _calendar_minutes(value: Any) -> Any:
    return value.get("calendar") if isinstance(value, Mapping) else value


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], present: set[str], required: Sequence[str]):
    """Build the DataFrame; a required field absent from every record leaves its column out (schema drift)."""
    frame = pd.DataFrame(rows, columns=list(columns))
    missing = [c for c in required if c not in present]
    if rows and missing:
        frame = frame.drop(columns=missing)
    for col in ("created_at", "updated_at", "solved_at", "deleted_at"):
        if col in frame.columns:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _dedupe_exact(records: Sequence[Any]) -> tuple[list[Any], list[str], list[str]]:
    """Collapse byte-identical records (an API page may repeat one); keep first, with payload and hash."""
    seen: set[str] = set()
    kept, payloads, hashes = [], [], []
    for rec in records:
        payload = canonical_json(rec)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        kept.append(rec)
        payloads.append(payload)
        hashes.append(digest)
    return kept, payloads, hashes


def distinct_records(records: Sequence[Any]) -> Iterator[tuple[Mapping[str, Any], dict[str, Any], list[str]]]:
    """The prologue every normaliser shares: one ``(record, row, errors)`` per distinct record.

    Byte-identical repeats are collapsed (``_dedupe_exact``); ``row`` starts with what a validator needs to point
    back at the record and quarantine it verbatim (``_row``, ``_payload``, ``_sha256``); a record that is not a
    JSON object is read as ``{}`` with the type error ``record``, so it still becomes a row and is never dropped.
    The caller fills the row, appends to ``errors``, and ends it with ``finish_row``.
    """
    kept, payloads, hashes = _dedupe_exact(records)
    for pos, (rec, payload, digest) in enumerate(zip(kept, payloads, hashes, strict=True)):
        row: dict[str, Any] = {"_row": pos, "_payload": payload, "_sha256": digest}
        if isinstance(rec, Mapping):
            yield rec, row, []
        else:
            yield {}, row, ["record"]


def finish_row(row: dict[str, Any], record_id: str | None, errors: list[str]) -> dict[str, Any]:
    """The epilogue: the record's id for quarantine messages, and the fields with a type error (None if none)."""
    row["_record_id"] = record_id
    row["_type_errors"] = ",".join(errors) or None
    return row


TICKET_COLUMNS = (
    "id", "created_at", "updated_at", "generated_timestamp", "subject", "description", "status", "priority",
    "type", "tags", "channel", *TICKET_ID_FIELDS, "custom_fields", "contact_reason", "contact_reasons",
    "confirmed_category", "solved_at", "first_reply_minutes", "full_resolution_minutes", "reopens", "is_deleted",
    "deleted_at",
    "_row", "_record_id", "_payload", "_sha256", "_type_errors",
)


def normalize_tickets(
    records: Sequence[Any], metric_sets: Sequence[Mapping[str, Any]] | None, field_map: FieldMap
) -> pd.DataFrame:
    """Incremental-export tickets (+ their metric sets) → one row per distinct record, warehouse columns.

    Status ``deleted`` becomes a soft delete (``is_deleted``, ``deleted_at`` = the deleting update).
    """
    metrics: dict[Any, Mapping[str, Any]] = {}
    for m in metric_sets or ():
        if isinstance(m, Mapping) and isinstance(m.get("ticket_id"), int | str):  # hashable ids only
            metrics[m["ticket_id"]] = m
    present: set[str] = set()
    rows = []
    for rec, row, errors in distinct_records(records):
        present.update(rec.keys())

        def put(name: str, converted: tuple[Any, bool], row=row, errors=errors) -> None:
            value, ok = converted
            row[name] = value
            if not ok:
                errors.append(name)

        put("id", _as_int(rec.get("id")))
        put("created_at", _as_timestamp(rec.get("created_at")))
        put("updated_at", _as_timestamp(rec.get("updated_at")))
        put("generated_timestamp", _as_int(rec.get("generated_timestamp")))
        for name in ("subject", "description", "status", "priority", "type"):
            put(name, _as_text(rec.get(name)))
        put("tags", _as_list(rec.get("tags"), "tags"))
        via = rec.get("via")
        # Never a reason to quarantine: ids become names, unknown strings are kept (models.zendesk_via).
        row["channel"] = channel_name(via.get("channel"))[0] if isinstance(via, Mapping) else None
        for name in TICKET_ID_FIELDS:
            put(name, _as_int(rec.get(name)))
        put("custom_fields", _as_list(rec.get("custom_fields"), "custom_fields"))
        custom = row["custom_fields"]
        # Typed values (lists, booleans, numbers) get a defined text/list form (models.custom_fields).
        reason = custom_value(custom, field_map.contact_reason_field_id)
        row["contact_reasons"] = [clean_text(v) for v in value_list(reason) or ()] or None
        row["contact_reason"] = clean_text(single_text(reason))
        row["confirmed_category"] = clean_text(single_text(custom_value(custom, field_map.confirmed_category_field_id)))
        rid = rec.get("id")
        m = metrics.get(rid, {}) if isinstance(rid, int | str) else {}
        put("solved_at", _as_timestamp(m.get("solved_at")))
        put("first_reply_minutes", _as_int(_calendar_minutes(m.get("reply_time_in_minutes"))))
        put("full_resolution_minutes", _as_int(_calendar_minutes(m.get("full_resolution_time_in_minutes"))))
        put("reopens", _as_int(m.get("reopens")))
        row["is_deleted"] = row["status"] == "deleted"
        row["deleted_at"] = row["updated_at"] if row["is_deleted"] else None
        rows.append(finish_row(row, sanitize.record_label(rec.get("id")), errors))
    frame = _frame(rows, TICKET_COLUMNS, present, TICKET_REQUIRED)
    return _int_columns(frame, ("id", "generated_timestamp", *TICKET_ID_FIELDS, "first_reply_minutes",
                                "full_resolution_minutes", "reopens"))


RATING_COLUMNS = (
    "id", "ticket_id", "score", "comment", "reason", *RATING_ID_FIELDS, "created_at", "updated_at",
    "_row", "_record_id", "_payload", "_sha256", "_type_errors",
)


def normalize_ratings(records: Sequence[Any]) -> pd.DataFrame:
    """Satisfaction ratings → rows. The score stays text: newer CSAT scales are numeric, not good/bad."""
    present: set[str] = set()
    rows = []
    for rec, row, errors in distinct_records(records):
        present.update(rec.keys())
        for name, conv in (("id", _as_int), ("ticket_id", _as_int), ("score", _as_text), ("comment", _as_text),
                           ("reason", _as_text), ("created_at", _as_timestamp), ("updated_at", _as_timestamp),
                           *((n, _as_int) for n in RATING_ID_FIELDS)):
            value, ok = conv(rec.get(name))
            row[name] = value
            if not ok:
                errors.append(name)
        rows.append(finish_row(row, sanitize.record_label(rec.get("id")), errors))
    frame = _frame(rows, RATING_COLUMNS, present, RATING_REQUIRED)
    return _int_columns(frame, ("id", "ticket_id", *RATING_ID_FIELDS))


def _int_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    for col in columns:
        if col in frame.columns:
            frame[col] = frame[col].astype("Int64")
    return frame


_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_SCRIPT = re.compile(r"<\s*script\b", re.IGNORECASE)


def text_anomalies(records: Sequence[Any], fields: Sequence[str] = ("subject", "description"),
                   max_chars: int | None = None) -> dict[str, list[str]]:
    """Record ids per kind of suspicious text, for a clear log line: what arrived and what we do with it.

    ``control_chars`` are stripped on load, ``invalid_utf8`` bytes arrive as U+FFFD (the client replaced
    them), ``html``/``script`` markup is stored verbatim and stripped before scoring, ``oversized`` texts are
    quarantined by the validation suite, ``not_text`` values are quarantined as type errors.
    """
    found: dict[str, list[str]] = {}
    for rec in records:
        if not isinstance(rec, Mapping):
            continue
        rid = str(rec.get("id"))
        kinds = set()
        for name in fields:
            value = rec.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                kinds.add("not_text")
                continue
            if _CONTROL_CHARS.search(value):
                kinds.add("control_chars")
            if "\ufffd" in value:
                kinds.add("invalid_utf8")
            if _SCRIPT.search(value):
                kinds.add("script")
            elif _MARKUP.search(value):
                kinds.add("html")
            if max_chars is not None and len(value) > max_chars:
                kinds.add("oversized")
        for kind in kinds:
            found.setdefault(kind, []).append(rid)
    return found
