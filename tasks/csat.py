"""Tasks of the ``csat-drivers`` flow: read the window, analyse, classify reasons, ops reports, write, publish.

The maths lives in ``models.csat_drivers``, ``models.csat_reasons`` and ``models.ops_reports``, the charts and
artifact text in ``models.reporting.csat``; these tasks do the I/O around them. Nothing that leaves the warehouse carries customer text: artifacts, charts and tables hold
counts, rates, category keys, agent and team names — never a comment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ticketlens.adapters.reports import chart_markdown
from ticketlens.adapters.settings import Settings
from ticketlens.adapters.warehouse.engine import get_engine
from ticketlens.adapters.warehouse.load import dialect_insert
from ticketlens.adapters.warehouse.schema import (
    agents,
    csat_drivers,
    csat_ratings,
    csat_reason_counts,
    csat_weekly_trends,
    groups,
    self_selection_options,
    ticket_predictions,
    tickets,
)
from ticketlens.adapters.warehouse.schema import auto_reply_candidates as auto_reply_table
from ticketlens.models.csat_drivers import (
    DriverAnalysis,
    DriverReport,
    analyse_drivers,
    driver_mask,
    prepare_ratings,
    weekly_trends,
)
from ticketlens.models.csat_reasons import (
    ReasonReport,
    classify_reasons,
    cross_validated_accuracy,
    load_seed_examples,
    reason_summary,
    train_reason_classifier,
)
from ticketlens.models.ops_reports import OpsReports, auto_reply_candidates, self_selection_report
from ticketlens.models.reporting import csat as csat_report
from ticketlens.models.reporting.csat import plain_value
from ticketlens.models.taxonomy import load_taxonomy
from ticketlens.models.windows import Window, as_utc_or_none

TREND_DRIVERS = 5


def resolve_window(start: datetime | None, end: datetime | None, scheduled: datetime | None,
                   days: int) -> Window:
    """Explicit start/end win; otherwise the ``days`` before the run's scheduled start (or now)."""
    end_ = as_utc_or_none(end) or as_utc_or_none(scheduled) or datetime.now(UTC)
    start_ = as_utc_or_none(start) or end_ - timedelta(days=days)
    if start_ >= end_:
        raise ValueError(f"csat-drivers window start {start_.isoformat()} is not before end {end_.isoformat()}")
    return Window(start_, end_, "parameters" if start is not None or end is not None else "schedule")


# --------------------------------------------------------------------------------------------- read

@task(name="load-rated-tickets", cache_policy=NO_CACHE)
def load_rated_tickets(warehouse_url: str, window: Window) -> pd.DataFrame:
    """One row per rating created in the window, joined with its ticket and current prediction.

    Assignee and group are the rating's own (Zendesk records them at rating time); the ticket's current ones
    only fill gaps. Category: the current prediction, else the agent-confirmed category (tickets not scored yet).
    """
    r, t, p = csat_ratings, tickets, ticket_predictions
    query = (
        sa.select(
            r.c.id.label("rating_id"), r.c.ticket_id, r.c.score, r.c.comment, r.c.created_at.label("rated_at"),
            sa.func.coalesce(r.c.assignee_id, t.c.assignee_id).label("assignee_id"),
            sa.func.coalesce(r.c.group_id, t.c.group_id).label("group_id"),
            t.c.channel, sa.func.coalesce(p.c.category, t.c.confirmed_category).label("category"),
            p.c.category.label("predicted_category"), p.c.sentiment, p.c.confidence, t.c.contact_reason,
            t.c.first_reply_minutes, t.c.full_resolution_minutes, t.c.reopens,
        )
        .select_from(r.join(t, t.c.id == r.c.ticket_id)
                     .outerjoin(p, sa.and_(p.c.ticket_id == r.c.ticket_id, p.c.is_current.is_(True))))
        .where(r.c.created_at >= window.start, r.c.created_at < window.end, t.c.is_deleted.is_(False))
        .order_by(r.c.id)
    )
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=list(query.selected_columns.keys()))


