"""What a spike-detection run did, and how it is shown: result types, the markdown report and the 7-day chart.

Pure and Prefect-free: ``tasks/spikes.py`` reads the warehouse, calls these, and publishes the Prefect artifacts.
Rendering (matplotlib, markdown) happens here, outside every warehouse transaction: a slow or failing chart never
holds the alert transaction open.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ticketlens.models.spikes import HOUR, Alert
from ticketlens.models.taxonomy import load_taxonomy

# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class SlackDelivery:
    """What one pass over the Slack outbox did (``not_sent`` = no webhook configured: not a failure)."""

    sent: int = 0
    failed: int = 0
    not_sent: int = 0
    error: bool = False  # the outbox itself could not be read: the messages stay queued

    def as_dict(self) -> dict[str, int]:
        """The counts as logged and printed: ``{'sent': 1, 'failed': 0, 'not_sent': 0}`` (+ ``'error': 1``)."""
        out = {"sent": self.sent, "failed": self.failed, "not_sent": self.not_sent}
        return {**out, "error": 1} if self.error else out


@dataclass(frozen=True)
class SeriesScore:
    """One series in the last evaluated hour (the report lists the most unusual ones)."""

    series: str
    observed: int
    expected: float
    ratio: float
    p_value: float
    q_value: float
    status: str


@dataclass
class SpikeSummary:
    """What ``detect-spikes`` did: the hours it evaluated and the alert changes it committed."""

    as_of: str | None = None  # end of the last evaluated hour (ISO, UTC)
    hours: list[str] = field(default_factory=list)  # ends of the evaluated hours, oldest first
    replay: bool = False  # every hour was evaluated before: reported only, nothing changed
    opened: int = 0
    grew: int = 0
    resolved: int = 0
    queued: int = 0  # Slack messages queued in the outbox
    charts: list[str] = field(default_factory=list)  # chart URLs (or file paths when not served)
    last_hour: list[SeriesScore] = field(default_factory=list)
    dispersion: float = float("nan")  # pooled NB dispersion of the last evaluated hour
    baseline: str | None = None  # "hour_of_week" | "hour_of_day" | "flat" | "none"

    def count(self, kind: str) -> None:
        """One more ``opened`` / ``grew`` / ``resolved`` notification."""
        setattr(self, kind, getattr(self, kind) + 1)


@dataclass
class SpikeRun(SpikeSummary):
    """The ``spike-detection`` flow's result: the detection summary and the Slack delivery that followed it."""

    slack: SlackDelivery = field(default_factory=SlackDelivery)
    skipped: bool = False  # another run held the lock: nothing was evaluated

    @classmethod
    def of(cls, summary: SpikeSummary, slack: SlackDelivery) -> SpikeRun:
        return cls(**{f.name: getattr(summary, f.name) for f in fields(SpikeSummary)}, slack=slack)


# ------------------------------------------------------------------------------------------------ text


def describe_hours(hour_ends: list[str]) -> str:
    """"2026-08-31T00:00 (1 hour)" or "2026-08-01T01:00 … 2026-08-31T00:00 (720 hours)" for logs and reports."""
    if not hour_ends:
        return "no hours"
    first, last = hour_ends[0][:16], hour_ends[-1][:16]
    n = len(hour_ends)
    return f"{first} (1 hour)" if n == 1 else f"{first} … {last} ({n} hours)"


def category_path(series: str) -> str:
    """"Account & login › Password reset" for a leaf, "Account & login" for a parent, the key if unknown."""
    tax = load_taxonomy()
    if series in tax.categories:
        cat = tax.categories[series]
        return f"{tax.parents.get(cat.parent, cat.parent)} › {cat.name}"
    return tax.parents.get(series, series)


def alerts_markdown(rows: list[dict[str, Any]], summary: SpikeSummary, sent: SlackDelivery) -> str:
    """The ``spike-alerts`` artifact: this run's counts, the current alerts, the most unusual series."""
    lines = [f"# Spike alerts ({summary.as_of})", "",
             f"Evaluated hour(s) ending {describe_hours(summary.hours)}"
             + (" (already evaluated: report only)" if summary.replay else "")
             + f"; pooled NB dispersion α = {summary.dispersion:.3f}, "
             f"baseline {summary.baseline}.",
             f"This run: {summary.opened} opened, {summary.grew} grew, {summary.resolved} resolved; Slack: "
             f"{sent.sent} sent, {sent.failed} failed (retried next run), "
             f"{sent.not_sent} not sent (no webhook configured).", ""]
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
    for rec in summary.last_hour:
        lines.append(f"| `{rec.series}` | {rec.observed} | {rec.expected:.1f} | {rec.ratio:.1f} | "
                     f"{rec.p_value:.1e} | {rec.q_value:.1e} | {rec.status} |")
    return "\n".join(lines)


def charts_markdown(served: list[str]) -> str:
    """The charts section appended to the report when the charts are served over HTTP."""
    return "\n\n## Charts (last 7 days, tickets per hour)\n\n" + "\n\n".join(
        f"![{url.rsplit('/', 1)[-1]}]({url})" for url in served)


# ------------------------------------------------------------------------------------------------ chart


def chart_file_name(series: str, hour) -> str:
    return f"spike-{series.replace('.', '-')}-{hour:%Y%m%dT%H}.png"


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
