"""prefect.yaml end to end: a Prefect server on loopback, `prefect deploy --all`, a process worker, and a run
of ``hourly-pipeline`` triggered through the API, then the warehouse and the helpdesk are checked.

Everything runs in its own PREFECT_HOME / databases under tmp_path (not the session test harness); the server
and the worker are stopped in ``finally``. Slow: the server alone takes 20-60 s to start on this machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from helpdesk_sim.testing import free_port, running_simulator
from tasks.settings import get_settings
from tasks.warehouse.engine import get_engine
from tasks.warehouse.schema import ticket_predictions, tickets, writeback_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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


def test_deploy_from_prefect_yaml_and_run_hourly_pipeline_through_the_api(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    dataset = generate_dataset(GeneratorConfig(seed=31, start=datetime(2026, 7, 1, tzinfo=UTC), days=20,
                                               tickets_per_day=120))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    prefect_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    prefect_env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # No cron-created runs while the test runs: only the run we trigger.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    })
    server = worker = None
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    # The clock starts two days before the end of the data, so later hours bring new tickets.
    with running_simulator(dataset, clock=int(datetime(2026, 7, 19, tzinfo=UTC).timestamp())) as sim:
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
        }
        for key, value in ticketlens_env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           prefect_env, server_log)
            wait_healthy(f"{api}/health", server, server_log, timeout=300)
            cli(["work-pool", "create", "ticketlens-process", "--type", "process", "--overwrite"], prefect_env)
            deployed = cli(["--no-prompt", "deploy", "--all"], prefect_env)
            assert "hourly-pipeline/hourly-pipeline" in deployed

            with temporary_settings(updates={PREFECT_API_URL: api}):
                from flows.ingest import ingest
                from flows.nightly_retrain import nightly_retrain

                # A champion first (and the history it learns from), in this process against the same server.
                ingest()
                trained = nightly_retrain()
                assert trained["promoted"]
                before = count(warehouse, tickets)
                with get_engine(warehouse).connect() as conn:
                    earlier_runs = set(conn.execute(sa.select(tickets.c.run_id).distinct()).scalars())
                window_start = datetime.fromtimestamp(sim.now(), UTC)
                sim.advance(3 * 3600)  # three hours of new tickets and updates for the hourly run to pick up

                worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "ticketlens-process"],
                               {**prefect_env, **ticketlens_env}, worker_log)
                run = run_deployment(
                    "hourly-pipeline/hourly-pipeline", timeout=1200, poll_interval=3,
                    parameters={"start": window_start.isoformat(), "end": datetime.fromtimestamp(sim.now(),
                                                                                                 UTC).isoformat()},
                )
                assert run.state is not None and run.state.is_completed(), (
                    f"hourly-pipeline ended {run.state}:\n{worker_log.read_text()[-5000:]}")
                with get_client(sync_client=True) as client:
                    deployments = {d.name: d for d in client.read_deployments()}
                    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
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
            get_settings.cache_clear()

        run_id = str(run.id)
        # The deployments are the ones prefect.yaml declares, with its schedules and concurrency.
        assert {"hourly-pipeline", "nightly-retrain", "backfill", "ingest"} <= set(deployments)
        hourly = deployments["hourly-pipeline"]
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in hourly.schedules] == [
            ("5 * * * *", "UTC", True)]
        assert hourly.global_concurrency_limit.limit == 1
        assert not deployments["backfill"].schedules and not deployments["ingest"].schedules
        # Tickets ingested by the deployed run: the new hours arrived, and the warehouse matches the helpdesk.
        assert count(warehouse, tickets) > before
        # (ingest runs as a subflow of hourly-pipeline, so the tickets carry the subflow's run id)
        assert count(warehouse, tickets, tickets.c.run_id.not_in(earlier_runs)) > 0
        assert count(warehouse, tickets) == len(sim.snapshot()["tickets"])
        # Predictions written by that run with the champion, and written back to the helpdesk.
        p = ticket_predictions
        assert count(warehouse, p, p.c.run_id == run_id, p.c.model_version == trained["version"]) > 0
        with get_engine(warehouse).connect() as conn:
            states = dict(conn.execute(sa.select(writeback_state.c.status, sa.func.count())
                                       .group_by(writeback_state.c.status)).all())
        assert states.get("done", 0) == count(warehouse, p, p.c.is_current.is_(True)) > 0
        assert set(states) == {"done"}
        assert sim.updates(), "nothing was written back to the helpdesk"
        # The run published its summary, naming the window it was given.
        summary = next(a for a in artifacts if a.key == "hourly-pipeline-summary")
        assert f"window: [{window_start:%Y-%m-%d %H:%M}" in summary.data and "(parameters)" in summary.data
