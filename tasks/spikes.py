"""Spike detection tasks: count, detect, keep the alert lifecycle, queue and send Slack messages, report.

Detection is per evaluated hour, oldest first: a run catches up on the hours since the last evaluated one (at
most ``TICKETLENS_SPIKE_MAX_CATCHUP_HOURS``), and an hour already evaluated is never applied twice. Each
hour's alert changes, the Slack messages they imply and the watermark commit in one transaction, so a killed
run loses nothing and sends nothing twice. Messages wait in ``slack_messages`` (an outbox): a post that fails
stays ``failed`` and is retried by the next run; Slack being down never fails the pipeline. Charts are drawn
(``models.spike_report``) before the hour's transaction opens, so a slow chart never holds warehouse locks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from ticketlens.models.spike_report import (
    SeriesScore,
    SlackDelivery,
    SpikeSummary,
    alerts_markdown,
    category_path,
    chart_file_name,
    charts_markdown,
    describe_hours,
    render_chart,
    spike_chart_data,
)
from ticketlens.models.spikes import (
    HOUR,
    Alert,
    LifecycleParams,
    Notification,
    SpikeParams,
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


@dataclass
class _Evaluation:
    """Everything one ``detect-spikes`` run reads once and carries from hour to hour."""

    settings: Settings
    run_id: str
    engine: sa.Engine
    params: SpikeParams
    lifecycle: LifecycleParams
    parents: dict[str, str]
    counts: pd.DataFrame  # hourly counts per series over the lookback and the evaluated hours
    mask: pd.DataFrame  # True inside past (and, as the run goes on, new) alerts: out of the baseline
    open_alerts: dict[str, Alert]
    kinds: dict[str, tuple[str | None, str | None]]  # series → (kind, parent) as stored with its alerts
    summary: SpikeSummary


def _watermark(engine: sa.Engine) -> datetime | None:
    with engine.connect() as conn:
        state = get_stream_state(conn, SPIKE_STREAM)
    return EPOCH + timedelta(seconds=state.watermark) if state and state.watermark else None


def _start_evaluation(settings: Settings, run_id: str, as_of: datetime, evaluate: list[datetime],
                      replay: bool) -> _Evaluation:
    """Read the counts and the alerts the evaluated hours need (their lookback included)."""
    params, lifecycle = settings.spike.params(), settings.spike.lifecycle()
    parents = leaf_parents()
    engine = get_engine(settings.warehouse_url)
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
    return _Evaluation(
        settings=settings, run_id=run_id, engine=engine, params=params, lifecycle=lifecycle, parents=parents,
        counts=counts, mask=mask, open_alerts={a.series: a for a in alerts if a.state != AlertState.RESOLVED},
        kinds={a.series: (a.extra.get("kind"), a.extra.get("parent_category")) for a in alerts},
        summary=SpikeSummary(as_of=as_of.isoformat(), hours=[e.isoformat() for e in evaluate], replay=replay))


def _detect(ev: _Evaluation, hour_end: datetime) -> pd.DataFrame:
    return detect_spikes(ev.counts, hour_end, parents=ev.parents, params=ev.params, exclude=ev.mask,
                         active=list(ev.open_alerts))


def _draw_charts(ev: _Evaluation, notes: list[Notification], hour: datetime) -> dict[int, tuple[Path, str]]:
    """Chart of each opened or grown alert, drawn before its transaction: {note index: (file, URL or path)}.

    A chart is a nicety: one that cannot be drawn is logged and the alert goes out without it.
    """
    charts: dict[int, tuple[Path, str]] = {}
    for i, note in enumerate(notes):
        if note.kind not in (NotificationKind.OPENED, NotificationKind.GREW):
            continue
        alert = note.alert
        path = Path(ev.settings.reports_dir) / chart_file_name(alert.series, hour)
        try:
            render_chart(spike_chart_data(ev.counts, alert, parents=ev.parents, params=ev.params, exclude=ev.mask),
                         path)
        except Exception as exc:  # never lose the alert over its chart
            _logger().warning("could not draw the chart for %s: %s", alert.series, exc)
            continue
        charts[i] = (path, chart_url(ev.settings, path) or str(path))
    return charts


def _alert_kind(ev: _Evaluation, series: str) -> tuple[str | None, str | None]:
    """(kind, parent) of a series: as stored with its earlier alerts, else from the taxonomy."""
    kind = ev.kinds.get(series) or ("leaf" if series in ev.parents else "parent", ev.parents.get(series))
    ev.kinds[series] = kind
    return kind


def _save_changed_alerts(conn: sa.Connection, ev: _Evaluation, changed: list[Alert], now: datetime) -> dict[str, int]:
    """Write the alerts that changed this hour; keep ``open_alerts`` in step. Returns {series: alert id}."""
    ids: dict[str, int] = {}
    for alert in changed:
        kind, parent = _alert_kind(ev, alert.series)
        alert.id = _save_alert(conn, alert, kind, parent, ev.run_id, now)
        ids[alert.series] = alert.id
        if alert.state == AlertState.RESOLVED:
            ev.open_alerts.pop(alert.series, None)
        else:
            ev.open_alerts[alert.series] = alert
    return ids


def _message_context(conn: sa.Connection, ev: _Evaluation, note: Notification, detections: pd.DataFrame,
                     chart: str | None, hour: datetime) -> AlertContext:
    """What the Slack message says beside the numbers: path, search link, example subjects, chart, window."""
    alert = note.alert
    kind, parent = ev.kinds[alert.series]
    settings = ev.settings
    examples = read_example_subjects(conn, alert.series, kind, hour) if note.kind != NotificationKind.RESOLVED else []
    by_series = detections.set_index("series")
    row = by_series.loc[alert.series] if alert.series in by_series.index else None
    return AlertContext(path=category_path(alert.series), kind=kind,
                        search_url=helpdesk_search_url(settings.helpdesk_base_url, series_tag(
                            alert.series, kind, parent, settings.writeback_tag_prefix)),
                        examples=examples, chart=chart, window_hours=int(row["window_hours"]) if row is not None else 1,
                        window_observed=int(row["window_observed"]) if row is not None else None,
                        window_expected=float(row["window_expected"]) if row is not None else None,
                        **prefect_links())


def _commit_hour(ev: _Evaluation, hour_end: datetime, detections: pd.DataFrame, changed: list[Alert],
                 notes: list[Notification], charts: dict[int, tuple[Path, str]]) -> None:
    """One transaction per hour: the alert changes, the Slack messages they imply and the watermark."""
    hour = hour_end - HOUR
    summary = ev.summary
    now = datetime.now(UTC)
    with ev.engine.begin() as conn:
        ids = _save_changed_alerts(conn, ev, changed, now)
        for i, note in enumerate(notes):
            alert = note.alert
            alert.id = ids.get(alert.series, alert.id)
            chart = None
            if i in charts:
                path, chart = charts[i]
                conn.execute(sa.update(spike_alerts).where(spike_alerts.c.id == alert.id)
                             .values(chart_path=str(path)))
                summary.charts.append(chart)
            text, blocks = build_message(note.kind, alert, _message_context(conn, ev, note, detections, chart, hour),
                                         hour)
            if _queue_message(conn, alert.id, note.kind, hour, text, blocks, now):
                summary.queued += 1
            summary.count(note.kind)
            _logger().info("spike alert %s: %s", note.kind, text)
        save_stream_state(conn, SPIKE_STREAM, cursor=None, run_id=ev.run_id, pages=0,
                          watermark=int((hour_end - EPOCH).total_seconds()))


def _mask_open_alerts(ev: _Evaluation, hour: datetime) -> None:
    """The hour just evaluated stays out of the next hours' baseline for every open alert (and its parent)."""
    for series in ev.open_alerts:
        for s in (series, ev.parents.get(series)):
            if s in ev.mask.columns:
                ev.mask.loc[hour, s] = True