@task(name="load-window-tickets", cache_policy=NO_CACHE)
def load_window_tickets(warehouse_url: str, window: Window) -> pd.DataFrame:
    """Tickets created in the window with their current prediction (self-selection and auto-reply reports)."""
    t, p = tickets, ticket_predictions
    query = (
        sa.select(t.c.id.label("ticket_id"), t.c.contact_reason, t.c.contact_reasons, p.c.category, p.c.confidence)
        .select_from(t.join(p, sa.and_(p.c.ticket_id == t.c.id, p.c.is_current.is_(True))))
        .where(t.c.created_at >= window.start, t.c.created_at < window.end, t.c.is_deleted.is_(False))
    )
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=["ticket_id", "contact_reason", "contact_reasons", "category", "confidence"])


@task(name="load-agent-and-team-names", cache_policy=NO_CACHE)
def load_names(warehouse_url: str) -> tuple[dict[int, str], dict[int, str]]:
    with get_engine(warehouse_url).connect() as conn:
        agent_names = {i: n for i, n in conn.execute(sa.select(agents.c.id, agents.c.name)) if n}
        group_names = {i: n for i, n in conn.execute(sa.select(groups.c.id, groups.c.name)) if n}
    return agent_names, group_names


# ------------------------------------------------------------------------------------------ compute

@task(name="analyse-csat-drivers", cache_policy=NO_CACHE)
def analyse_csat_drivers(settings: Settings, rated: pd.DataFrame, names: tuple[dict, dict]) -> DriverAnalysis:
    logger = get_run_logger()
    frame = prepare_ratings(rated, *names)
    report = analyse_drivers(frame, settings.csat.drivers())
    trends = weekly_trends(frame, report.drivers, TREND_DRIVERS)
    for note in report.notes:
        logger.warning(note)
    unscored = int(rated["predicted_category"].isna().sum()) if "predicted_category" in rated else 0
    if unscored:
        logger.info("%d rated tickets have no prediction yet; their agent-confirmed category is used", unscored)
    logger.info("%d ratings (%d bad): %d drivers at FDR %.2f", report.ratings, report.bad, len(report.drivers),
                settings.csat.fdr)
    return DriverAnalysis(frame, report, trends, unscored)


@task(name="classify-bad-rating-reasons", cache_policy=NO_CACHE)
def classify_bad_rating_reasons(settings: Settings, frame: pd.DataFrame, report: DriverReport) -> ReasonReport:
    """Train the reason classifier on the seed labels, classify every bad-rating comment, summarise themes
    overall and for each top driver."""
    taxonomy = load_taxonomy()
    training = load_seed_examples(taxonomy)
    model = train_reason_classifier(training)
    bad = frame[frame["bad"]]
    themes = classify_reasons(model, bad["comment"].tolist() if "comment" in bad else [None] * len(bad),
                              settings.csat.reason_min_confidence)
    themes.index = bad.index
    scopes = [("all", themes["theme"])]
    for row in report.drivers.head(settings.csat.top_drivers).itertuples():
        mask = driver_mask(frame, row.factor, row.level).loc[bad.index]
        scopes.append((f"{row.factor}:{row.level}", themes.loc[mask, "theme"]))
    summaries = {scope: reason_summary(series, taxonomy) for scope, series in scopes}
    return ReasonReport(summaries, themes, commented=int(themes["theme"].notna().sum()), bad=len(bad),
                        seed_examples=len(training.texts), seed_digest=training.digest[:12],
                        seed_cv_accuracy=cross_validated_accuracy(training))


@task(name="build-ops-reports", cache_policy=NO_CACHE)
def build_ops_reports(settings: Settings, window_tickets: pd.DataFrame, frame: pd.DataFrame) -> OpsReports:
    taxonomy = load_taxonomy()
    config = settings.ops.config(settings.routing)
    options, confusion = self_selection_report(window_tickets, taxonomy, config)
    rated = frame[["category", "bad"]] if not frame.empty else pd.DataFrame(columns=["category", "bad"])
    candidates = auto_reply_candidates(window_tickets, rated, taxonomy, config)
    return OpsReports(options, confusion, candidates)


