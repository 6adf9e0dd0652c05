"""Flow run names say what the run did, from the same inputs as its window, for every datetime kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest

from ticketlens.tasks import run_names
from ticketlens.tasks.run_names import (
    backfill_name,
    csat_name,
    hourly_name,
    ingest_name,
    retrain_name,
    spikes_name,
)

# What Prefect's runtime hands a scheduled run (pendulum), and what the CLI, UI and Python callers pass.
SLOTS = [
    pendulum.datetime(2026, 12, 1, 10, 5, tz="UTC"),
    pendulum.datetime(2026, 12, 1, 11, 5, tz="Europe/Paris"),
    datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
    datetime(2026, 12, 1, 10, 5),  # naive = UTC
    datetime(2026, 12, 1, 5, 5, tzinfo=timezone(timedelta(hours=-5))),
]


@pytest.mark.parametrize("slot", SLOTS, ids=lambda s: f"{type(s).__name__}-{s.tzinfo}")
def test_scheduled_runs_are_named_by_their_window(slot):
    assert hourly_name(slot, {}) == "hourly 2026-12-01T09:00Z"
    assert retrain_name(slot, {}) == "retrain 2026-11-30"
    assert csat_name(slot, {}, 90) == "csat 2026-09-02..2026-12-01"
    assert ingest_name(slot, {}) == "ingest 2026-12-01T10:05Z"
    assert spikes_name(slot, {}) == "spikes 2026-12-01T09:00Z"


def test_explicit_parameters_name_the_run_they_asked_for():
    slot = pendulum.datetime(2026, 12, 1, 10, 5, tz="UTC")
    assert hourly_name(slot, {"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T12:00:00Z"}) == \
        "hourly 2026-11-20T09:00Z..2026-11-20T12:00Z (re-run)"
    assert retrain_name(slot, {"end": datetime(2026, 11, 1, tzinfo=UTC)}) == "retrain cutoff 2026-11-01T00:00Z"
    assert csat_name(slot, {"start": "2026-10-01", "end": "2026-11-01"}, 90) == "csat 2026-10-01..2026-11-01"
    assert ingest_name(slot, {"start_time": "2026-11-20T00:00:00+00:00"}) == "ingest from 2026-11-20T00:00Z"
    assert spikes_name(slot, {"as_of": pendulum.datetime(2026, 12, 1, 7, 0, tz="UTC")}) == "spikes 2026-12-01T06:00Z"
    assert backfill_name(slot, {}) == "backfill all @champion"
    assert backfill_name(slot, {"start": "2026-08-01T00:00:00Z", "end": "2026-09-01T00:00:00Z",
                                "model_version": "7"}) == "backfill 2026-08-01..2026-09-01 v7"


def test_a_bad_parameter_never_fails_the_run_through_its_name(monkeypatch):
    slot = pendulum.datetime(2026, 12, 1, 10, 5, tz="UTC")
    monkeypatch.setattr(run_names, "_runtime", lambda: (slot, {"start": "not a date"}))
    assert run_names.hourly_run_name() == "hourly 2026-12-01T10:05Z"
    # An inverted window is the flow's to refuse (with the fix); the name falls back.
    monkeypatch.setattr(run_names, "_runtime", lambda: (slot, {"start": "2026-12-02T00:00Z", "end": "2026-12-01"}))
    assert run_names.hourly_run_name() == "hourly 2026-12-01T10:05Z"
    monkeypatch.setattr(run_names, "_runtime", lambda: (slot, {}))
    assert run_names.hourly_run_name() == "hourly 2026-12-01T09:00Z"
