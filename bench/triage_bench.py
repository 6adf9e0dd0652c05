"""Real-time triage latency: ticket creation → write-back confirmed, at sustained rates, on this machine.

Everything runs here: the simulator (a process, sending signed webhooks like Zendesk), the triage service (a
process, ``ticketlens-triage``), the warehouse (SQLite by default, ``--warehouse`` for PostgreSQL) and this load
generator, which creates tickets through the simulator's API (``POST /api/v2/tickets.json``) at each rate.

Per rate it reports creation → confirmed latency p50/p95/p99 (creation = the API call's wall time; confirmed =
the service recorded the write-back job's success, ``writeback_state`` ``done``), CPU seconds per ticket
(service + simulator), the service's memory and lag (p95 latency and queue depth) in the first and the last
tenth of the run, and lost / pushed-twice counts. A final phase creates tickets as fast as possible to find the
throughput ceiling (confirmed tickets per second).

    python -m bench.triage_bench                      # 5, 20, 50 tickets/s for 600 s each + ceiling
    python -m bench.triage_bench --seconds 60         # a short run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa

SECRET = "bench-signing-secret"
MODEL = "triage-bench-classifier"


def register_champion(uri: str, artifacts: str, dataset) -> str:
    import mlflow

    from ticketlens.adapters.tracking import ensure_experiment, set_alias
    from ticketlens.models.classifier import build_pipeline, resolve_config

    frame = pd.DataFrame({"subject": [t.subject for t in dataset.tickets],
                          "description": [t.description for t in dataset.tickets],
                          "label": [t.true_category for t in dataset.tickets]})
    counts = frame["label"].value_counts()
    frame = frame[frame["label"].isin(counts[counts >= 3].index)]
    pipeline = build_pipeline(resolve_config("tfidf")).fit(frame[["subject", "description"]], frame["label"])
    experiment = ensure_experiment(uri, "triage-bench", artifacts)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(pipeline, name="model", registered_model_name=MODEL,
                                        serialization_format="cloudpickle")
    set_alias(uri, MODEL, "champion", info.registered_model_version)
    return str(info.registered_model_version)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):  # not listening yet: ask again shortly
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(url)


class Load:
    """Creates tickets at ``rate`` per second (open loop, paced on the wall clock) and remembers when."""

    def __init__(self, sim_url: str, dataset) -> None:
        self.url = f"{sim_url}/api/v2/tickets.json"
        self.specs = dataset.tickets
        self.created: dict[int, float] = {}
        self.errors = 0
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=30, headers={"Authorization": "Bearer demo-oauth-token"},
                                   limits=httpx.Limits(max_connections=32))
        self.n = 0

    def one(self) -> None:
        with self.lock:
            spec = self.specs[self.n % len(self.specs)]
            self.n += 1
        at = time.time()
        try:
            response = self.client.post(self.url, json={"ticket": {
                "subject": spec.subject, "comment": {"body": spec.description}, "tags": list(spec.tags)}})
            response.raise_for_status()
        except httpx.HTTPError:
            with self.lock:
                self.errors += 1
            return
        with self.lock:
            self.created[response.json()["ticket"]["id"]] = at

    def run(self, rate: float | None, seconds: float) -> dict[int, float]:
        """Tickets created in this phase → creation wall time. ``rate=None``: as fast as 8 workers can."""
        before = set(self.created)
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            if rate is None:
                def loop():
                    while time.monotonic() - start < seconds:
                        self.one()
                for _ in range(8):
                    pool.submit(loop)
            else:
                k = 0
                while True:
                    due = start + k / rate
                    if due - start >= seconds:
                        break
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(self.one)
                    k += 1
        return {i: t for i, t in self.created.items() if i not in before}


def confirmed(url: str, ids: list[int]) -> dict[int, float]:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import writeback_state as w

    out: dict[int, float] = {}
    with get_engine(url).connect() as conn:
        for start in range(0, len(ids), 5000):
            for tid, at in conn.execute(sa.select(w.c.ticket_id, w.c.updated_at).where(
                    w.c.ticket_id.in_(ids[start:start + 5000]), w.c.status == "done")):
                out[int(tid)] = at.timestamp()
    return out


def queue_depth(url: str) -> int:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import triage_inbox

    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(triage_inbox)
                            .where(triage_inbox.c.status == "queued")).scalar_one()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def phase(label: str, rate: float | None, seconds: float, load: Load, wh: str, sim: subprocess.Popen,
          svc: subprocess.Popen, sim_url: str, drain: float) -> dict:
    cpu0 = cpu_seconds(svc.pid) + cpu_seconds(sim.pid)
    mem_start = rss_mb(svc.pid)
    mid: dict[str, float] = {}

    def sample_end() -> None:  # memory and queue near the end of the load
        time.sleep(max(0.0, seconds * 0.9))
        mid["mem_end"] = rss_mb(svc.pid)
        mid["queue_end"] = queue_depth(wh)

    sampler = threading.Thread(target=sample_end, daemon=True)
    sampler.start()
    t0 = time.time()
    created = load.run(rate, seconds)
    t1 = time.time()
    ids = sorted(created)
    deadline = time.monotonic() + drain
    done = confirmed(wh, ids)
    while len(done) < len(ids) and time.monotonic() < deadline:
        time.sleep(1.0)
        done = confirmed(wh, ids)
    cpu1 = cpu_seconds(svc.pid) + cpu_seconds(sim.pid)
    sampler.join()
    lat = {i: done[i] - created[i] for i in ids if i in done}
    first = [lat[i] for i in ids if i in lat and created[i] < t0 + seconds * 0.1]
    last = [lat[i] for i in ids if i in lat and created[i] >= t0 + seconds * 0.9]
    updates = httpx.get(f"{sim_url}/_sim/updates", timeout=60).json()
    pushes = Counter(t["id"] for u in updates for t in u["tickets"] if t["id"] in created)
    values = list(lat.values())
    span = (max(done[i] for i in lat) - min(created.values())) if lat else float("nan")
    return {
        "phase": label, "rate": rate, "seconds": round(t1 - t0, 1), "created": len(ids),
        "achieved_per_s": round(len(ids) / (t1 - t0), 1), "confirmed": len(lat),
        "confirmed_per_s": round(len(lat) / span, 1) if lat else 0.0,
        "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99), "max": max(values, default=float("nan")),
        "cpu_ms_per_ticket": 1000 * (cpu1 - cpu0) / max(1, len(ids)),
        "mem_start_mb": mem_start, "mem_end_mb": mid.get("mem_end", float("nan")),
        "lag_p95_first": pct(first, 95), "lag_p95_last": pct(last, 95),
        "queue_end": mid.get("queue_end", -1), "lost": len(ids) - len(lat),
        "pushed_twice": sum(1 for n in pushes.values() if n > 1), "create_errors": load.errors,
    }


def _exit_on_sigterm(signum, frame) -> None:
    """A killed benchmark (SIGTERM, e.g. `kill` or a CI timeout) still stops the service and simulator it
    started: exiting through SystemExit runs ``main``'s ``finally``."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="triage_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,20,50", help="tickets per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=600, help="duration of each rate")
    parser.add_argument("--ceiling-seconds", type=float, default=60, help="0: skip the ceiling phase")
    parser.add_argument("--drain-seconds", type=float, default=60, help="wait after each phase for stragglers")
    parser.add_argument("--warehouse", help="warehouse URL (default: a fresh SQLite file)")
    parser.add_argument("--batch-interval", type=float, default=1.0, help="TICKETLENS_TRIAGE_BATCH_INTERVAL_SECONDS")
    args = parser.parse_args(argv)

    from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
    from ticketlens.helpdesk_sim.testing import free_port

    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    wh = args.warehouse or f"sqlite:///{tmp / 'warehouse.db'}"
    uri, artifacts = f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "artifacts")
    dataset = generate_dataset(GeneratorConfig(seed=7, start=datetime(2026, 6, 1, tzinfo=UTC), days=6,
                                               tickets_per_day=80))
    print(f"registering a champion (tfidf) in {uri} ...", file=sys.stderr)
    register_champion(uri, artifacts, dataset)
    sim_port, svc_port = free_port(), free_port()
    sim_url, svc_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{svc_port}"
    env = {**os.environ, "TICKETLENS_WAREHOUSE_URL": wh, "TICKETLENS_HELPDESK_BASE_URL": sim_url,
           "TICKETLENS_MLFLOW_TRACKING_URI": uri, "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": artifacts,
           "TICKETLENS_MODEL_NAME": MODEL, "TICKETLENS_SENTIMENT_MODEL_NAME": f"{MODEL}-sentiment",
           "TICKETLENS_TRIAGE_WEBHOOK_SECRET": SECRET, "TICKETLENS_TRIAGE_ALLOW_ROOT": "true",
           "TICKETLENS_TRIAGE_BATCH_INTERVAL_SECONDS": str(args.batch_interval),
           "TICKETLENS_TRIAGE_SIMULATOR_WEBHOOK_URL": f"{svc_url}/webhooks/zendesk/ticket-created",
           "TICKETLENS_TRIAGE_QUEUE_SIZE": "20000"}
    env.pop("PREFECT_API_URL", None)
    logs = [open(tmp / name, "wb") for name in ("sim.log", "triage.log")]
    sim = subprocess.Popen([sys.executable, "-m", "ticketlens.helpdesk_sim", "serve", "--seed", "7", "--days", "2",
                            "--tickets-per-day", "20", "--port", str(sim_port)], env=env, stdout=logs[0],
                           stderr=subprocess.STDOUT)
    svc = subprocess.Popen([sys.executable, "-m", "ticketlens.services.triage", "--port", str(svc_port)],
                           env=env, stdout=logs[1], stderr=subprocess.STDOUT)
    results = []
    try:
        wait_http(f"{sim_url}/_sim/health", 120, sim)
        wait_http(f"{svc_url}/readyz", 180, svc)
        load = Load(sim_url, dataset)
        load.run(5, 5)  # warm-up: model, language detector, connections
        time.sleep(5)
        for rate in [float(r) for r in args.rates.split(",") if r]:
            print(f"rate {rate:g}/s for {args.seconds:g} s ...", file=sys.stderr)
            results.append(phase(f"{rate:g}/s", rate, args.seconds, load, wh, sim, svc, sim_url, args.drain_seconds))
        if args.ceiling_seconds:
            print(f"ceiling: as fast as possible for {args.ceiling_seconds:g} s ...", file=sys.stderr)
            results.append(phase("ceiling", None, args.ceiling_seconds, load, wh, sim, svc, sim_url,
                                 max(args.drain_seconds, 120)))
    finally:
        for proc in (svc, sim):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for fh in logs:
            fh.close()
    print(table(results, args, wh))
    return 0


def table(results: list[dict], args, wh: str) -> str:
    head = ("| load | s | created | achieved/s | confirmed/s | p50 s | p95 s | p99 s | CPU ms/ticket | "
            "RSS start→end MB | lag p95 first→last s | queue at end | lost | pushed twice |")
    lines = [f"Triage benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, warehouse "
             f"{sa.engine.make_url(wh).get_backend_name()}, batch interval {args.batch_interval:g} s", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        lines.append(f"| {r['phase']} | {r['seconds']:g} | {r['created']} | {r['achieved_per_s']:g} | "
                     f"{r['confirmed_per_s']:g} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | "
                     f"{r['cpu_ms_per_ticket']:.1f} | {r['mem_start_mb']:.0f}→{r['mem_end_mb']:.0f} | "
                     f"{r['lag_p95_first']:.2f}→{r['lag_p95_last']:.2f} | {r['queue_end']} | {r['lost']} | "
                     f"{r['pushed_twice']} |")
    if any(r["create_errors"] for r in results):
        lines.append(f"\n(ticket creation errors: {results[-1]['create_errors']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
