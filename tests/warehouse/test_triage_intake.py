"""Triage intake: Zendesk signature checks, every refusal (status, message, nothing stored), idempotency.

No model and no helpdesk are needed here: the intake only verifies, parses and commits to the inbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine, migrate
from ticketlens.adapters.warehouse.schema import triage_inbox
from ticketlens.services.triage.app import INTAKE_PATH, create_app
from ticketlens.services.triage.payload import PayloadError, parse_delivery
from ticketlens.services.triage.service import TriageService
from ticketlens.services.triage.settings import TriageSettings
from ticketlens.services.triage.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_timestamp,
    sign,
    signature_matches,
    utc_timestamp,
)

SECRET = "ZendeskSigningSecret123"


def test_signature_matches_a_known_vector():
    # Computed independently with: printf '%s' '2026-12-01T12:00:00Z{"ticket":{"id":"35436"}}' |
    #   openssl dgst -sha256 -hmac 'ZendeskSigningSecret123' -binary | base64
    body = b'{"ticket":{"id":"35436"}}'
    expected = "z+MQv2CW1baI1dF8Sm9M+huilDlRX4sOZe2b3iwdw/o="
    assert sign(SECRET, "2026-12-01T12:00:00Z", body) == expected
    assert signature_matches(SECRET, "2026-12-01T12:00:00Z", body, expected)
    assert not signature_matches(SECRET, "2026-12-01T12:00:01Z", body, expected)  # the timestamp is signed
    assert not signature_matches(SECRET, "2026-12-01T12:00:00Z", body + b" ", expected)  # so is every byte
    assert not signature_matches("other", "2026-12-01T12:00:00Z", body, expected)


def test_signature_timestamps_parse_as_utc():
    assert parse_timestamp("2026-12-01T12:00:00Z") == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_timestamp("1764590400") == datetime(2025, 12, 1, 12, tzinfo=UTC)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp("2026-12-01T12:00:00") is None  # no zone: ambiguous, refused


def test_payload_shapes():
    trigger = parse_delivery({"event": "ticket.created", "ticket": {"id": "42", "created_at": "2026-12-01T10:00:00Z"}})
    assert (trigger.ticket_id, trigger.ticket, trigger.event_key) == (42, None,
                                                                        "ticket.created:2026-12-01T10:00:00+00:00")
    event = parse_delivery({"type": "zen:event-type:ticket.created", "id": "evt-1", "detail": {
        "id": "7", "subject": "Card declined", "description": "My card was declined", "tags": ["vip"],
        "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z"}})
    assert event.ticket_id == 7 and event.event_key == "evt-1" and event.ticket["tags"] == ["vip"]
    spaced = parse_delivery({"ticket": {"id": 8, "subject": "s", "tags": "vip urgent",
                                        "updated_at": "2026-12-01T10:00:00Z"}})
    assert spaced.ticket["tags"] == ["vip", "urgent"]
    for bad, message in (([1, 2], "JSON object"), ({"foo": 1}, "no ticket"), ({"ticket": {"id": "x"}}, "positive"),
                         ({"type": "zen:event-type:user.created", "detail": {"id": "1"}}, "is not")):
        with pytest.raises(PayloadError, match=message):
            parse_delivery(bad)


@pytest.fixture
def intake(warehouse_url, tmp_path):
    migrate(warehouse_url)
    settings = Settings(warehouse_url=warehouse_url, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    triage = TriageSettings(webhook_secret=SECRET, max_body_bytes=2048, queue_size=3, replay_window_seconds=300)
    service = TriageService(settings, triage)
    with TestClient(create_app(service, manage=False)) as client:
        yield client, service, warehouse_url


def post(client, body: bytes, *, secret: str = SECRET, stamp: str | None = None, headers: dict | None = None,
         sign_it: bool = True):
    stamp = stamp or utc_timestamp()
    h = {"Content-Type": "application/json"}
    if sign_it:
        h.update({SIGNATURE_HEADER: sign(secret, stamp, body), TIMESTAMP_HEADER: stamp})
    h.update(headers or {})
    return client.post(INTAKE_PATH, content=body, headers=h)


def stored(url: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(triage_inbox)).scalar_one()


def body_for(ticket_id: int, **extra) -> bytes:
    return json.dumps({"event": "ticket.created", "ticket": {"id": str(ticket_id),
                       "created_at": "2026-12-01T10:00:00Z", **extra}}).encode()


def test_every_bad_input_is_refused_with_a_reason_and_nothing_is_stored(intake):
    client, _service, url = intake
    good = body_for(1)
    old = utc_timestamp(datetime.now(UTC) - timedelta(seconds=301))
    future = utc_timestamp(datetime.now(UTC) + timedelta(seconds=400))
    cases = [
        (post(client, good, sign_it=False), 401, "missing_signature", "X-Zendesk-Webhook-Signature"),
        (post(client, good, headers={SIGNATURE_HEADER: ""}), 401, "missing_signature", "missing header"),
        (post(client, good, secret="wrong"), 401, "bad_signature", "does not match"),
        (post(client, good, headers={SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}), 401, "bad_signature", "signing secret"),
        (post(client, good, stamp=old), 401, "stale_timestamp", "replay window of 300 s"),
        (post(client, good, stamp=future), 401, "stale_timestamp", "outside the replay window"),
        (post(client, good, stamp="not-a-time"), 401, "bad_timestamp", "ISO 8601"),
        (post(client, b"x" * 2049), 413, "body_too_large", "2048 bytes"),
        (post(client, b'{"ticket": {"id": "1"', ), 400, "bad_json", "not valid JSON at line 1"),
        (post(client, b"\xff\xfe{}"), 400, "bad_json", "not UTF-8"),
        (post(client, b'{"hello": "world"}'), 400, "bad_payload", "no ticket in the body"),
        (post(client, b'{"ticket": {"id": -3}}'), 400, "bad_payload", "positive integer"),
    ]
    for response, status, reason, message in cases:
        assert response.status_code == status, (reason, response.text)
        assert response.json()["error"] == reason
        assert message in response.json()["message"]
    assert stored(url) == 0
    metrics = client.get("/metrics").text
    assert 'triage_webhooks_rejected_total{reason="bad_signature"} 2.0' in metrics
    assert 'triage_webhooks_rejected_total{reason="body_too_large"} 1.0' in metrics


def test_body_cap_does_not_trust_content_length(intake):
    client, _service, url = intake
    big = b"x" * 5000

    def chunks():  # chunked transfer: no Content-Length at all
        yield big[:1000]
        yield big[1000:]

    stamp = utc_timestamp()
    response = client.post(INTAKE_PATH, content=chunks(), headers={
        SIGNATURE_HEADER: sign(SECRET, stamp, big), TIMESTAMP_HEADER: stamp})
    assert response.status_code == 413
    assert stored(url) == 0


def test_no_secret_configured_refuses_everything(warehouse_url, tmp_path):
    migrate(warehouse_url)
    service = TriageService(Settings(warehouse_url=warehouse_url), TriageSettings(webhook_secret=None))
    with TestClient(create_app(service, manage=False)) as client:
        response = post(client, body_for(1))
    assert response.status_code == 401 and "TICKETLENS_TRIAGE_WEBHOOK_SECRET" in response.json()["message"]
    assert stored(warehouse_url) == 0


def test_duplicate_delivery_is_acknowledged_and_changes_nothing(intake):
    client, service, url = intake
    first = post(client, body_for(5))
    assert first.status_code == 200 and first.json() == {"status": "accepted", "ticket_id": 5}
    with get_engine(url).connect() as conn:
        before = conn.execute(sa.select(triage_inbox)).mappings().all()
    again = post(client, body_for(5))  # Zendesk's retry: signed afresh, same body
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    with get_engine(url).connect() as conn:
        after = conn.execute(sa.select(triage_inbox)).mappings().all()
    assert [dict(r) for r in after] == [dict(r) for r in before]
    assert service.depth == 1
    assert "triage_webhooks_duplicate_total 1.0" in client.get("/metrics").text


def test_full_queue_answers_503_with_retry_after_and_stores_nothing_more(intake):
    client, _service, url = intake
    for ticket_id in (1, 2, 3):
        assert post(client, body_for(ticket_id)).status_code == 200
    response = post(client, body_for(4))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == "queue_full"
    assert stored(url) == 3


def test_health_and_readiness_without_a_champion(intake):
    client, _service, _url = intake
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["warehouse"] == "ok"


def test_env_example_lists_every_triage_setting():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert [n for n in TriageSettings.model_fields if f"TICKETLENS_TRIAGE_{n.upper()}=" not in text] == []
    assert TriageSettings(webhook_secret="s3cret").webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(TriageSettings(webhook_secret="s3cret"))  # SecretStr: never printed


def test_the_service_refuses_to_run_as_root_without_the_override(monkeypatch, capsys):
    import ticketlens.services.triage.__main__ as entry

    monkeypatch.setattr(entry.os, "geteuid", lambda: 0)
    monkeypatch.delenv("TICKETLENS_TRIAGE_ALLOW_ROOT", raising=False)
    assert entry.main([]) == 2
    assert "refuses to run as root" in capsys.readouterr().err
