"""What the ``csat-drivers`` flow shows people: PNG charts and markdown/table artifact content (Prefect-free).

Rendering is kept out of the tasks that compute and write, so it runs after the warehouse transaction has
committed and can be tested without Prefect; the tasks in ``tasks/csat.py`` only publish what is built here.
Nothing here carries customer text: charts and tables hold counts, rates, category keys, agent and team names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ticketlens.models.csat_drivers import CONTINUOUS, FDR_METHODS, DriverAnalysis, DriverConfig, DriverReport
from ticketlens.models.csat_reasons import ReasonReport
from ticketlens.models.ops_reports import OpsConfig, OpsReports

MIN_TREND_WEEK_RATINGS = 10  # fewer ratings in a week and its bad-rate is noise; the trend chart leaves it out
CHART_FILES = ("drivers.png", "trends.png", "reasons.png", "self_selection.png")


# ------------------------------------------------------------------------------------------- values

def plain_value(value: Any) -> Any:
    """A numpy/pandas scalar as a plain Python value, and every kind of missing (NaN, NA) as None, so that
    JSON artifacts and warehouse rows hold null rather than ``NaN``."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    return value


def fmt(value: Any, spec: str = ".2f") -> str:
    """A number for a sentence; a dash where it is missing (an empty segment has no rate)."""
    value = plain_value(value)
    if value is None:
        return "–"
    return format(value, spec)


def table_records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows for a table artifact: the chosen columns, plain values, floats to 4 decimals."""
    if frame.empty:
        return []
    out = []
    for rec in frame[columns].to_dict("records"):
        out.append({k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in ((k, plain_value(v)) for k, v in rec.items())})
    return out


def driver_name(factor: str, label: Any) -> str:
    """"agent: Yuki Khan", "category: ads_business.billing_refund"; a continuous factor's label already says what
    it is ("reopened", "per doubling of resolution time"), so it is not repeated."""
    return str(label) if factor in CONTINUOUS else f"{factor}: {label}"


def driver_lines(report: DriverReport, top: int) -> list[str]:
    """Human-readable driver lines (the flow prints them, and ``make demo`` shows them)."""
    lines = []
    for i, r in enumerate(report.drivers.head(top).itertuples(), start=1):
        shrunk = "" if plain_value(r.shrunk_rate) is None else f", shrunk {r.shrunk_rate:.0%}"
        lines.append(f"{i}. {driver_name(r.factor, r.label)}: OR {r.odds_ratio:.2f} (95% CI {r.or_low:.2f}-{r.or_high:.2f}), "
                     f"q={r.q_value:.3g}, {r.bad}/{r.n} bad ({r.raw_rate:.0%}{shrunk}), "
                     f"≈{r.excess_bad:.0f} excess bad ratings")
    return lines


def misused_options(options: pd.DataFrame) -> pd.DataFrame:
    """Contact-reason options with a suggested menu change (an option judged fine has an empty suggestion)."""
    return options[options["suggestion"].astype(bool)] if not options.empty else options


# ------------------------------------------------------------------------------------------- charts

def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (a worker has no display); imported when drawing, since
    matplotlib is slow to import and most importers of this module only build markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def draw_drivers_chart(drivers: pd.DataFrame, period: str, fdr: float, path: Path) -> str:
    """Top drivers as bars of excess bad ratings, each with its odds ratio and interval."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.5 * max(len(drivers), 2) + 1.2))
    if drivers.empty:
        ax.text(0.5, 0.5, f"No driver at FDR {fdr:.2f}", ha="center", va="center")
        ax.set_axis_off()
    else:
        labels = [driver_name(r.factor, r.label)[:60] for r in drivers.itertuples()]
        ax.barh(labels[::-1], drivers["excess_bad"].to_numpy()[::-1], color="#c0392b")
        for i, r in enumerate(list(drivers.itertuples())[::-1]):
            ax.text(r.excess_bad, i, f"  OR {r.odds_ratio:.2f} [{r.or_low:.2f}-{r.or_high:.2f}]", va="center",
                    fontsize=8)
        ax.set_xlabel("excess bad ratings attributable")
    ax.set_title(f"CSAT drivers, {period}")
    return _save(fig, path)


