"""Slack spike messages: links to the Prefect run and artifact, chart image only when Slack can fetch it, a
context line on open and on resolve, and a p-value stated with the counts of the window it was computed on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketlens.models.alert_messages import AlertContext, blocks_text, build_message, is_public_url
from ticketlens.models.spikes import HOUR, Alert

HOUR_START = datetime(2026, 12, 1, 9, tzinfo=UTC)
RUN = "http://127.0.0.1:4200/runs/flow-run/0d7a-run"
ARTIFACT = "http://127.0.0.1:4200/artifacts/key/spike-alerts"


def alert(**kw) -> Alert:
    base = dict(series="app_technical.crash", started_at=HOUR_START, last_spike_at=HOUR_START, observed=9,
                expected=2.1, ratio=4.3, p_value=2.0e-6, peak_observed=9, notified_observed=9, hours_flagged=1)
    return Alert(**{**base, **kw})


def ctx(**kw) -> AlertContext:
    base = dict(path="App › Crash", kind="leaf", search_url="https://acme.zendesk.com/agent/search/1?q=tags%3Ax",
                run_url=RUN, artifact_url=ARTIFACT)
    return AlertContext(**{**base, **kw})


def context_text(blocks: list[dict]) -> str:
    (block,) = [b for b in blocks if b["type"] == "context"]
    return block["elements"][0]["text"]


@pytest.mark.parametrize("kind", ["opened", "grew"])
def test_open_message_links_the_prefect_run_and_artifact_in_a_context_line(kind):
    _, blocks = build_message(kind, alert(), ctx(), HOUR_START)
    line = context_text(blocks)
    assert f"<{RUN}|Prefect run>" in line and f"<{ARTIFACT}|artifact `spike-alerts`>" in line
    assert "09:00–10:00 UTC" in line
    assert f"<{RUN}|The Prefect run that raised it>" in blocks_text(blocks)


def test_resolve_message_has_the_same_context_line():
    resolved = alert(state="resolved", resolved_at=HOUR_START + 3 * HOUR)
    _, blocks = build_message("resolved", resolved, ctx(), HOUR_START + 3 * HOUR)
    assert f"<{RUN}|Prefect run>" in context_text(blocks) and "Tickets in the helpdesk" in context_text(blocks)


def test_p_value_is_stated_with_the_counts_of_its_window():
    one_hour_text, one_hour = build_message("opened", alert(), ctx(), HOUR_START)
    assert "2.0e-06 for 9 vs 2.1 in the hour" in blocks_text(one_hour) and "2.0e-06 for 9 vs 2.1" in one_hour_text
    # A sustained surge found over 3 hours: the p-value belongs to 3 hours' tickets, not to the hour's 9.
    text, blocks = build_message("opened", alert(), ctx(window_hours=3, window_observed=24, window_expected=6.4),
                                 HOUR_START)
    visible = blocks_text(blocks)
    assert "2.0e-06 for 24 vs 6.4 over the last 3 h" in visible and "for 24 vs 6.4 over the last 3 h" in text
    assert "9 vs 2.1 tickets in the hour to 10:00 UTC" in visible  # the hour's own numbers, labelled as such


def test_chart_is_an_image_only_when_slack_can_fetch_it():
    local = "http://127.0.0.1:8766/spike-app_technical-crash-20261201T09.png"
    _, blocks = build_message("opened", alert(), ctx(chart=local), HOUR_START)
    assert not [b for b in blocks if b["type"] == "image"] and local in blocks_text(blocks)
    public = "https://reports.example.org/spike-app_technical-crash-20261201T09.png"
    _, blocks = build_message("opened", alert(), ctx(chart=public), HOUR_START)
    (image,) = [b for b in blocks if b["type"] == "image"]
    assert image["image_url"] == public and image["alt_text"]


@pytest.mark.parametrize(("url", "public"), [
    ("https://reports.example.org/a.png", True), ("http://8.8.8.8/a.png", True),
    ("http://127.0.0.1:8766/a.png", False), ("http://localhost/a.png", False), ("http://10.1.2.3/a.png", False),
    ("http://192.168.0.4/a.png", False), ("http://reports/a.png", False), ("http://box.local/a.png", False),
    ("var/reports/a.png", False), (None, False), ("ftp://example.org/a.png", False),
])
def test_is_public_url(url, public):
    assert is_public_url(url) is public
