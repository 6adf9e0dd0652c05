"""Soak: the local stack (``make up``: Prefect server, MLflow, live simulator, reports server, worker) running its
real schedules for a number of real hours, then one table of what happened.

Nothing is accelerated: the deployments fire on their crons in wall time and the live simulator's clock is wall
time, so every scheduled window is a real one (an hour's soak sees one ``hourly-pipeline`` slot; ``nightly-retrain``
and ``csat-drivers`` only if 02:30 / 06:00 UTC fall inside it). The stack is started if it is not running, and
``make deploy`` (which trains a first champion on a fresh stack) runs before the clock starts.

Reported for the soak period [start, end):

* runs per scheduled deployment: created by the scheduler with a slot in the period, and their final states;
* tickets in the warehouse vs in the helpdesk (``/_sim/snapshot``), and tickets the helpdesk had at the end of
  the last completed hourly run's ingest that the warehouse lacks;
* write-back: tickets updated once vs more than once (``/_sim/updates``), and echoes re-scored — predictions made
  for a ticket version that was nothing but TicketLens's own write-back (its ``ticket_updated_at`` is the time of
  one of our updates);
* planted incidents that started in the period (``/_sim/incidents``) vs spike alerts opened for their category
  (or its parent) during them, and other alerts opened;
* peak resident memory of each service's process tree (sampled every 10 s) and of all of them together.

Usage: ``python -m bench.soak --hours 0.5`` (``make soak SOAK_HOURS=0.5``); ports as for ``make up``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCHEDULED = ("hourly-pipeline", "nightly-retrain", "csat-drivers")
SERVICES = ("prefect-server", "mlflow", "simulator", "reports", "worker")


class MemorySampler(threading.Thread):
    """Peak RSS per service (its whole process tree, flow-run subprocesses included) and of the sum."""

    def __init__(self, run_dir: Path, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.every = run_dir, every
        self.peaks: dict[str, int] = defaultdict(int)
        self.total_peak = 0
        self.stop = threading.Event()

    def sample(self) -> None:
        import psutil

        total = 0
        for name in SERVICES:
            pid_file = self.run_dir / f"{name}.pid"
            if not pid_file.exists():
                continue
            try:
                root = psutil.Process(int(pid_file.read_text()))
                procs = [root, *root.children(recursive=True)]
            except (psutil.Error, ValueError):
                continue
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue  # the process exited between listing and reading: it holds no memory now
            self.peaks[name] = max(self.peaks[name], rss)
            total += rss
        self.total_peak = max(self.total_peak, total)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)


def _sh(cmd: list[str], env: dict[str, str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def run_stats(api: str, start: datetime, end: datetime) -> dict[str, Counter]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out: dict[str, Counter] = {}
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        for name in SCHEDULED:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=start, before_=end)))
            counts = Counter(created=sum(1 for r in runs if r.auto_scheduled), manual=sum(
                1 for r in runs if not r.auto_scheduled))
            for r in runs:
                counts[r.state.name if r.state else "?"] += 1
            out[name] = counts
    return out


def warehouse_stats(warehouse_url: str, sim: str, start: datetime, end: datetime) -> dict:
    import sqlalchemy as sa

    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import spike_alerts, ticket_predictions, tickets

    snapshot = httpx.get(f"{sim}/_sim/snapshot", timeout=120).json()
    updates = httpx.get(f"{sim}/_sim/updates", timeout=120).json()
    incidents = httpx.get(f"{sim}/_sim/incidents", timeout=60).json()
    engine = get_engine(warehouse_url)
    with engine.connect() as conn:
        loaded = set(conn.execute(sa.select(tickets.c.id)).scalars())
        p = ticket_predictions
        preds = conn.execute(sa.select(p.c.ticket_id, p.c.ticket_updated_at, p.c.predicted_at)
                             .where(p.c.predicted_at >= start)).all()
        alerts = conn.execute(sa.select(spike_alerts.c.series, spike_alerts.c.started_at)
                              .where(spike_alerts.c.started_at >= start - timedelta(hours=1))).all()
    source = {t["id"] for t in snapshot["tickets"]}
    pushes: Counter = Counter()
    our_update_times: dict[int, set[int]] = defaultdict(set)
    for job in updates:
        for t in job["tickets"]:
            our_update_times[int(t["id"])].add(int(job["at"]))
            if start.timestamp() <= job["at"] < end.timestamp():
                pushes[int(t["id"])] += 1
    echoes = sum(1 for tid, updated, _ in preds
                 if int(updated.replace(tzinfo=updated.tzinfo or UTC).timestamp()) in our_update_times.get(tid, ()))
    planted = [i for i in incidents if start.timestamp() <= i["start"] < end.timestamp()]
    found = 0
    matched_alerts = set()
    for inc in planted:
        parent = inc["category"].split(".")[0]
        hits = [(s, a) for s, a in alerts if s in (inc["category"], parent)
                and inc["start"] - 3600 <= a.replace(tzinfo=a.tzinfo or UTC).timestamp() <= inc["end"] + 3600]
        found += bool(hits)
        matched_alerts.update(hits)
    return {"source": len(source), "loaded": len(loaded & source), "missing": len(source - loaded),
            "pushed_once": sum(1 for n in pushes.values() if n == 1),
            "pushed_more": sum(1 for n in pushes.values() if n > 1), "predictions": len(preds), "echoes": echoes,
            "planted": len(planted), "found": found, "alerts": len(alerts),
            "other_alerts": len(alerts) - len(matched_alerts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=float(os.environ.get("SOAK_HOURS", "1")))
    parser.add_argument("--down", action="store_true", help="stop the stack at the end (default: leave it up)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    host = "127.0.0.1"
    prefect_port, sim_port = env.get("PREFECT_PORT", "4200"), env.get("SIM_PORT", "8765")
    api = env.get("PREFECT_API_URL", f"http://{host}:{prefect_port}/api")
    warehouse = env.get("TICKETLENS_WAREHOUSE_URL", f"sqlite:///{ROOT / 'var' / 'ticketlens.db'}")
    sim = env.get("TICKETLENS_HELPDESK_BASE_URL", f"http://{host}:{sim_port}")

    _sh(["bash", "ops/stack.sh", "up"], env)
    _sh(["bash", "ops/deploy.sh"], {**env, "PREFECT_API_URL": api})
    sampler = MemorySampler(ROOT / "var" / "run")
    sampler.start()
    start = datetime.now(UTC)
    end = start + timedelta(hours=args.hours)
    print(f"soak: {start:%Y-%m-%d %H:%M} → {end:%H:%M} UTC ({args.hours:g} h); Prefect UI {api[:-4]}", flush=True)
    while datetime.now(UTC) < end:
        time.sleep(min(30.0, max(0.0, (end - datetime.now(UTC)).total_seconds())))
    # Runs whose slot fell in the period may still be running: give them up to 15 minutes to finish.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        stats = run_stats(api, start, end)
        if not any(c[s] for c in stats.values() for s in ("Running", "Pending", "Scheduled", "Late",
                                                          "AwaitingConcurrencySlot")):
            break
        time.sleep(20)
    sampler.stop.set()
    sampler.sample()
    runs = run_stats(api, start, end)
    data = warehouse_stats(warehouse, sim, start, end)
    mib = 1024 * 1024
    lines = [f"Soak {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC ({args.hours:g} h real time, live simulator, "
             f"`make soak SOAK_HOURS={args.hours:g}`)", "",
             "| deployment | runs created by the scheduler | Completed | Failed | other final / not final |",
             "|---|---:|---:|---:|---|"]
    for name, c in runs.items():
        other = {k: v for k, v in c.items() if k not in ("created", "manual", "Completed", "Failed") and v}
        lines.append(f"| {name} | {c['created']} | {c['Completed']} | {c['Failed']} | "
                     f"{', '.join(f'{k} {v}' for k, v in other.items()) or '—'} |")
    lines += ["", "| measure | value |", "|---|---:|",
              f"| tickets in the helpdesk at the end | {data['source']} |",
              f"| … of which in the warehouse | {data['loaded']} ({data['missing']} not yet: arrived after the "
              f"last run's ingest) |",
              f"| tickets written back once in the period | {data['pushed_once']} |",
              f"| tickets written back more than once | {data['pushed_more']} |",
              f"| predictions made in the period | {data['predictions']} |",
              f"| … of them re-scored echoes of our own write-back | {data['echoes']} |",
              f"| planted incidents that started in the period | {data['planted']} |",
              f"| … with a spike alert on their category or parent | {data['found']} |",
              f"| other spike alerts opened | {data['other_alerts']} |",
              f"| peak RSS, all services (process trees) | {sampler.total_peak / mib:.0f} MiB |"]
    lines += [f"| peak RSS, {name} | {sampler.peaks.get(name, 0) / mib:.0f} MiB |" for name in SERVICES]
    print("\n".join(lines), flush=True)
    if args.down:
        _sh(["bash", "ops/stack.sh", "down"], env)
    else:
        print("\nThe stack is still up (make down stops it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
