"""Ingest benchmark: extract → normalize → validate → load of N generated tickets from the simulator.

Run with ``make bench`` (or ``uv run python -m bench.ingest_bench --tickets 100000``). The simulator runs in its
own process with its rate limit off, so the numbers are the client side's. Each backend is measured in a fresh
child process so that its peak RSS is its own. Stages are timed around the same plain functions the ingest tasks
call; "flow" is the real ``ingest`` flow (Prefect orchestration, task runs and artifacts included) over the same
data into a second, empty warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TICKETLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pg_schema_url(schema: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _drop_pg_schema(schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def measure_backend(backend: str, base_url: str, run_flow: bool) -> dict:
    """Child-process body: staged pipeline into one warehouse, then optionally the flow into another."""
    os.environ.update({
        "TICKETLENS_HELPDESK_BASE_URL": base_url,
        "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "100000",
        "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": "100000",
    })
    from ticketlens.adapters.helpdesk import HelpdeskClient
    from ticketlens.adapters.settings import load_settings
    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.models.records import field_map_from_ticket_fields, normalize_tickets
    from ticketlens.tasks.ingest import TICKET_STREAM, load_page, max_unix
    from ticketlens.tasks.validation import validate_batch

    tmp = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    schemas: list[str] = []

    def new_url(tag: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp / f'{tag}.db'}"
        schema = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
        schemas.append(schema)
        return _pg_schema_url(schema)

    try:
        url = new_url("staged")
        migrate(url)
        settings = load_settings(warehouse_url=url)
        client = HelpdeskClient.from_settings(settings)
        field_map = field_map_from_ticket_fields(
            client.list_ticket_fields(), settings.contact_reason_field_title, settings.confirmed_category_field_title
        )
        stage = {"extract": 0.0, "normalize": 0.0, "validate": 0.0, "load": 0.0}
        per_page: list[float] = []
        rows = 0
        validate_batch(TICKET_STREAM, normalize_tickets([], [], field_map), max_failure_share=1,
                       max_text_chars=10)  # GX import and context set-up are a one-off cost, not per page
        pages = client.export_tickets(start_time=0)
        while True:
            t0 = time.perf_counter()
            page = next(pages, None)
            if page is None:
                break
            t1 = time.perf_counter()
            frame = normalize_tickets(page.tickets, page.metric_sets, field_map)
            t2 = time.perf_counter()
            outcome = validate_batch(TICKET_STREAM, frame, max_failure_share=settings.validation_max_failure_share,
                                     max_text_chars=settings.max_text_chars)
            t3 = time.perf_counter()
            load_page.fn(url, TICKET_STREAM, page.tickets, outcome, next_cursor=page.after_cursor,
                         watermark=max_unix(page.tickets, "generated_timestamp"), run_id="bench")
            t4 = time.perf_counter()
            for key, dt in zip(stage, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stage[key] += dt
            per_page.append(t4 - t0)
            rows += len(page.tickets)
            if page.end_of_stream:
                break
        result = {
            "backend": backend, "rows": rows, "pages": len(per_page), "stage_seconds": stage,
            "page_mean": statistics.fmean(per_page), "page_p95": sorted(per_page)[int(0.95 * (len(per_page) - 1))],
            "peak_rss_mb": _peak_rss_mb(),
        }
        if run_flow:
            flow_url = new_url("flow")
            os.environ["TICKETLENS_WAREHOUSE_URL"] = flow_url
            from prefect.testing.utilities import prefect_test_harness

            from ticketlens.flows.ingest import ingest

            with prefect_test_harness(server_startup_timeout=180):
                t0 = time.perf_counter()
                summary = ingest()
                result["flow_seconds"] = time.perf_counter() - t0
                result["flow_rows"] = summary["tickets"]["fetched"] + summary["satisfaction_ratings"]["fetched"]
                result["flow_pages"] = summary["tickets"]["pages"] + summary["satisfaction_ratings"]["pages"]
        return result
    finally:
        for schema in schemas:
            _drop_pg_schema(schema)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_reachable() -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-flow", action="store_true", help="skip the end-to-end Prefect flow run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure_backend(args.child, args.base_url, not args.no_flow)))
        return 0

    from ticketlens.helpdesk_sim.testing import SimulatorProcess

    days = 100
    per_day = max(1, args.tickets // days)
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not _postgres_reachable():
        print(f"PostgreSQL not reachable at {PG_URL}: skipping it", file=sys.stderr)
        backends.remove("postgresql")
    print(f"Generating {per_day * days:,} tickets and starting the simulator (rate limit off)…", file=sys.stderr)
    t0 = time.perf_counter()
    sim_args = ["--seed", "1", "--start", "2026-01-01", "--days", str(days), "--tickets-per-day", str(per_day)]
    results = []
    with SimulatorProcess(sim_args, port=_free_port(), startup_timeout=600) as sim:
        print(f"simulator ready in {time.perf_counter() - t0:.0f} s at {sim.base_url}", file=sys.stderr)
        for backend in backends:
            cmd = [sys.executable, "-m", "bench.ingest_bench", "--child", backend, "--base-url", sim.base_url]
            if args.no_flow:
                cmd.append("--no-flow")
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print_table(results, args)
    return 0


def print_table(results: list[dict], args) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"\n## Ingest benchmark ({when}, {os.cpu_count()} CPUs, `python -m bench.ingest_bench "
          f"--tickets {args.tickets}`)\n")
    print("| backend | stage | rows/s | seconds |")
    print("|---|---|---:|---:|")
    for r in results:
        for stage, seconds in r["stage_seconds"].items():
            print(f"| {r['backend']} | {stage} | {r['rows'] / seconds:,.0f} | {seconds:.1f} |")
        total = sum(r["stage_seconds"].values())
        print(f"| {r['backend']} | **all stages** | {r['rows'] / total:,.0f} | {total:.1f} |")
        if "flow_seconds" in r:
            print(f"| {r['backend']} | `ingest` flow (Prefect, tickets+CSAT) | "
                  f"{r['flow_rows'] / r['flow_seconds']:,.0f} | {r['flow_seconds']:.1f} |")
    print("\n| backend | tickets | pages | per 1,000-ticket page mean / p95 (goal < 0.6 s) | flow s/page | peak RSS |")
    print("|---|---:|---:|---|---:|---:|")
    for r in results:
        flow = f"{r['flow_seconds'] / r['flow_pages']:.2f}" if "flow_seconds" in r else "-"
        print(f"| {r['backend']} | {r['rows']:,} | {r['pages']} | {r['page_mean']:.3f} s / {r['page_p95']:.3f} s | "
              f"{flow} | {r['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    raise SystemExit(main())
