"""Flow run names that say what the run did: ``hourly 2026-12-01T09:00Z``, ``retrain 2026-12-01``.

Prefect's default run names are random words; an operator scanning the runs page wants to see which hour or day
each run owned. Each flow passes one of the zero-argument callables below as ``flow_run_name=`` (Prefect calls
it when the run starts, inside the run's context). The name is computed from the same inputs as the run's window
(the scheduled start time and the explicit parameters) by the pure ``*_name`` functions, which tests call
directly. Naming must never fail a run: any problem (e.g. a parameter the flow itself will reject with a clear
message) falls back to ``<flow> <scheduled start>``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ticketlens.models.windows import DAY, HOUR, as_utc_or_none, run_window

STAMP = "%Y-%m-%dT%H:%MZ"


def hourly_name(scheduled: datetime, params: dict[str, Any]) -> str:
    window = run_window(as_utc_or_none(scheduled), HOUR, as_utc_or_none(params.get("start")), as_utc_or_none(params.get("end")))
    if window.source == "schedule":
        return f"hourly {window.start:{STAMP}}"
    return f"hourly {window.start:{STAMP}}..{window.end:{STAMP}} (re-run)"


def retrain_name(scheduled: datetime, params: dict[str, Any]) -> str:
    end = as_utc_or_none(params.get("end"))
    if end is not None:
        return f"retrain cutoff {end:{STAMP}}"
    window = run_window(as_utc_or_none(scheduled), DAY)
    return f"retrain {window.start:%Y-%m-%d}"


def csat_name(scheduled: datetime, params: dict[str, Any], window_days: int) -> str:
    end = as_utc_or_none(params.get("end")) or as_utc_or_none(scheduled)
    start = as_utc_or_none(params.get("start")) or end - timedelta(days=window_days)
    return f"csat {start:%Y-%m-%d}..{end:%Y-%m-%d}"


def ingest_name(scheduled: datetime, params: dict[str, Any]) -> str:
    start = as_utc_or_none(params.get("start_time"))
    return f"ingest from {start:{STAMP}}" if start is not None else f"ingest {as_utc_or_none(scheduled):{STAMP}}"


def spikes_name(scheduled: datetime, params: dict[str, Any]) -> str:
    as_of = as_utc_or_none(params.get("as_of")) or as_utc_or_none(scheduled)
    hour_end = as_of.replace(minute=0, second=0, microsecond=0)
    return f"spikes {hour_end - HOUR:{STAMP}}"


def backfill_name(scheduled: datetime, params: dict[str, Any]) -> str:
    start, end = as_utc_or_none(params.get("start")), as_utc_or_none(params.get("end"))
    span = "all" if start is None and end is None else \
        f"{f'{start:%Y-%m-%d}' if start else '…'}..{f'{end:%Y-%m-%d}' if end else '…'}"
    model = f"v{params['model_version']}" if params.get("model_version") else f"@{params.get('model_alias') or 'champion'}"
    return f"backfill {span} {model}"


def _runtime() -> tuple[datetime, dict[str, Any]]:
    from prefect.runtime import flow_run

    return flow_run.scheduled_start_time, dict(flow_run.parameters or {})


def _named(prefix: str, build: Callable[[datetime, dict[str, Any]], str]) -> Callable[[], str]:
    def name() -> str:
        scheduled, params = None, {}
        try:
            scheduled, params = _runtime()
            return build(scheduled, params)
        except Exception:  # the flow reports a bad parameter itself; the name must not fail the run
            when = as_utc_or_none(scheduled) if isinstance(scheduled, datetime) else datetime.now(UTC)
            return f"{prefix} {when:{STAMP}}"

    name.__name__ = f"{prefix}_run_name"
    return name


def _csat(scheduled: datetime, params: dict[str, Any]) -> str:
    from ticketlens.adapters.settings import get_settings

    return csat_name(scheduled, params, get_settings().csat.window_days)


hourly_run_name = _named("hourly", hourly_name)
retrain_run_name = _named("retrain", retrain_name)
csat_run_name = _named("csat", _csat)
ingest_run_name = _named("ingest", ingest_name)
spikes_run_name = _named("spikes", spikes_name)
backfill_run_name = _named("backfill", backfill_name)
