"""The triage service's engine room: the inbox, the champion model, and the worker that scores and writes back.

One worker thread does, in a loop: take up to ``batch_size`` queued inbox rows → (fetch the tickets that came
as ids only) → score them with the loaded champion through ``models.scoring.score_tickets`` (the function the
hourly scoring uses) → in ONE transaction write the predictions (``tasks.scoring.write_predictions``, flagged
``realtime``), plan their write-back (``tasks.writeback.plan_rows``) and mark the inbox rows scored. Planned
tickets are pushed in micro-batches (``tasks.writeback.push_batch``: update_many, ≤ 100 tickets) when a batch
is full or its oldest ticket waited ``batch_interval_seconds``, and their jobs are polled
(``tasks.writeback.check_job``) until done. Pushes and polls hold the warehouse lock ``writeback``, which the
hourly run's write-back steps hold too: the two never push or read back the same batch at the same time.

A crash at any point loses nothing: unscored rows stay ``queued`` (the restarted service or the hourly sweep
scores them), a batch caught between "about to push" and "job recorded" stays ``pushing`` and is read back by
the next hourly run instead of being sent twice (the state machine's in-doubt rule).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.load import dialect_insert
from ticketlens.adapters.warehouse.schema import (
    ticket_predictions,
    triage_inbox,
    writeback_jobs,
    writeback_state,
)
from ticketlens.models.states import InboxStatus, WritebackStatus
from ticketlens.services.triage.metrics import TriageMetrics
from ticketlens.services.triage.payload import Delivery, parse_time, ticket_from_api
from ticketlens.services.triage.settings import TriageSettings

log = logging.getLogger("ticketlens.triage")

SERVICE_RUN_ID = "triage-service"  # run_id of its predictions and write-back jobs
MAX_ATTEMPTS = 3  # scoring attempts per inbox row before it is left to the hourly sweep


class QueueFullError(RuntimeError):
    """The inbox holds ``queue_size`` unscored webhooks: answer 503 + Retry-After, store nothing."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    classifier: Any
    sentiment: Any
    loaded_at: datetime


