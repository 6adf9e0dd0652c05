"""Alert lifecycle in the warehouse (SQLite and PostgreSQL) and Slack delivery to a local webhook receiver."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import sqlalchemy as sa

from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import slack_messages, spike_alerts, ticket_predictions, tickets
from ticketlens.models.alert_messages import blocks_text
from ticketlens.models.spike_report import SlackDelivery
from ticketlens.tasks.spikes import detect_spikes_task, send_pending_messages

START = datetime(2026, 6, 1, tzinfo=UTC)
SPIKE_AT = START + timedelta(days=15, hours=10)  # three hours of 40/hour "app crashes"
SECRET_PATH = "/services/T0TEST/B0TEST/s3cr3tT0kenValue"
PII_SUBJECT = "App crashes!! reach me at jane.doe@example.com or +1 415 555 0134, see https://evil.example.com/x"


class Receiver:
    """A stand-in for Slack's incoming webhook on 127.0.0.1: records bodies, answers with planned statuses."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append({"path": self.path, "status": status, "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"internal_error")

            def log_message(self, *args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def delivered(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["status"] == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def seed(url: str) -> None:
    """15½ days of steady tickets in three categories, then a three-hour surge of app crashes."""
    rng = np.random.default_rng(11)
    rates = {("account.password_reset", "account"): 6.0, ("app_technical.crash", "app_technical"): 3.0,
             ("pins_boards.missing_pins", "pins_boards"): 4.0}
    rows, preds, tid = [], [], 1
    now = datetime.now(UTC)
    for h in range(16 * 24):
        hour = START + timedelta(hours=h)
        for (cat, parent), rate in rates.items():
            n = rng.poisson(rate)
            if cat == "app_technical.crash" and SPIKE_AT <= hour < SPIKE_AT + timedelta(hours=3):
                n = 40
            for k in range(n):
                created = hour + timedelta(seconds=int(rng.integers(0, 3500)) if k else 3599)  # k=0: newest
                subject = PII_SUBJECT if cat == "app_technical.crash" and k == 0 else f"{cat} question {tid}"
                rows.append({"id": tid, "created_at": created, "updated_at": created, "subject": subject,
                             "status": "open", "extracted_at": now})
                preds.append({"ticket_id": tid, "ticket_updated_at": created, "model_name": "m", "model_version": "1",
                              "category": cat, "parent_category": parent, "feedback_type": "support",
                              "confidence": 0.9, "top3": [], "sentiment": "neutral", "sentiment_score": 0.0,
                              "is_spam": False, "tier": 1, "routing_group": "g", "auto_reply": False,
                              "is_current": True, "predicted_at": now})
                tid += 1
    with get_engine(url).begin() as conn:
        conn.execute(sa.insert(tickets), rows)
        conn.execute(sa.insert(ticket_predictions), preds)


def settings_for(url: str, tmp_path, webhook: str | None) -> Settings:
    return Settings(warehouse_url=url, slack_webhook_url=webhook, reports_dir=str(tmp_path / "reports"),
                    helpdesk_base_url="https://acme.zendesk.com", spike_min_history_hours=72)


def run_hours(settings: Settings, first_end: datetime, last_end: datetime) -> list:
    out = []
    end = first_end
    while end <= last_end:
        out.append(detect_spikes_task.fn(settings, "test-run", end))
        out.append(send_pending_messages(settings))
        end += timedelta(hours=1)
    return out


def rows(url: str, table) -> list[dict]:
    with get_engine(url).connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def test_one_message_per_incident_and_one_resolution(warehouse_url, tmp_path, receiver, caplog):
    seed(warehouse_url)
    settings = settings_for(warehouse_url, tmp_path, receiver.url)
    with caplog.at_level(logging.DEBUG):
        # six quiet hours (noise: no message), the three spike hours, then the calm after it
        run_hours(settings, SPIKE_AT - timedelta(hours=5), SPIKE_AT + timedelta(hours=7))
    alerts = rows(warehouse_url, spike_alerts)
    assert [(a["series"], a["state"], a["started_at"]) for a in alerts] == [("app_technical.crash", "resolved", SPIKE_AT)]
    assert alerts[0]["peak_observed"] == 40 and alerts[0]["hours_flagged"] == 3
    texts = [b["text"] for b in receiver.delivered]
    assert len(texts) == 2, texts
    assert texts[0].startswith("Ticket spike: App & technical › App crashes")
    assert texts[1].startswith("Resolved:")
    opened = receiver.delivered[0]
    visible = opened["text"] + blocks_text(opened["blocks"])
    assert "40 vs" in visible and "2026-06-16 10:00 UTC" in visible
    assert "https://acme.zendesk.com/agent/search/1?q=tags%3Atl_cat_app_technical-crash" in visible
    assert "spike-alerts" in visible
    # no PII, no secret: not in Slack, not in the warehouse, not in the logs
    everything = json.dumps([r["body"] for r in receiver.requests]) + json.dumps(rows(warehouse_url, slack_messages), default=str) \
        + caplog.text
    for leak in ("jane.doe", "555 0134", "evil.example", "s3cr3tT0kenValue"):
        assert leak not in everything, leak
    assert "&lt;email&gt;" in visible
    chart = alerts[0]["chart_path"]
    assert chart and chart.endswith(".png") and (tmp_path / "reports").exists()
    with open(chart, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # every message went out exactly once
    statuses = [m["status"] for m in rows(warehouse_url, slack_messages)]
    assert statuses == ["sent", "sent"]


def test_failed_post_is_kept_and_retried_next_run(warehouse_url, tmp_path, receiver):
    seed(warehouse_url)
    settings = settings_for(warehouse_url, tmp_path, receiver.url)
    receiver.statuses = [500]
    detect_spikes_task.fn(settings, "run-1", SPIKE_AT + timedelta(hours=1))
    first = send_pending_messages(settings)  # Slack answers 500: kept, not raised
    assert first == SlackDelivery(sent=0, failed=1, not_sent=0)
    (message,) = rows(warehouse_url, slack_messages)
    assert message["status"] == "failed" and message["attempts"] == 1 and "500" in message["last_error"]
    assert "s3cr3t" not in message["last_error"]
    assert rows(warehouse_url, spike_alerts)[0]["state"] == "open"
    # next hour: the stored message is retried and delivered, and the ongoing spike sends nothing new
    detect_spikes_task.fn(settings, "run-2", SPIKE_AT + timedelta(hours=2))
    assert send_pending_messages(settings) == SlackDelivery(sent=1, failed=0, not_sent=0)
    assert [r["status"] for r in receiver.requests] == [500, 200]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert rows(warehouse_url, slack_messages)[0]["attempts"] == 2


def test_slack_unreachable_or_unconfigured_never_fails(warehouse_url, tmp_path, caplog):
    seed(warehouse_url)
    dead = Settings(**{**settings_for(warehouse_url, tmp_path, None).model_dump(),
                       "slack_webhook_url": "http://127.0.0.1:9" + SECRET_PATH})
    detect_spikes_task.fn(dead, "run-1", SPIKE_AT + timedelta(hours=1))
    with caplog.at_level(logging.DEBUG):
        assert send_pending_messages(dead).failed == 1
    (message,) = rows(warehouse_url, slack_messages)
    assert message["status"] == "failed" and "s3cr3t" not in (message["last_error"] + caplog.text)
    unset = settings_for(warehouse_url, tmp_path, None)
    with caplog.at_level(logging.INFO):
        assert send_pending_messages(unset) == SlackDelivery(sent=0, failed=0, not_sent=1)
    assert "not sent: no webhook configured" in caplog.text
    assert rows(warehouse_url, slack_messages)[0]["status"] == "not_sent"
    assert rows(warehouse_url, spike_alerts)[0]["series"] == "app_technical.crash"


def test_rerun_of_an_hour_and_catch_up_after_missed_runs(warehouse_url, tmp_path, receiver):
    seed(warehouse_url)
    settings = settings_for(warehouse_url, tmp_path, receiver.url)
    detect_spikes_task.fn(settings, "run-1", SPIKE_AT - timedelta(hours=2))
    # the pipeline was down for five hours: the next run evaluates the missed hours in order
    summary = detect_spikes_task.fn(settings, "run-2", SPIKE_AT + timedelta(hours=3))
    assert len(summary.hours) == 5 and summary.opened == 1
    again = detect_spikes_task.fn(settings, "run-3", SPIKE_AT + timedelta(hours=3))
    assert again.replay and again.opened == again.grew == again.resolved == 0
    send_pending_messages(settings)
    assert len(receiver.delivered) == 1
    assert len(rows(warehouse_url, spike_alerts)) == 1
