"""Zendesk groups, users (agents) and ticket fields → warehouse rows, with a reason for every rejected record.

Dimensions are small and refreshed whole on every run, so they skip the Great Expectations suite; but a broken
helpdesk can still send a group whose id is a string of digits in another script, a name that is an object or a
timestamp that says "now". Such records are quarantined (stream ``groups`` / ``agents`` / ``ticket_fields``)
with the fields that failed, and every other record loads. Pure: no Prefect, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ticketlens.models import sanitize
from ticketlens.models.records import _as_int, _as_text, _as_timestamp


def _as_bool(value: Any) -> tuple[bool | None, bool]:
    if value is None or isinstance(value, bool):
        return value, True
    return None, False


def _as_options(value: Any) -> tuple[list | None, bool]:
    if value is None:
        return None, True
    if isinstance(value, list) and all(isinstance(o, Mapping) for o in value):
        return value, True
    return None, False


def _ts(value: Any) -> tuple[datetime | None, bool]:
    ts, ok = _as_timestamp(value)
    return (None if ts is None else ts.to_pydatetime()), ok


Converter = Callable[[Any], tuple[Any, bool]]
#: warehouse column → (API field, converter) per dimension.
FIELDS: dict[str, dict[str, tuple[str, Converter]]] = {
    "groups": {
        "id": ("id", _as_int), "name": ("name", _as_text), "description": ("description", _as_text),
        "is_deleted": ("deleted", _as_bool), "created_at": ("created_at", _ts), "updated_at": ("updated_at", _ts),
    },
    "agents": {
        "id": ("id", _as_int), "name": ("name", _as_text), "email": ("email", _as_text), "role": ("role", _as_text),
        "default_group_id": ("default_group_id", _as_int), "active": ("active", _as_bool),
        "created_at": ("created_at", _ts), "updated_at": ("updated_at", _ts),
    },
    "ticket_fields": {
        "id": ("id", _as_int), "title": ("title", _as_text), "type": ("type", _as_text),
        "active": ("active", _as_bool), "options": ("custom_field_options", _as_options),
        "updated_at": ("updated_at", _ts),
    },
}


def normalize_dimension(
    kind: str, records: Sequence[Any], extracted_at: datetime, max_lengths: Mapping[str, int] | None = None
) -> tuple[list[dict[str, Any]], list[sanitize.Poisoned]]:
    """(rows to upsert, rejected records with reasons). ``max_lengths``: column → longest text it holds."""
    spec = FIELDS[kind]
    rows: list[dict[str, Any]] = []
    rejected: list[sanitize.Poisoned] = []
    for index, rec in enumerate(records):
        reasons = sanitize.record_reasons(rec)
        row: dict[str, Any] = {}
        if not reasons:
            for column, (name, convert) in spec.items():
                value, ok = convert(rec.get(name))
                if not ok:
                    reasons.append(f"wrong type in {name}")
                elif isinstance(value, str) and max_lengths and len(value) > max_lengths.get(column, len(value)):
                    reasons.append(f"{name} longer than {max_lengths[column]} characters")
                row[column] = value
            if row.get("id") is None and "wrong type in id" not in reasons:
                reasons.append("id is missing")
        if reasons:
            payload = sanitize.canonical_json(rec)
            rid = sanitize.record_label(rec.get("id")) if isinstance(rec, Mapping) else None
            rejected.append(sanitize.Poisoned(index, rid, payload, sanitize.payload_sha256(payload), reasons))
            continue
        if kind == "groups":
            row["is_deleted"] = bool(row["is_deleted"])
        if kind == "ticket_fields":
            row["title"] = row["title"] or ""
        row["extracted_at"] = extracted_at
        rows.append(row)
    return rows, rejected
