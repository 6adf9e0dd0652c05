"""Write-back: push category, sentiment, tier, routing and auto-reply tags to the helpdesk, idempotently.

State machine per ticket (``writeback_state``): the desired tags come from the current prediction; when they
differ from what was last pushed the row becomes ``pending``; a push makes it ``submitted`` (with the job id);
the job result makes it ``done`` (pushed = desired) or ``failed``. Failed and still-pending rows are retried on
the next run; a failure never fails scoring and nothing is lost. Only ``additional_tags`` / ``remove_tags`` are
used — the ticket's own tags are never replaced — and only tags TicketLens pushed itself are ever removed.
Job statuses are stored because Zendesk keeps them only about an hour: a job whose status is gone (404) or that
stays open past ``TICKETLENS_WRITEBACK_JOB_DEADLINE_SECONDS`` is settled by reading its tickets back (show_many).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from ticketlens.adapters.helpdesk import (
    HelpdeskError,
    HelpdeskNotFoundError,
    WriteOutcomeUnknownError,
    client_from_settings,
)
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import (
    INSERT_BATCH,
    dialect_insert,
    get_stream_state,
    save_stream_state,
)
from ticketlens.adapters.warehouse.schema import ticket_predictions, writeback_jobs, writeback_state
from ticketlens.models.scoring import helpdesk_fields, helpdesk_tags, removable_tags
from ticketlens.models.states import SETTLED_JOBS, JobState, WritebackStatus
from ticketlens.models.windows import as_utc

BATCH = 100


@dataclass(frozen=True)
class PushResult:
    """Tickets of one push: submitted in a job, failed to submit (retried next run), sent without a clear answer
    (read back next run), or only listed because of TICKETLENS_WRITEBACK_DRY_RUN."""

    submitted: int = 0
    failed: int = 0
    in_doubt: int = 0
    dry_run: int = 0


@dataclass(frozen=True)
class ReadBack:
    """Tickets settled by reading them back: carrying their tags (done), requeued, deleted, or unreadable."""

    confirmed: int = 0
    requeued: int = 0
    missing: int = 0
    unreadable: int = 0

    @property
    def settled(self) -> int:
        return self.confirmed + self.requeued + self.missing


@dataclass(frozen=True)
class PollResult:
    """Tickets confirmed or rejected by finished jobs, jobs still open, and tickets settled by reading back."""

    done: int = 0
    failed: int = 0
    open_jobs: int = 0
    settled_by_read_back: int = 0


WRITEBACK_LOCK = "writeback"  # warehouse run lock held while pushing/polling (hourly run and triage service)
IN_DOUBT = WritebackStatus.PUSHING  # a batch is about to be (or was) sent, but its job id is not recorded yet
PLAN_STREAM = "writeback-plan"  # extraction_state row: watermark = max predicted_at planned (µs), cursor = config
PLAN_LOOKBACK = timedelta(minutes=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _log():
    """The run logger inside a flow/task run; this module's logger elsewhere (the triage service calls the plain
    functions below from its own worker thread, outside any Prefect run)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _sha(tags: list[str], fields: list[dict[str, Any]]) -> str:
    payload = "\n".join(sorted(tags)) + "\n" + "\n".join(f"{f['id']}={f['value']}" for f in fields)
    return hashlib.sha256(payload.encode()).hexdigest()


