"""Tasks of the ``csat-drivers`` flow: read the window, analyse, classify reasons, ops reports, write, publish.

The maths lives in ``models.csat_drivers``, ``models.csat_reasons`` and ``models.ops_reports``; these tasks do
the I/O around it. Nothing that leaves the warehouse carries customer text: artifacts, charts and tables hold
counts, rates, category keys, agent and team names — never a comment.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
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
    CONTINUOUS,
    FDR_METHODS,
    DriverReport,
    analyse_drivers,
    driver_mask,
    prepare_ratings,
    weekly_trends,
)
from ticketlens.models.csat_reasons import (
    classify_reasons,
    cross_validated_accuracy,
    load_seed_examples,
    reason_summary,
    train_reason_classifier,
)
from ticketlens.models.ops_reports import auto_reply_candidates, self_selection_report
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
def analyse_csat_drivers(settings: Settings, rated: pd.DataFrame, names: tuple[dict, dict]) -> dict[str, Any]:
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
    return {"frame": frame, "report": report, "trends": trends, "unscored": unscored}


@task(name="classify-bad-rating-reasons", cache_policy=NO_CACHE)
def classify_bad_rating_reasons(settings: Settings, frame: pd.DataFrame, report: DriverReport) -> dict[str, Any]:
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
    return {"summaries": summaries, "themes": themes, "commented": int(themes["theme"].notna().sum()),
            "bad": len(bad), "seed_examples": len(training.texts), "seed_digest": training.digest[:12],
            "seed_cv_accuracy": cross_validated_accuracy(training)}


@task(name="build-ops-reports", cache_policy=NO_CACHE)
def build_ops_reports(settings: Settings, window_tickets: pd.DataFrame, frame: pd.DataFrame) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    config = settings.ops.config(settings.routing)
    options, confusion = self_selection_report(window_tickets, taxonomy, config)
    rated = frame[["category", "bad"]] if not frame.empty else pd.DataFrame(columns=["category", "bad"])
    candidates = auto_reply_candidates(window_tickets, rated, taxonomy, config)
    return {"options": options, "confusion": confusion, "candidates": candidates}


# -------------------------------------------------------------------------------------------- write

def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    return value


def replace_period(conn: sa.Connection, table: sa.Table, window: Window, rows: list[dict[str, Any]]) -> int:
    """Upsert a period's rows on the table's primary key and delete the period's rows that are no longer there.

    A re-run of the same period leaves exactly the new rows; other periods are untouched.
    """
    key_cols = [c.name for c in table.primary_key.columns]
    period = sa.and_(table.c.period_start == window.start, table.c.period_end == window.end)
    rows = [{k: _clean(v) for k, v in {**row, "period_start": window.start, "period_end": window.end}.items()}
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


@task(name="write-csat-reports", cache_policy=NO_CACHE)
def write_csat_reports(warehouse_url: str, window: Window, run_id: str, analysis: dict[str, Any],
                       reasons: dict[str, Any], ops: dict[str, Any]) -> dict[str, int]:
    now = datetime.now(UTC)
    stamp = {"run_id": run_id, "computed_at": now}
    report: DriverReport = analysis["report"]
    top_reason = {scope: s.iloc[0]["theme"] for scope, s in reasons["summaries"].items()
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
    reason_rows = [{"scope": scope[:160], "theme": r["theme"], "comments": r["comments"], "share": r["share"],
                    **stamp} for scope, s in reasons["summaries"].items() for r in s.to_dict("records")]
    trend_rows = [{"factor": r["factor"], "level": str(r["level"])[:128], "label": str(r["label"])[:255],
                   "week_start": r["week_start"].to_pydatetime(), "ratings": r["n"], "bad": r["bad"],
                   "bad_rate": r["bad_rate"], **stamp} for r in analysis["trends"].to_dict("records")]
    option_rows = [{k: r[k] for k in ("selected", "tickets", "matched_share", "top_actual", "top_actual_share",
                                      "routed_elsewhere", "suggestion")} | stamp
                   for r in ops["options"].to_dict("records")]
    candidate_rows = [{k: r[k] for k in ("category", "tickets", "mean_confidence", "high_confidence_share",
                                         "complexity", "ratings", "shrunk_bad_rate", "already_auto_reply",
                                         "is_candidate", "reason", "deflectable_tickets")} | stamp
                      for r in ops["candidates"].to_dict("records")]
    with get_engine(warehouse_url).begin() as conn:
        written = {
            "csat_drivers": replace_period(conn, csat_drivers, window, list(by_key.values())),
            "csat_reason_counts": replace_period(conn, csat_reason_counts, window, reason_rows),
            "csat_weekly_trends": replace_period(conn, csat_weekly_trends, window, trend_rows),
            "self_selection_options": replace_period(conn, self_selection_options, window, option_rows),
            "auto_reply_candidates": replace_period(conn, auto_reply_table, window, candidate_rows),
        }
    return written


# ------------------------------------------------------------------------------------------- charts

MIN_TREND_WEEK_RATINGS = 10  # fewer ratings in a week and its bad-rate is noise; the trend chart leaves it out


def _charts_dir(settings: Settings, window: Window) -> Path:
    path = Path(settings.reports_dir) / "csat-drivers" / window.slug
    path.mkdir(parents=True, exist_ok=True)
    return path


@task(name="draw-csat-charts", cache_policy=NO_CACHE)
def draw_csat_charts(settings: Settings, window: Window, analysis: dict[str, Any], reasons: dict[str, Any],
                     ops: dict[str, Any]) -> list[str]:
    """PNG charts (matplotlib, Agg backend) under ``reports_dir/csat-drivers/<period>/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = _charts_dir(settings, window)
    written: list[str] = []
    drivers = analysis["report"].drivers.head(settings.csat.top_drivers)

    def save(fig, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

    fig, ax = plt.subplots(figsize=(9, 0.5 * max(len(drivers), 2) + 1.2))
    if drivers.empty:
        ax.text(0.5, 0.5, f"No driver at FDR {settings.csat.fdr:.2f}", ha="center", va="center")
        ax.set_axis_off()
    else:
        labels = [driver_name(r.factor, r.label)[:60] for r in drivers.itertuples()]
        ax.barh(labels[::-1], drivers["excess_bad"].to_numpy()[::-1], color="#c0392b")
        for i, r in enumerate(list(drivers.itertuples())[::-1]):
            ax.text(r.excess_bad, i, f"  OR {r.odds_ratio:.2f} [{r.or_low:.2f}-{r.or_high:.2f}]", va="center",
                    fontsize=8)
        ax.set_xlabel("excess bad ratings attributable")
    ax.set_title(f"CSAT drivers, {window.describe()}")
    save(fig, "drivers.png")

    trends = analysis["trends"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    # A week with a handful of ratings (the window's partial first or last week, say) swings between 0 and 1:
    # such points are left out, and the overall line says how many ratings each week had.
    shown = trends[trends["n"] >= MIN_TREND_WEEK_RATINGS] if not trends.empty else trends
    for (factor, _level), g in shown.groupby(["factor", "level"], sort=False):
        overall = factor == "all"
        style = {"color": "black", "linewidth": 2.5} if overall else {}
        label = "all ratings" if overall else driver_name(factor, g["label"].iloc[0])[:50]
        ax.plot(g["week_start"], g["bad_rate"], marker="o", label=label, **style)
        if overall:
            for week, rate, n in zip(g["week_start"], g["bad_rate"], g["n"], strict=True):
                ax.annotate(f"n={n}", (week, rate), textcoords="offset points", xytext=(0, -14), ha="center",
                            fontsize=7)
    ax.set_xlabel("week starting (Monday, UTC)")
    ax.set_ylabel("share of ratings that are bad")
    ax.set_title(f"Weekly bad-rate of the top drivers (weeks with ≥ {MIN_TREND_WEEK_RATINGS} ratings)")
    if not shown.empty:
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    save(fig, "trends.png")

    summary = reasons["summaries"]["all"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(summary["label"].to_numpy()[::-1], summary["comments"].to_numpy()[::-1], color="#2c3e50")
    ax.set_xlabel("bad-rating comments")
    ax.set_title("Why customers rated support badly")
    save(fig, "reasons.png")

    options = ops["options"]
    misused = options[options["suggestion"].astype(bool)] if not options.empty else options
    if not misused.empty:  # the most misused first (top of the chart)
        misused = misused.assign(misuse=1 - misused["matched_share"]).sort_values("misuse", ascending=False).head(10)
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(misused), 2) + 1.2))
    if misused.empty:
        ax.text(0.5, 0.5, "No misused contact-reason option", ha="center", va="center")
        ax.set_axis_off()
    else:
        ax.barh(misused["selected_name"].to_numpy()[::-1], misused["misuse"].to_numpy()[::-1], color="#e67e22")
        ax.set_xlabel("share of tickets about something else")
    ax.set_title("Most misused contact-reason options")
    save(fig, "self_selection.png")
    return written


