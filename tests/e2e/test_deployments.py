"""The production path end to end: a real Prefect server, `prefect deploy --all` from prefect.yaml, the
SCHEDULER creating runs, a process worker executing them with their scheduler-given start times and no
parameters, against the live simulator and a loopback Slack receiver.

1. The scheduler must create upcoming runs for every scheduled deployment (hourly-pipeline, nightly-retrain,
   csat-drivers) on its own: this is what broke on SQLAlchemy 2.1 ("Can't evaluate bulk DML statement").
2. The scheduler-created runs are made due now without touching anything else: their state is set to
   Scheduled(now), which leaves ``expected_start_time`` — what ``prefect.runtime.flow_run.scheduled_start_time``
   returns inside the run — at the cron slot the scheduler gave them (Prefect's SetExpectedStartTime only sets
   it on a run's first state). So each run computes its window from a real, pendulum-typed scheduled time.
3. The live simulator's clock is wall time shifted to the hourly run's slot (as if the test ran at that
   moment), so that hour is complete in the helpdesk's data; an incident is planted in it.

Everything runs in its own PREFECT_HOME / databases under tmp_path (not the session test harness); the server
and the worker are stopped in ``finally``. Slow: the server alone takes 20-60 s to start on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import (
    csat_drivers,
    slack_messages,
    spike_alerts,
    ticket_predictions,
    tickets,
    writeback_state,
)
from ticketlens.helpdesk_sim.dataset import Incident
from ticketlens.helpdesk_sim.live import LiveConfig
from ticketlens.helpdesk_sim.testing import free_port, running_live_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCHEDULED = {"hourly-pipeline": "5 * * * *", "nightly-retrain": "30 2 * * *", "csat-drivers": "0 6 * * *"}
INCIDENT_CATEGORY = "account.password_reset"  # the busiest support category: the classifier knows it well


def start(cmd: list[str], env: dict, log: Path, cwd: Path = REPO) -> subprocess.Popen:
    with log.open("wb") as out:  # the child keeps its own handle
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    """TERM the child's whole session (the worker's flow-run processes too), KILL after 30 s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Prefect server exited during start-up:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(1)  # not listening yet
            continue
        time.sleep(1)
    pytest.fail(f"the Prefect server at {url} was not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def cli(args: list[str], env: dict) -> str:
    done = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def count(url: str, table, *where) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


class SlackReceiver:
    """Slack's incoming webhook, on loopback: records every JSON body, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0E2E/B0E2E/e2eSecret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def scheduler_runs(client, deployments: dict, timeout: float, log: Path) -> dict:
    """Wait until the scheduler has created upcoming runs for every scheduled deployment; {name: [runs]}."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for name in SCHEDULED:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployments[name].id])),
                flow_run_filter=FlowRunFilter(), sort=FlowRunSort.EXPECTED_START_TIME_ASC)
            found[name] = [r for r in runs if r.auto_scheduled and r.state and r.state.is_scheduled()]
        if all(found.values()):
            return found
        if time.monotonic() > deadline:
            server_errors = [line for line in log.read_text().splitlines() if "Error" in line or "error" in line]
            pytest.fail(f"the scheduler created no upcoming runs for {[n for n, r in found.items() if not r]} "
                        f"within {timeout:.0f} s. Server log errors:\n" + "\n".join(server_errors[-20:]))
        time.sleep(2)


def expected_hourly(category: str, tickets_per_day: int, hour: datetime) -> float:
    """The simulator's expected tickets of ``category`` in the hour starting at ``hour`` (its daily and weekly
    cycle and the category's share), to size a planted incident independent of the time the test runs."""
    from ticketlens.helpdesk_sim.generator import HOURLY, WEEKLY
    from ticketlens.models.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    share = taxonomy.categories[category].base_share / sum(taxonomy.categories[k].base_share for k in taxonomy.leaves)
    return float(tickets_per_day / 24 * HOURLY[hour.hour] * WEEKLY[hour.weekday()] * share)


def pick_runs(client, upcoming: dict, clear: timedelta) -> dict:
    """Per deployment, the first scheduler-created run due after now + ``clear``; cancel those due sooner.

    Runs whose slot would pass while the test runs would be started by the worker on their own, in no
    particular order (an hourly run before any champion exists): the test decides the order instead.
    """
    from prefect.states import Cancelled

    cutoff = datetime.now(UTC) + clear
    picked = {}
    for name, runs in upcoming.items():
        later = [r for r in runs if r.expected_start_time > cutoff]
        assert later, f"the scheduler created no {name} run after {cutoff:%H:%M}: {[str(r.expected_start_time) for r in runs]}"
        picked[name] = later[0]
        for r in runs:
            if r.expected_start_time <= cutoff:
                client.set_flow_run_state(r.id, Cancelled(message="due during the test; the test runs a later slot"),
                                          force=True)
    return picked


