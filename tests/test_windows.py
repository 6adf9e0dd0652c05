"""Run windows from the scheduled start time (models.windows) and how flows read it (tasks.runtime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from models.windows import DAY, HOUR, WindowError, run_window, scheduled_window


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_hourly_run_owns_the_clock_hour_before_its_scheduled_start():
    window = scheduled_window(utc(2026, 11, 20, 10, 5), HOUR)
    assert (window.start, window.end, window.source) == (utc(2026, 11, 20, 9), utc(2026, 11, 20, 10), "schedule")


def test_a_late_run_still_owns_its_scheduled_hour_not_the_hour_before_now():
    # Scheduled 10:05, but the worker only picks it up at 13:40: the window depends on the schedule alone.
    late = run_window(utc(2026, 11, 20, 10, 5), HOUR)
    assert (late.start, late.end) == (utc(2026, 11, 20, 9), utc(2026, 11, 20, 10))


def test_scheduled_start_on_the_hour_and_across_midnight():
    assert scheduled_window(utc(2026, 11, 20, 10), HOUR).start == utc(2026, 11, 20, 9)
    first = scheduled_window(utc(2026, 11, 21, 0, 5), HOUR)
    assert (first.start, first.end) == (utc(2026, 11, 20, 23), utc(2026, 11, 21))


def test_nightly_run_owns_the_previous_utc_day():
    window = scheduled_window(utc(2026, 11, 21, 2, 30), DAY)
    assert (window.start, window.end) == (utc(2026, 11, 20), utc(2026, 11, 21))


def test_non_utc_scheduled_start_is_converted_to_utc():
    paris = timezone(timedelta(hours=1))
    window = scheduled_window(datetime(2026, 11, 20, 11, 5, tzinfo=paris), HOUR)  # = 10:05 UTC
    assert window.start == utc(2026, 11, 20, 9) and window.start.tzinfo == UTC


def test_explicit_start_and_end_override_the_schedule():
    window = run_window(utc(2026, 11, 23, 4, 5), HOUR, start=utc(2026, 11, 20, 6), end=utc(2026, 11, 20, 9))
    assert (window.start, window.end, window.source) == (utc(2026, 11, 20, 6), utc(2026, 11, 20, 9), "parameters")


def test_only_start_or_only_end_gives_one_step():
    only_start = run_window(utc(2026, 11, 23), HOUR, start=utc(2026, 11, 20, 6))
    assert (only_start.start, only_start.end) == (utc(2026, 11, 20, 6), utc(2026, 11, 20, 7))
    only_end = run_window(utc(2026, 11, 23), DAY, end=utc(2026, 11, 20))
    assert (only_end.start, only_end.end) == (utc(2026, 11, 19), utc(2026, 11, 20))


def test_naive_parameters_are_taken_as_utc():
    window = run_window(utc(2026, 11, 23), HOUR, start=datetime(2026, 11, 20, 6))
    assert window.start == utc(2026, 11, 20, 6)


def test_an_inverted_window_is_rejected_with_the_fix():
    with pytest.raises(WindowError, match=r"not after start.*pass start < end"):
        run_window(utc(2026, 11, 23), HOUR, start=utc(2026, 11, 20, 9), end=utc(2026, 11, 20, 8))


def test_a_months_long_window_points_to_backfill():
    with pytest.raises(WindowError, match="backfill"):
        run_window(utc(2026, 11, 23), HOUR, start=utc(2026, 1, 1), end=utc(2026, 6, 1))


def test_as_dict_is_iso_utc():
    assert scheduled_window(utc(2026, 11, 20, 10, 5), HOUR).as_dict() == {
        "start": "2026-11-20T09:00:00+00:00", "end": "2026-11-20T10:00:00+00:00", "source": "schedule"}


def test_flow_reads_its_window_from_the_scheduled_start_time(prefect_harness):
    """Under Prefect, the window comes from the flow run's expected start time, not the wall clock."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    from tasks.runtime import hourly_window

    @flow(name="window-probe")
    def probe() -> dict:
        return hourly_window().as_dict()

    scheduled = utc(2026, 11, 20, 10, 5)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(probe, state=Scheduled(scheduled_time=scheduled))
    assert run.expected_start_time == scheduled
    result = run_flow(probe, flow_run=run, return_type="result")
    assert result == {"start": "2026-11-20T09:00:00+00:00", "end": "2026-11-20T10:00:00+00:00",
                      "source": "schedule"}
