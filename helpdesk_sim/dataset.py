"""The contract between the synthetic-data generator and the Zendesk-compatible simulator server.

The generator (``helpdesk_sim.generator``) builds a ``Dataset`` whose tickets carry their whole life as a
list of timed status events. The server (``helpdesk_sim.server``) never stores "current" state: it derives
what Zendesk would return at the simulated clock time ``t`` from these specs (plus write-back overlays), so
advancing the clock makes new tickets arrive and old ones change, deterministically.

All times are unix seconds (int, UTC) for speed and compactness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ticketlens.models.records import PRIORITIES, STATUSES, TYPES  # Zendesk vocabularies, validated by ingest

__all__ = ["CHANNELS", "PRIORITIES", "STATUSES", "TYPES", "Dataset", "GroundTruth", "Incident", "RatingSpec",
           "TicketSpec"]

# The channels the generator emits (a subset of Zendesk's via.channel values).
CHANNELS = ("web", "email", "chat", "api", "mobile")


@dataclass(frozen=True, slots=True)
class RatingSpec:
    """A CSAT survey response. ``assignee_id``/``group_id`` are the values at rating time."""

    id: int
    created_at: int
    updated_at: int  # == created_at unless the customer changed the score later
    score: str  # "good" / "bad" (classic) — text, so numeric scales fit too
    comment: str | None
    reason: str | None  # Zendesk bad-rating reason label, e.g. "Issue is not resolved"
    assignee_id: int | None
    group_id: int | None


@dataclass(frozen=True, slots=True)
class TicketSpec:
    """One ticket's ground truth and full life. ``events`` is sorted by time; the first is ("new" at created_at)."""

    id: int
    created_at: int
    subject: str
    description: str  # may contain HTML, signatures, quoted replies, PII — like real e-mail tickets
    channel: str  # one of CHANNELS
    priority: str | None
    type: str | None
    requester_id: int
    submitter_id: int
    organization_id: int | None
    group_id: int | None  # assigned group once the ticket leaves "new"
    assignee_id: int | None  # assigned agent once the ticket leaves "new"
    tags: tuple[str, ...]
    events: tuple[tuple[int, str], ...]  # (unix time, status) transitions, incl. reopen and "deleted"
    # Ground truth, never served as such (except through the fields below):
    true_category: str  # taxonomy leaf key
    contact_reason: str  # the user's self-selected reason (taxonomy leaf key), disagrees ~25% of the time
    confirmed_category: str | None  # agent-confirmed label, set when solved, ~3% noise
    language: str  # ISO 639-1
    customer_segment: str  # "consumer" / "business" / "creator"
    first_reply_minutes: int | None
    full_resolution_minutes: int | None
    incident_id: str | None = None
    rating: RatingSpec | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """A planted spike: the category's volume multiplied by ``multiplier`` in [start, end)."""

    id: str
    category: str
    start: int
    end: int
    multiplier: float


@dataclass(slots=True)
class GroundTruth:
    """What the generator planted, for evaluating spike detection and CSAT-driver analysis later."""

    incidents: list[Incident] = field(default_factory=list)
    # Planted CSAT drivers: {"kind": "agent"|"category"|"resolution_time"|..., "key": ..., "effect": log-odds}
    csat_drivers: list[dict[str, Any]] = field(default_factory=list)
    # Rating id → the reason theme its bad-rating comment was written for (ground truth for the reason model).
    csat_reason_themes: dict[int, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Dataset:
    """Everything the simulator serves. Dimension records are already in Zendesk JSON shape."""

    tickets: list[TicketSpec]  # sorted by created_at, ids ascending with it
    groups: list[dict[str, Any]]  # Zendesk group JSON
    agents: list[dict[str, Any]]  # Zendesk user JSON (role agent/admin)
    ticket_fields: list[dict[str, Any]]  # Zendesk ticket_field JSON; includes the two fields below
    contact_reason_field_id: int
    confirmed_category_field_id: int
    start: int  # first ticket time
    end: int  # last ticket time (exclusive)
    truth: GroundTruth = field(default_factory=GroundTruth)
