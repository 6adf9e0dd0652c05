"""Time windows of scheduled runs: which hour (or day) a run is responsible for.

Pure functions, no Prefect: ``tasks.runtime`` passes in the flow run's scheduled start time. A run processes the
window that *its schedule* gave it, not "the last hour before now", so a run that starts late, is retried, or is
re-run days later processes its own window. Explicit ``start`` / ``end`` (flow parameters) override it.

- hourly: the whole clock hour that ended at or before the scheduled start. A run scheduled at 10:05 (the
  cron gives the helpdesk's incremental export a few minutes to catch up) owns [09:00, 10:00).
- daily: the whole UTC day that ended at or before the scheduled start: a run scheduled at 02:30 on the 21st
  owns [20th 00:00, 21st 00:00).

Everything is UTC and timezone-aware; naive datetimes are taken as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A longer explicit window is almost certainly a typo (a year instead of a day); backfill is the tool for that.
MAX_EXPLICIT_SPAN = timedelta(days=31)


class WindowError(ValueError):
    """An explicit window that cannot be processed; the message says how to fix the parameters."""


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, and where it came from (``schedule`` or ``parameters``)."""

    start: datetime
    end: datetime
    source: str

    def as_dict(self) -> dict[str, str]:
        """JSON-friendly form for flow results and artifacts (ISO 8601, UTC)."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M}) UTC ({self.source})"


def as_utc(value: datetime) -> datetime:
    """Timezone-aware UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor_to(value: datetime, step: timedelta) -> datetime:
    """The last multiple of ``step`` (an hour or a day) at or before ``value``, in UTC."""
    value = as_utc(value)
    if step == HOUR:
        return value.replace(minute=0, second=0, microsecond=0)
    if step == DAY:
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unsupported window step {step}; use an hour or a day")


def scheduled_window(scheduled_start: datetime, step: timedelta) -> Window:
    """The whole ``step`` (hour or day) that ended at or before the scheduled start."""
    end = floor_to(scheduled_start, step)
    return Window(end - step, end, "schedule")


def run_window(scheduled_start: datetime, step: timedelta, start: datetime | None = None,
               end: datetime | None = None) -> Window:
    """The window a run processes: explicit ``start``/``end`` win over the scheduled start time.

    Only ``start`` → one ``step`` from it; only ``end`` → the ``step`` before it; both → exactly [start, end).
    """
    if start is None and end is None:
        return scheduled_window(scheduled_start, step)
    start = as_utc(start) if start is not None else as_utc(end) - step
    end = as_utc(end) if end is not None else start + step
    if end <= start:
        raise WindowError(
            f"window end {end.isoformat()} is not after start {start.isoformat()}: pass start < end (UTC), "
            f"e.g. start=2026-11-20T09:00:00Z end=2026-11-20T10:00:00Z"
        )
    if end - start > MAX_EXPLICIT_SPAN:
        raise WindowError(
            f"window {start.isoformat()} → {end.isoformat()} spans {(end - start).days} days (more than "
            f"{MAX_EXPLICIT_SPAN.days}): re-run it in smaller windows, or re-score history with the backfill flow"
        )
    return Window(start, end, "parameters")