def _apply_hour(ev: _Evaluation, hour_end: datetime) -> pd.DataFrame:
    """Detect, advance the alerts, draw their charts, then commit the hour."""
    hour = hour_end - HOUR
    detections = _detect(ev, hour_end)
    changed, notes = advance_alerts(ev.open_alerts.values(), detections, hour, ev.lifecycle)
    charts = _draw_charts(ev, notes, hour)
    _commit_hour(ev, hour_end, detections, changed, notes, charts)
    _mask_open_alerts(ev, hour)
    return detections


def _summarise_last_hour(summary: SpikeSummary, detections: pd.DataFrame) -> None:
    top = detections.sort_values("p_value").head(10)
    summary.last_hour = [
        SeriesScore(**{k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
        for rec in top[["series", "observed", "expected", "ratio", "p_value", "q_value", "status"]]
        .to_dict("records")]
    summary.dispersion = float(detections["pooled_dispersion"].iloc[0])
    summary.baseline = str(detections["baseline"].iloc[0])


@task(name="detect-spikes", cache_policy=NO_CACHE)
def detect_spikes_task(settings: Settings, run_id: str, as_of: datetime | None = None) -> SpikeSummary:
    """Evaluate the hour(s) ending at ``as_of`` (default: the last complete hour) and update the alerts.

    The hours after the watermark are applied oldest first, each committed on its own. When every hour up to
    ``as_of`` was evaluated before (a re-run), the last one is detected again for the report only: the alerts
    stay as they are and nothing is sent.
    """
    logger = _logger()
    as_of = floor_hour(as_utc(as_of) if as_of is not None else last_complete_hour_end())
    pending = hours_to_evaluate(as_of, _watermark(get_engine(settings.warehouse_url)),
                                settings.spike.max_catchup_hours)
    replay = not pending
    ev = _start_evaluation(settings, run_id, as_of, pending or [as_of], replay)
    if replay:
        logger.info("hour %s was evaluated before: reporting only, the alerts stay as they are",
                    (as_of - HOUR).isoformat())
        detections = _detect(ev, as_of)
    else:
        for hour_end in pending:
            detections = _apply_hour(ev, hour_end)
    summary = ev.summary
    _summarise_last_hour(summary, detections)
    logger.info("spike detection for %s: %d opened, %d grew, %d resolved (dispersion α=%.3f, baseline %s)",
                describe_hours(summary.hours), summary.opened, summary.grew, summary.resolved,
                summary.dispersion, summary.baseline)
    return summary


_QUIET = logging.Logger("ticketlens.slack-sdk", level=logging.CRITICAL + 1)  # slack_sdk logs URLs at debug


def _redact(text: str, secret: str) -> str:
    text = text.replace(secret, "<webhook>")
    path = secret.split("://", 1)[-1].split("/", 1)[-1]
    return text.replace(path, "<webhook>") if path else text


def send_pending_messages(settings: Settings, limit: int = 50) -> SlackDelivery:
    """Post queued and previously failed messages in order; never raises for Slack trouble."""
    logger = _logger()
    m = slack_messages
    engine = get_engine(settings.warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(m.c.id, m.c.kind, m.c.text, m.c.blocks, m.c.attempts)
                            .where(m.c.status.in_([MessageStatus.PENDING, MessageStatus.FAILED])).order_by(m.c.id).limit(limit)).all()
    counts = {"sent": 0, "failed": 0, "not_sent": 0}
    if not rows:
        return SlackDelivery(**counts)
    now = datetime.now(UTC)
    if settings.slack_webhook_url is None:
        with engine.begin() as conn:
            conn.execute(sa.update(m).where(m.c.id.in_([r.id for r in rows]))
                         .values(status=MessageStatus.NOT_SENT, last_error="no webhook configured"))
        for row in rows:
            logger.info("not sent: no webhook configured (TICKETLENS_SLACK_WEBHOOK_URL) — %s", row.text)
        counts["not_sent"] = len(rows)
        return SlackDelivery(**counts)
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
    return SlackDelivery(**counts)


@task(name="send-slack-alerts", cache_policy=NO_CACHE)
def send_slack_alerts(settings: Settings) -> SlackDelivery:
    """Post the outbox to Slack. A failure is logged and stored, never raised: it is retried on the next run."""
    try:
        return send_pending_messages(settings)
    except Exception as exc:  # e.g. the warehouse hiccups: the messages stay queued
        _logger().warning("sending Slack alerts failed (%s); messages stay queued", type(exc).__name__)
        return SlackDelivery(error=True)


def current_alert_rows(warehouse_url: str, since: datetime) -> list[dict[str, Any]]:
    a, m = spike_alerts, slack_messages
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(a).where(sa.or_(a.c.state != AlertState.RESOLVED, a.c.resolved_at >= since))
                            .order_by(a.c.started_at.desc())).mappings().all()
        status = {r.alert_id: r.status for r in conn.execute(
            sa.select(m.c.alert_id, m.c.status).order_by(m.c.id)).all()}
    return [{**dict(r), "slack": status.get(r["id"], "—"), "path": category_path(r["series"])} for r in rows]


@task(name="publish-spike-report", cache_policy=NO_CACHE)
def publish_spike_report(settings: Settings, summary: SpikeSummary, sent: SlackDelivery) -> str:
    """Markdown artifact ``spike-alerts`` listing current alerts; image artifacts when charts are served."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact

    rows = current_alert_rows(settings.warehouse_url, since=as_utc(summary.as_of) - timedelta(days=1))
    markdown = alerts_markdown(rows, summary, sent)
    served = [c for c in summary.charts if c.startswith(("http://", "https://"))]
    if served:
        markdown += charts_markdown(served)
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

