"""What the running flow knows about its own schedule: the window it is responsible for.

The only Prefect-dependent part is reading ``prefect.runtime.flow_run.scheduled_start_time`` (the run's
expected start: the cron slot for a scheduled run, the creation time for an ad-hoc one, unchanged on retries);
the arithmetic is ``models.windows``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ticketlens.models.windows import DAY, HOUR, Window, as_utc, run_window


def scheduled_start() -> datetime:
    """The current flow run's scheduled start time in UTC (now when called outside a flow run)."""
    from prefect.runtime import flow_run

    return as_utc(flow_run.scheduled_start_time)


def current_window(step: timedelta, start: datetime | None = None, end: datetime | None = None) -> Window:
    return run_window(scheduled_start(), step, start, end)


def hourly_window(start: datetime | None = None, end: datetime | None = None) -> Window:
    """The clock hour this hourly run owns (see ``models.windows``); explicit start/end override it."""
    return current_window(HOUR, start, end)


def daily_window(start: datetime | None = None, end: datetime | None = None) -> Window:
    """The UTC day this nightly run owns; explicit start/end override it."""
    return current_window(DAY, start, end)
