"""Zendesk's two CSAT APIs, normalised into the same ``csat_ratings`` rows (pure: no I/O, no Prefect).

* **Legacy CSAT** — ``GET /api/v2/satisfaction_ratings``: one record per rating with an integer id and a score of
  ``good``/``bad`` — or ``offered``/``unoffered`` when the survey was sent (or not) but nobody answered. Those two
  are *not ratings*: they are loaded (so the response rate can be computed and a later answer replaces them), are
  counted separately in the ingest summary, and never count as good or bad (``models.csat_drivers.score_is_bad``
  gives them no verdict).
* **Current CSAT** — ``GET /api/v2/guide/survey_responses`` (admin-only, Support Professional / Suite Growth and
  up): one survey response per ticket with a string (ULID) id, ``subjects``/``subject_zrns`` naming the ticket
  (``zen:ticket:99``), ``responder_id``, and ``answers``: a ``rating_scale`` answer (``rating`` on the survey's
  scale and ``rating_category`` good/neutral/bad), ``open_ended`` comments, ``closed_ended`` selections, or
  ``skipped``. A response is created when the survey is offered and answered later (until it expires), so a
response may have no answers yet: its times then come from its ULID id, and it is ``skipped`` until answered.
A response becomes a row with ``score`` = the rating category (so ``neutral`` is neither good nor
  bad), ``rating`` = the number, ``comment`` = the open-ended answer, ``source_id`` = the ULID and ``id`` a
  stable negative 60-bit integer derived from it (legacy ids are positive, so the two never collide). A
  response whose rating question was skipped gets ``score`` = ``skipped``: not a rating, counted like
  ``offered``. Its times are its answers' earliest ``created_at`` and latest ``updated_at``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ticketlens.models.records import (
    _as_int,
    _as_text,
    _as_timestamp,
    _frame,
    _int_columns,
    distinct_records,
    finish_row,
)

LEGACY = "satisfaction_ratings"
SURVEY = "survey_responses"
#: Scores that record a survey offered (or not) but no answer: counted, never good or bad.
NOT_A_RATING = frozenset({"offered", "unoffered", "skipped"})

SURVEY_COLUMNS = (
    "id", "ticket_id", "score", "rating", "comment", "reason", "assignee_id", "group_id", "requester_id",
    "created_at", "updated_at", "source", "source_id", "_row", "_record_id", "_payload", "_sha256", "_type_errors",
)


def survey_response_row_id(source_id: str) -> int:
    """A stable warehouse id for a survey response's string id: negative, 60 bits of its SHA-256."""
    return -int(hashlib.sha256(source_id.encode()).hexdigest()[:15], 16)


_CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def ulid_time(value: str | None) -> pd.Timestamp | None:
    """The creation time a ULID encodes (its first 10 base-32 characters are unix milliseconds), else None."""
    if not value or len(value) != 26:
        return None
    ms = 0
    for char in value[:10].upper():
        if char not in _CROCKFORD:
            return None
        ms = ms * 32 + _CROCKFORD[char]
    if not 0 < ms < 2**47:
        return None
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _ticket_id(rec: Mapping[str, Any]) -> tuple[int | None, bool]:
    for subject in rec.get("subjects") or ():
        if isinstance(subject, Mapping) and subject.get("type") in ("ticket", "zen:ticket"):
            return _as_int(subject.get("id"))
    for zrn in rec.get("subject_zrns") or ():
        if isinstance(zrn, str) and zrn.startswith("zen:ticket:"):
            return _as_int(zrn.rsplit(":", 1)[1])
    return None, True  # a response about a conversation only: no ticket (quarantined as not-null, with payload)


def _rating_answer(answers: Sequence[Any]) -> Mapping[str, Any] | None:
    """The customer-satisfaction rating answer (else the first rating-scale answer)."""
    scales = [a for a in answers if isinstance(a, Mapping) and a.get("type") == "rating_scale"]
    for answer in scales:
        question = answer.get("question")
        if isinstance(question, Mapping) and question.get("sub_type") == "customer_satisfaction":
            return answer
    return scales[0] if scales else None


def _comment(answers: Sequence[Any]) -> Any:
    texts = [a for a in answers if isinstance(a, Mapping) and a.get("type") == "open_ended"]
    for answer in texts:
        question = answer.get("question")
        if isinstance(question, Mapping) and question.get("alias") == "comment":
            return answer.get("value")
    return texts[0].get("value") if texts else None


def normalize_survey_responses(records: Sequence[Any]) -> pd.DataFrame:
    """CSAT survey responses → ``csat_ratings``-shaped rows (plus ``_`` columns for validation/quarantine)."""
    present: set[str] = set()
    rows = []
    for rec, row, errors in distinct_records(records):
        row.update(source=SURVEY, assignee_id=None, group_id=None, reason=None)
        source_id = rec.get("id")
        if isinstance(source_id, str) and source_id.strip():
            row["source_id"] = source_id.strip()[:64]
            row["id"] = survey_response_row_id(row["source_id"])
        else:
            row["source_id"], row["id"] = None, None
            if source_id is not None:
                errors.append("id")
        row["ticket_id"], ok = _ticket_id(rec)
        if not ok:
            errors.append("ticket_id")
        row["requester_id"], ok = _as_int(rec.get("responder_id"))
        if not ok:
            errors.append("requester_id")
        answers = rec.get("answers") if isinstance(rec.get("answers"), list) else []
        if rec.get("answers") is not None and not isinstance(rec.get("answers"), list):
            errors.append("answers")
        rating = _rating_answer(answers)
        if rating is None:
            row["score"], row["rating"] = "skipped", None
        else:
            row["score"], ok = _as_text(rating.get("rating_category"))
            row["rating"], ok2 = _as_int(rating.get("rating"))
            if not (ok and ok2):
                errors.append("rating")
            if row["score"] is None and row["rating"] is not None:
                row["score"] = str(row["rating"])
        row["comment"], ok = _as_text(_comment(answers))
        if not ok:
            errors.append("comment")
        created = [_as_timestamp(a.get("created_at"))[0] for a in answers if isinstance(a, Mapping)]
        updated = [_as_timestamp(a.get("updated_at"))[0] for a in answers if isinstance(a, Mapping)]
        created = [t for t in created if t is not None]
        updated = [t for t in updated if t is not None] or created
        # A response offered but not answered yet may have no answer times: its ULID id encodes its creation.
        minted = ulid_time(row["source_id"])
        row["created_at"] = min(created) if created else minted
        row["updated_at"] = max(updated) if updated else minted
        for name in ("id", "ticket_id", "score", "created_at", "updated_at"):
            if row.get(name) is not None:
                present.add(name)
        rows.append(finish_row(row, row["source_id"], errors))
    frame = _frame(rows, SURVEY_COLUMNS, present | {"id", "ticket_id", "score", "created_at", "updated_at"},
                   ("id", "ticket_id", "score", "created_at", "updated_at"))
    return _int_columns(frame, ("id", "ticket_id", "rating", "requester_id", "assignee_id", "group_id"))


def not_a_rating(scores: pd.Series) -> int:
    """How many rows are a survey offered or skipped rather than a rating."""
    return int(scores.astype("string").str.strip().str.lower().isin(NOT_A_RATING).sum()) if len(scores) else 0