@task(name="plan-writeback", cache_policy=NO_CACHE)
def plan_writeback(settings: Settings) -> int:
    """Mark tickets whose current prediction implies tags different from what the helpdesk has.

    Only predictions written since the last plan are read (a watermark on ``predicted_at`` with a short
    look-back for transactions that committed late), so the hourly cost follows the new predictions, not the
    history. Changing the tag prefix or the custom-field map re-plans everything once.
    """
    engine = get_engine(settings.warehouse_url)
    p = ticket_predictions
    config = hashlib.sha256(json.dumps([settings.writeback_tag_prefix, settings.writeback_custom_fields],
                                       sort_keys=True).encode()).hexdigest()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        state = get_stream_state(conn, PLAN_STREAM)
        where = p.c.is_current.is_(True)
        if state is not None and state.cursor == config and state.watermark:
            since = EPOCH + timedelta(microseconds=state.watermark) - PLAN_LOOKBACK
            where = sa.and_(where, p.c.predicted_at > since)
        high = conn.execute(sa.select(sa.func.max(p.c.predicted_at))).scalar_one()
        planned = len(plan_rows(conn, settings, where, now))
        if high is not None:
            high = as_utc(high)
            save_stream_state(conn, PLAN_STREAM, cursor=config, run_id=None,
                              watermark=(high - EPOCH) // timedelta(microseconds=1))
    return planned


def plan_rows(conn: sa.Connection, settings: Settings, where, now: datetime) -> list[int]:
    """Plan the current predictions matching ``where`` (the planner's core, shared with the triage service):
    a row becomes ``pending`` only when its desired tags/fields differ from both what was pushed and what is
    already planned, so planning the same prediction twice (service, then the hourly sweep) changes nothing.
    Returns the ticket ids that became pending."""
    p, w = ticket_predictions, writeback_state
    query = (sa.select(p.c.ticket_id, p.c.category, p.c.parent_category, p.c.sentiment, p.c.tier,
                       p.c.routing_group, p.c.auto_reply, p.c.is_spam, w.c.desired_sha256, w.c.pushed_sha256)
             .select_from(p.outerjoin(w, w.c.ticket_id == p.c.ticket_id)).where(where))
    changes = []
    for row in conn.execute(query).mappings():
        tags = helpdesk_tags(dict(row), settings.writeback_tag_prefix)
        fields = helpdesk_fields(dict(row), settings.writeback_custom_fields)
        sha = _sha(tags, fields)
        if sha == row["pushed_sha256"] or sha == row["desired_sha256"]:
            continue  # already pushed, or already planned and awaiting push
        changes.append({"ticket_id": row["ticket_id"], "desired_tags": tags, "desired_fields": fields or None,
                        "desired_sha256": sha,
                        "status": WritebackStatus.PENDING, "updated_at": now, "attempts": 0})
    if changes:
        stmt = dialect_insert(conn, w)
        stmt = stmt.on_conflict_do_update(index_elements=["ticket_id"], set_={
            "desired_tags": stmt.excluded.desired_tags, "desired_fields": stmt.excluded.desired_fields,
            "desired_sha256": stmt.excluded.desired_sha256,
            "status": WritebackStatus.PENDING, "updated_at": stmt.excluded.updated_at, "attempts": 0,
            "last_error": None})
        for start in range(0, len(changes), INSERT_BATCH):
            conn.execute(stmt, changes[start:start + INSERT_BATCH])
    return [int(c["ticket_id"]) for c in changes]


@task(name="push-writeback", cache_policy=NO_CACHE)
def push_writeback(settings: Settings, run_id: str, limit: int = 10_000) -> PushResult:
    """Send pending and failed tickets in batches of ≤ 100 via update_many; never raises on helpdesk errors."""
    logger = _log()
    engine = get_engine(settings.warehouse_url)
    w = writeback_state
    if not settings.writeback_dry_run:
        reconcile_in_doubt(settings)
    with engine.connect() as conn:
        todo = conn.execute(sa.select(w.c.ticket_id, w.c.desired_tags, w.c.desired_fields, w.c.pushed_tags)
                            .where(w.c.status.in_([WritebackStatus.PENDING, WritebackStatus.FAILED])).order_by(w.c.ticket_id)
                            .limit(limit)).mappings().all()
    if settings.writeback_dry_run:
        for row in todo[:20]:
            logger.info("[dry run] ticket %s: +%s -%s", row["ticket_id"], row["desired_tags"],
                        removable_tags(row["pushed_tags"], row["desired_tags"]))
        logger.info("[dry run] %d tickets would be updated; nothing was pushed", len(todo))
        return PushResult(dry_run=len(todo))
    client = client_from_settings(settings)
    submitted = failed = in_doubt = 0
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        outcome = push_batch(engine, client, batch, run_id, logger)
        submitted += len(batch) if outcome == WritebackStatus.SUBMITTED else 0
        failed += len(batch) if outcome == WritebackStatus.FAILED else 0
        in_doubt += len(batch) if outcome == IN_DOUBT else 0
    return PushResult(submitted=submitted, failed=failed, in_doubt=in_doubt)


def push_batch(engine: sa.Engine, client, batch, run_id: str, logger=None) -> str:
    """Push one batch (≤ 100 writeback_state rows) with update_many; the state machine's push step, shared by
    ``push-writeback`` and the triage service. Returns "submitted", "failed" or "pushing" (outcome unknown:
    read back by the next run, never sent again blindly)."""
    logger = logger or _log()
    w = writeback_state
    updates = [{"id": int(r["ticket_id"]), "additional_tags": list(r["desired_tags"]),
                "remove_tags": removable_tags(r["pushed_tags"], r["desired_tags"]),
                **({"custom_fields": r["desired_fields"]} if r["desired_fields"] else {})} for r in batch]
    ids = [u["id"] for u in updates]
    now = datetime.now(UTC)
    with engine.begin() as conn:  # committed BEFORE the request: a crash now leaves the batch "in doubt"
        conn.execute(sa.update(w).where(w.c.ticket_id.in_(ids)).values(status=IN_DOUBT, updated_at=now))
    try:
        job = client.update_many(updates)
    except WriteOutcomeUnknownError as exc:
        # Sent, but maybe applied: the batch stays "in doubt" and the next run reads it back (by then an
        # accepted job has run) instead of sending it again.
        logger.warning("Write-back of %d tickets: %s", len(batch), exc)
        with engine.begin() as conn:
            conn.execute(sa.update(w).where(w.c.ticket_id.in_(ids)).values(
                attempts=w.c.attempts + 1, last_error=str(exc)[:2000], updated_at=now))
        return IN_DOUBT
    except HelpdeskError as exc:
        logger.warning("Write-back of %d tickets failed (%s); they are retried on the next run.", len(batch), exc)
        with engine.begin() as conn:
            conn.execute(sa.update(w).where(w.c.ticket_id.in_(ids)).values(
                status=WritebackStatus.FAILED, attempts=w.c.attempts + 1, last_error=str(exc)[:2000], updated_at=now))
        return WritebackStatus.FAILED
    with engine.begin() as conn:
        conn.execute(sa.insert(writeback_jobs).values(job_id=job.id, submitted_at=now, ticket_ids=ids,
                                                      status=job.status, run_id=run_id))
        conn.execute(sa.update(w).where(w.c.ticket_id.in_(ids)).values(
            status=WritebackStatus.SUBMITTED, job_id=job.id, attempts=w.c.attempts + 1, updated_at=now))
    return WritebackStatus.SUBMITTED


def ticket_matches(ticket: dict[str, Any], desired_tags: list[str], pushed_tags: list[str] | None,
                   desired_fields: list[dict[str, Any]] | None) -> bool:
    """Does the helpdesk's ticket already carry what we meant to push (tags added, outdated ones removed)?"""
    tags = set(ticket.get("tags") or ())
    if not set(desired_tags) <= tags or tags & set(removable_tags(pushed_tags, desired_tags)):
        return False
    fields = {f.get("id"): f.get("value") for f in ticket.get("custom_fields") or () if isinstance(f, dict)}
    return all(fields.get(f["id"]) == f["value"] for f in desired_fields or ())


def reconcile_in_doubt(settings: Settings) -> ReadBack:
    """Settle batches a killed run left between "about to push" and "job recorded".

    Whether that push reached the helpdesk is unknown, so instead of pushing again (a double write-back) the
    tickets are read back (show_many): those already carrying the desired tags are marked done, the others go
    back to pending. Deleted tickets are marked failed with a reason.
    """
    w = writeback_state
    with get_engine(settings.warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(w.c.ticket_id, w.c.desired_tags, w.c.desired_fields, w.c.desired_sha256,
                                      w.c.pushed_tags).where(w.c.status == WritebackStatus.PUSHING)).mappings().all()
    if not rows:
        return ReadBack()
    settled = settle_by_read_back(settings, rows, IN_DOUBT)
    _log().warning(
        "Write-back: %d tickets were in doubt after an interrupted run: %d already carried their tags (not pushed "
        "again), %d requeued, %d no longer in the helpdesk.", len(rows), settled.confirmed, settled.requeued,
        settled.missing)
    return settled


def settle_by_read_back(settings: Settings, rows, from_status: WritebackStatus) -> ReadBack:
    """Read tickets back (show_many, ≤ 100 per request) and settle each row still in ``from_status``.

    Used whenever the helpdesk's own answer about a write is gone or never came: a batch in doubt after an
    interrupted run, and a job whose status expired (Zendesk keeps job statuses about an hour, then 404) or
    stayed open past ``TICKETLENS_WRITEBACK_JOB_DEADLINE_SECONDS``. Tickets carrying the desired tags and fields
    are ``done``; the others go back to ``pending`` (pushed again by this or the next run); deleted ones are
    ``failed`` with a reason. A read that fails leaves the rows as they are for the next run.
    """
    engine = get_engine(settings.warehouse_url)
    w = writeback_state
    client = client_from_settings(settings)
    confirmed = requeued = missing = unreadable = 0
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        try:
            seen = {int(t["id"]): t for t in client.show_many([int(r["ticket_id"]) for r in batch])
                    if isinstance(t.get("id"), int)}
        except HelpdeskError as exc:
            _log().warning("Could not read back %d write-backs (%s); trying next run.", len(batch), exc)
            unreadable += len(batch)
            continue
        now = datetime.now(UTC)
        with engine.begin() as conn:
            for row in batch:
                ticket = seen.get(int(row["ticket_id"]))
                if ticket is None:
                    values = {"status": WritebackStatus.FAILED, "last_error": "ticket not found in the helpdesk (deleted?)"}
                    missing += 1
                elif ticket_matches(ticket, row["desired_tags"], row["pushed_tags"], row["desired_fields"]):
                    values = {"status": WritebackStatus.DONE, "pushed_tags": row["desired_tags"],
                              "pushed_sha256": row["desired_sha256"], "last_error": None}
                    confirmed += 1
                else:
                    values = {"status": WritebackStatus.PENDING}
                    requeued += 1
                conn.execute(sa.update(w).where(w.c.ticket_id == row["ticket_id"], w.c.status == from_status)
                             .values(updated_at=now, **values))
    return ReadBack(confirmed, requeued, missing, unreadable)


def settle_lost_job(settings: Settings, job_id: str, reason: JobState) -> ReadBack:
    """A job whose status is gone (404) or overdue: settle its submitted tickets by reading them back."""
    w, j = writeback_state, writeback_jobs
    engine = get_engine(settings.warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(w.c.ticket_id, w.c.desired_tags, w.c.desired_fields, w.c.desired_sha256,
                                      w.c.pushed_tags).where(w.c.job_id == job_id, w.c.status == WritebackStatus.SUBMITTED)
                            ).mappings().all()
    settled = settle_by_read_back(settings, rows, WritebackStatus.SUBMITTED) if rows else ReadBack()
    if not settled.unreadable:
        with engine.begin() as conn:  # nothing left to poll: the job row records why it was settled this way
            conn.execute(sa.update(j).where(j.c.job_id == job_id).values(
                status=reason, checked_at=datetime.now(UTC)))
    _log().warning(
        "Write-back job %s %s: its %d tickets were read back instead: %d carried their tags (done), %d requeued, "
        "%d no longer in the helpdesk, %d unreadable (next run).", job_id,
        "expired (HTTP 404: Zendesk keeps job statuses about an hour)" if reason == JobState.EXPIRED else
        f"still open after TICKETLENS_WRITEBACK_JOB_DEADLINE_SECONDS={settings.writeback_job_deadline_seconds:g}",
        len(rows), settled.confirmed, settled.requeued, settled.missing, settled.unreadable)
    return settled


@task(name="poll-writeback-jobs", cache_policy=NO_CACHE)
def poll_writeback_jobs(settings: Settings) -> PollResult:
    """Store job results; mark tickets done (pushed = desired) or failed (retried next run)."""
    logger = _log()
    engine = get_engine(settings.warehouse_url)
    client = client_from_settings(settings)
    j = writeback_jobs
    done = failed = open_jobs = settled = 0
    for attempt in range(max(1, settings.writeback_job_polls)):
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(j.c.job_id, j.c.submitted_at).where(j.c.status.not_in(sorted(SETTLED_JOBS)))
                                ).all()
        open_jobs = 0
        for job_id, submitted_at in jobs:
            result = check_job(settings, client, engine, job_id, submitted_at, logger)
            done += result["done"]
            failed += result["failed"]
            open_jobs += result["open"]
            settled += result["settled"]
        if not open_jobs:
            break
        if attempt + 1 < settings.writeback_job_polls:
            time.sleep(settings.writeback_poll_interval_seconds)
    return PollResult(done, failed, open_jobs, settled)