class ChampionHolder:
    """The champion the worker scores with. ``refresh`` follows the ``champion`` alias; when MLflow is down (or
    a new version cannot be loaded) the loaded version keeps scoring and the outage is logged once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def refresh(self) -> str:
        """"loaded", "unchanged", "missing" (no champion yet) or "unavailable" (kept the loaded version)."""
        from ticketlens.adapters.tracking import CHAMPION, RegistryUnavailableError, version_by_alias

        s = self.settings
        with self._lock:
            try:
                found = version_by_alias(s.mlflow_tracking_uri, s.model_name, CHAMPION)
            except RegistryUnavailableError as exc:
                return self._unavailable(str(exc))
            except Exception as exc:  # the client itself could not be built (store unreachable at creation)
                return self._unavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
            if found is None:
                self.last_error = f"no version of {s.model_name} has the alias {CHAMPION!r}; run nightly-retrain"
                return "missing"
            version = str(found.version)
            if self.current is not None and self.current.version == version:
                self.last_error = None
                return "unchanged"
            try:
                from ticketlens.tasks.scoring import load_registered, load_sentiment

                classifier = load_registered(s, s.model_name, version)
                sentiment = load_sentiment(s)
            except Exception as exc:  # the registry or the artifact store failed mid-load: keep what we have
                return self._unavailable(f"could not load {s.model_name} v{version}: {type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}")
            previous = self.current.version if self.current else None
            self.current = LoadedModel(version, classifier, sentiment, datetime.now(UTC))
            self.last_error = None
            log.info("Champion %s v%s loaded%s", s.model_name, version,
                     f" (was v{previous}: the alias moved)" if previous else "")
            return "loaded"

    def _unavailable(self, reason: str) -> str:
        if reason != self.last_error:
            kept = f"scoring continues with the loaded v{self.current.version}" if self.current else \
                "nothing loaded yet: webhooks are stored and scored once a champion loads"
            log.warning("MLflow registry unavailable (%s); %s", reason, kept)
        self.last_error = reason
        return "unavailable"


class TriageService:
    """Inbox + worker. ``start()`` launches the worker and model-poll threads; ``stop()`` ends them."""

    def __init__(self, settings: Settings, triage: TriageSettings, client=None) -> None:
        self.settings = settings
        self.triage = triage
        self.metrics = TriageMetrics()
        self.models = ChampionHolder(settings)
        self._client = client
        self._engine: sa.Engine | None = None
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.pending: dict[int, float] = {}  # ticket id → monotonic time it was planned (awaiting its batch)
        self._last_poll = 0.0
        self.started = False

    # ----------------------------------------------------------------------------------------- plumbing

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from ticketlens.adapters.warehouse.engine import get_engine

            self._engine = get_engine(self.settings.warehouse_url)
        return self._engine

    @property
    def client(self):
        if self._client is None:
            from ticketlens.adapters.helpdesk import HelpdeskClient

            self._client = HelpdeskClient.from_settings(self.settings)
        return self._client

    def start(self, *, threads: bool = True) -> None:
        from ticketlens.adapters.warehouse.engine import migrate

        migrate(self.settings.warehouse_url)
        with self.engine.connect() as conn:
            depth = conn.execute(sa.select(sa.func.count()).select_from(triage_inbox)
                                 .where(triage_inbox.c.status == InboxStatus.QUEUED)).scalar_one()
        self._set_depth(int(depth))
        self.models.refresh()
        self._sync_model_metric()
        self.started = True
        if threads:
            for target, name in ((self._work, "triage-worker"), (self._poll_model, "triage-model")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _set_depth(self, value: int) -> None:
        with self._depth_lock:
            self._depth = max(0, value)
            self.metrics.queue_depth.set(self._depth)

    def _add_depth(self, delta: int) -> None:
        with self._depth_lock:
            self._depth = max(0, self._depth + delta)
            self.metrics.queue_depth.set(self._depth)

    @property
    def depth(self) -> int:
        return self._depth

    def _sync_model_metric(self) -> None:
        current = self.models.current
        self.metrics.model_version.set(float(current.version) if current and current.version.isdigit() else 0)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready = a champion is loaded and the warehouse answers."""
        checks: dict[str, Any] = {}
        current = self.models.current
        checks["champion"] = f"v{current.version}" if current else (self.models.last_error or "not loaded")
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["warehouse"] = "ok"
        except sa.exc.SQLAlchemyError as exc:
            checks["warehouse"] = f"unreachable ({type(exc).__name__})"
        checks["queue_depth"] = self.depth
        return current is not None and checks["warehouse"] == "ok", checks

    # ------------------------------------------------------------------------------------------- intake

    def accept(self, delivery: Delivery) -> str:
        """Commit the delivery to the inbox; "accepted", or "duplicate" when it is already there.

        Raises ``QueueFullError`` when ``queue_size`` webhooks wait to be scored (nothing stored).
        """
        if self.depth >= self.triage.queue_size:
            raise QueueFullError(f"{self.depth} webhooks wait to be scored (TICKETLENS_TRIAGE_QUEUE_SIZE="
                                 f"{self.triage.queue_size})")
        row = {"ticket_id": delivery.ticket_id, "event_key": delivery.event_key, "received_at": datetime.now(UTC),
               "ticket_created_at": delivery.created_at, "ticket": delivery.ticket, "status": InboxStatus.QUEUED,
               "attempts": 0}
        with self.engine.begin() as conn:
            stmt = dialect_insert(conn, triage_inbox).values(**row)
            stmt = stmt.on_conflict_do_nothing(index_elements=["ticket_id", "event_key"]).returning(triage_inbox.c.id)
            inserted = conn.execute(stmt).first() is not None  # RETURNING: portable, unlike rowcount
        if inserted:
            self._add_depth(1)
            self.metrics.received.inc()
            self._wake.set()
            return "accepted"
        self.metrics.duplicates.inc()
        return "duplicate"

    # ------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
            except Exception:  # the warehouse or helpdesk failed mid-step: nothing half-done is committed
                log.exception("Triage worker step failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            if not worked:
                self._wake.wait(timeout=0.1)
                self._wake.clear()

    def _poll_model(self) -> None:
        while not self._stop.wait(self.triage.model_poll_seconds):
            try:
                self.models.refresh()
                self._sync_model_metric()
            except Exception:
                log.exception("Champion check failed; the loaded version keeps scoring")

    def step(self) -> bool:
        """One round of work; True when something was done (the loop then goes again at once)."""
        scored = self.score_queued()
        flushed = self.flush()
        return bool(scored or flushed)

    def score_queued(self) -> int:
        """Score up to ``batch_size`` queued inbox rows; returns how many inbox rows were settled."""
        model = self.models.current
        if model is None:
            return 0
        ib = triage_inbox
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ib.c.id, ib.c.ticket_id, ib.c.ticket, ib.c.ticket_created_at, ib.c.attempts)
                                .where(ib.c.status == InboxStatus.QUEUED).order_by(ib.c.id)
                                .limit(self.triage.batch_size)).mappings().all()
        if not rows:
            return 0
        try:
            outcome = self._score_rows(rows, model)
        except Exception as exc:
            self._record_failure(rows, exc)
            raise
        self._add_depth(-len(rows))
        return outcome

    def _fetch(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        from ticketlens.adapters.helpdesk import HelpdeskError

        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 100):
            try:
                records = self.client.show_many(ids[start:start + 100])
            except HelpdeskError as exc:
                raise RuntimeError(f"could not fetch {len(ids)} tickets sent as ids only: {exc}") from None
            for record in records:
                ticket = ticket_from_api(record) if isinstance(record, dict) else None
                if ticket is not None:
                    found[ticket["id"]] = ticket
        return found

    def _score_rows(self, rows, model: LoadedModel) -> int:
        from ticketlens.adapters.warehouse.predictions import write_predictions
        from ticketlens.models.scoring import score_tickets
        from ticketlens.models.taxonomy import load_taxonomy
        from ticketlens.tasks.scoring import language_detector_for
        from ticketlens.tasks.writeback import plan_rows

        s = self.settings
        need = sorted({int(r["ticket_id"]) for r in rows if not r["ticket"]})
        fetched = self._fetch(need) if need else {}
        tickets: dict[int, dict[str, Any]] = {}
        status: dict[int, tuple[str, str | None]] = {}  # inbox id → (status, reason)
        for r in rows:
            ticket = r["ticket"] or fetched.get(int(r["ticket_id"]))
            if ticket is None:
                status[r["id"]] = (InboxStatus.FAILED, "ticket not found in the helpdesk (deleted, or not visible yet)")
                continue
            known = tickets.get(ticket["id"])  # several deliveries of one ticket: score its newest version once
            if known is None or parse_time(ticket["updated_at"]) > parse_time(known["updated_at"]):
                tickets[ticket["id"]] = ticket
        ids = sorted(tickets)
        p = ticket_predictions
        with self.engine.connect() as conn:
            newest = dict(conn.execute(sa.select(p.c.ticket_id, sa.func.max(p.c.ticket_updated_at))
                                       .where(p.c.ticket_id.in_(ids), p.c.is_current.is_(True))
                                       .group_by(p.c.ticket_id)).all()) if ids else {}
        # A newer (or the same) version already has a current prediction — the hourly sweep got there first,
        # e.g. while the service was down: re-scoring an older version would roll its history back.
        stale = {i for i in ids if i in newest and newest[i] >= parse_time(tickets[i]["updated_at"])}
        todo = [tickets[i] for i in ids if i not in stale]
        scored = pd.DataFrame()
        if todo:
            frame = pd.DataFrame({
                "id": [t["id"] for t in todo],
                "updated_at": [pd.Timestamp(parse_time(t["updated_at"])) for t in todo],
                "subject": [t["subject"] for t in todo], "description": [t["description"] for t in todo],
                "tags": [list(t["tags"]) for t in todo]})
            scored = score_tickets(frame, model.classifier, model.sentiment, language_detector_for(s, len(frame)),
                                   load_taxonomy(), s.routing.policy())
            scored["model_name"] = s.model_name
            scored["model_version"] = model.version
            scored["realtime"] = True
        now = datetime.now(UTC)
        ib = triage_inbox
        with self.engine.begin() as conn:
            write_predictions(conn, scored, SERVICE_RUN_ID)
            planned = plan_rows(conn, s, sa.and_(p.c.is_current.is_(True), p.c.ticket_id.in_(ids)), now) \
                if todo else []
            for r in rows:
                state, reason = status.get(r["id"], (InboxStatus.SCORED, None))
                ticket = tickets.get(int(r["ticket_id"]))
                if state == InboxStatus.SCORED and int(r["ticket_id"]) in stale:
                    state, reason = InboxStatus.SKIPPED, "a current prediction of this or a newer version exists"
                created = r["ticket_created_at"] or (parse_time(ticket.get("created_at")) if ticket else None)
                conn.execute(sa.update(ib).where(ib.c.id == r["id"]).values(
                    status=state, last_error=reason, processed_at=now, attempts=ib.c.attempts + 1,
                    model_version=model.version if state == InboxStatus.SCORED else None, ticket_created_at=created,
                    ticket=r["ticket"] or ticket))
        clock = time.monotonic()
        for ticket_id in planned:
            self.pending.setdefault(ticket_id, clock)
        self.metrics.pending_push.set(len(self.pending))
        self.metrics.scored.inc(len(todo))
        for state, _reason in status.values():
            self.metrics.skipped.labels("not_found" if state == InboxStatus.FAILED else state).inc()
        if stale:
            self.metrics.skipped.labels("already_scored").inc(len(stale))
        return len(rows)

    def _record_failure(self, rows, exc: Exception) -> None:
        """Count the attempt; after ``MAX_ATTEMPTS`` the rows are left to the hourly sweep (status failed)."""
        ib = triage_inbox
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
        try:
            with self.engine.begin() as conn:
                for r in rows:
                    gave_up = r["attempts"] + 1 >= MAX_ATTEMPTS
                    conn.execute(sa.update(ib).where(ib.c.id == r["id"], ib.c.status == InboxStatus.QUEUED).values(
                        attempts=ib.c.attempts + 1, last_error=reason,
                        **({"status": InboxStatus.FAILED, "processed_at": datetime.now(UTC)} if gave_up else {})))
                    if gave_up:
                        self._add_depth(-1)
        except sa.exc.SQLAlchemyError:
            log.warning("Could not record the failed scoring attempt (warehouse unavailable)")

    # ------------------------------------------------------------------------------------ write-back

    def flush(self, force: bool = False) -> bool:
        """Push due micro-batches and poll open jobs, under the shared ``writeback`` lock."""
        from ticketlens.tasks.runlock import RunLockBusyError, run_lock
        from ticketlens.tasks.writeback import (
            WRITEBACK_LOCK,  # also held by hourly-pipeline's write-back steps
        )

        clock = time.monotonic()
        due_push = bool(self.pending) and (force or len(self.pending) >= self.triage.batch_size or
                                           clock - min(self.pending.values()) >= self.triage.batch_interval_seconds)
        due_poll = clock - self._last_poll >= self.triage.job_poll_seconds and self._has_open_jobs()
        if not (due_push or due_poll):
            return False
        try:
            with run_lock(self.settings.warehouse_url, WRITEBACK_LOCK, SERVICE_RUN_ID, wait_seconds=0,
                          lease_seconds=60):
                if due_push:
                    self._push()
                if due_push or due_poll:
                    self._poll()
        except RunLockBusyError:
            return False  # the hourly run is writing back: the batch waits (or the sweep pushes it)
        return True

    def _push(self) -> None:
        from ticketlens.tasks.writeback import IN_DOUBT, push_batch

        w = writeback_state
        ids = sorted(self.pending, key=self.pending.get)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(w.c.ticket_id, w.c.desired_tags, w.c.desired_fields, w.c.pushed_tags)
                                .where(w.c.ticket_id.in_(ids), w.c.status == WritebackStatus.PENDING)).mappings().all()
        for ticket_id in ids:  # pushed elsewhere, or still waiting: either way no longer this service's to push
            self.pending.pop(ticket_id, None)
        for start in range(0, len(rows), 100):
            batch = rows[start:start + 100]
            outcome = push_batch(self.engine, self.client, batch, SERVICE_RUN_ID, log)
            self.metrics.batches.inc()
            if outcome == WritebackStatus.SUBMITTED:
                self.metrics.pushed.inc(len(batch))
            elif outcome == WritebackStatus.FAILED:
                self.metrics.push_failed.inc(len(batch))
            self._emit_batch_event(len(batch), outcome)
            if outcome == IN_DOUBT:
                log.warning("Write-back of %d tickets has an unknown outcome; the hourly run reads them back",
                            len(batch))
        self.metrics.pending_push.set(len(self.pending))

    def _has_open_jobs(self) -> bool:
        from ticketlens.tasks.writeback import SETTLED_JOBS

        j = writeback_jobs
        with self.engine.connect() as conn:
            return conn.execute(sa.select(j.c.job_id).where(j.c.run_id == SERVICE_RUN_ID,
                                                            j.c.status.not_in(SETTLED_JOBS)).limit(1)).first() \
                is not None

    def _poll(self) -> None:
        from ticketlens.tasks.writeback import SETTLED_JOBS, check_job

        self._last_poll = time.monotonic()
        j, w, ib = writeback_jobs, writeback_state, triage_inbox
        with self.engine.connect() as conn:
            jobs = conn.execute(sa.select(j.c.job_id, j.c.submitted_at).where(
                j.c.run_id == SERVICE_RUN_ID, j.c.status.not_in(SETTLED_JOBS))).all()
        for job_id, submitted_at in jobs:
            result = check_job(self.settings, self.client, self.engine, job_id, submitted_at, log)
            if result["open"]:
                continue
            self.metrics.confirmed.inc(result["done"])
            self.metrics.push_failed.inc(result["failed"])
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(w.c.ticket_id, w.c.updated_at, sa.func.min(ib.c.ticket_created_at))
                                    .select_from(w.join(ib, ib.c.ticket_id == w.c.ticket_id))
                                    .where(w.c.job_id == job_id, w.c.status == WritebackStatus.DONE)
                                    .group_by(w.c.ticket_id, w.c.updated_at)).all()
            for _tid, tagged_at, created_at in rows:
                if created_at is not None:
                    self.metrics.latency.observe(max(0.0, (tagged_at - created_at).total_seconds()))

    def _emit_batch_event(self, tickets: int, outcome: str) -> None:
        """One Prefect event per flushed micro-batch, so the event feed shows real-time triage beside the flows."""
        try:
            from prefect.events import emit_event

            if not prefect_api_configured():  # no Prefect server configured: emitting would start an ephemeral one
                return
            emit_event(event=f"ticketlens.triage.batch.{outcome}",
                       resource={"prefect.resource.id": "ticketlens.triage-service",
                                 "prefect.resource.name": "triage"},
                       payload={"tickets": tickets, "outcome": outcome,
                                "model_version": self.models.current.version if self.models.current else None})
        except Exception as exc:  # the event feed is informational: never let it stop a write-back
            log.debug("Prefect event not emitted: %s", type(exc).__name__)


def prefect_api_configured() -> bool:
    """Is a Prefect server configured (``PREFECT_API_URL``)? Batch events go to its event feed only then."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())
