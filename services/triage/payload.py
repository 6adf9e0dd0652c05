"""What a "ticket created" webhook body means (pure: no I/O), for the two shapes Zendesk can send.

1. A trigger's webhook with a JSON body written in the trigger (docs/triage.md gives the exact template)::

       {"event": "ticket.created",
        "ticket": {"id": "{{ticket.id}}", "created_at": "{{ticket.created_at_with_timestamp}}"}}

   optionally with ``subject``, ``description``, ``tags`` and ``updated_at`` inside ``ticket``.
2. An event-subscription webhook (``zen:event-type:ticket.created``): ``{"type": ..., "id": <event id>,
   "detail": {"id": "123", "subject": ..., "description": ..., "tags": [...], "created_at": ..., "updated_at":
   ...}}``.

A body carrying the scoring inputs (subject or description, and ``updated_at``, which keys the prediction
history) is scored as sent; any other body only names the ticket, which the worker fetches (show_many).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EVENT_TYPE = "zen:event-type:ticket.created"


class PayloadError(ValueError):
    """The body is JSON but not a ticket-created webhook; the message says what is missing."""


@dataclass(frozen=True)
class Delivery:
    ticket_id: int
    event_key: str  # with ticket_id, the natural key of the delivery (idempotency)
    created_at: datetime | None
    ticket: dict[str, Any] | None  # scoring inputs when the body had them, else None (fetch)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ticket_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()) or None
    return None


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(t) for t in value if isinstance(t, str | int) and str(t)]
    if isinstance(value, str):  # Zendesk's {{ticket.tags}} placeholder renders "tag1 tag2"
        return value.split()
    return []


def parse_delivery(body: Any) -> Delivery:
    """The delivery a webhook body describes, or ``PayloadError`` saying what is wrong."""
    if not isinstance(body, dict):
        raise PayloadError(f"the body must be a JSON object, not a JSON {type(body).__name__}")
    event_id = None
    if isinstance(body.get("detail"), dict):  # event subscription
        if body.get("type") not in (None, EVENT_TYPE):
            raise PayloadError(f"event type {str(body.get('type'))[:80]!r} is not {EVENT_TYPE!r}")
        source = body["detail"]
        event_id = body.get("id")
    elif isinstance(body.get("ticket"), dict):  # trigger with the documented JSON body
        source = body["ticket"]
        event_id = body.get("event_id")
    elif "ticket_id" in body:
        source = {"id": body["ticket_id"]}
    else:
        raise PayloadError("no ticket in the body: expected {\"ticket\": {\"id\": ...}} (trigger), "
                           "{\"detail\": {\"id\": ...}} (event subscription) or {\"ticket_id\": ...}")
    ticket_id = _ticket_id(source.get("id"))
    if ticket_id is None:
        raise PayloadError(f"the ticket id must be a positive integer, got {str(source.get('id'))[:40]!r}")
    created = parse_time(source.get("created_at"))
    updated = parse_time(source.get("updated_at"))
    if event_id is not None and (not isinstance(event_id, str | int) or not str(event_id).strip()):
        raise PayloadError("the event id must be a non-empty string")
    event_key = (str(event_id).strip() if event_id is not None
                 else f"ticket.created:{created.isoformat() if created else ''}")[:128]
    has_text = isinstance(source.get("subject"), str) or isinstance(source.get("description"), str)
    ticket = None
    if has_text and updated is not None:
        ticket = {"id": ticket_id, "subject": source.get("subject") if isinstance(source.get("subject"), str) else "",
                  "description": source.get("description") if isinstance(source.get("description"), str) else "",
                  "tags": _tags(source.get("tags")), "updated_at": updated.isoformat(),
                  "created_at": created.isoformat() if created else None}
    return Delivery(ticket_id, event_key, created, ticket)


def ticket_from_api(record: dict[str, Any]) -> dict[str, Any] | None:
    """Scoring inputs from a ticket as the REST API returns it (show_many), or None when unusable."""
    ticket_id = _ticket_id(record.get("id"))
    updated = parse_time(record.get("updated_at"))
    if ticket_id is None or updated is None:
        return None
    created = parse_time(record.get("created_at"))
    return {"id": ticket_id, "subject": record.get("subject") or "", "description": record.get("description") or "",
            "tags": _tags(record.get("tags")), "updated_at": updated.isoformat(),
            "created_at": created.isoformat() if created else None}
