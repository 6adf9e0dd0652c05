"""``csat-drivers`` flow: what drives bad CSAT ratings, why customers say so, and two support-ops reports.

```
prepare-warehouse → load-rated-tickets, load-window-tickets, load-agent-and-team-names
  → analyse-csat-drivers (segment bad-rates with shrinkage, logistic regression, FDR, weekly trends)
  → classify-bad-rating-reasons → build-ops-reports (self-selection, auto-reply candidates)
  → write-csat-reports (warehouse) → draw-csat-charts (PNG) → publish-csat-artifacts
```

The window defaults to the ``TICKETLENS_CSAT_WINDOW_DAYS`` days before the run's scheduled start; pass
``start``/``end`` (UTC) to analyse any period. Re-running a period replaces its report rows.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from uuid import uuid4

from prefect import flow
from prefect.runtime import flow_run

from ticketlens.adapters.settings import get_settings
from ticketlens.models.windows import as_utc
from ticketlens.tasks.csat import (
    analyse_csat_drivers,
    build_ops_reports,
    classify_bad_rating_reasons,
    draw_csat_charts,
    driver_lines,
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


@flow(name="csat-drivers", log_prints=True, flow_run_name=csat_run_name)
def csat_drivers(start: datetime | None = None, end: datetime | None = None) -> dict:
    settings = get_settings()
    run_id = str(flow_run.id or uuid4())
    window = resolve_window(start, end, flow_run.scheduled_start_time, settings.csat.window_days)
    prepare_warehouse(settings.warehouse_url)
    with flow_lock(settings, "csat-drivers", run_id) as held:
        if not held:
            return skipped_state("csat-drivers", held.reason,
                                 {"skipped": True, "window": {"start": window.start, "end": window.end}})
        return _analyse(settings, run_id, window)


def _analyse(settings, run_id: str, window) -> dict:
    rated = load_rated_tickets(settings.warehouse_url, window)
    window_tickets = load_window_tickets(settings.warehouse_url, window)
    names = load_names(settings.warehouse_url)
    analysis = analyse_csat_drivers(settings, rated, names)
    reasons = classify_bad_rating_reasons(settings, analysis["frame"], analysis["report"])
    ops = build_ops_reports(settings, window_tickets, analysis["frame"])
    written = write_csat_reports(settings.warehouse_url, window, run_id, analysis, reasons, ops)
    charts = draw_csat_charts(settings, window, analysis, reasons, ops)
    artifacts = publish_csat_artifacts(settings, window, analysis, reasons, ops, charts)
    report = analysis["report"]
    lines = driver_lines(report, settings.csat.top_drivers)
    print(f"CSAT {window.describe()}: {report.ratings} ratings, {report.bad} bad; "
          f"{len(report.drivers)} drivers at FDR {settings.csat.fdr}")
    for line in lines:
        print("  " + line)
    return {"window": {"start": window.start, "end": window.end}, "ratings": report.ratings, "bad": report.bad,
            "drivers": report.drivers, "driver_lines": lines, "reasons": reasons["summaries"]["all"],
            "self_selection": ops["options"], "auto_reply_candidates": ops["candidates"], "written": written,
            "charts": charts, "artifacts": artifacts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the csat-drivers flow once.")
    parser.add_argument("--start", type=as_utc, help="window start (UTC, ISO 8601)")
    parser.add_argument("--end", type=as_utc, help="window end (UTC, ISO 8601); default now")
    args = parser.parse_args(argv)
    csat_drivers(start=args.start, end=args.end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
