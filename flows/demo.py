"""``make demo``: run the main job on the embedded defaults against a local helpdesk simulator.

Starts the Zendesk-compatible simulator on 127.0.0.1:8765 (the default TICKETLENS_HELPDESK_BASE_URL) with a
seeded month of tickets, runs the ``ingest`` flow into the default SQLite warehouse, prints what landed and
where to look, and stops the simulator. Running it again shows the idempotent upsert at work.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import sqlalchemy as sa

from tasks.settings import get_settings
from tasks.warehouse import schema
from tasks.warehouse.engine import describe_url, get_engine

DEMO_START = datetime(2026, 8, 1, tzinfo=UTC)
DEMO_DATA_END = datetime(2026, 8, 31, tzinfo=UTC)  # the simulator's clock: the end of its data
DEMO_SIM_ARGS = ["--seed", "42", "--start", f"{DEMO_START:%Y-%m-%d}", "--days", "30", "--tickets-per-day", "300"]


def print_warehouse(url: str) -> None:
    """A short tour of the warehouse for the person who just ran the demo."""
    engine = get_engine(url)
    with engine.connect() as conn:
        counts = {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (schema.tickets, schema.csat_ratings, schema.agents, schema.groups, schema.ticket_fields,
                          schema.raw_records, schema.quarantine)
        }
        by_status = conn.execute(
            sa.text("SELECT status, COUNT(*) FROM tickets GROUP BY status ORDER BY COUNT(*) DESC")
        ).all()
        by_score = conn.execute(
            sa.text("SELECT score, COUNT(*) FROM csat_ratings GROUP BY score ORDER BY score")
        ).all()
        reasons = conn.execute(
            sa.text(
                "SELECT contact_reason, COUNT(*) AS n FROM tickets GROUP BY contact_reason ORDER BY n DESC LIMIT 5"
            )
        ).all()
        state = conn.execute(sa.text("SELECT stream, watermark, pages FROM extraction_state ORDER BY stream")).all()
    print("\n=== Warehouse", describe_url(url))
    for table, n in counts.items():
        print(f"  {table:<14} {n:>7,}")
    print("  tickets by status:", ", ".join(f"{s} {n}" for s, n in by_status))
    print("  CSAT scores:      ", ", ".join(f"{s} {n}" for s, n in by_score))
    print("  top self-selected contact reasons:", ", ".join(f"{r} ({n})" for r, n in reasons))
    for stream, watermark, pages in state:
        print(f"  cursor[{stream}]: watermark={watermark}, pages loaded so far={pages}")
    print("\nWhere to look next:")
    print("  - the tables above:      sqlite3 ticketlens.db  (or any SQL client on TICKETLENS_WAREHOUSE_URL)")
    print("  - run summary artifacts: `uv run prefect server start`, then the Artifacts page")
    print("    (ingest-summary, ingest-validation, ingest-report) of the next run")
    print("  - rejected rows:         SELECT stream, record_id, failed_checks FROM quarantine;")


def print_routed(url: str, limit: int = 8) -> None:
    """A sample of scored tickets with what was pushed back to the helpdesk."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.ticket_id, t.subject, p.category, p.confidence, p.sentiment, p.tier, p.routing_group, "
            "p.auto_reply, w.status FROM ticket_predictions p JOIN tickets t ON t.id = p.ticket_id "
            "LEFT JOIN writeback_state w ON w.ticket_id = p.ticket_id WHERE p.is_current "
            "ORDER BY t.created_at DESC LIMIT :n"), {"n": limit}).all()
        routes = conn.execute(sa.text(
            "SELECT routing_group, COUNT(*) FROM ticket_predictions WHERE is_current GROUP BY routing_group "
            "ORDER BY COUNT(*) DESC")).all()
    print("\n=== Newest routed tickets (tags pushed to the helpdesk with prefix tl_)")
    for r in rows:
        subject = (r.subject or "")[:38]
        print(f"  #{r.ticket_id:<6} {subject:<38} → {r.category:<34} p={r.confidence:.2f} {r.sentiment:<8} "
              f"tier {r.tier} → {r.routing_group}{' [auto-reply]' if r.auto_reply else ''} ({r.status})")
    print("  tickets per routing group:", ", ".join(f"{g} {n}" for g, n in routes))


