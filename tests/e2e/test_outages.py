"""Outages and overlaps: two ingest processes at once, PostgreSQL "restarted" mid-run, MLflow unreachable."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect import flow
from sqlalchemy.engine import make_url

from tests.support.tcp_proxy import TcpProxy
from tests.support.warehouse import assert_warehouse_equals_source
from ticketlens.adapters.settings import get_settings
from ticketlens.adapters.warehouse.engine import WarehouseUnavailableError, get_engine, migrate
from ticketlens.adapters.warehouse.schema import (
    extraction_state,
    raw_records,
    run_locks,
    ticket_predictions,
    tickets,
)
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import client_env, free_port, running_simulator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=9, start=datetime(2026, 5, 1, tzinfo=UTC), days=3,
                                            tickets_per_day=250))


def env_for(url: str, sim, **extra: str) -> dict[str, str]:
    return client_env(url, sim, TICKETLENS_HELPDESK_EXPORT_PAGE_SIZE="100", **extra)


def apply(monkeypatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def pages_loaded(url: str) -> int:
    try:
        with get_engine(url).connect() as conn:
            return conn.execute(sa.select(extraction_state.c.pages).where(extraction_state.c.stream == "tickets")
                                ).scalar_one_or_none() or 0
    except sa.exc.SQLAlchemyError:
        return 0


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def test_two_overlapping_ingest_processes_do_the_work_once(prefect_harness, warehouse_url, dataset, monkeypatch,
                                                           tmp_path):
    from prefect.settings import PREFECT_API_URL

    from ticketlens.flows.ingest import ingest

    with running_simulator(dataset, slow_ms=150) as sim:
        env = env_for(warehouse_url, sim)
        apply(monkeypatch, env)
        first = subprocess.Popen(  # the first run, in its own process
            [sys.executable, "-c", "from flows.ingest import ingest; print(ingest())"], cwd=ROOT,
            env={**os.environ, **env, "PREFECT_API_URL": PREFECT_API_URL.value()},
            stdout=subprocess.PIPE, stderr=(tmp_path / "first.log").open("w"), text=True)
        try:
            def first_holds_lock() -> bool:
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
                try:
                    with get_engine(warehouse_url).connect() as conn:
                        return conn.execute(sa.select(run_locks.c.owner)).scalar_one_or_none() is not None
                except sa.exc.SQLAlchemyError:
                    return False

            wait_for(first_holds_lock, 180)
            # the overlapping run, in this process: exits cleanly without touching anything, as "Skipped"
            second = ingest(return_state=True)
            assert second.is_cancelled() and second.name == "Skipped", second
            out, _ = first.communicate(timeout=300)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0, (tmp_path / "first.log").read_text()[-2000:]
        assert "'end_of_stream': True" in out
        assert_warehouse_equals_source(warehouse_url, sim)
        with get_engine(warehouse_url).connect() as conn:
            runs = set(conn.execute(sa.select(raw_records.c.run_id).distinct()).scalars())
            locks = conn.execute(sa.select(sa.func.count()).select_from(run_locks)).scalar_one()
        assert len(runs) == 1 and locks == 0  # only the first run landed records; its lock is released


def test_postgres_restarted_mid_run_fails_clearly_and_the_next_run_resumes(prefect_harness, postgres_url, dataset,
                                                                           monkeypatch):
    from ticketlens.flows.ingest import ingest

    real = make_url(postgres_url)
    with TcpProxy((real.host, real.port or 5432)) as proxy, running_simulator(dataset, slow_ms=250) as sim:
        via_proxy = real.set(port=proxy.port, password="pgFAKEpass").render_as_string(hide_password=False)
        migrate(via_proxy)
        apply(monkeypatch, env_for(via_proxy, sim))

        def restart_when_a_page_is_in() -> None:
            wait_for(lambda: pages_loaded(postgres_url) >= 1, 180)
            proxy.refuse()  # the server goes down ...
            proxy.drop_all()  # ... taking every session with it
            time.sleep(1.5)

        restarter = threading.Thread(target=restart_when_a_page_is_in)
        restarter.start()
        with pytest.raises(WarehouseUnavailableError) as info:
            ingest()
        restarter.join()
        message = str(info.value)
        assert f"127.0.0.1:{proxy.port}/test" in message and "TICKETLENS_WAREHOUSE_URL" in message
        assert "next run resumes" in message
        assert "pgFAKEpass" not in message and "pgFAKEpass" not in repr(info.value)
        partial = pages_loaded(postgres_url)
        assert partial >= 1
        with get_engine(postgres_url).connect() as conn:
            kept = conn.execute(sa.select(sa.func.count()).select_from(tickets)).scalar_one()
        assert 0 < kept < len(sim.snapshot()["tickets"])  # committed pages kept

        proxy.accept()  # the server is back (same address)
        sim.set_faults(slow_ms=0)
        get_engine.cache_clear()
        ingest()
        assert_warehouse_equals_source(postgres_url, sim)


@flow(name="score-only")
def score_only() -> dict:
    from ticketlens.tasks.scoring import score_new_tickets

    return asdict(score_new_tickets(get_settings(), "outage-test"))


def test_mlflow_unreachable_fails_clearly_or_uses_the_pinned_cached_version(prefect_harness, sqlite_url, dataset,
                                                                           monkeypatch, tmp_path):
    import ticketlens.tasks.scoring
    from ticketlens.flows.nightly_retrain import nightly_retrain
    from ticketlens.helpdesk_sim.seed import seed_warehouse

    seed_warehouse(sqlite_url, dataset)
    cache = tmp_path / "model-cache"
    with running_simulator(dataset) as sim:
        apply(monkeypatch, env_for(sqlite_url, sim,
                                   TICKETLENS_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                   TICKETLENS_MLFLOW_ARTIFACT_LOCATION=str(tmp_path / "mlartifacts"),
                                   TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS="3",
                                   TICKETLENS_TRAINING_MIN_HOLDOUT_ROWS="50",
                                   TICKETLENS_BACKFILL_AFTER_PROMOTION="false",
                                   TICKETLENS_MLFLOW_CACHE_DIR=str(cache)))
        version = str(nightly_retrain()["version"])
        online = score_only()  # MLflow reachable: scores and caches the champion it used
        assert online["model_version"] == version and online["scored"] > 0
        assert (cache / get_settings().model_name / version / "MLmodel").exists()

        def touch_some_tickets() -> None:  # new work for the next hourly run: 20 customers edit their ticket
            with get_engine(sqlite_url).begin() as conn:
                ids = conn.execute(sa.select(tickets.c.id).where(tickets.c.is_deleted.is_(False))
                                   .order_by(tickets.c.id).limit(20)).scalars().all()
                now = datetime.now(UTC)
                # A changed subject (not only a newer timestamp, which scoring treats as an echo of its own
                # write-back and leaves alone: models/echoes.py).
                conn.execute(sa.update(tickets).where(tickets.c.id.in_(ids)).values(
                    extracted_at=now, updated_at=now, subject=tickets.c.subject + f" (edited {now:%H:%M:%S.%f})"))

        def predictions() -> int:
            with get_engine(sqlite_url).connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(ticket_predictions)).scalar_one()

        touch_some_tickets()
        before = predictions()
        down = f"http://mlflow-user:mlFAKEpass@127.0.0.1:{free_port()}"  # nothing listens there
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
        apply(monkeypatch, {"TICKETLENS_MLFLOW_TRACKING_URI": down})
        ticketlens.tasks.scoring._CACHE.clear()  # a fresh worker process: nothing loaded in memory

        with pytest.raises(Exception, match=r"could not be reached.*TICKETLENS_MLFLOW_PINNED_VERSION") as info:
            score_only()
        assert "mlFAKEpass" not in str(info.value) and "nightly-retrain" not in str(info.value)
        assert predictions() == before  # nothing written with a guessed model

        apply(monkeypatch, {"TICKETLENS_MLFLOW_PINNED_VERSION": "999"})
        with pytest.raises(Exception, match="TICKETLENS_MLFLOW_PINNED_VERSION=999 is not cached"):
            score_only()

        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("prefect.task_runs").addHandler(handler)
        try:
            apply(monkeypatch, {"TICKETLENS_MLFLOW_PINNED_VERSION": version})
            pinned = score_only()
        finally:
            logging.getLogger("prefect.task_runs").removeHandler(handler)
        assert {k: pinned[k] for k in ("model_version", "scored")} == {"model_version": version, "scored": 20}
        warned = [r.getMessage() for r in records if "explicitly pinned cached version" in r.getMessage()]
        assert warned and "mlFAKEpass" not in warned[0]
        with get_engine(sqlite_url).connect() as conn:
            versions = set(conn.execute(sa.select(ticket_predictions.c.model_version).distinct()).scalars())
        assert versions == {version}
