"""Backfill benchmark: re-score N generated tickets end to end (read → clean → predict → write).

``make bench`` runs it after the ingest benchmark (``uv run python -m bench.backfill_bench``). For each size and
backend a fresh child process seeds a warehouse (not timed), trains the default pipeline on 20,000 labelled
tickets (not timed), then runs the loop of ``tasks.backfill.backfill_partition`` — keyset-paginated chunks of
5,000 tickets, ``models.scoring.score_tickets`` (text cleaning, classifier; sentiment and language detection in two
worker processes beside it, as in production for chunks this size; routing),
``adapters.warehouse.predictions.write_predictions`` — over the whole history through ``tasks.scoring.rescore_in_chunks`` (reads and
writes overlapped with the model), and reports tickets/s and the child's peak RSS.
"Bare model" is ``pipeline.predict_proba`` on 100,000 of the same texts already in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TICKETLENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def seed(url: str, tickets: int) -> None:
    """Generate and load the history (its own process: its memory is not the backfill's)."""
    from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
    from ticketlens.helpdesk_sim.seed import seed_warehouse

    days = max(1, tickets // 3000)
    ds = generate_dataset(GeneratorConfig(seed=9, start=datetime(2024, 1, 1, tzinfo=UTC), days=days,
                                          tickets_per_day=tickets // days))
    seed_warehouse(url, ds)


def child(backend: str, tickets: int) -> dict:
    import pandas as pd
    import sqlalchemy as sa

    from bench.ingest_bench import _drop_pg_schema, _pg_schema_url
    from ticketlens.adapters.settings import RoutingSettings
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.predictions import read_tickets
    from ticketlens.adapters.warehouse.schema import tickets as tickets_t
    from ticketlens.models.classifier import build_pipeline
    from ticketlens.models.language import detect_languages
    from ticketlens.models.offload import ProcessWorker
    from ticketlens.models.scoring import score_tickets
    from ticketlens.models.sentiment import SentimentWorker, VaderSentiment
    from ticketlens.models.taxonomy import load_taxonomy
    from ticketlens.tasks.scoring import rescore_in_chunks

    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tl-backfill-')) / 'w.db'}"
    else:
        schema = f"bench_bf_{uuid.uuid4().hex[:8]}"
        url = _pg_schema_url(schema)
    try:
        subprocess.run([sys.executable, "-m", "bench.backfill_bench", "--seed", url, str(tickets)], cwd=ROOT,
                       check=True)
        engine = get_engine(url)
        with engine.connect() as conn:
            train = pd.DataFrame(conn.execute(
                sa.select(tickets_t.c.subject, tickets_t.c.description, tickets_t.c.confirmed_category)
                .where(tickets_t.c.confirmed_category.is_not(None)).limit(20_000)).all(),
                columns=["subject", "description", "label"])
            sample = pd.DataFrame(conn.execute(sa.select(tickets_t.c.subject, tickets_t.c.description)
                                               .limit(100_000)).all(), columns=["subject", "description"])
            n = conn.execute(sa.select(sa.func.count()).select_from(tickets_t)).scalar_one()
        pipeline = build_pipeline().fit(train[["subject", "description"]], train["label"])
        t0 = time.perf_counter()
        pipeline.predict_proba(sample)
        bare = len(sample) / (time.perf_counter() - t0)
        del sample, train
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        taxonomy, policy = load_taxonomy(), RoutingSettings().policy()
        t0 = time.perf_counter()
        # As in production for 5,000-ticket chunks (tasks.scoring.sentiment_for / language_detector_for): VADER
        # and a single-threaded lingua in two worker processes, whose start-up is inside the timed loop.
        sentiment = SentimentWorker(VaderSentiment())
        languages = ProcessWorker(partial(detect_languages, parallel=False))

        def predict(frame):
            scored = score_tickets(frame, pipeline, sentiment, languages, taxonomy, policy)
            scored["model_name"], scored["model_version"] = "bench", "1"
            return scored

        # The same loop as tasks.backfill.backfill_partition (keyset chunks, I/O overlapped with the model).
        done = rescore_in_chunks(engine, lambda conn, after_id: read_tickets(
            conn, sa.and_(tickets_t.c.is_deleted.is_(False), tickets_t.c.id > after_id), 5000, order=tickets_t.c.id),
            predict, "bench")
        seconds = time.perf_counter() - t0
        workers_rss = sentiment.peak_rss_mb() + languages.peak_rss_mb()
        sentiment.close()
        languages.close()
        return {"backend": backend, "tickets": n, "scored": done, "seconds": seconds, "e2e_per_s": done / seconds,
                "bare_per_s": bare, "rss_before_mb": rss_before,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "workers_peak_rss_mb": workers_rss}
    finally:
        if schema:
            _drop_pg_schema(schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--seed", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed:
        seed(args.seed[0], int(args.seed[1]))
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    from bench.ingest_bench import _postgres_reachable

    backends = [b for b in args.backends.split(",") if b != "postgresql" or _postgres_reachable()]
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        for backend in backends:
            print(f"backfill bench: {backend}, {size:,} tickets …", file=sys.stderr, flush=True)
            proc = subprocess.run([sys.executable, "-m", "bench.backfill_bench", "--child", backend, str(size)],
                                  cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\n## Backfill benchmark ({datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, "
          f"`python -m bench.backfill_bench --sizes {args.sizes}`)\n")
    print("| backend | tickets | end to end tickets/s | bare predict_proba/s | ratio (goal ≥ 0.5) | wall | "
          "peak RSS (main process; + the two scoring workers) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['backend']} | {r['scored']:,} | {r['e2e_per_s']:,.0f} | {r['bare_per_s']:,.0f} | "
              f"{r['e2e_per_s'] / r['bare_per_s']:.2f} | {r['seconds']:.0f} s | {r['peak_rss_mb']:,.0f} MB "
              f"(before the loop: {r['rss_before_mb']:,.0f} MB) + workers {r.get('workers_peak_rss_mb', 0):,.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