def check_job(settings: Settings, client, engine: sa.Engine, job_id: str, submitted_at: datetime,
              logger=None) -> dict[str, int]:
    """Check one write-back job and settle its tickets (the poll step of the state machine, shared by
    ``poll-writeback-jobs`` and the triage service): done / failed from the job's results, read back when
    the status is gone (404) or the job is overdue. Returns counts: done, failed, open (0/1), settled."""
    logger = logger or _log()
    w, j = writeback_state, writeback_jobs
    deadline = timedelta(seconds=settings.writeback_job_deadline_seconds)
    done = failed = 0
    try:
        job = client.get_job_status(job_id)
    except HelpdeskNotFoundError:
        # Zendesk dropped the status (about an hour after the job): the tickets themselves tell.
        result = settle_lost_job(settings, job_id, JobState.EXPIRED)
        return {"done": result.confirmed, "failed": 0, "open": 0, "settled": result.settled}
    except HelpdeskError as exc:
        logger.warning("Job %s status unavailable (%s); checked again next run.", job_id, exc)
        return {"done": 0, "failed": 0, "open": 1, "settled": 0}
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.update(j).where(j.c.job_id == job_id).values(
            status=job.status, results=job.results or None, checked_at=now))
        if job.finished:
            ok = {int(r["id"]) for r in job.results if r.get("success") and r.get("id") is not None}
            submitted = conn.execute(sa.select(w.c.ticket_id, w.c.desired_tags, w.c.desired_sha256)
                                     .where(w.c.job_id == job_id, w.c.status == WritebackStatus.SUBMITTED)).mappings().all()
            for row in submitted:
                if row["ticket_id"] in ok and job.status == JobState.COMPLETED:
                    conn.execute(sa.update(w).where(w.c.ticket_id == row["ticket_id"]).values(
                        status=WritebackStatus.DONE, pushed_tags=row["desired_tags"], pushed_sha256=row["desired_sha256"],
                        last_error=None, updated_at=now))
                    done += 1
                else:
                    error = next((r.get("error") or r.get("details") for r in job.results
                                  if r.get("id") == row["ticket_id"]), job.message or job.status)
                    conn.execute(sa.update(w).where(w.c.ticket_id == row["ticket_id"]).values(
                        status=WritebackStatus.FAILED, last_error=str(error)[:2000], updated_at=now))
                    failed += 1
    if not job.finished:
        if now - as_utc(submitted_at) > deadline:  # open for too long: read the tickets back instead
            result = settle_lost_job(settings, job_id, JobState.OVERDUE)
            return {"done": done + result.confirmed, "failed": failed, "open": 0, "settled": result.settled}
        return {"done": done, "failed": failed, "open": 1, "settled": 0}
    return {"done": done, "failed": failed, "open": 0, "settled": 0}