# ---------------------------------------------------------------------------------------- artifacts

def _fmt(value: Any, spec: str = ".2f") -> str:
    value = _clean(value)
    if value is None:
        return "–"
    return format(value, spec)


def driver_name(factor: str, label: Any) -> str:
    """"agent: Yuki Khan", "category: ads_business.billing_refund"; a continuous factor's label already says what
    it is ("reopened", "per doubling of resolution time"), so it is not repeated."""
    return str(label) if factor in CONTINUOUS else f"{factor}: {label}"


def driver_lines(report: DriverReport, top: int) -> list[str]:
    """Human-readable driver lines (also printed by ``make demo``)."""
    lines = []
    for i, r in enumerate(report.drivers.head(top).itertuples(), start=1):
        shrunk = "" if _clean(r.shrunk_rate) is None else f", shrunk {r.shrunk_rate:.0%}"
        lines.append(f"{i}. {driver_name(r.factor, r.label)}: OR {r.odds_ratio:.2f} (95% CI {r.or_low:.2f}-{r.or_high:.2f}), "
                     f"q={r.q_value:.3g}, {r.bad}/{r.n} bad ({r.raw_rate:.0%}{shrunk}), "
                     f"≈{r.excess_bad:.0f} excess bad ratings")
    return lines


@task(name="publish-csat-artifacts", cache_policy=NO_CACHE)
def publish_csat_artifacts(settings: Settings, window: Window, analysis: dict[str, Any], reasons: dict[str, Any],
                           ops: dict[str, Any], charts: list[str]) -> list[str]:
    report: DriverReport = analysis["report"]
    keys = []
    drivers = report.drivers.head(settings.csat.top_drivers)
    md = [f"# CSAT drivers, {window.describe()}", "",
          f"{report.ratings} ratings, {report.bad} bad ({_fmt(report.bad_rate, '.1%')}). Adjusted for category, "
          f"agent, channel, sentiment, resolution and first-reply time and reopens (logistic regression); "
          f"drivers are effects significant at FDR {settings.csat.fdr} ({FDR_METHODS[settings.csat.fdr_method]} across "
          f"{len(report.effects)} tested segments), ranked by excess bad ratings attributable.", ""]
    md += driver_lines(report, settings.csat.top_drivers) or [f"**No driver** at FDR {settings.csat.fdr}."]
    if not report.protective.empty:
        md += ["", "Better than average: " + ", ".join(
            f"{r.factor} {r.label} (OR {r.odds_ratio:.2f})" for r in report.protective.head(5).itertuples())]
    md += [f"- {n}" for n in report.notes]
    if analysis["unscored"]:
        md += ["", f"{analysis['unscored']} rated tickets were not scored yet: their agent-confirmed category was used."]
    md += chart_markdown(settings, charts, "Charts")
    create_markdown_artifact(key="csat-drivers", markdown="\n".join(md),
                             description="What drives bad CSAT ratings in the window")
    create_table_artifact(key="csat-drivers-table", table=_records(drivers, [
        "factor", "label", "n", "bad", "raw_rate", "shrunk_rate", "odds_ratio", "or_low", "or_high", "q_value",
        "excess_bad"]), description="Ranked CSAT drivers")
    keys += ["csat-drivers", "csat-drivers-table"]

    summary = reasons["summaries"]["all"]
    md = [f"# Why customers rated support badly, {window.describe()}", "",
          f"{reasons['commented']} of {reasons['bad']} bad ratings have a comment; themes from the CSAT-reason "
          f"classifier (TF-IDF + logistic regression trained on {reasons['seed_examples']} seed-labelled comments, "
          f"digest {reasons['seed_digest']}, cross-validated accuracy on the seed set "
          f"{reasons['seed_cv_accuracy']:.0%}).", "", "| theme | comments | share |", "|---|---:|---:|"]
    md += [f"| {r.label} | {r.comments} | {r.share:.0%} |" for r in summary.itertuples()]
    for scope, s in reasons["summaries"].items():
        if scope != "all" and s["comments"].sum():
            top = s.iloc[0]
            md.append(f"- {scope}: mostly *{top['label']}* ({top['share']:.0%} of {int(s['comments'].sum())})")
    create_markdown_artifact(key="csat-reasons", markdown="\n".join(md), description="Bad-rating reason themes")
    create_table_artifact(key="csat-reasons-table", table=[
        {"scope": scope, "theme": r["theme"], "comments": int(r["comments"]), "share": round(float(r["share"]), 4)}
        for scope, s in reasons["summaries"].items() for r in s.to_dict("records")],
        description="Reason themes overall and per top driver")
    keys += ["csat-reasons", "csat-reasons-table"]

    options = ops["options"]
    judged = options[options["suggestion"].astype(bool)] if not options.empty else options
    md = [f"# Self-selected contact reason vs predicted category, {window.describe()}", "",
          f"{int(options['tickets'].sum()) if not options.empty else 0} tickets with a prediction at confidence ≥ "
          f"{settings.routing.auto_route_threshold}; {len(judged)} misused options.", ""]
    md += [f"- **{r.selected_name}** ({r.tickets} tickets, {r.matched_share:.0%} match): {r.suggestion}"
           for r in judged.head(10).itertuples()] or ["No misused option."]
    create_markdown_artifact(key="self-selection", markdown="\n".join(md),
                             description="Misused contact-reason options and suggested menu changes")
    create_table_artifact(key="self-selection-table", table=_records(options, [
        "selected", "tickets", "matched_share", "top_actual", "top_actual_share", "routed_elsewhere",
        "suggestion"]), description="Per contact-reason option")
    keys += ["self-selection", "self-selection-table"]

    cands = ops["candidates"]
    chosen = cands[cands["is_candidate"]] if not cands.empty else cands
    md = [f"# Auto-reply candidates, {window.describe()}", "",
          f"Categories with ≥ {settings.ops.auto_reply_min_tickets} tickets, ≥ {settings.ops.auto_reply_min_high_confidence_share:.0%} of them at confidence ≥ {settings.routing.auto_reply_threshold}, simple complexity, not Trust & "
          "Safety or spam, and CSAT no worse than average.", ""]
    md += [f"- **{r.name}** ({r.category}): {r.tickets} tickets, {r.high_confidence_share:.0%} high confidence, "
           f"{_fmt(r.shrunk_bad_rate, '.0%')} bad, ≈{r.deflectable_tickets} deflectable"
           f"{'' if r.already_auto_reply else ' — **not yet marked auto_reply in the taxonomy**'}"
           for r in chosen.itertuples()] or ["No candidate."]
    create_markdown_artifact(key="auto-reply-candidates", markdown="\n".join(md),
                             description="Categories that could be answered automatically")
    create_table_artifact(key="auto-reply-candidates-table", table=_records(cands, [
        "category", "tickets", "high_confidence_share", "complexity", "ratings", "shrunk_bad_rate",
        "already_auto_reply", "is_candidate", "reason"]), description="Every category judged for auto-reply")
    keys += ["auto-reply-candidates", "auto-reply-candidates-table"]
    return keys


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    out = []
    for rec in frame[columns].to_dict("records"):
        out.append({k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in ((k, _clean(v)) for k, v in rec.items())})
    return out
