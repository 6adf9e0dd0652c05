"""Stored state machines as string enums: the values in the warehouse are the ones earlier versions wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from ticketlens.adapters.helpdesk import JobStatus
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import writeback_state
from ticketlens.models.states import (
    FINISHED_JOBS,
    SETTLED_JOBS,
    AlertState,
    JobState,
    MessageStatus,
    NotificationKind,
    PartitionStatus,
    WritebackStatus,
)

# The strings stored before the enums existed (schema comments, Zendesk's job statuses). Changing one would
# strand rows written by an older run in a state no query matches.
STORED = {
    WritebackStatus: ["pending", "pushing", "submitted", "done", "failed"],
    JobState: ["queued", "working", "completed", "failed", "killed", "expired", "overdue"],
    AlertState: ["open", "ongoing", "resolved"],
    NotificationKind: ["opened", "grew", "resolved"],
    MessageStatus: ["pending", "sent", "failed", "not_sent"],
    PartitionStatus: ["done"],
}


def test_enum_values_are_the_stored_strings():
    for enum, values in STORED.items():
        assert [m.value for m in enum] == values, enum.__name__
        for member in enum:  # the member *is* its string wherever it goes: formatting, JSON, comparisons
            assert member == member.value and f"{member}" == str(member) == member.value
            assert json.dumps({"s": member}) == json.dumps({"s": member.value})


def test_job_sets():
    assert FINISHED_JOBS == {"completed", "failed", "killed"}
    assert SETTLED_JOBS == {"completed", "failed", "killed", "expired", "overdue"}
    job = JobStatus(id="1", status="completed", total=1, progress=1, results=[], message=None, raw={})
    assert job.finished and not JobStatus(**{**job.__dict__, "status": "working"}).finished


def test_enum_members_are_written_and_matched_as_plain_strings(warehouse_url):
    engine = get_engine(warehouse_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(writeback_state), [
            {"ticket_id": i, "desired_tags": [], "desired_sha256": "x", "status": status, "updated_at": now}
            for i, status in enumerate([WritebackStatus.PUSHING, "pending", WritebackStatus.DONE], start=1)])
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT ticket_id, status FROM writeback_state ORDER BY ticket_id")).all()
        matched = conn.execute(sa.select(writeback_state.c.ticket_id).where(
            writeback_state.c.status.in_([WritebackStatus.PENDING, WritebackStatus.PUSHING]))).scalars().all()
    assert [(i, s, type(s)) for i, s in raw] == [(1, "pushing", str), (2, "pending", str), (3, "done", str)]
    assert sorted(matched) == [1, 2]  # a row written as a plain string (an older run) matches the member
