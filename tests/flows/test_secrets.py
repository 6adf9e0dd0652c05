"""Secrets and PII: run every flow with a recognisable fake token, then look for it everywhere it could leak.

Scanned: Python log records (flow/task run loggers and the helpdesk client), the logs and artifacts stored by
the Prefect API, MLflow params/tags/artifact files, exception messages, write-back errors and every warehouse
table. The token is also looked for in its Basic-auth form (base64 of ``email/token:TOKEN``). Customer e-mail
addresses and phone numbers from the tickets must not reach MLflow (params, tags, artifacts, the model's
vocabulary). Plus a static audit: no SQL text built by string interpolation in tasks/, flows/ or models/.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect import flow

from tests.support.leak_scan import (
    Records,
    assert_no_leaks,
    configure_prefect_logging,
    mlflow_text,
    needles,
    pii_found,
    prefect_text,
    warehouse_text,
)
from ticketlens.adapters.settings import SettingsError, get_settings, load_settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import running_simulator

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tlFAKEsecret-7c1e9d2b40"
OAUTH = "tlFAKEoauth-51a0e6c3d9"
WRONG = "tlFAKEwrong-0b9d7a2e13"


@flow(name="push-only")
def push_only() -> dict:
    from ticketlens.tasks.writeback import push_writeback

    return asdict(push_writeback(get_settings(), "secret-scan"))


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=31, start=datetime(2026, 7, 1, tzinfo=UTC), days=10,
                                            tickets_per_day=150))


@pytest.mark.slow
def test_no_secret_or_pii_leaks_from_any_flow(prefect_harness, dataset, sqlite_url, tmp_path, monkeypatch):
    from tests.support.slack import SECRET_PATH, Receiver
    from ticketlens.flows.csat_drivers import csat_drivers
    from ticketlens.flows.hourly_pipeline import hourly_pipeline
    from ticketlens.flows.ingest import ingest
    from ticketlens.flows.nightly_retrain import nightly_retrain

    configure_prefect_logging()
    handler = Records()
    names = ("prefect", "ticketlens", "tasks", "mlflow", "httpx")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    artifacts = tmp_path / "mlartifacts"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raised: list[str] = []
    slack = Receiver()  # stands in for Slack's webhook; its URL path is the secret part
    slack.thread.start()
    try:
        with running_simulator(dataset, api_token=TOKEN, oauth_token=OAUTH) as sim:
            env = {
                "TICKETLENS_WAREHOUSE_URL": sqlite_url,
                "TICKETLENS_HELPDESK_BASE_URL": sim.base_url,
                "TICKETLENS_HELPDESK_EMAIL": sim.email,
                "TICKETLENS_HELPDESK_API_TOKEN": TOKEN,
                "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "60000",
                "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": "60000",
                "TICKETLENS_HELPDESK_BACKOFF_BASE_SECONDS": "0.01",
                "TICKETLENS_HELPDESK_BACKOFF_MAX_SECONDS": "0.02",
                "TICKETLENS_HELPDESK_MAX_RETRIES": "1",
                "TICKETLENS_MLFLOW_TRACKING_URI": tracking,
                "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(artifacts),
                "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "5",
                "TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS": "0.05",
                "TICKETLENS_SLACK_WEBHOOK_URL": slack.url,
                "TICKETLENS_REPORTS_DIR": str(tmp_path / "reports"),
                "TICKETLENS_SPIKE_MAX_CATCHUP_HOURS": "240",  # spike detection replays the whole history
            }
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            get_settings.cache_clear()
            ingest()
            nightly_retrain()  # promotes, then backfills
            sim.set_faults(error_burst=1)  # a retried blip, logged (MAX_RETRIES=1)
            hourly_pipeline(end=datetime(2026, 7, 11, tzinfo=UTC))  # ... → write-back → spikes (Slack)
            csat_drivers(start=datetime(2026, 7, 1, tzinfo=UTC), end=datetime(2026, 7, 12, tzinfo=UTC))
            sim.advance(3600)
            sim.set_faults(error_rate=1.0)  # write-back fails: the error text is stored in the warehouse
            from ticketlens.adapters.warehouse.schema import writeback_state

            with get_engine(sqlite_url).begin() as conn:
                conn.execute(sa.update(writeback_state).values(status="pending"))
            pushed = push_only()  # 503 → failed after retries; 500 → sent without a clear answer ("in doubt")
            assert pushed["failed"] + pushed["in_doubt"] > 0
            sim.set_faults(error_rate=0.0)
            for key, value in (("TICKETLENS_HELPDESK_API_TOKEN", WRONG), ("TICKETLENS_HELPDESK_OAUTH_TOKEN", WRONG)):
                monkeypatch.setenv(key, value)
                get_settings.cache_clear()
                with pytest.raises(Exception) as info:
                    ingest()
                raised.append(f"{info.value!r} {info.value}")
                assert "TICKETLENS_HELPDESK" in str(info.value)
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
        get_settings.cache_clear()
        slack.server.shutdown()
        slack.server.server_close()

    places = {
        "log records": handler.text(),
        "Prefect logs and artifacts": prefect_text(),
        "MLflow params, tags and artifacts": mlflow_text(tracking, artifacts),
        "exceptions": "\n".join(raised),
        "warehouse": warehouse_text(sqlite_url),
        "Slack messages": json.dumps([r["body"] for r in slack.requests]),
        "report charts (file names)": "\n".join(str(p) for p in (tmp_path / "reports").rglob("*")),
    }
    assert_no_leaks(places, [*needles(sim.email, TOKEN, OAUTH, WRONG), SECRET_PATH.rsplit("/", 1)[-1]])
    # PII: Slack carries example subjects, masked first.
    leaked = pii_found(places["Slack messages"], [t.description or "" for t in dataset.tickets] +
                       [t.subject or "" for t in dataset.tickets])
    assert not leaked, f"PII in Slack: {leaked[:3]}"

    # PII: customer e-mails and phone numbers written in the tickets never reach MLflow.
    in_mlflow = places["MLflow params, tags and artifacts"]
    leaked = pii_found(in_mlflow, [t.description or "" for t in dataset.tickets])
    assert not leaked, f"PII in MLflow: {leaked[:3]}"


def test_settings_errors_name_the_setting_and_never_echo_values(monkeypatch):
    cases = {
        "TICKETLENS_HELPDESK_TIMEOUT_SECONDS": "-1",
        "TICKETLENS_HELPDESK_BASE_URL": "ftp://tlFAKEsecret-in-url",
        "TICKETLENS_WRITEBACK_CUSTOM_FIELDS": '{"category": "tlFAKEsecret-7c1e9d2b40"}',
        "TICKETLENS_RUN_LOCK_LEASE_SECONDS": "0",
        "TICKETLENS_HELPDESK_EXPORT_PAGE_SIZE": "5000",
    }
    for name, value in cases.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingsError) as info:
            load_settings(_env_file=None)
        assert name in str(info.value)
        assert "tlFAKEsecret" not in str(info.value)
        monkeypatch.delenv(name)


SQL_CALLS = {"text", "exec_driver_sql", "execute"}


def test_sql_is_never_built_by_string_interpolation():
    """``sa.text(...)`` / ``execute(...)`` only with literal SQL (values go in as bound parameters)."""
    offenders = []
    for folder in ("tasks", "flows", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                arg = node.args[0]
                built = isinstance(arg, ast.JoinedStr) or (
                    isinstance(arg, ast.BinOp) and isinstance(arg.op, (ast.Mod, ast.Add))) or (
                    isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format")
                # Interpolating our own identifiers (quoted by the dialect) is reviewed and marked explicitly.
                marked = "sql-identifiers-only" in lines[node.lineno - 1]
                if name in SQL_CALLS and built and not marked:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
