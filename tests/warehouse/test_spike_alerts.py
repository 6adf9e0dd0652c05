"""Alert lifecycle in the warehouse (SQLite and PostgreSQL) and Slack delivery to a local webhook receiver."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.slack import SECRET_PATH, Receiver
from tests.support.spikes import SPIKE_AT, seed
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.schema import slack_messages, spike_alerts
from ticketlens.models.alert_messages import blocks_text
from ticketlens.models.spike_report import SlackDelivery
from ticketlens.tasks.spikes import detect_spikes_task, send_pending_messages


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


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
