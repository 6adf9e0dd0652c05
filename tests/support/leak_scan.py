"""Where secrets and PII could leak, and how to look for them — reusable by every flow's leak test.

Extend ``places`` in a test with new sinks as they appear: e.g. the JSON bodies a Slack webhook test server
received (``places["slack"] = "\\n".join(bodies)``) or a new artifact directory; ``assert_no_leaks`` and
``pii_found`` work on any text.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import sqlalchemy as sa

from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import metadata

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d\s().-]{8,}\d")


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
        offset = 0
        while True:
            artifacts = client.read_artifacts(limit=200, offset=offset)
            for artifact in artifacts:
                parts.append(str(artifact.data))
                parts.append(str(artifact.description))
            if len(artifacts) < 200:
                break
            offset += 200
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


def configure_prefect_logging() -> None:
    """Run a no-op flow so Prefect's logging config is applied *before* a test attaches its handlers
    (the first flow run of a process re-applies it and would drop them)."""
    from prefect import flow

    @flow(name="configure-logging")
    def noop() -> None:
        return None

    noop()


def assert_no_leaks(places: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Every place was really read (non-empty) and holds none of the secrets."""
    assert all(places.values()), {k: len(v) for k, v in places.items()}
    secrets = list(secrets)
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"


def pii_found(text: str, source_texts: Iterable[str]) -> list[str]:
    """E-mail addresses and phone numbers from the customers' texts that appear in ``text``."""
    joined = " ".join(source_texts)
    emails = set(EMAIL.findall(joined))
    phones = {p for p in PHONE.findall(joined) if sum(c.isdigit() for c in p) >= 9}
    assert emails and phones, "the source texts should contain PII to look for"
    return [e for e in emails if e in text] + [p for p in phones if p in text]