def run_now(client, run, timeout: float, worker_log: Path):
    """Make a scheduler-created run due now (keeping its expected start time) and wait for its final state."""
    from prefect.states import Scheduled

    client.set_flow_run_state(run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.read_flow_run(run.id)
        if current.state and current.state.is_final():
            return current
        time.sleep(3)
    pytest.fail(f"{run.name} did not finish within {timeout:.0f} s:\n{worker_log.read_text()[-5000:]}")


def test_scheduler_creates_runs_and_scheduled_runs_complete_against_the_live_simulator(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    prefect_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    prefect_env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    })
    server = worker = None
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    slack = SlackReceiver()
    results: dict = {}
    try:
        server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                       prefect_env, server_log)
        wait_healthy(f"{api}/health", server, server_log, timeout=300)
        cli(["work-pool", "create", "ticketlens-process", "--type", "process", "--overwrite"], prefect_env)
        deployed = cli(["--no-prompt", "deploy", "--all"], prefect_env)
        assert "hourly-pipeline/hourly-pipeline" in deployed

        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deployments = {d.name: d for d in client.read_deployments()}
            # 1. The scheduler (not this test) creates the upcoming runs, on the crons of prefect.yaml.
            upcoming = scheduler_runs(client, deployments, timeout=240, log=server_log)
            for name, runs in upcoming.items():
                assert all(r.parameters == {} for r in runs), f"{name}: scheduled runs carry parameters"
                slots = [r.expected_start_time for r in runs]
                assert all(s > datetime.now(UTC) - timedelta(minutes=5) for s in slots)
            assert all(r.expected_start_time.minute == 5 for r in upcoming["hourly-pipeline"])
            assert [(r.expected_start_time.hour, r.expected_start_time.minute)
                    for r in upcoming["nightly-retrain"][:1]] == [(2, 30)]
            assert [(r.expected_start_time.hour, r.expected_start_time.minute)
                    for r in upcoming["csat-drivers"][:1]] == [(6, 0)]
            picked = pick_runs(client, upcoming, clear=timedelta(hours=2))
            hourly_run = picked["hourly-pipeline"]
            slot = datetime.fromtimestamp(hourly_run.expected_start_time.timestamp(), UTC)
            window_end = slot.replace(minute=0, second=0, microsecond=0)
            window_start = window_end - timedelta(hours=1)

            # 3. The helpdesk lives at the hourly slot; an incident fills the hour that run owns.
            # Sized for the hour it lands in: at 03:00 UTC the category expects ~0.14 tickets, at noon ~0.6, so a
            # fixed multiplier would leave the night-time incident under the 5-ticket paging guard (the test then
            # failed whenever it ran between about 23:00 and 06:00 UTC). ~20 extra tickets at any hour.
            incident = Incident(id="e2e-incident", category=INCIDENT_CATEGORY, start=int(window_start.timestamp()),
                                end=int(window_end.timestamp()),
                                multiplier=float(max(25.0, 20.0 / expected_hourly(INCIDENT_CATEGORY, 140, window_start))))
            live = LiveConfig(seed=23, history_days=21, tickets_per_day=140, incidents_per_day=0,
                              incident_plan=(incident,), generator={"csat_share": 0.5})
            with running_live_simulator(live, clock=int(slot.timestamp()) + 60) as sim:
                ticketlens_env = {
                    "TICKETLENS_HOME": str(REPO),  # the pull step of prefect.yaml moves into it at run time
                    "TICKETLENS_WAREHOUSE_URL": warehouse,
                    "TICKETLENS_HELPDESK_BASE_URL": sim.base_url,
                    "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "6000",
                    "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": "6000",
                    "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
                    "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "10",
                    "TICKETLENS_BACKFILL_AFTER_PROMOTION": "false",
                    "TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS": "0.05",
                    "TICKETLENS_SLACK_WEBHOOK_URL": slack.url,
                    "TICKETLENS_REPORTS_DIR": str(tmp_path / "reports"),
                    # The helpdesk's clock runs at the hourly slot, up to a few hours ahead of this machine's:
                    # its newest rows must not count as "from the future" (a real helpdesk shares our clock).
                    "TICKETLENS_INGEST_FUTURE_TOLERANCE_SECONDS": str(6 * 3600),
                }
                for key, value in ticketlens_env.items():
                    monkeypatch.setenv(key, value)
                worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "ticketlens-process"],
                               {**prefect_env, **ticketlens_env}, worker_log)
                # Load the history first: `ingest` is deliberately unscheduled (hourly-pipeline includes it).
                loaded = run_deployment("ingest/ingest", timeout=900, poll_interval=3)
                assert loaded.state.is_completed(), f"ingest ended {loaded.state}:\n{worker_log.read_text()[-5000:]}"

                # 2. The scheduler's runs, due now, no parameters: a champion first, then the hour, then CSAT.
                for name in ("nightly-retrain", "hourly-pipeline", "csat-drivers"):
                    run = picked[name]
                    done = run_now(client, run, timeout=1200, worker_log=worker_log)
                    assert done.state.is_completed(), (
                        f"scheduled {name} run ended {done.state.type.value} {done.state.name}: "
                        f"{done.state.message}\n{worker_log.read_text()[-6000:]}")
                    assert done.parameters == {} and done.auto_scheduled
                    assert done.expected_start_time == run.expected_start_time, "the slot must be kept"
                    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
                    results[name] = (done, {a.key: a for a in artifacts if a.key})
                snapshot = sim.snapshot()
                updates = sim.updates()
                planted = sim.incidents()
                tagged = [sim.ticket(i) for i in sorted({t["id"] for u in updates for t in u["tickets"]})[:50]]
    finally:
        # Prefect's event and log workers are process-wide singletons that keep the API URL they started
        # with: flush them to this server while it is up, so later tests get fresh ones for their own API
        # (otherwise every later event times out against the stopped server and the session hangs on exit).
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        EventsWorker.drain_all(timeout=60)
        APILogWorker.drain_all(timeout=60)
        stop(worker)
        stop(server)
        slack.close()

    # The deployments are the ones prefect.yaml declares, with its schedules and concurrency.
    assert {"hourly-pipeline", "nightly-retrain", "backfill", "ingest", "csat-drivers"} <= set(deployments)
    for name, cron in SCHEDULED.items():
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployments[name].schedules] == [
            (cron, "UTC", True)]
    assert deployments["hourly-pipeline"].global_concurrency_limit.limit == 1
    assert not deployments["backfill"].schedules and not deployments["ingest"].schedules

    # Run names say what each run did (its window, from the scheduler's slot).
    nightly_slot = datetime.fromtimestamp(picked["nightly-retrain"].expected_start_time.timestamp(), UTC)
    csat_slot = datetime.fromtimestamp(picked["csat-drivers"].expected_start_time.timestamp(), UTC)
    assert results["nightly-retrain"][0].name == f"retrain {nightly_slot - timedelta(days=1):%Y-%m-%d}"
    assert results["hourly-pipeline"][0].name == f"hourly {window_start:%Y-%m-%dT%H:%MZ}"
    assert results["csat-drivers"][0].name == f"csat {csat_slot - timedelta(days=90):%Y-%m-%d}..{csat_slot:%Y-%m-%d}"

    # nightly-retrain: a champion registered from the scheduled run.
    retrain, retrain_artifacts = results["nightly-retrain"]
    assert "nightly-retrain-decision" in retrain_artifacts
    import mlflow

    tracking = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (mlflow_run,) = tracking.search_runs([tracking.get_experiment_by_name("ticket-category").experiment_id])
    assert mlflow_run.info.run_name == retrain.name and mlflow_run.data.tags["prefect.flow_run_id"] == str(retrain.id)

    # hourly-pipeline: its window came from the scheduler's slot (a pendulum DateTime inside the run).
    hourly, hourly_artifacts = results["hourly-pipeline"]
    summary = hourly_artifacts["hourly-pipeline-summary"].data
    assert f"window: [{window_start:%Y-%m-%d %H:%M}, {window_end:%Y-%m-%d %H:%M}) UTC (schedule)" in summary
    # Every ticket the helpdesk had by the slot is in the warehouse (the live clock ran on after the run's ingest),
    # scored by the champion and written back.
    with get_engine(warehouse).connect() as conn:
        loaded = set(conn.execute(sa.select(tickets.c.id)).scalars())
    source = {t["id"] for t in snapshot["tickets"] if t["updated_at"] <= slot.timestamp()}
    assert source and source <= loaded
    p = ticket_predictions
    scored = count(warehouse, p, p.c.run_id == str(hourly.id))
    assert scored > 0
    with get_engine(warehouse).connect() as conn:
        states = dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                   .group_by(writeback_state.c.status)).all())
    assert states.get("done", 0) == count(warehouse, p, p.c.is_current.is_(True)) > 0 and set(states) == {"done"}
    assert updates and all(any(tag.startswith("tl_") for tag in t["tags"]) for t in tagged), \
        "written-back tickets carry TicketLens tags in the helpdesk"

    # Spike detection alerted on the planted incident, and Slack (the loopback receiver) got the message.
    assert [i["id"] for i in planted] == ["e2e-incident"]
    with get_engine(warehouse).connect() as conn:
        alerts = conn.execute(sa.select(spike_alerts.c.series, spike_alerts.c.started_at)).all()
        sent = conn.execute(sa.select(slack_messages.c.kind, slack_messages.c.status)).all()
    assert any(series in (INCIDENT_CATEGORY, INCIDENT_CATEGORY.split(".")[0]) and started == window_start
               for series, started in alerts), alerts
    assert ("opened", "sent") in sent
    assert slack.bodies and any("Password reset" in json.dumps(b) or INCIDENT_CATEGORY in json.dumps(b)
                                for b in slack.bodies), slack.bodies
    assert any("/runs/flow-run/" in json.dumps(b) and "Prefect run" in json.dumps(b) for b in slack.bodies), \
        "the alert links the Prefect run that raised it"

    # csat-drivers: the scheduled run's 90-day window held the ratings, and drivers were reported.
    _, csat_artifacts = results["csat-drivers"]
    assert "csat-drivers" in csat_artifacts
    assert count(warehouse, csat_drivers, csat_drivers.c.is_driver.is_(True)) > 0
