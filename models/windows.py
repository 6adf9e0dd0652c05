"""Time windows of scheduled runs: which hour (or day) a run is responsible for.

Pure functions, no Prefect: ``tasks.runtime`` passes in the flow run's scheduled start time. A run processes the
window that *its schedule* gave it, not "the last hour before now", so a run that starts late, is retried, or is
re-run days later processes its own window. Explicit ``start`` / ``end`` (flow parameters) override it.

- hourly: the whole clock hour that ended at or before the scheduled start. A run scheduled at 10:05 (the
  cron gives the helpdesk's incremental export a few minutes to catch up) owns [09:00, 10:00).
- daily: the whole UTC day that ended at or before the scheduled start: a run scheduled at 02:30 on the 21st
  owns [20th 00:00, 21st 00:00).

Everything is UTC and timezone-aware; naive datetimes are taken as UTC. ``as_utc`` is the one place where any
datetime that comes in (a Prefect run's pendulum ``DateTime``, a UI/CLI/API string, a pandas ``Timestamp``, a
Python caller's naive or aware ``datetime``) becomes a plain ``datetime.datetime`` in ``datetime.UTC``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A longer explicit window is almost certainly a typo (a year instead of a day); backfill is the tool for that.
MAX_EXPLICIT_SPAN = timedelta(days=31)


class WindowError(ValueError):
    """An explicit window that cannot be processed; the message says how to fix the parameters."""


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, and where it came from (``schedule`` or ``parameters``). Every flow's window."""

    start: datetime
    end: datetime
    source: str

    def as_dict(self) -> dict[str, str]:
        """JSON-friendly form for flow results and artifacts (ISO 8601, UTC)."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}

    @property
    def slug(self) -> str:
        """Days of the window for file and directory names: ``20260801-20260815``."""
        return f"{self.start:%Y%m%d}-{self.end:%Y%m%d}"

    def describe(self) -> str:
        """Report-title form: ``2026-08-01 00:00 → 2026-08-15 00:00 UTC``."""
        return f"{self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC"

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M}) UTC ({self.source})"


def as_utc(value: Any) -> datetime:
    """Any datetime-like value as a plain ``datetime.datetime`` with ``tzinfo=datetime.UTC``.

    Why a plain ``datetime``: Prefect 3.8 (Python < 3.13) hands flows a pendulum ``DateTime``
    (``prefect.runtime.flow_run.scheduled_start_time``). ``pendulum_dt.astimezone(UTC)`` stays a pendulum
    object whose ``timedelta`` arithmetic comes out *naive*, and pandas infers a different zone from its
    ``Timezone('UTC')`` than ``datetime.UTC`` (``pd.date_range``: "Inferred time zone not equal to passed time
    zone"). Rebuilding a stdlib value from the UTC wall-clock fields removes both traps for everything
    downstream.

    Accepts: ``datetime`` and every subclass (pendulum, pandas ``Timestamp``; nanoseconds are dropped) in any
    zone, naive values (taken as UTC), ``date`` (midnight UTC), ``numpy.datetime64`` and ISO-8601 strings
    (``2026-12-01T10:05:00Z``, ``+01:00`` offsets, no offset = UTC, date only). Anything else, ``NaT`` or an
    unparseable string raises ``WindowError`` saying what was given.
    """
    original = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
        except ValueError:
            raise WindowError(
                f"cannot read {original!r} as a date/time: use ISO 8601 in UTC, e.g. 2026-11-20T09:00:00Z"
            ) from None
    elif type(value).__name__ == "datetime64":  # numpy, without importing it here
        import pandas as pd

        value = pd.Timestamp(value)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime) or type(value).__name__ == "NaTType":
        raise WindowError(f"expected a date/time, got {type(original).__name__} {original!r}")
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond, tzinfo=UTC)


def as_utc_or_none(value: Any) -> datetime | None:
    """``as_utc`` for optional inputs (flow parameters, CLI arguments): ``None`` and ``""`` stay ``None``."""
    return None if value is None or value == "" else as_utc(value)


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
