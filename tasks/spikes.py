"""Spike detection tasks: count, detect, keep the alert lifecycle, queue and send Slack messages, report.

Detection is per evaluated hour, oldest first: a run catches up on the hours since the last evaluated one (at
most ``TICKETLENS_SPIKE_MAX_CATCHUP_HOURS``), and an hour already evaluated is never applied twice. Each
hour's alert changes, the Slack messages they imply and the watermark commit in one transaction, so a killed
run loses nothing and sends nothing twice. Messages wait in ``slack_messages`` (an outbox): a post that fails
stays ``failed`` and is retried by the next run; Slack being down never fails the pipeline.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.reports import chart_url
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import get_stream_state, save_stream_state
from ticketlens.adapters.warehouse.schema import slack_messages, spike_alerts, ticket_predictions, tickets
from ticketlens.models.alert_messages import ARTIFACT_KEY, AlertContext, build_message, helpdesk_search_url
from ticketlens.models.scoring import helpdesk_tags
from ticketlens.models.spikes import (
    HOUR,
    Alert,
    advance_alerts,
    alert_mask,
    detect_spikes,
    floor_hour,
    hourly_counts,
    last_complete_hour_end,
)
from ticketlens.models.states import AlertState, MessageStatus, NotificationKind
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.windows import as_utc

SPIKE_STREAM = "spike-detection"  # extraction_state watermark: end of the last evaluated hour (unix seconds)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _logger():
    """The Prefect run logger inside a flow/task run, a plain logger when called directly (tests, bench)."""
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("ticketlens.spikes")


def leaf_parents() -> dict[str, str]:
    tax = load_taxonomy()
    return {key: cat.parent for key, cat in tax.categories.items()}


def category_path(series: str) -> str:
    """"Account & login › Password reset" for a leaf, "Account & login" for a parent, the key if unknown."""
    tax = load_taxonomy()
    if series in tax.categories:
        cat = tax.categories[series]
        return f"{tax.parents.get(cat.parent, cat.parent)} › {cat.name}"
    return tax.parents.get(series, series)


def series_tag(series: str, kind: str, parent: str | None, prefix: str) -> str:
    """The tag write-back puts on the series' tickets (same spelling as ``models.scoring.helpdesk_tags``)."""
    tags = helpdesk_tags({"category": series if kind == "leaf" else "x", "parent_category": parent or series,
                          "sentiment": "x", "tier": 0, "routing_group": "x"}, prefix)
    want = f"{prefix}cat_" if kind == "leaf" else f"{prefix}parent_"
    return next(tag for tag in tags if tag.startswith(want))


# ------------------------------------------------------------------------------------------------ reads


