"""Slack Block Kit messages for spike alerts (pure: text in, dicts out).

Everything that reaches Slack passes through here, and every customer-written string is PII-masked
(``models.text.mask_pii``) and shortened first. No URL with a secret is ever built here: the only links are the
helpdesk's agent search (by the tag TicketLens writes back), the Prefect run and artifact that reported the alert,
and, when configured, the served chart (shown as an image only when Slack can fetch it: a public URL).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

from ticketlens.models.spikes import HOUR, Alert
from ticketlens.models.text import mask_pii, strip_html

ARTIFACT_KEY = "spike-alerts"
MAX_SUBJECT_CHARS = 120


@dataclass(frozen=True)
class AlertContext:
    """What a message needs besides the alert's numbers."""

    path: str  # human category path, e.g. "Account & login › Password reset"
    kind: str  # leaf | parent
    search_url: str  # helpdesk agent search for the category's tag
    examples: Sequence[str] = ()  # raw subjects: masked here
    chart: str | None = None  # chart file path or URL
    window_hours: int = 1  # the window the p-value was computed over (1 = the hour itself)
    window_observed: int | None = None  # tickets in that window (defaults to the hour's count)
    window_expected: float | None = None
    run_url: str | None = None  # the Prefect flow run that evaluated the hour (its page shows the artifact)
    artifact_url: str | None = None  # the Prefect artifact ``spike-alerts`` (latest version, by key)


def is_public_url(url: str | None) -> bool:
    """Can Slack fetch it? http(s) on a host that is not loopback, private, link-local or ``localhost``/``.local``.

    Slack downloads ``image`` blocks itself and rejects the whole message when it cannot, so a chart served on
    127.0.0.1 (``make up``) is linked, never embedded.
    """
    if not url:
        return False
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or host == "localhost" or host.endswith((".local",
                                                                                                 ".localhost")):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." in host  # a DNS name; a bare intranet host name is not reachable from Slack
    return ip.is_global


def safe_subject(subject: str | None) -> str:
    """A subject fit for Slack: HTML stripped, PII masked, one line, shortened, Slack markup neutralised."""
    text = " ".join(mask_pii(strip_html(subject or "")).split())
    if len(text) > MAX_SUBJECT_CHARS:
        text = text[: MAX_SUBJECT_CHARS - 1] + "…"
    # Slack treats <...> as links/mentions and & as an entity start: escape as its docs ask.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") or "(no subject)"


def helpdesk_search_url(base_url: str, tag: str) -> str:
    """Zendesk agent search for tickets carrying ``tag``."""
    return f"{base_url.rstrip('/')}/agent/search/1?q={quote('tags:' + tag)}"


def _when(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def build_message(kind: str, alert: Alert, ctx: AlertContext, hour: datetime) -> tuple[str, list[dict]]:
    """(fallback text, Block Kit blocks) for an ``opened``, ``grew`` or ``resolved`` notification."""
    if kind == "resolved":
        calm_since = (alert.last_spike_at or alert.started_at) + HOUR
        hours = max(int((calm_since - alert.started_at).total_seconds() // 3600), 1)
        text = (f"Resolved: {ctx.path} is back to normal (spike since {_when(alert.started_at)}, "
                f"peak {alert.peak_observed} tickets/hour).")
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": f"✅ Resolved: {ctx.path}"[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                f"Back to normal since {_when(calm_since)}. The spike started "
                f"{_when(alert.started_at)} and lasted about {hours} h; peak {alert.peak_observed} tickets/hour, "
                f"{alert.hours_flagged} flagged hour(s).")}},
            _context(ctx, f"<{ctx.search_url}|Tickets in the helpdesk>"),
        ]
        return text, blocks

    title = "🚨 Ticket spike" if kind == "opened" else "📈 Spike growing"
    text = (f"{'Ticket spike' if kind == 'opened' else 'Spike growing'}: {ctx.path} — {alert.observed} tickets in "
            f"the hour to {_when(hour).replace(':00 UTC', ':59 UTC')} vs {alert.expected:.1f} expected "
            f"({alert.ratio:.1f}×; p={_p_value_text(alert, ctx)}); since {_when(alert.started_at)}.")
    fields = [
        {"type": "mrkdwn", "text": f"*Observed vs expected*\n{alert.observed} vs {alert.expected:.1f} tickets "
                                   f"in the hour to {hour + HOUR:%H:%M} UTC"},
        {"type": "mrkdwn", "text": f"*Ratio*\n{alert.ratio:.1f}×"},
        {"type": "mrkdwn", "text": f"*p-value*\n{_p_value_text(alert, ctx)}"},
        {"type": "mrkdwn", "text": f"*Started*\n{_when(alert.started_at)}"},
    ]
    examples = [safe_subject(s) for s in list(ctx.examples)[:3]]
    artifact = (f"<{ctx.artifact_url}|Prefect artifact `{ARTIFACT_KEY}`>" if ctx.artifact_url
                else f"Prefect artifact `{ARTIFACT_KEY}`")
    look = [f"• <{ctx.search_url}|Helpdesk: tickets tagged with this {'category' if ctx.kind == 'leaf' else 'parent category'}>",
            f"• {artifact} (current alerts, 7-day chart)"]
    if ctx.run_url:
        look.append(f"• <{ctx.run_url}|The Prefect run that raised it> (logs, the hour's counts)")
    if ctx.chart:
        look.append(f"• Chart: {ctx.chart if ctx.chart.startswith('http') else '`' + ctx.chart + '`'}")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}: {ctx.path}"[:150]}},
        {"type": "section", "fields": fields},
    ]
    if examples:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Example subjects* (PII masked)\n"
                                                   + "\n".join(f"• {s}" for s in examples)}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Where to look next*\n" + "\n".join(look)}})
    if is_public_url(ctx.chart):
        blocks.append({"type": "image", "image_url": ctx.chart, "alt_text": f"Tickets per hour, {ctx.path}"[:2000],
                       "title": {"type": "plain_text", "text": "Last 7 days, tickets per hour"}})
    blocks.append(_context(ctx, f"Evaluated hour {_when(hour)[:-4]}–{hour + HOUR:%H:%M} UTC"))
    return text, blocks


def _p_value_text(alert: Alert, ctx: AlertContext) -> str:
    """The p-value with the counts it was computed on: the hour's, or those of the multi-hour window."""
    if ctx.window_hours <= 1:
        return f"{alert.p_value:.1e} for {alert.observed} vs {alert.expected:.1f} in the hour"
    observed = ctx.window_observed if ctx.window_observed is not None else alert.observed
    expected = f"{ctx.window_expected:.1f}" if ctx.window_expected is not None else "?"
    return f"{alert.p_value:.1e} for {observed} vs {expected} over the last {ctx.window_hours} h"


def _context(ctx: AlertContext, first: str) -> dict:
    """The small grey line under every message: where it came from and how to check it."""
    parts = [first, "TicketLens spike detection"]
    if ctx.run_url:
        parts.append(f"<{ctx.run_url}|Prefect run>")
    parts.append(f"<{ctx.artifact_url}|artifact `{ARTIFACT_KEY}`>" if ctx.artifact_url else
                 f"artifact `{ARTIFACT_KEY}`")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(parts)}]}


def blocks_text(blocks: list[dict]) -> str:
    """All human-visible text of a Block Kit message (for tests and logs)."""
    parts: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                parts.append(node["text"])
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(parts)