# -------------------------------------------------------------------------------------------- write

def replace_period(conn: sa.Connection, table: sa.Table, window: Window, rows: list[dict[str, Any]]) -> int:
    """Upsert a period's rows on the table's primary key and delete the period's rows that are no longer there.

    A re-run of the same period leaves exactly the new rows; other periods are untouched.
    """
    key_cols = [c.name for c in table.primary_key.columns]
    period = sa.and_(table.c.period_start == window.start, table.c.period_end == window.end)
    rows = [{k: plain_value(v) for k, v in {**row, "period_start": window.start, "period_end": window.end}.items()}
            for row in rows]
    new_keys = {tuple(row[k] for k in key_cols) for row in rows}
    existing = conn.execute(sa.select(*(table.c[k] for k in key_cols)).where(period)).all()
    stale = [tuple(r) for r in existing if tuple(r) not in new_keys]
    for key in stale:
        conn.execute(sa.delete(table).where(*(table.c[k] == v for k, v in zip(key_cols, key, strict=True))))
    if rows:
        stmt = dialect_insert(conn, table)
        present = set().union(*rows)
        columns = [c.name for c in table.columns if c.name in present]
        rows = [{c: row.get(c) for c in columns} for row in rows]
        stmt = stmt.on_conflict_do_update(index_elements=key_cols,
                                          set_={c: stmt.excluded[c] for c in columns if c not in key_cols})
        for i in range(0, len(rows), 1000):
            conn.execute(stmt, rows[i:i + 1000])
    return len(rows)