def print_alerts(url: str) -> None:
    """The Slack messages spike detection produced (sent, or stored as "not sent" without a webhook)."""
    from helpdesk_sim.generator import GeneratorConfig, generate_dataset

    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.kind, m.hour, m.status, m.text FROM slack_messages m ORDER BY m.hour, m.id")).all()
    print("\n=== Spike alerts: the Slack messages the hourly pipeline would have sent")
    if not rows:
        print("  none")
    for r in rows:
        print(f"  [{r.status}] {r.text}")
    truth = generate_dataset(GeneratorConfig(seed=42, start=datetime(2026, 8, 1, tzinfo=UTC), days=30,
                                             tickets_per_day=300)).truth.incidents
    print("  planted incidents in the simulated month (ground truth):")
    for inc in truth:
        print(f"    {inc.id}: {inc.category} at {inc.multiplier:.0f}× from "
              f"{datetime.fromtimestamp(inc.start, UTC):%Y-%m-%d %H:%M} for {(inc.end - inc.start) // 3600} h")
    print("  set TICKETLENS_SLACK_WEBHOOK_URL to post them; charts are in", get_settings().reports_dir)
def print_csat(report: dict) -> None:
    """The top CSAT drivers and what the ops reports suggest."""
    print(f"  {report['ratings']} ratings, {report['bad']} bad; top drivers (adjusted, FDR-controlled):")
    for line in report["driver_lines"][:8] or ["no driver found"]:
        print("   ", line)
    reasons = report["reasons"]
    print("  why (bad-rating comments):", ", ".join(f"{r.label} {r.comments}" for r in reasons.head(4).itertuples()))
    options = report["self_selection"]
    misused = options[options["suggestion"].astype(bool)] if not options.empty else options
    for r in misused.head(2).itertuples():
        print(f"  menu: {r.suggestion}")
    cands = report["auto_reply_candidates"]
    chosen = cands[cands["is_candidate"]] if not cands.empty else cands
    print("  auto-reply candidates:", ", ".join(f"{r.category} (~{r.deflectable_tickets} tickets)"
                                               for r in chosen.head(5).itertuples()) or "none")
    print(f"  charts: {', '.join(report['charts'])}")
    print("  tables: csat_drivers, csat_reason_counts, csat_weekly_trends, self_selection_options, "
          "auto_reply_candidates")


def main() -> int:
    from flows.csat_drivers import csat_drivers
    from flows.hourly_pipeline import hourly_pipeline
    from flows.ingest import ingest
    from flows.nightly_retrain import nightly_retrain
    from helpdesk_sim.testing import SimulatorProcess

    # Let the first spike-detection run replay the whole simulated month (normally it catches up ≤ 6 hours).
    os.environ.setdefault("TICKETLENS_SPIKE_MAX_CATCHUP_HOURS", "720")
    get_settings.cache_clear()
    settings = get_settings()
    parsed = urlparse(settings.helpdesk_base_url)
    port = parsed.port or 8765
    print(f"Starting the helpdesk simulator on {settings.helpdesk_base_url} ...")
    with SimulatorProcess(DEMO_SIM_ARGS, host=parsed.hostname or "127.0.0.1", port=port):
        ingest()
        print_warehouse(settings.warehouse_url)

        print("\n=== Training the ticket-category classifier (nightly-retrain) ...")
        result = nightly_retrain()
        m = result["metrics"]
        print(f"  registered {settings.model_name} version {result['version']} "
              f"({'promoted to champion' if result['promoted'] else 'kept as challenger'}: {result['reason']})")
        print(f"  holdout: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, top-2 "
              f"{m['top2_accuracy']:.3f}, ECE {m['ece']:.3f}, auto-route coverage {m['coverage_at_threshold']:.2f} "
              f"at accuracy {m['accuracy_at_threshold']:.3f}")
        print(f"  sentiment model shipped: {result['sentiment_winner']}")
        if result["backfill"]:
            print(f"  backfill with the new champion: {result['backfill']['scored']} tickets re-scored")
        print(f"  compare runs: uv run mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")

        print("\n=== Hourly pipeline: ingest → score → write back → spike detection ...")
        hourly = hourly_pipeline(end=DEMO_DATA_END)
        print(f"  write-back: {hourly['push']['submitted']} tickets submitted, {hourly['poll']['done']} confirmed")
        print_routed(settings.warehouse_url)
        print_alerts(settings.warehouse_url)

    print("\n=== CSAT drivers and ops reports (csat-drivers) over the demo month ...")
    report = csat_drivers(start=DEMO_START, end=DEMO_START + timedelta(days=31))
    print_csat(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