def draw_trends_chart(trends: pd.DataFrame, path: Path) -> str:
    """Weekly bad-rate of all ratings and of each top driver (weeks with too few ratings left out)."""
    plt = _pyplot()
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
    return _save(fig, path)


def draw_reasons_chart(summary: pd.DataFrame, path: Path) -> str:
    """Bad-rating comments per reason theme."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(summary["label"].to_numpy()[::-1], summary["comments"].to_numpy()[::-1], color="#2c3e50")
    ax.set_xlabel("bad-rating comments")
    ax.set_title("Why customers rated support badly")
    return _save(fig, path)


def draw_self_selection_chart(options: pd.DataFrame, path: Path) -> str:
    """The ten most misused contact-reason options by the share of their tickets about something else."""
    plt = _pyplot()
    misused = misused_options(options)
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
    return _save(fig, path)


def draw_csat_charts(out: Path, period: str, analysis: DriverAnalysis, reasons: ReasonReport, ops: OpsReports,
                     top_drivers: int, fdr: float) -> list[str]:
    """The four PNG charts into ``out`` (which must exist); their paths, in ``CHART_FILES`` order."""
    drivers_png, trends_png, reasons_png, options_png = (out / name for name in CHART_FILES)
    return [draw_drivers_chart(analysis.report.drivers.head(top_drivers), period, fdr, drivers_png),
            draw_trends_chart(analysis.trends, trends_png),
            draw_reasons_chart(reasons.summaries["all"], reasons_png),
            draw_self_selection_chart(ops.options, options_png)]


# ---------------------------------------------------------------------------------------- artifacts

@dataclass(frozen=True)
class ReportArtifact:
    """One report as Prefect shows it: a markdown artifact ``key`` and its table artifact ``key-table``."""

    key: str
    markdown: str
    description: str
    table: list[dict[str, Any]]
    table_description: str

    @property
    def table_key(self) -> str:
        return f"{self.key}-table"


def drivers_artifact(analysis: DriverAnalysis, period: str, config: DriverConfig, top: int,
                     chart_lines: Sequence[str]) -> ReportArtifact:
    """The ranked drivers, the better-than-average segments and the analysis notes."""
    report = analysis.report
    md = [f"# CSAT drivers, {period}", "",
          f"{report.ratings} ratings, {report.bad} bad ({fmt(report.bad_rate, '.1%')}). Adjusted for category, "
          f"agent, channel, sentiment, resolution and first-reply time and reopens (logistic regression); "
          f"drivers are effects significant at FDR {config.fdr} ({FDR_METHODS[config.method]} across "
          f"{len(report.effects)} tested segments), ranked by excess bad ratings attributable.", ""]
    md += driver_lines(report, top) or [f"**No driver** at FDR {config.fdr}."]
    if not report.protective.empty:
        md += ["", "Better than average: " + ", ".join(
            f"{r.factor} {r.label} (OR {r.odds_ratio:.2f})" for r in report.protective.head(5).itertuples())]
    md += [f"- {n}" for n in report.notes]
    if analysis.unscored:
        md += ["", f"{analysis.unscored} rated tickets were not scored yet: their agent-confirmed category was used."]
    md += chart_lines
    table = table_records(report.drivers.head(top), [
        "factor", "label", "n", "bad", "raw_rate", "shrunk_rate", "odds_ratio", "or_low", "or_high", "q_value",
        "excess_bad"])
    return ReportArtifact("csat-drivers", "\n".join(md), "What drives bad CSAT ratings in the window", table,
                          "Ranked CSAT drivers")


def reasons_artifact(reasons: ReasonReport, period: str) -> ReportArtifact:
    """Reason themes of bad-rating comments, overall and the main theme per top driver."""
    summary = reasons.summaries["all"]
    md = [f"# Why customers rated support badly, {period}", "",
          f"{reasons.commented} of {reasons.bad} bad ratings have a comment; themes from the CSAT-reason "
          f"classifier (TF-IDF + logistic regression trained on {reasons.seed_examples} seed-labelled comments, "
          f"digest {reasons.seed_digest}, cross-validated accuracy on the seed set "
          f"{reasons.seed_cv_accuracy:.0%}).", "", "| theme | comments | share |", "|---|---:|---:|"]
    md += [f"| {r.label} | {r.comments} | {r.share:.0%} |" for r in summary.itertuples()]
    for scope, s in reasons.summaries.items():
        if scope != "all" and s["comments"].sum():
            top = s.iloc[0]
            md.append(f"- {scope}: mostly *{top['label']}* ({top['share']:.0%} of {int(s['comments'].sum())})")
    table = [{"scope": scope, "theme": r["theme"], "comments": int(r["comments"]), "share": round(float(r["share"]), 4)}
             for scope, s in reasons.summaries.items() for r in s.to_dict("records")]
    return ReportArtifact("csat-reasons", "\n".join(md), "Bad-rating reason themes", table,
                          "Reason themes overall and per top driver")


def self_selection_artifact(options: pd.DataFrame, period: str, config: OpsConfig) -> ReportArtifact:
    """Misused contact-reason options with the suggested menu change (``models.ops_reports``)."""
    judged = misused_options(options)
    md = [f"# Self-selected contact reason vs predicted category, {period}", "",
          f"{int(options['tickets'].sum()) if not options.empty else 0} tickets with a prediction at confidence ≥ "
          f"{config.min_confidence}; {len(judged)} misused options.", ""]
    md += [f"- **{r.selected_name}** ({r.tickets} tickets, {r.matched_share:.0%} match): {r.suggestion}"
           for r in judged.head(10).itertuples()] or ["No misused option."]
    table = table_records(options, ["selected", "tickets", "matched_share", "top_actual", "top_actual_share",
                                    "routed_elsewhere", "suggestion"])
    return ReportArtifact("self-selection", "\n".join(md),
                          "Misused contact-reason options and suggested menu changes", table,
                          "Per contact-reason option")


def auto_reply_artifact(candidates: pd.DataFrame, period: str, config: OpsConfig) -> ReportArtifact:
    """Categories that meet every auto-reply criterion (``models.ops_reports``); the table judges them all."""
    chosen = candidates[candidates["is_candidate"]] if not candidates.empty else candidates
    md = [f"# Auto-reply candidates, {period}", "",
          f"Categories with ≥ {config.auto_reply_min_tickets} tickets, ≥ "
          f"{config.auto_reply_min_high_confidence_share:.0%} of them at confidence ≥ {config.auto_reply_threshold}, "
          "simple complexity, not Trust & Safety or spam, and CSAT no worse than average.", ""]
    md += [f"- **{r.name}** ({r.category}): {r.tickets} tickets, {r.high_confidence_share:.0%} high confidence, "
           f"{fmt(r.shrunk_bad_rate, '.0%')} bad, ≈{r.deflectable_tickets} deflectable"
           f"{'' if r.already_auto_reply else ' — **not yet marked auto_reply in the taxonomy**'}"
           for r in chosen.itertuples()] or ["No candidate."]
    table = table_records(candidates, ["category", "tickets", "high_confidence_share", "complexity", "ratings",
                                       "shrunk_bad_rate", "already_auto_reply", "is_candidate", "reason"])
    return ReportArtifact("auto-reply-candidates", "\n".join(md), "Categories that could be answered automatically",
                          table, "Every category judged for auto-reply")


def csat_artifacts(period: str, analysis: DriverAnalysis, reasons: ReasonReport, ops: OpsReports,
                   driver_config: DriverConfig, ops_config: OpsConfig, top_drivers: int,
                   chart_lines: Sequence[str]) -> list[ReportArtifact]:
    """The flow's four reports, in the order they are published."""
    return [drivers_artifact(analysis, period, driver_config, top_drivers, chart_lines),
            reasons_artifact(reasons, period),
            self_selection_artifact(ops.options, period, ops_config),
            auto_reply_artifact(ops.candidates, period, ops_config)]
