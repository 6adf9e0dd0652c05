"""Secrets and PII: run every flow with a recognisable fake token, then look for it everywhere it could leak.

Scanned: Python log records (flow/task run loggers and the helpdesk client), the logs and artifacts stored by
the Prefect API, MLflow params/tags/artifact files, exception messages, write-back errors and every warehouse
table. The token is also looked for in its Basic-auth form (base64 of ``email/token:TOKEN``). Customer e-mail
addresses and phone numbers from the tickets must not reach MLflow (params, tags, artifacts, the model's
vocabulary). Plus a static audit: no SQL text built by string interpolation in tasks/, flows/ or models/.
"""

from __future__ import annotations

import ast
import base64
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect import flow

from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from helpdesk_sim.testing import running_simulator
from tasks.settings import SettingsError, get_settings, load_settings
from tasks.warehouse.engine import get_engine
from tasks.warehouse.schema import metadata

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tlFAKEsecret-7c1e9d2b40"
OAUTH = "tlFAKEoauth-51a0e6c3d9"
WRONG = "tlFAKEwrong-0b9d7a2e13"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        out = []
        for r in self.records:
            out.append(r.getMessage())
            if r.exc_info and r.exc_info[1] is not None:
                out.append(repr(r.exc_info[1]))
        return "\n".join(out)


def needles(email: str, *tokens: str) -> list[str]:
    """A token in clear and in every Basic-auth header it could appear in."""
    out = list(tokens)
    for token in tokens:
        out.append(base64.b64encode(f"{email}/token:{token}".encode()).decode())
    return out


def warehouse_text(url: str) -> str:
    parts = []
    with get_engine(url).connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def prefect_text() -> str:
    from prefect.client.orchestration import get_client

    parts = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            logs = client.read_logs(limit=200, offset=offset)
            parts += [log.message for log in logs]
            if len(logs) < 200:
                break
            offset += 200
        for artifact in client.read_artifacts(limit=1000):
            parts.append(str(artifact.data))
            parts.append(str(artifact.description))
    return "\n".join(parts)


def mlflow_text(tracking_uri: str, artifacts: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    parts = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            parts += [f"{k}={v}" for k, v in run.data.params.items()]
            parts += [f"{k}={v}" for k, v in run.data.tags.items()]
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name='{model.name}'"):
            parts += [str(version.tags), str(version.description), str(version.source)]
    for path in artifacts.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


@flow(name="push-only")
def push_only() -> dict:
    from tasks.writeback import push_writeback

    return push_writeback(get_settings(), "secret-scan")


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(GeneratorConfig(seed=31, start=datetime(2026, 7, 1, tzinfo=UTC), days=10,
                                            tickets_per_day=150))


@pytest.mark.slow
def test_no_secret_or_pii_leaks_from_any_flow(prefect_harness, dataset, sqlite_url, tmp_path, monkeypatch):
    from flows.hourly_pipeline import hourly_pipeline
    from flows.ingest import ingest
    from flows.nightly_retrain import nightly_retrain

    handler = Records()
    names = ("prefect", "ticketlens", "tasks", "mlflow", "httpx")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    artifacts = tmp_path / "mlartifacts"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raised: list[str] = []
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
            }
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            get_settings.cache_clear()
            ingest()
            nightly_retrain()  # promotes, then backfills
            sim.set_faults(error_burst=2)  # a retried blip, logged
            hourly_pipeline()
            sim.advance(3600)
            sim.set_faults(error_rate=1.0)  # write-back fails: the error text is stored in the warehouse
            from tasks.warehouse.schema import writeback_state

            with get_engine(sqlite_url).begin() as conn:
                conn.execute(sa.update(writeback_state).values(status="pending"))
            assert push_only()["failed"] > 0
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

    secrets = needles(sim.email, TOKEN, OAUTH, WRONG)
    places = {
        "log records": handler.text(),
        "Prefect logs and artifacts": prefect_text(),
        "MLflow params, tags and artifacts": mlflow_text(tracking, artifacts),
        "exceptions": "\n".join(raised),
        "warehouse": warehouse_text(sqlite_url),
    }
    assert all(places.values()), {k: len(v) for k, v in places.items()}  # each place really was read
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"

    # PII: customer e-mails and phone numbers written in the tickets never reach MLflow.
    texts = " ".join(t.description or "" for t in dataset.tickets)
    emails = set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", texts))
    phones = {p for p in re.findall(r"\+?\d[\d\s().-]{8,}\d", texts) if sum(c.isdigit() for c in p) >= 9}
    assert emails and phones
    in_mlflow = places["MLflow params, tags and artifacts"]
    leaked = [e for e in emails if e in in_mlflow] + [p for p in phones if p in in_mlflow]
    assert not leaked, f"PII in MLflow: {leaked[:3]}"
    assert "<email>" in in_mlflow or "email" in in_mlflow  # the model vocabulary holds the mask, not addresses


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
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                arg = node.args[0]
                built = isinstance(arg, ast.JoinedStr) or (
                    isinstance(arg, ast.BinOp) and isinstance(arg.op, (ast.Mod, ast.Add))) or (
                    isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format")
                if name in SQL_CALLS and built:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
