"""The backfill's chunk loop overlaps I/O with the model but must still write every chunk once, in order,
and surface a failed write (so the partition is not marked done)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

import ticketlens.tasks.scoring as scoring


def _fetch(ids: list[int], size: int):
    def fetch(conn, after_id: int) -> pd.DataFrame:
        assert isinstance(conn, sa.Connection)
        chunk = [i for i in ids if i > after_id][:size]
        return pd.DataFrame({"id": chunk})
    return fetch


def test_every_chunk_is_scored_and_written_once_in_order(sqlite_url, monkeypatch):
    written: list[list[int]] = []
    threads: set[str] = set()

    def fake_write(conn, scored, run_id):
        threads.add(threading.current_thread().name)
        written.append(list(scored["id"]))
        return len(scored)

    monkeypatch.setattr(scoring, "write_predictions", fake_write)
    engine = sa.create_engine(sqlite_url)
    ids = list(range(1, 24))
    total = scoring.rescore_in_chunks(engine, _fetch(ids, 5), lambda frame: frame.copy(), "run")
    assert total == 23
    assert written == [ids[i:i + 5] for i in range(0, 23, 5)]
    assert all(name.startswith("rescore-io") for name in threads)  # writes happen off the scoring thread


def test_a_failed_write_is_raised_not_swallowed(sqlite_url, monkeypatch):
    calls = []

    def failing_write(conn, scored, run_id):
        calls.append(len(scored))
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return len(scored)

    monkeypatch.setattr(scoring, "write_predictions", failing_write)
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        scoring.rescore_in_chunks(engine, _fetch(list(range(1, 30)), 5), lambda frame: frame, "run")
    assert len(calls) <= 3  # it stops at the failure instead of scoring the rest of the partition


def test_an_empty_partition_writes_nothing(sqlite_url, monkeypatch):
    monkeypatch.setattr(scoring, "write_predictions", lambda *a: pytest.fail("nothing to write"))
    engine = sa.create_engine(sqlite_url)
    assert scoring.rescore_in_chunks(engine, _fetch([], 5), lambda frame: frame, "run") == 0
