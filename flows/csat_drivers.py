"""``csat-drivers`` flow: what drives bad CSAT ratings, why customers say so, and two support-ops reports.

```
prepare-warehouse → load-rated-tickets, load-window-tickets, load-agent-and-team-names
  → analyse-csat-drivers (segment bad-rates with shrinkage, logistic regression, FDR, weekly trends)
  → classify-bad-rating-reasons → build-ops-reports (self-selection, auto-reply candidates)
  → write-csat-reports (warehouse) → draw-csat-charts (PNG) → publish-csat-artifacts
```

Charts and artifact text are built by ``models.reporting.csat`` after the warehouse write has committed. A
completed run returns a ``CsatDriversResult``.

The window defaults to the ``TICKETLENS_CSAT_WINDOW_DAYS`` days before the run's scheduled start; pass
``start``/``end`` (UTC) to analyse any period. Re-running a period replaces its report rows.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

import pandas as pd
from prefect import flow
from prefect.runtime import flow_run

from ticketlens.adapters.settings import get_settings
from ticketlens.models.reporting.csat import driver_lines
from ticketlens.models.windows import as_utc
from ticketlens.tasks.csat import (
    Window,
    analyse_csat_drivers,
    build_ops_reports,
    classify_bad_rating_reasons,
    draw_csat_charts,
    load_names,
    load_rated_tickets,
    load_window_tickets,
    publish_csat_artifacts,
    resolve_window,
    write_csat_reports,
)
from ticketlens.tasks.run_names import csat_run_name
from ticketlens.tasks.runlock import flow_lock
from ticketlens.tasks.runstate import skipped_state
from ticketlens.tasks.warehouse import prepare_warehouse


@dataclass
class CsatDriversResult:
    """What a completed ``csat-drivers`` run returns (a run skipped for the run lock returns
    ``{"skipped": True, "window": {"start", "end"}}`` in its Skipped state instead)."""

    window: Window
    ratings: int
    bad: int
    drivers: pd.DataFrame  # significant worse-than-average effects, most excess bad ratings first
    driver_lines: list[str]  # the top drivers as printed (``models.reporting.csat.driver_lines``)
    reasons: pd.DataFrame  # bad-rating comments per reason theme, all ratings
    self_selection: pd.DataFrame  # per contact-reason option
    auto_reply_candidates: pd.DataFrame  # every category judged for auto-reply
    written: dict[str, int]  # report table → rows written for the window
    charts: list[str]  # PNG paths on the worker
    artifacts: list[str]  # Prefect artifact keys


@flow(name="csat-drivers", log_prints=True, flow_run_name=csat_run_name)
def csat_drivers(start: datetime | None = None, end: datetime | None = None) -> CsatDriversResult:
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    window = resolve_window(start, end, flow_run.scheduled_start_time, settings.csat.window_days)
    prepare_warehouse(settings.warehouse_url)
    with flow_lock(settings, "csat-drivers", run_id) as held:
        if not held:
            return skipped_state("csat-drivers", held.reason,
                                 {"skipped": True, "window": {"start": window.start, "end": window.end}})
        return _analyse(settings, run_id, window)


def _analyse(settings, run_id: str, window: Window) -> CsatDriversResult:
    rated = load_rated_tickets(settings.warehouse_url, window)
    window_tickets = load_window_tickets(settings.warehouse_url, window)
    names = load_names(settings.warehouse_url)
    analysis = analyse_csat_drivers(settings, rated, names)
    reasons = classify_bad_rating_reasons(settings, analysis.frame, analysis.report)
    ops = build_ops_reports(settings, window_tickets, analysis.frame)
    written = write_csat_reports(settings.warehouse_url, window, run_id, analysis, reasons, ops)
    charts = draw_csat_charts(settings, window, analysis, reasons, ops)
    artifacts = publish_csat_artifacts(settings, window, analysis, reasons, ops, charts)
    report = analysis.report
    lines = driver_lines(report, settings.csat.top_drivers)
    print(f"CSAT {window.describe()}: {report.ratings} ratings, {report.bad} bad; "
          f"{len(report.drivers)} drivers at FDR {settings.csat.fdr}")
    for line in lines:
        print("  " + line)
    return CsatDriversResult(window, report.ratings, report.bad, report.drivers, lines,
                             reasons=reasons.summaries["all"], self_selection=ops.options,
                             auto_reply_candidates=ops.candidates, written=written, charts=charts,
                             artifacts=artifacts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the csat-drivers flow once.")
    parser.add_argument("--start", type=as_utc, help="window start (UTC, ISO 8601)")
    parser.add_argument("--end", type=as_utc, help="window end (UTC, ISO 8601); default now")
    args = parser.parse_args(argv)
    csat_drivers(start=args.start, end=args.end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
