"""The state machines whose states the warehouse stores, as string enums.

``StrEnum`` members *are* their strings (``WritebackStatus.DONE == "done"``, ``f"{x}"`` and JSON give the
value), so the stored values are the ones earlier versions wrote: no migration, and a row written by an older
run reads back as a member of the same machine. The enums exist so that a state is spelled once, a typo is an
``AttributeError`` instead of a silently unmatched row, and each machine's transitions are documented here.
"""

from __future__ import annotations

from enum import StrEnum


class WritebackStatus(StrEnum):
    """``writeback_state.status`` of one ticket (tasks.writeback).

    pending → pushing (committed before the request) → submitted (job id recorded) → done | failed. A batch
    left ``pushing`` by a killed run is read back: done when the ticket carries the tags, else pending.
    failed and pending rows are pushed again on the next run.
    """

    PENDING = "pending"
    PUSHING = "pushing"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


class JobState(StrEnum):
    """``writeback_jobs.status``: Zendesk's job statuses, and the two ways TicketLens settles a job itself."""

    QUEUED = "queued"
    WORKING = "working"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    EXPIRED = "expired"  # Zendesk no longer knows the job (404, about an hour after it): tickets read back
    OVERDUE = "overdue"  # still open after TICKETLENS_WRITEBACK_JOB_DEADLINE_SECONDS: tickets read back


FINISHED_JOBS = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.KILLED})  # Zendesk says it is over
SETTLED_JOBS = FINISHED_JOBS | {JobState.EXPIRED, JobState.OVERDUE}  # never polled again


class AlertState(StrEnum):
    """``spike_alerts.state``: open (first flagged hour) → ongoing (flagged again) → resolved (quiet hours)."""

    OPEN = "open"
    ONGOING = "ongoing"
    RESOLVED = "resolved"


class NotificationKind(StrEnum):
    """``slack_messages.kind``: what a message announces about an alert."""

    OPENED = "opened"
    GREW = "grew"
    RESOLVED = "resolved"


class MessageStatus(StrEnum):
    """``slack_messages.status``: pending → sent | failed (retried next run) | not_sent (no webhook set)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    NOT_SENT = "not_sent"


class PartitionStatus(StrEnum):
    """``backfill_partitions.status``: a row exists only for a finished partition, so the one state is done."""

    DONE = "done"


class InboxStatus(StrEnum):
    """``triage_inbox.status`` of one delivered webhook (services.triage).

    queued (committed before the webhook is answered) → scored | skipped (a current prediction of this or a newer
    model version exists) | failed (the ticket cannot be fetched, or processing gave up). Whatever the service
    leaves queued or failed is scored and pushed by the next hourly-pipeline run.
    """

    QUEUED = "queued"
    SCORED = "scored"
    SKIPPED = "skipped"
    FAILED = "failed"