def driver_rows(report: DriverReport, reasons: ReasonReport, stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``csat_drivers`` rows: every segment with its raw and shrunk rate, and every tested level with its
    adjusted effect (a level is one row with both); drivers get their rank and their main bad-rating reason."""
    top_reason = {scope: s.iloc[0]["theme"] for scope, s in reasons.summaries.items()
                  if not s.empty and s.iloc[0]["comments"] > 0}
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for seg in report.segments.to_dict("records") if not report.segments.empty else []:
        by_key[(seg["factor"], seg["level"])] = {
            "factor": seg["factor"], "level": seg["level"][:128], "label": str(seg["label"])[:255],
            "ratings": seg["n"], "bad": seg["bad"], "raw_rate": seg["raw_rate"], "wilson_low": seg["wilson_low"],
            "wilson_high": seg["wilson_high"], "shrunk_rate": seg["shrunk_rate"], "shrunk_low": seg["shrunk_low"],
            "shrunk_high": seg["shrunk_high"], "is_driver": False, **stamp}
    driver_rank = {(r.factor, r.level): i + 1 for i, r in enumerate(report.drivers.itertuples())}
    for eff in report.effects.to_dict("records"):
        key = (eff["factor"], eff["level"])
        row = by_key.setdefault(key, {
            "factor": eff["factor"], "level": str(eff["level"])[:128], "label": str(eff["label"])[:255],
            "ratings": eff["n"], "bad": eff["bad"], "raw_rate": eff["raw_rate"], "wilson_low": eff["wilson_low"],
            "wilson_high": eff["wilson_high"], **stamp})
        row.update(odds_ratio=eff["odds_ratio"], or_low=eff["or_low"], or_high=eff["or_high"],
                   p_value=eff["p_value"], q_value=eff["q_value"], direction=eff["direction"],
                   excess_bad=eff["excess_bad"], is_driver=key in driver_rank, driver_rank=driver_rank.get(key),
                   top_reason=top_reason.get(f"{key[0]}:{key[1]}"))
    return list(by_key.values())


def reason_rows(reasons: ReasonReport, stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``csat_reason_counts`` rows: comments per theme, overall and per top driver."""
    return [{"scope": scope[:160], "theme": r["theme"], "comments": r["comments"], "share": r["share"], **stamp}
            for scope, s in reasons.summaries.items() for r in s.to_dict("records")]


def trend_rows(trends: pd.DataFrame, stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``csat_weekly_trends`` rows."""
    return [{"factor": r["factor"], "level": str(r["level"])[:128], "label": str(r["label"])[:255],
             "week_start": r["week_start"].to_pydatetime(), "ratings": r["n"], "bad": r["bad"],
             "bad_rate": r["bad_rate"], **stamp} for r in trends.to_dict("records")]


def option_rows(options: pd.DataFrame, stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``self_selection_options`` rows."""
    return [{k: r[k] for k in ("selected", "tickets", "matched_share", "top_actual", "top_actual_share",
                               "routed_elsewhere", "suggestion")} | stamp for r in options.to_dict("records")]


def candidate_rows(candidates: pd.DataFrame, stamp: dict[str, Any]) -> list[dict[str, Any]]:
    """``auto_reply_candidates`` rows."""
    return [{k: r[k] for k in ("category", "tickets", "mean_confidence", "high_confidence_share", "complexity",
                               "ratings", "shrunk_bad_rate", "already_auto_reply", "is_candidate", "reason",
                               "deflectable_tickets")} | stamp for r in candidates.to_dict("records")]


@task(name="write-csat-reports", cache_policy=NO_CACHE)
def write_csat_reports(warehouse_url: str, window: Window, run_id: str, analysis: DriverAnalysis,
                       reasons: ReasonReport, ops: OpsReports) -> dict[str, int]:
    """Replace the window's rows in the five report tables, in one transaction; rows written per table."""
    stamp = {"run_id": run_id, "computed_at": datetime.now(UTC)}
    tables = ((csat_drivers, driver_rows(analysis.report, reasons, stamp)),
              (csat_reason_counts, reason_rows(reasons, stamp)),
              (csat_weekly_trends, trend_rows(analysis.trends, stamp)),
              (self_selection_options, option_rows(ops.options, stamp)),
              (auto_reply_table, candidate_rows(ops.candidates, stamp)))
    with get_engine(warehouse_url).begin() as conn:
        return {table.name: replace_period(conn, table, window, rows) for table, rows in tables}


# ------------------------------------------------------------------------------- charts and artifacts
# Drawn and rendered by ``models.reporting.csat`` after ``write-csat-reports`` has committed: no chart or markdown
# is built inside a warehouse transaction.

def _charts_dir(settings: Settings, window: Window) -> Path:
    path = Path(settings.reports_dir) / "csat-drivers" / window.slug
    path.mkdir(parents=True, exist_ok=True)
    return path


@task(name="draw-csat-charts", cache_policy=NO_CACHE)
def draw_csat_charts(settings: Settings, window: Window, analysis: DriverAnalysis, reasons: ReasonReport,
                          ops: OpsReports) -> list[str]:
    """PNG charts (matplotlib, Agg backend) under ``reports_dir/csat-drivers/<period>/``."""
    return csat_report.draw_csat_charts(_charts_dir(settings, window), window.describe(), analysis, reasons, ops,
                            settings.csat.top_drivers, settings.csat.fdr)


@task(name="publish-csat-artifacts", cache_policy=NO_CACHE)
def publish_csat_artifacts(settings: Settings, window: Window, analysis: DriverAnalysis, reasons: ReasonReport,
                           ops: OpsReports, charts: list[str]) -> list[str]:
    """The four reports as Prefect markdown + table artifacts (stable keys); returns the keys."""
    reports = csat_report.csat_artifacts(window.describe(), analysis, reasons, ops, settings.csat.drivers(), settings.ops.config(settings.routing),
                             settings.csat.top_drivers, chart_markdown(settings, charts, "Charts"))
    keys = []
    for report in reports:
        create_markdown_artifact(key=report.key, markdown=report.markdown, description=report.description)
        create_table_artifact(key=report.table_key, table=report.table, description=report.table_description)
        keys += [report.key, report.table_key]
    return keys
