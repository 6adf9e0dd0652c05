"""Warehouse run locks on SQLite and PostgreSQL: one holder, a clear busy error, no stuck lock after kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import run_locks
from ticketlens.tasks.runlock import RunLockBusyError, owner_is_dead, run_lock

ROOT = Path(__file__).resolve().parents[2]


def holders(url: str) -> dict[str, str]:
    with get_engine(url).connect() as conn:
        return dict(conn.execute(sa.select(run_locks.c.name, run_locks.c.owner)).all())


def test_second_holder_is_refused_with_the_owner_named(warehouse_url):
    with run_lock(warehouse_url, "ingest", "run-a") as lock:
        assert holders(warehouse_url) == {"ingest": lock.owner}
        started = time.monotonic()
        with pytest.raises(RunLockBusyError, match=r"another 'ingest' run .*run-a.*TICKETLENS_RUN_LOCK_WAIT"):
            with run_lock(warehouse_url, "ingest", "run-b", wait_seconds=0.6, poll_seconds=0.1):
                pytest.fail("a second holder must not get the lock")
        assert time.monotonic() - started >= 0.6  # it waited before giving up
        with run_lock(warehouse_url, "backfill", "run-c") as other:  # other names are independent
            assert holders(warehouse_url) == {"ingest": lock.owner, "backfill": other.owner}
    assert holders(warehouse_url) == {}  # released
    with run_lock(warehouse_url, "ingest", "run-b") as again:  # free again once released
        assert holders(warehouse_url) == {"ingest": again.owner}


def test_an_expired_lease_is_taken_over(warehouse_url):
    past = datetime.now(UTC) - timedelta(minutes=1)
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.insert(run_locks).values(name="ingest", owner="other-host:1:old", acquired_at=past,
                                                 expires_at=past))
    with run_lock(warehouse_url, "ingest", "new") as lock:
        assert holders(warehouse_url)["ingest"] == lock.owner


def test_a_kill_9_holder_does_not_block_the_next_run(warehouse_url, tmp_path):
    """A process holding the lock is SIGKILLed: the next run gets the lock at once (dead pid / closed session)."""
    code = (
        "import sys, time\n"
        "from tasks.runlock import run_lock\n"
        f"with run_lock({warehouse_url!r}, 'ingest', 'victim', lease_seconds=3600):\n"
        "    print('HELD', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=(tmp_path / "err.log").open("w"), text=True)
    try:
        assert proc.stdout.readline().strip() == "HELD", (tmp_path / "err.log").read_text()
        with pytest.raises(RunLockBusyError, match="victim"):
            with run_lock(warehouse_url, "ingest", "me"):
                pytest.fail("the lock is held by the live subprocess")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert owner_is_dead(holders(warehouse_url)["ingest"])
    with run_lock(warehouse_url, "ingest", "me", wait_seconds=5, poll_seconds=0.1) as lock:
        assert holders(warehouse_url)["ingest"] == lock.owner
