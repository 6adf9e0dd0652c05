"""``ticketlens-sim`` / ``python -m ticketlens.helpdesk_sim``: serve the simulator or write a dataset's ground truth."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime


def _when(value: str) -> datetime:
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=_when, default=_when("2026-08-01"), help="first day (ISO date, UTC)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tickets-per-day", type=int, default=300)
    parser.add_argument("--incident", type=parse_incident, action="append", metavar="CATEGORY@START+HOURSxMULT",
                        help="plant this incident instead of the seeded random ones (repeatable), e.g. "
                             "account.password_reset@2026-08-12T09+4x8: 8x the category's volume for 4 h")


def parse_incident(text: str):
    """``CATEGORY@YYYY-MM-DDTHH+HOURSxMULTIPLIER`` → an ``Incident`` (UTC hour; the id is its position)."""
    from ticketlens.helpdesk_sim.dataset import Incident

    try:
        category, rest = text.split("@", 1)
        when, rest = rest.split("+", 1)
        hours, multiplier = rest.split("x", 1)
        start = int(_when(when if len(when) > 13 else when + ":00").timestamp())
        return Incident(id="", category=category, start=start, end=start + int(hours) * 3600,
                        multiplier=float(multiplier))
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(
            f"--incident {text!r}: expected CATEGORY@YYYY-MM-DDTHH+HOURSxMULTIPLIER, e.g. "
            f"account.password_reset@2026-08-12T09+4x8 ({exc})") from None


def _generate(args):
    from dataclasses import replace

    from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset

    plan = None
    if args.incident:
        plan = tuple(replace(inc, id=f"inc-{i:03d}") for i, inc in enumerate(args.incident, start=1))
    return generate_dataset(GeneratorConfig(seed=args.seed, start=args.start, days=args.days,
                                            tickets_per_day=args.tickets_per_day, incident_plan=plan))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ticketlens-sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a generated dataset over HTTP (Zendesk REST shapes)")
    _dataset_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--clock", type=_when, help="simulated time to start at (default: end of the data; "
                       "with --live: now, and the clock runs on from the time given)")
    live = serve.add_argument_group("live mode", "the clock follows wall time; tickets, ratings and incidents "
                                    "keep arriving (--start/--days are not used)")
    live.add_argument("--live", action="store_true", help="run in live mode")
    live.add_argument("--history-days", type=int, default=30,
                      help="days of history generated before today at start-up (default 30; CSAT looks back 90)")
    live.add_argument("--incidents-per-day", type=float, default=0.25,
                      help="planted incidents per day on average (Poisson; default 0.25)")
    live.add_argument("--first-incident-in-hours", type=int, metavar="N",
                      help="also plant a 3-hour 12x incident from the top of the hour N hours after start-up")
    live.add_argument("--lookahead-hours", type=int, default=6,
                      help="generate the next day this many hours before the clock reaches it (default 6)")
    serve.add_argument("--requests-per-minute", type=int)
    serve.add_argument("--export-requests-per-minute", type=int)
    serve.add_argument("--retry-after", default="1.5")
    serve.add_argument("--error-rate", type=float, default=0.0)
    serve.add_argument("--slow-ms", type=int, default=0)
    serve.add_argument("--email", default="demo@example.com")
    serve.add_argument("--api-token", default="demo-token")
    serve.add_argument("--user-role", default="admin", choices=("admin", "agent"),
                       help="role of the credentials' user (export and CSAT endpoints are admin-only)")
    serve.add_argument("--csat-api", default="satisfaction_ratings",
                       choices=("satisfaction_ratings", "survey_responses", "both"),
                       help="which Zendesk CSAT API holds the ratings (both = switched at the data's midpoint)")
    serve.add_argument("--multiselect-reasons", action="store_true", help="contact reason as a multiselect field")
    serve.add_argument("--job-ttl-seconds", type=int, default=3600,
                       help="simulated seconds a job status is kept (Zendesk: about an hour)")
    gen = sub.add_parser("generate", help="generate a dataset and write its ground truth as JSON")
    _dataset_args(gen)
    gen.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    if args.command == "serve" and args.live:
        return _serve_live(args)
    dataset = _generate(args)
    if args.command == "generate":
        from ticketlens.helpdesk_sim.generator import write_ground_truth

        write_ground_truth(dataset, args.out)
        print(f"{len(dataset.tickets)} tickets; ground truth in {args.out}")
        return 0

    import uvicorn

    from ticketlens.helpdesk_sim.server import create_app, iso

    config = _sim_config(args)
    app = create_app(dataset, config)
    print(f"helpdesk simulator on http://{args.host}:{args.port} ({len(dataset.tickets)} tickets, "
          f"clock={iso(app.state.sim.now)})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _sim_config(args):
    from ticketlens.helpdesk_sim.server import Faults, SimConfig

    return SimConfig(
        host=args.host, port=args.port, email=args.email, api_token=args.api_token,
        clock=int(args.clock.timestamp()) if args.clock else None, requests_per_minute=args.requests_per_minute,
        export_requests_per_minute=args.export_requests_per_minute, retry_after=args.retry_after,
        faults=Faults(error_rate=args.error_rate, slow_ms=args.slow_ms), user_role=args.user_role,
        csat_api=args.csat_api, multiselect_reasons=args.multiselect_reasons, job_ttl_seconds=args.job_ttl_seconds,
    )


def _serve_live(args) -> int:
    import uvicorn

    from ticketlens.helpdesk_sim.live import LiveConfig, create_live_app
    from ticketlens.helpdesk_sim.server import iso

    live = LiveConfig(seed=args.seed, history_days=args.history_days, tickets_per_day=args.tickets_per_day,
                      incidents_per_day=args.incidents_per_day, lookahead_hours=args.lookahead_hours,
                      first_incident_in_hours=args.first_incident_in_hours)
    app = create_live_app(live, _sim_config(args))
    state = app.state.sim
    print(f"helpdesk simulator (live) on http://{args.host}:{args.port}: clock={iso(state.now)} following wall "
          f"time, {args.history_days} days of history, ~{args.tickets_per_day} tickets/day, "
          f"~{args.incidents_per_day:g} incidents/day", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