def writeback_summary(engine_url: str) -> dict[str, Any]:
    with get_engine(engine_url).connect() as conn:
        return dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                 .group_by(writeback_state.c.status)).all())


@dataclass(frozen=True)
class RoutingLatency:
    """Tickets created in a window and tagged (write-back done): by the triage service or by the hourly sweep."""

    realtime: int
    sweep: int
    untagged: int
    realtime_seconds: tuple[float, float, float] | None  # creation → tagged p50 / p95 / p99
    sweep_seconds: tuple[float, float, float] | None

    def line(self) -> str:
        def fmt(p: tuple[float, float, float] | None) -> str:
            return "-" if p is None else f"p50 {p[0]:.1f} s / p95 {p[1]:.1f} s / p99 {p[2]:.1f} s"

        return (f"- routing: {self.realtime} tickets routed in real time (creation → tagged {fmt(self.realtime_seconds)}),"
                f" {self.sweep} by the hourly sweep ({fmt(self.sweep_seconds)}), {self.untagged} not tagged yet")


def routing_latency(engine_url: str, start: datetime, end: datetime) -> RoutingLatency:
    """Split the window's new tickets into routed in real time (a ``realtime`` prediction was pushed) and by the
    sweep, with creation → tagged latency percentiles (tagged = the write-back confirmed, ``writeback_state``
    ``done``; a later re-push of a changed ticket moves that time, so these are upper bounds)."""
    import numpy as np

    from ticketlens.adapters.warehouse.schema import tickets

    p, w = ticket_predictions, writeback_state
    realtime = sa.exists().where(p.c.ticket_id == tickets.c.id, p.c.realtime.is_(True))
    query = (sa.select(tickets.c.id, tickets.c.created_at, w.c.status, w.c.updated_at, realtime.label("rt"))
             .select_from(tickets.outerjoin(w, w.c.ticket_id == tickets.c.id))
             .where(tickets.c.created_at >= start, tickets.c.created_at < end, tickets.c.is_deleted.is_(False)))
    with get_engine(engine_url).connect() as conn:
        rows = conn.execute(query).all()
    lat: dict[bool, list[float]] = {True: [], False: []}
    untagged = 0
    for row in rows:
        if row.status != WritebackStatus.DONE or row.updated_at is None:
            untagged += 1
            continue
        lat[bool(row.rt)].append(max(0.0, (as_utc(row.updated_at) - as_utc(row.created_at)).total_seconds()))

    def pct(values: list[float]) -> tuple[float, float, float] | None:
        return tuple(float(v) for v in np.percentile(values, [50, 95, 99])) if values else None

    return RoutingLatency(len(lat[True]), len(lat[False]), untagged, pct(lat[True]), pct(lat[False]))
