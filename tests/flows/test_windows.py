"""Run windows from the scheduled start time (models.windows) and how flows read it (tasks.runtime)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ticketlens.models.windows import (
    DAY,
    HOUR,
    Window,
    WindowError,
    as_utc,
    as_utc_or_none,
    run_window,
    scheduled_window,
)


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

    from ticketlens.tasks.runtime import hourly_window

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


# ------------------------------------------------------------------ as_utc: every datetime kind that comes in

def _prefect_runtime_start(iso: str):
    """The object ``prefect.runtime.flow_run.scheduled_start_time`` returns: a flow run read from the API."""
    from prefect.client.schemas.objects import FlowRun

    return FlowRun.model_validate({"flow_id": "00000000-0000-0000-0000-000000000000",
                                   "expected_start_time": iso}).expected_start_time


def _kinds():
    from zoneinfo import ZoneInfo

    import numpy as np
    import pandas as pd
    import pendulum

    want = utc(2026, 12, 1, 10, 5)
    return [
        ("prefect-runtime-pendulum", lambda: _prefect_runtime_start("2026-12-01T10:05:00+00:00"), want),
        ("prefect-runtime-pendulum-offset", lambda: _prefect_runtime_start("2026-12-01T11:05:00+01:00"), want),
        ("pendulum-utc", lambda: pendulum.datetime(2026, 12, 1, 10, 5, tz="UTC"), want),
        ("pendulum-new-york", lambda: pendulum.datetime(2026, 12, 1, 5, 5, tz="America/New_York"), want),
        ("aware-utc", lambda: utc(2026, 12, 1, 10, 5), want),
        ("aware-zoneinfo", lambda: datetime(2026, 12, 1, 19, 5, tzinfo=ZoneInfo("Asia/Tokyo")), want),
        ("aware-fixed-offset", lambda: datetime(2026, 12, 1, 8, 35, tzinfo=timezone(timedelta(hours=-1, minutes=-30))),
         want),
        ("naive-as-utc", lambda: datetime(2026, 12, 1, 10, 5), want),
        ("iso-z", lambda: "2026-12-01T10:05:00Z", want),
        ("iso-offset", lambda: "2026-12-01T12:05:00+02:00", want),
        ("iso-no-offset", lambda: "2026-12-01T10:05:00", want),
        ("iso-space-and-micro", lambda: " 2026-12-01 10:05:00.000000+00:00 ", want),
        ("iso-date-only", lambda: "2026-12-01", utc(2026, 12, 1)),
        ("date", lambda: date(2026, 12, 1), utc(2026, 12, 1)),
        ("pandas-aware", lambda: pd.Timestamp("2026-12-01 11:05", tz="Europe/Paris"), want),
        ("pandas-naive", lambda: pd.Timestamp("2026-12-01 10:05"), want),
        ("pandas-nanoseconds", lambda: pd.Timestamp("2026-12-01T10:05:00.000000999Z"), want),
        ("numpy-datetime64", lambda: np.datetime64("2026-12-01T10:05"), want),
    ]


@pytest.mark.parametrize(("make", "expected"), [(m, e) for _, m, e in _kinds()], ids=[k for k, _, _ in _kinds()])
def test_as_utc_returns_a_plain_aware_utc_datetime_for_every_kind(make, expected):
    import pandas as pd


    value = as_utc(make())
    assert type(value) is datetime and value.tzinfo is UTC and value == expected
    # What broke scheduled runs: arithmetic came out naive and pandas inferred another zone.
    earlier = value - timedelta(days=90)
    assert earlier.tzinfo is UTC and earlier < value
    assert len(pd.date_range(value - 3 * HOUR, value, freq="h", inclusive="left", tz=UTC)) == 3
    assert as_utc(value) == value


@pytest.mark.parametrize("kind", ["prefect-runtime-pendulum", "pandas-aware", "iso-z", "naive-as-utc"])
def test_windows_from_any_kind_are_plain_utc(kind):
    make = next(m for k, m, _ in _kinds() if k == kind)
    window = run_window(make(), HOUR)
    assert type(window.start) is datetime and type(window.end) is datetime
    assert window.start.tzinfo is UTC and window.end - window.start == HOUR
    explicit = run_window(utc(2026, 12, 2), HOUR, start=make())
    assert type(explicit.start) is datetime and explicit.end.tzinfo is UTC


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-01T00:00:00Z", None, 1764583500, "NaT"])
def test_as_utc_rejects_what_is_not_a_date_time_with_a_clear_error(bad):

    with pytest.raises(WindowError, match=r"date/time"):
        as_utc(bad)


def test_as_utc_rejects_pandas_nat():
    import pandas as pd


    with pytest.raises(WindowError, match="date/time"):
        as_utc(pd.NaT)


def test_csat_window_from_the_prefect_runtime_start_is_aware():
    from ticketlens.tasks.csat import resolve_window

    window = resolve_window(None, None, _prefect_runtime_start("2026-12-01T02:30:00+00:00"), 90)
    assert (window.start, window.end) == (utc(2026, 9, 2, 2, 30), utc(2026, 12, 1, 2, 30))
    assert type(window.start) is datetime and window.start.tzinfo is UTC
    assert isinstance(window, Window) and window.source == "schedule"  # the one Window type, for every flow
    assert window.slug == "20260902-20261201"
    assert window.describe() == "2026-09-02 02:30 → 2026-12-01 02:30 UTC"
    assert resolve_window("2026-08-01", None, None, 90).source == "parameters"


@pytest.mark.parametrize("empty", [None, ""])
def test_optional_parameters_stay_none_and_the_rest_is_as_utc(empty):
    assert as_utc_or_none(empty) is None
    assert as_utc_or_none("2026-11-20T09:00:00+01:00") == as_utc("2026-11-20T08:00Z") == utc(2026, 11, 20, 8)
    with pytest.raises(WindowError):
        as_utc_or_none("yesterday")


def test_spike_counts_accept_the_prefect_runtime_start():
    import pandas as pd

    from ticketlens.models.spikes import hourly_counts

    end = _prefect_runtime_start("2026-12-01T10:00:00+00:00")
    counts = hourly_counts(pd.DataFrame({"created_at": [utc(2026, 12, 1, 9, 30)], "category": ["a.b"]}),
                           end - timedelta(hours=3), end, {"a.b": "a"})
    assert list(counts["a.b"]) == [0, 0, 1]
