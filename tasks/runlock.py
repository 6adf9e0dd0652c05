"""Warehouse run locks: a second run of the same flow waits for the first, or exits cleanly.

Prefect deployment concurrency (``prefect.yaml``) stops a scheduler from starting two runs of one deployment,
but not a person running the flow from a shell, a second deployment, or a retried run. This lock lives in the
warehouse the runs write to, so it holds whatever started them.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a dedicated connection, keyed by schema and
  lock name. The server releases it the moment that connection dies, so a killed run never blocks the next one.
- SQLite (and PostgreSQL, for visibility): a ``run_locks`` row with the owner (host:pid:run id) and a lease that
  a heartbeat thread renews. A row whose lease expired, or whose owner is a dead process on this host, is taken
  over atomically (compare-and-swap on the owner), so kill -9 does not leave a stuck lock either.

Every statement uses bound parameters.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import dialect_insert
from ticketlens.adapters.warehouse.schema import run_locks

log = logging.getLogger(__name__)


class RunLockBusyError(RuntimeError):
    """Another run holds the lock and did not release it within the wait."""


@dataclass
class RunLock:
    name: str
    owner: str
    acquired_at: datetime


def owner_id(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"[:255]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed but not yet reaped child is a zombie: it holds nothing any more
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not _process_alive(int(pid_text))


def _try_row(conn: sa.Connection, name: str, owner: str, now: datetime, lease: timedelta) -> str | None:
    """Take the row lock if free, expired or held by a dead process; return the current holder otherwise."""
    stmt = dialect_insert(conn, run_locks).values(name=name, owner=owner, acquired_at=now, expires_at=now + lease)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "acquired_at": now, "expires_at": now + lease},
        where=run_locks.c.expires_at < now,
    )
    conn.execute(stmt)
    holder = conn.execute(sa.select(run_locks.c.owner).where(run_locks.c.name == name)).scalar_one()
    if holder == owner:
        return None
    if owner_is_dead(holder):
        taken = conn.execute(sa.update(run_locks).where(run_locks.c.name == name, run_locks.c.owner == holder)
                             .values(owner=owner, acquired_at=now, expires_at=now + lease))
        if taken.rowcount == 1:
            log.warning("Run lock %r was held by %s, which is no longer running; taken over.", name, holder)
            return None
    return holder


def _pg_key_sql() -> sa.TextClause:
    # 64-bit key from the schema and the lock name, so schemas sharing a database do not block each other.
    return sa.text("SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ':' || :name, 0))")


@contextmanager
def run_lock(warehouse_url: str, name: str, run_id: str, *, wait_seconds: float = 0.0,
             lease_seconds: float = 300.0, poll_seconds: float = 0.5) -> Iterator[RunLock]:
    """Hold the lock ``name`` for the duration of the block, or raise ``RunLockBusyError`` after waiting."""
    engine = get_engine(warehouse_url)
    owner = owner_id(run_id)
    lease = timedelta(seconds=lease_seconds)
    deadline = time.monotonic() + max(0.0, wait_seconds)
    pg_conn = None
    try:
        while True:
            now = datetime.now(UTC)
            holder = None
            if engine.dialect.name == "postgresql":
                if pg_conn is None:
                    pg_conn = engine.connect()
                got = pg_conn.execute(_pg_key_sql(), {"name": name}).scalar_one()
                pg_conn.commit()
                if got:
                    with engine.begin() as conn:  # informational row: who holds it, since when
                        stmt = dialect_insert(conn, run_locks).values(name=name, owner=owner, acquired_at=now,
                                                                      expires_at=now + lease)
                        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={
                            "owner": owner, "acquired_at": now, "expires_at": now + lease}))
                else:
                    with engine.connect() as conn:
                        holder = conn.execute(sa.select(run_locks.c.owner).where(run_locks.c.name == name)
                                              ).scalar_one_or_none() or "another session"
            else:
                with engine.begin() as conn:
                    holder = _try_row(conn, name, owner, now, lease)
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise RunLockBusyError(
                    f"another '{name}' run ({holder}) holds the warehouse run lock; waited {wait_seconds:g} s "
                    f"(TICKETLENS_RUN_LOCK_WAIT_SECONDS)"
                )
            time.sleep(poll_seconds)
        lock = RunLock(name, owner, now)
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(engine, name, owner, lease, stop),
                                name=f"run-lock-{name}", daemon=True)
        beat.start()
        try:
            yield lock
        finally:
            stop.set()
            beat.join(timeout=5)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.delete(run_locks).where(run_locks.c.name == name, run_locks.c.owner == owner))
                if pg_conn is not None:
                    pg_conn.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(current_schema() || ':' "
                                            "|| :name, 0))"), {"name": name})
                    pg_conn.commit()
            except sa.exc.SQLAlchemyError as exc:  # the database went away: its session lock went with it
                log.warning("Could not release run lock %r (%s); it expires or is taken over.", name,
                            type(exc).__name__)
    finally:
        if pg_conn is not None:
            pg_conn.close()


def _heartbeat(engine: sa.Engine, name: str, owner: str, lease: timedelta, stop: threading.Event) -> None:
    interval = max(0.5, lease.total_seconds() / 3)
    while not stop.wait(interval):
        try:
            with engine.begin() as conn:
                renewed = conn.execute(sa.update(run_locks).where(run_locks.c.name == name,
                                                                  run_locks.c.owner == owner)
                                       .values(expires_at=datetime.now(UTC) + lease)).rowcount
            if not renewed:
                log.warning("Run lock %r is no longer held by this run (lease expired and taken over).", name)
        except sa.exc.SQLAlchemyError as exc:  # the run itself will notice the database; keep trying
            log.warning("Could not renew run lock %r: %s", name, type(exc).__name__)


@dataclass(frozen=True)
class LockOutcome:
    """What ``flow_lock`` yields: truthy when this run holds the lock; ``reason`` says who has it otherwise."""

    held: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.held


@contextmanager
def flow_lock(settings, name: str, run_id: str) -> Iterator[LockOutcome]:
    """``with flow_lock(settings, "ingest", run_id) as held:`` — held is falsy when another run has it.

    The busy case is logged once, clearly, and the flow returns without doing anything, nothing done twice; it
    ends in the ``Skipped`` state (``tasks.runstate.skipped_state`` with ``held.reason``), not ``Completed``.
    Set TICKETLENS_RUN_LOCK_WAIT_SECONDS to wait for the other run instead.
    """
    from prefect import get_run_logger

    from ticketlens.adapters.warehouse.engine import migrate, warehouse_errors

    # A lost warehouse connection anywhere in the run becomes one clear error naming the warehouse.
    with warehouse_errors(settings.warehouse_url, f"the {name} run"):
        migrate(settings.warehouse_url)  # the run_locks table must exist (a no-op when the schema is current)
        stack = ExitStack()
        try:
            stack.enter_context(run_lock(settings.warehouse_url, name, run_id,
                                         wait_seconds=settings.run_lock_wait_seconds,
                                         lease_seconds=settings.run_lock_lease_seconds))
        except RunLockBusyError as exc:
            get_run_logger().warning("Skipping this %s run: %s.", name, exc)
            yield LockOutcome(False, str(exc))
            return
        with stack:
            yield LockOutcome(True)