def read_category_events(conn: sa.Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Creation time and current predicted category of every ticket created in [start, end)."""
    t, p = tickets, ticket_predictions
    rows = conn.execute(
        sa.select(t.c.created_at, p.c.category, p.c.parent_category)
        .select_from(t.join(p, sa.and_(p.c.ticket_id == t.c.id, p.c.is_current.is_(True))))
        .where(t.c.created_at >= start, t.c.created_at < end)
    ).all()
    return pd.DataFrame(rows, columns=["created_at", "category", "parent_category"])


def read_example_subjects(conn: sa.Connection, series: str, kind: str, hour: datetime, n: int = 3) -> list[str]:
    """Up to ``n`` distinct subjects of the series' tickets created in the flagged hour (raw: mask before use)."""
    t, p = tickets, ticket_predictions
    column = p.c.category if kind == "leaf" else p.c.parent_category
    rows = conn.execute(
        sa.select(t.c.subject)
        .select_from(t.join(p, sa.and_(p.c.ticket_id == t.c.id, p.c.is_current.is_(True))))
        .where(column == series, t.c.created_at >= hour, t.c.created_at < hour + HOUR)
        .order_by(t.c.created_at.desc(), t.c.id.desc()).limit(50)
    ).scalars().all()
    seen: list[str] = []
    for subject in rows:
        if subject and subject not in seen:
            seen.append(subject)
        if len(seen) == n:
            break
    return seen


def _alert_from_row(row: Any) -> Alert:
    return Alert(series=row.series, started_at=row.started_at, state=row.state, last_spike_at=row.last_spike_at,
                 resolved_at=row.resolved_at, observed=row.observed, expected=row.expected, ratio=row.ratio,
                 p_value=row.p_value, peak_observed=row.peak_observed, notified_observed=row.notified_observed,
                 hours_flagged=row.hours_flagged, id=row.id,
                 extra={"kind": row.kind, "parent_category": row.parent_category})


def read_alerts(conn: sa.Connection, since: datetime) -> list[Alert]:
    """Open alerts and alerts resolved after ``since`` (their hours stay out of the baseline)."""
    a = spike_alerts
    rows = conn.execute(sa.select(a).where(sa.or_(a.c.state != AlertState.RESOLVED, a.c.resolved_at >= since))
                        .order_by(a.c.id)).all()
    return [_alert_from_row(r) for r in rows]


# ------------------------------------------------------------------------------------------------ chart


def render_chart(counts: pd.Series, alert: Alert, expected_now: float, path: Path) -> Path:
    """PNG of the series' last 7 days of hourly counts with the alert's hours shaded and this hour marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hour = alert.last_spike_at or alert.started_at
    window = counts.loc[hour - timedelta(days=7) + HOUR: hour]
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    try:
        ax.plot(window.index, window.to_numpy(), color="#4a6fa5", linewidth=1.2, label="tickets per hour")
        ax.axvspan(alert.started_at, hour + HOUR, color="#e4572e", alpha=0.18, label="alert")
        ax.scatter([hour + HOUR / 2], [int(window.iloc[-1]) if len(window) else 0], color="#e4572e", zorder=3)
        ax.hlines(expected_now, hour, hour + HOUR, colors="black", linestyles="dashed", label="expected")
        ax.set_title(f"{category_path(alert.series)} — last 7 days (UTC)", fontsize=10)
        ax.set_ylabel("tickets / hour")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ writes


def _save_alert(conn: sa.Connection, alert: Alert, kind: str, parent: str | None, run_id: str,
                now: datetime) -> int:
    values = {"state": alert.state, "last_spike_at": alert.last_spike_at, "resolved_at": alert.resolved_at,
              "observed": alert.observed, "expected": alert.expected, "ratio": alert.ratio,
              "p_value": alert.p_value, "peak_observed": alert.peak_observed,
              "notified_observed": alert.notified_observed, "hours_flagged": alert.hours_flagged,
              "updated_at": now, "run_id": run_id}
    if alert.id is not None:
        conn.execute(sa.update(spike_alerts).where(spike_alerts.c.id == alert.id).values(**values))
        return alert.id
    existing = conn.execute(sa.select(spike_alerts.c.id).where(
        spike_alerts.c.series == alert.series, spike_alerts.c.started_at == alert.started_at)).scalar()
    if existing is not None:
        conn.execute(sa.update(spike_alerts).where(spike_alerts.c.id == existing).values(**values))
        return int(existing)
    result = conn.execute(sa.insert(spike_alerts).values(series=alert.series, kind=kind, parent_category=parent,
                                                         started_at=alert.started_at, created_at=now, **values))
    return int(result.inserted_primary_key[0])


def _queue_message(conn: sa.Connection, alert_id: int, kind: str, hour: datetime, text: str, blocks: list[dict],
                   now: datetime) -> bool:
    from ticketlens.adapters.warehouse.load import dialect_insert

    stmt = dialect_insert(conn, slack_messages).values(
        alert_id=alert_id, kind=kind, hour=hour, text=text, blocks=blocks, status=MessageStatus.PENDING, attempts=0,
        created_at=now).on_conflict_do_nothing(index_elements=["alert_id", "kind", "hour"])
    return bool(conn.execute(stmt).rowcount)


# ------------------------------------------------------------------------------------------------ tasks


def describe_hours(hour_ends: list[str]) -> str:
    """"2026-08-31T00:00 (1 hour)" or "2026-08-01T01:00 … 2026-08-31T00:00 (720 hours)" for logs and reports."""
    if not hour_ends:
        return "no hours"
    first, last = hour_ends[0][:16], hour_ends[-1][:16]
    n = len(hour_ends)
    return f"{first} (1 hour)" if n == 1 else f"{first} … {last} ({n} hours)"


def hours_to_evaluate(as_of: datetime, watermark: datetime | None, max_catchup: int) -> list[datetime]:
    """Hour ends to evaluate, oldest first: those after the watermark up to ``as_of`` (capped)."""
    as_of = floor_hour(as_of)
    if watermark is not None and as_of <= watermark:
        return []
    first = as_of - (max_catchup - 1) * HOUR
    if watermark is not None:
        first = max(first, watermark + HOUR)
    out, end = [], first
    while end <= as_of:
        out.append(end)
        end += HOUR
    return out


@task(name="detect-spikes", cache_policy=NO_CACHE)
def detect_spikes_task(settings: Settings, run_id: str, as_of: datetime | None = None) -> dict[str, Any]:
    """Evaluate the hour(s) ending at ``as_of`` (default: the last complete hour) and update the alerts."""
    logger = _logger()
    as_of = floor_hour(as_utc(as_of) if as_of is not None else last_complete_hour_end())
    params, lifecycle = settings.spike.params(), settings.spike.lifecycle()
    parents = leaf_parents()
    engine = get_engine(settings.warehouse_url)
    with engine.connect() as conn:
        state = get_stream_state(conn, SPIKE_STREAM)
    watermark = EPOCH + timedelta(seconds=state.watermark) if state and state.watermark else None
    pending = hours_to_evaluate(as_of, watermark, settings.spike.max_catchup_hours)
    replay = not pending
    evaluate = pending or [as_of]
    start = evaluate[0] - HOUR - params.lookback_hours * HOUR
    with engine.connect() as conn:
        events = read_category_events(conn, start, as_of)
        alerts = read_alerts(conn, since=start)
    for leaf, parent in zip(events["category"], events["parent_category"], strict=True):
        parents.setdefault(str(leaf), str(parent))
    counts = hourly_counts(events, start, as_of, parents)
    mask = alert_mask(counts.index, counts.columns,
                      [{"series": a.series, "started_at": a.started_at,
                        "until": None if a.state != AlertState.RESOLVED else (a.last_spike_at or a.started_at) + HOUR}
                       for a in alerts], parents)
    open_alerts = {a.series: a for a in alerts if a.state != AlertState.RESOLVED}
    kinds = {a.series: (a.extra.get("kind"), a.extra.get("parent_category")) for a in alerts}
    reports_dir = Path(settings.reports_dir)
    summary: dict[str, Any] = {"as_of": as_of.isoformat(), "hours": [e.isoformat() for e in evaluate],
                               "replay": replay, "opened": 0, "grew": 0, "resolved": 0, "queued": 0,
                               "charts": []}
    detections = None
    for hour_end in evaluate:
        hour = hour_end - HOUR
        detections = detect_spikes(counts, hour_end, parents=parents, params=params, exclude=mask,
                                   active=list(open_alerts))
        if replay:
            logger.info("hour %s was evaluated before: reporting only, the alerts stay as they are",
                        hour.isoformat())
            break
        by_series = detections.set_index("series")
        changed, notes = advance_alerts(open_alerts.values(), detections, hour, lifecycle)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            ids: dict[str, int] = {}
            for alert in changed:
                kind, parent = kinds.get(alert.series) or (
                    "leaf" if alert.series in parents else "parent", parents.get(alert.series))
                kinds[alert.series] = (kind, parent)
                alert.id = _save_alert(conn, alert, kind, parent, run_id, now)
                ids[alert.series] = alert.id
                if alert.state == AlertState.RESOLVED:
                    open_alerts.pop(alert.series, None)
                else:
                    open_alerts[alert.series] = alert
            for note in notes:
                alert = note.alert
                alert.id = ids.get(alert.series, alert.id)
                kind, parent = kinds[alert.series]
                chart = None
                if note.kind in (NotificationKind.OPENED, NotificationKind.GREW):
                    path = reports_dir / f"spike-{alert.series.replace('.', '-')}-{hour:%Y%m%dT%H}.png"
                    try:
                        render_chart(counts[alert.series], alert, float(by_series.loc[alert.series, "expected"]),
                                     path)
                        chart = chart_url(settings, path) or str(path)
                        conn.execute(sa.update(spike_alerts).where(spike_alerts.c.id == alert.id)
                                     .values(chart_path=str(path)))
                        summary["charts"].append(chart)
                    except Exception as exc:  # a chart is a nicety: never lose the alert over it
                        logger.warning("could not draw the chart for %s: %s", alert.series, exc)
                examples = (read_example_subjects(conn, alert.series, kind, hour) if note.kind != NotificationKind.RESOLVED
                            else [])
                row = by_series.loc[alert.series] if alert.series in by_series.index else None
                window = int(row["window_hours"]) if row is not None else 1
                ctx = AlertContext(path=category_path(alert.series), kind=kind,
                                   search_url=helpdesk_search_url(settings.helpdesk_base_url, series_tag(
                                       alert.series, kind, parent, settings.writeback_tag_prefix)),
                                   examples=examples, chart=chart, window_hours=window,
                                   window_observed=int(row["window_observed"]) if row is not None else None,
                                   window_expected=float(row["window_expected"]) if row is not None else None,
                                   **prefect_links())
                text, blocks = build_message(note.kind, alert, ctx, hour)
                if _queue_message(conn, alert.id, note.kind, hour, text, blocks, now):
                    summary["queued"] += 1
                summary[note.kind] += 1
                logger.info("spike alert %s: %s", note.kind, text)
            save_stream_state(conn, SPIKE_STREAM, cursor=None, run_id=run_id, pages=0,
                              watermark=int((hour_end - EPOCH).total_seconds()))
        for series in open_alerts:
            for s in (series, parents.get(series)):
                if s in mask.columns:
                    mask.loc[hour, s] = True
    assert detections is not None
    top = detections.sort_values("p_value").head(10)
    summary["last_hour"] = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items() if k != "hour"}
        for rec in top[["series", "observed", "expected", "ratio", "p_value", "q_value", "status"]]
        .to_dict("records")]
    summary["dispersion"] = float(detections["pooled_dispersion"].iloc[0])
    summary["baseline"] = str(detections["baseline"].iloc[0])
    logger.info("spike detection for %s: %d opened, %d grew, %d resolved (dispersion α=%.3f, baseline %s)",
                describe_hours(summary["hours"]), summary["opened"], summary["grew"], summary["resolved"],
                summary["dispersion"], summary["baseline"])
    return summary


_QUIET = logging.Logger("ticketlens.slack-sdk", level=logging.CRITICAL + 1)  # slack_sdk logs URLs at debug


def _redact(text: str, secret: str) -> str:
    text = text.replace(secret, "<webhook>")
    path = secret.split("://", 1)[-1].split("/", 1)[-1]
    return text.replace(path, "<webhook>") if path else text


def send_pending_messages(settings: Settings, limit: int = 50) -> dict[str, int]:
    """Post queued and previously failed messages in order; never raises for Slack trouble."""
    logger = _logger()
    m = slack_messages
    engine = get_engine(settings.warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(m.c.id, m.c.kind, m.c.text, m.c.blocks, m.c.attempts)
                            .where(m.c.status.in_([MessageStatus.PENDING, MessageStatus.FAILED])).order_by(m.c.id).limit(limit)).all()
    counts = {"sent": 0, "failed": 0, "not_sent": 0}
    if not rows:
        return counts
    now = datetime.now(UTC)
    if settings.slack_webhook_url is None:
        with engine.begin() as conn:
            conn.execute(sa.update(m).where(m.c.id.in_([r.id for r in rows]))
                         .values(status=MessageStatus.NOT_SENT, last_error="no webhook configured"))
        for row in rows:
            logger.info("not sent: no webhook configured (TICKETLENS_SLACK_WEBHOOK_URL) — %s", row.text)
        counts["not_sent"] = len(rows)
        return counts
    from slack_sdk.webhook import WebhookClient

    secret = settings.slack_webhook_url.get_secret_value()
    client = WebhookClient(secret, timeout=settings.slack_timeout_seconds, logger=_QUIET)
    for row in rows:
        error = None
        try:
            response = client.send(text=row.text, blocks=row.blocks)
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {str(response.body)[:200]}"
        except Exception as exc:  # connection refused, timeout, TLS...: keep it for the next run
            error = f"{type(exc).__name__}: {exc}"
        with engine.begin() as conn:
            if error is None:
                conn.execute(sa.update(m).where(m.c.id == row.id).values(
                    status=MessageStatus.SENT, attempts=row.attempts + 1, last_error=None, sent_at=now))
                counts["sent"] += 1
            else:
                error = _redact(error, secret)[:500]
                conn.execute(sa.update(m).where(m.c.id == row.id).values(
                    status=MessageStatus.FAILED, attempts=row.attempts + 1, last_error=error))
                counts["failed"] += 1
                logger.warning("Slack post of message %s (%s) failed, will retry next run: %s", row.id, row.kind,
                               error)
    return counts


@task(name="send-slack-alerts", cache_policy=NO_CACHE)
def send_slack_alerts(settings: Settings) -> dict[str, int]:
    """Post the outbox to Slack. A failure is logged and stored, never raised: it is retried on the next run."""
    try:
        return send_pending_messages(settings)
    except Exception as exc:  # e.g. the warehouse hiccups: the messages stay queued
        _logger().warning("sending Slack alerts failed (%s); messages stay queued", type(exc).__name__)
        return {"sent": 0, "failed": 0, "not_sent": 0, "error": 1}


def current_alert_rows(warehouse_url: str, since: datetime) -> list[dict[str, Any]]:
    a, m = spike_alerts, slack_messages
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(a).where(sa.or_(a.c.state != AlertState.RESOLVED, a.c.resolved_at >= since))
                            .order_by(a.c.started_at.desc())).mappings().all()
        status = {r.alert_id: r.status for r in conn.execute(
            sa.select(m.c.alert_id, m.c.status).order_by(m.c.id)).all()}
    return [{**dict(r), "slack": status.get(r["id"], "—"), "path": category_path(r["series"])} for r in rows]


def alerts_markdown(rows: list[dict[str, Any]], summary: dict[str, Any], sent: dict[str, int]) -> str:
    lines = [f"# Spike alerts ({summary['as_of']})", "",
             f"Evaluated hour(s) ending {describe_hours(summary['hours'])}"
             + (" (already evaluated: report only)" if summary.get("replay") else "")
             + f"; pooled NB dispersion α = {summary.get('dispersion', float('nan')):.3f}, "
             f"baseline {summary.get('baseline')}.",
             f"This run: {summary['opened']} opened, {summary['grew']} grew, {summary['resolved']} resolved; Slack: "
             f"{sent.get('sent', 0)} sent, {sent.get('failed', 0)} failed (retried next run), "
             f"{sent.get('not_sent', 0)} not sent (no webhook configured).", ""]
    if not rows:
        lines.append("No open alerts and none resolved in the last 24 hours.")
    else:
        lines += ["| category | state | since (UTC) | last flagged | observed / expected | ratio | p-value | "
                  "peak | Slack | chart |", "|---|---|---|---|---:|---:|---:|---:|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['path']} (`{r['series']}`) | {r['state']} | {r['started_at']:%Y-%m-%d %H:%M} | "
                f"{r['last_spike_at']:%Y-%m-%d %H:%M} | {r['observed']} / {r['expected']:.1f} | {r['ratio']:.1f}× "
                f"| {r['p_value']:.1e} | {r['peak_observed']} | {r['slack']} | {r['chart_path'] or '—'} |")
    lines += ["", "Most unusual series in the last evaluated hour:", "",
              "| series | observed | expected | ratio | p-value | q-value | status |", "|---|---:|---:|---:|---:|---:|---|"]
    for rec in summary.get("last_hour", []):
        lines.append(f"| `{rec['series']}` | {rec['observed']} | {rec['expected']:.1f} | {rec['ratio']:.1f} | "
                     f"{rec['p_value']:.1e} | {rec['q_value']:.1e} | {rec['status']} |")
    return "\n".join(lines)


@task(name="publish-spike-report", cache_policy=NO_CACHE)
def publish_spike_report(settings: Settings, summary: dict[str, Any], sent: dict[str, int]) -> str:
    """Markdown artifact ``spike-alerts`` listing current alerts; image artifacts when charts are served."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact

    rows = current_alert_rows(settings.warehouse_url, since=as_utc(summary["as_of"]) - timedelta(days=1))
    markdown = alerts_markdown(rows, summary, sent)
    served = [c for c in summary.get("charts", []) if c.startswith(("http://", "https://"))]
    if served:
        markdown += "\n\n## Charts (last 7 days, tickets per hour)\n\n" + "\n\n".join(
            f"![{url.rsplit('/', 1)[-1]}]({url})" for url in served)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=markdown, description="Current ticket-spike alerts.")
    for url in served:
        create_image_artifact(image_url=url, key="spike-chart", description="7-day chart of a spiking category.")
    return markdown


def prefect_links() -> dict[str, str | None]:
    """The current flow run's UI page and the ``spike-alerts`` artifact's page (None outside a Prefect run)."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_UI_URL

    run_id, ui = flow_run.id, PREFECT_UI_URL.value()
    if not run_id or not ui:
        return {"run_url": None, "artifact_url": None}
    ui = ui.rstrip("/")
    return {"run_url": f"{ui}/runs/flow-run/{run_id}", "artifact_url": f"{ui}/artifacts/key/{ARTIFACT_KEY}"}

