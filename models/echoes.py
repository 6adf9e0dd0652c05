"""Write-back echoes: tell TicketLens's own edits of a ticket from real ones (pure functions, no I/O).

TicketLens pushes tags and custom fields with ``update_many``; the helpdesk stamps a new ``updated_at``, so the
next incremental export returns every ticket it just tagged. Without a guard, each run re-scores (and could
re-push) everything the previous run wrote back: a feedback loop.

Two fingerprints of a ticket version, both blind to what TicketLens itself writes (tags with the TicketLens
prefix, the configured write-back custom fields) and to version stamps (``updated_at``, ``generated_timestamp``,
extraction bookkeeping):

- ``input_fingerprint``: what scoring reads or what a human uses to correct a category — subject, description,
  the ticket's own tags (segment → tier), channel, contact reason, confirmed category. Equal to the fingerprint
  stored with the current prediction of the same model version → the prediction still holds: not re-scored.
- ``content_fingerprint``: every other field as well (status, assignee, group, priority, custom fields, metrics).
  Equal too → the only change was TicketLens's own write-back: an *echo*, counted as such.

A changed description, a new tag from an agent or a human re-categorising the ticket changes the input
fingerprint, so the ticket is re-scored as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

# Fields of the warehouse ``tickets`` row, beyond the inputs, that make a version different for a person.
INPUT_FIELDS = ("subject", "description", "channel", "contact_reason", "confirmed_category")
CONTENT_FIELDS = ("status", "priority", "type", "requester_id", "submitter_id", "assignee_id", "group_id",
                  "organization_id", "solved_at", "first_reply_minutes", "full_resolution_minutes", "reopens",
                  "is_deleted")


def own_tags(tags: Any, prefix: str) -> list[str]:
    """The ticket's tags without TicketLens's (``prefix``), sorted: tag order carries no meaning in Zendesk."""
    if not isinstance(tags, list | tuple):
        return []
    return sorted({str(t) for t in tags if not (prefix and str(t).startswith(prefix))})


def own_fields(custom_fields: Any, writeback_field_ids: Iterable[int]) -> list[list[Any]]:
    """Custom fields other than the ones TicketLens writes, as sorted [id, value] pairs."""
    skip = {int(i) for i in writeback_field_ids}
    out = []
    for field in custom_fields if isinstance(custom_fields, list | tuple) else ():
        if isinstance(field, Mapping) and field.get("id") is not None:
            try:
                fid = int(field["id"])
            except (TypeError, ValueError):
                continue
            if fid not in skip:
                out.append([fid, field.get("value")])
    return sorted(out, key=lambda pair: pair[0])


def _digest(values: list[Any]) -> str:
    # orjson: canonical enough for our values (str/int/float/bool/None/lists/datetimes), and fast.
    return hashlib.sha256(orjson.dumps(values, default=str)).hexdigest()


def input_fingerprint(ticket: Mapping[str, Any], prefix: str) -> str:
    """sha256 of what scoring reads (and human categorisation), blind to TicketLens's own tags."""
    return _digest([ticket.get(f) for f in INPUT_FIELDS] + [own_tags(ticket.get("tags"), prefix)])


def content_fingerprint(ticket: Mapping[str, Any], prefix: str, writeback_field_ids: Iterable[int]) -> str:
    """sha256 of the whole ticket as a person sees it, minus TicketLens's tags/fields and version stamps."""
    return fingerprints(ticket, prefix, writeback_field_ids)[1]


def fingerprints(ticket: Mapping[str, Any], prefix: str, writeback_field_ids: Iterable[int]) -> tuple[str, str]:
    """(input, content) fingerprints in one pass (the scoring paths call this for every ticket they read)."""
    inputs = _digest([ticket.get(f) for f in INPUT_FIELDS] + [own_tags(ticket.get("tags"), prefix)])
    content = _digest([inputs] + [ticket.get(f) for f in CONTENT_FIELDS]
                      + [own_fields(ticket.get("custom_fields"), writeback_field_ids)])
    return inputs, content


def classify_versions(candidates: Iterable[tuple[int, Any, str, str]],
                      stored: Mapping[int, tuple[Any, str | None, str | None]]) -> dict[str, list[int]]:
    """Split ticket versions into ``rescore``, ``current``, ``echo`` and ``kept``.

    ``candidates``: (ticket_id, updated_at, input fingerprint, content fingerprint) of the loaded versions;
    ``stored``: per ticket, (scored updated_at, input fingerprint, content fingerprint) of its current prediction
    by the same model version. Missing or NULL fingerprints (a prediction made before they existed) → re-score.
    ``current``: this very version is already scored (e.g. by the backfill); ``echo``: a newer version in which
    only TicketLens's own tags/fields changed; ``kept``: a newer version whose scoring inputs did not change but
    something else did (status, assignee...).
    """
    out: dict[str, list[int]] = {"rescore": [], "current": [], "echo": [], "kept": []}
    for ticket_id, updated_at, input_fp, content_fp in candidates:
        scored_at, old_input, old_content = stored.get(ticket_id, (None, None, None))
        if old_input is None or old_input != input_fp:
            out["rescore"].append(ticket_id)
        elif scored_at is not None and scored_at == updated_at:
            out["current"].append(ticket_id)
        elif old_content == content_fp:
            out["echo"].append(ticket_id)
        else:
            out["kept"].append(ticket_id)
    return out
