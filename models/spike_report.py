"""What a spike-detection run did, and how it is shown: result types, the markdown report and the 7-day chart.

Pure and Prefect-free: ``tasks/spikes.py`` reads the warehouse, calls these, and publishes the Prefect artifacts.
Rendering (matplotlib, markdown) happens here, outside every warehouse transaction: a slow or failing chart never
holds the alert transaction open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ticketlens.models.spikes import HOUR, Alert, SpikeParams, detect_spikes, hourly_model
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

BAND = 0.99  # central predictive interval of one hour's count drawn around the expected line
CHART_DAYS = 7


def chart_file_name(series: str, hour) -> str:
    return f"spike-{series.replace('.', '-')}-{hour:%Y%m%dT%H}.png"


@dataclass(frozen=True)
class QuietPeak:
    """An earlier hour about as busy as the alert that raised no alert, and the detector's reason why not."""

    hour: datetime
    observed: int
    expected: float
    reason: str


@dataclass(frozen=True)
class ChartData:
    """What the spike chart plots: the last 7 days of one series, its model and the alert."""

    series: str
    title: str
    hours: pd.DatetimeIndex  # hour starts, oldest first, the alert's last flagged hour last
    observed: np.ndarray
    expected: np.ndarray  # the model's one-step-ahead expected count per hour (NaN: not enough history yet)
    band_low: np.ndarray  # the 99 % predictive interval of one hour's count under NB(expected, α)
    band_high: np.ndarray
    alert_start: datetime
    alert_hours: list[datetime]  # hours of the window the alert flagged or kept open
    quiet_peaks: list[QuietPeak]


def _nb_interval(expected: np.ndarray, alpha: float, min_expected: float) -> tuple[np.ndarray, np.ndarray]:
    """Central ``BAND`` interval of one hour's count under the detector's NB(max(μ, floor), α)."""
    mu = np.maximum(np.nan_to_num(expected, nan=min_expected), min_expected)
    size = 1.0 / max(alpha, 1e-9)
    prob = size / (size + mu)
    tail = (1 - BAND) / 2
    low, high = stats.nbinom.ppf(tail, size, prob), stats.nbinom.ppf(1 - tail, size, prob)
    missing = np.isnan(expected)
    return np.where(missing, np.nan, low), np.where(missing, np.nan, high)


def _why_quiet(counts: pd.DataFrame, series: str, hour: datetime, band_high: float, *, parents: Mapping[str, str],
               params: SpikeParams, exclude: pd.DataFrame | None) -> str:
    """Why the detector did not flag ``series`` in ``hour``: the first of its conditions the hour failed."""
    if exclude is not None and series in exclude.columns and hour in exclude.index and bool(exclude.loc[hour, series]):
        return "inside an earlier alert"
    row = detect_spikes(counts, hour + HOUR, parents=parents, params=params, exclude=exclude).set_index(
        "series").loc[series]
    if bool(row["is_spike"]):
        return "flagged (alert already open)"
    if row["status"] == "warming_up":
        return f"too little history (< {params.min_history_hours} h)"
    if row["status"] == "new_category" and row["observed"] < params.new_category_min_count:
        return f"new category: pages from {params.new_category_min_count}/h"
    if row["status"] == "covered_by_leaf":
        return "a sub-category's alert covers it"
    if row["observed"] <= band_high:
        return "inside the 99% band"
    if row["observed"] < params.min_count:
        return f"below the paging floor ({params.min_count}/h)"
    window_ratio = row["window_observed"] / max(row["window_expected"], 1e-9)
    if window_ratio < params.min_ratio:
        over = f" over its {row['window_hours']} h window" if row["window_hours"] > 1 else ""
        return f"only {window_ratio:.1f}× expected{over} (pages from {params.min_ratio:g}×)"
    budget = f"p = {row['p_value']:.1e} > {params.alert_rate:g} per category-hour, " if params.alert_rate else ""
    return f"not significant ({budget}q = {row['q_value']:.1e} > FDR {params.fdr:g})"


def _quiet_peaks(window: pd.Series, alert_hours: set, share: float, max_peaks: int) -> list[datetime]:
    """Hours outside the alert at least ``share`` × the alert's peak, tallest first, one per 6 hours."""
    alerted = window[window.index.isin(list(alert_hours))]
    if not len(alerted) or alerted.max() <= 0:
        return []
    floor = share * alerted.max()
    candidates = window[~window.index.isin(list(alert_hours)) & (window >= floor) & (window > 0)]
    picked: list[datetime] = []
    for hour in candidates.sort_values(ascending=False, kind="stable").index:
        if all(abs(hour - other) >= 6 * HOUR for other in picked):
            picked.append(hour)
        if len(picked) == max_peaks:
            break
    return sorted(picked)


def spike_chart_data(counts: pd.DataFrame, alert: Alert, *, parents: Mapping[str, str],
                     params: SpikeParams, exclude: pd.DataFrame | None = None,
                     peak_share: float = 0.8, max_peaks: int = 3) -> ChartData:
    """The chart's data for ``alert``: 7 days of counts, expected line and band, alert hours, explained peaks.

    ``counts``/``parents``/``exclude`` as for ``detect_spikes`` (the counts must reach the alert's last flagged
    hour and have the detector's lookback before it). Earlier hours at least ``peak_share`` × the alert's peak that
    raised no alert are explained by re-running the detector on them (``max_peaks`` at most).
    """
    p = params
    hour = alert.last_spike_at or alert.started_at
    model = hourly_model(counts, hour + HOUR, parents=parents, params=p, exclude=exclude)
    window = counts[alert.series].loc[hour - timedelta(days=CHART_DAYS) + HOUR: hour]
    expected = model.expected[alert.series].reindex(window.index).to_numpy(dtype=float)
    low, high = _nb_interval(expected, float(model.dispersion[alert.series]), model.min_expected)
    alert_hours = [h for h in window.index if alert.started_at <= h <= hour]
    peaks = []
    for peak in _quiet_peaks(window, set(alert_hours), peak_share, max_peaks):
        i = window.index.get_loc(peak)
        reason = _why_quiet(counts, alert.series, peak.to_pydatetime(), float(high[i]) if np.isfinite(high[i])
                            else np.inf, parents=parents, params=p, exclude=exclude)
        peaks.append(QuietPeak(hour=peak.to_pydatetime(), observed=int(window.iloc[i]),
                               expected=float(expected[i]), reason=reason))
    return ChartData(series=alert.series, title=category_path(alert.series), hours=window.index,
                     observed=window.to_numpy(), expected=expected, band_low=low, band_high=high,
                     alert_start=alert.started_at, alert_hours=[h.to_pydatetime() for h in alert_hours],
                     quiet_peaks=peaks)


def render_chart(data: ChartData, path: Path) -> Path:
    """PNG: hourly counts over 7 days, the expected count with its 99 % band, the alert shaded and its hours
    marked, and each earlier peak that raised no alert labelled with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = data.hours + HOUR / 2  # plot each hour at its middle
    notes = [f"({n}) {peak.hour:%a %m-%d %H}:00 — {peak.observed} tickets vs {peak.expected:.1f} expected: "
             f"no alert, {peak.reason}" for n, peak in enumerate(data.quiet_peaks, start=1)]
    fig, ax = plt.subplots(figsize=(11, 3.8 + 0.22 * len(notes)), dpi=100)
    try:
        ax.fill_between(x, data.band_low, data.band_high, color="#9aa5b1", alpha=0.35, linewidth=0,
                        label=f"expected range ({BAND:.0%})")
        ax.plot(x, data.expected, color="black", linestyle="--", linewidth=1.0, label="expected")
        ax.plot(x, data.observed, color="#4a6fa5", linewidth=1.2, label="tickets per hour")
        if data.alert_hours:
            ax.axvspan(data.alert_start, data.alert_hours[-1] + HOUR, color="#e4572e", alpha=0.18, label="alert")
            flagged = data.hours.isin(data.alert_hours)
            ax.scatter(x[flagged], data.observed[flagged], color="#e4572e", zorder=3, s=18, label="alert hours")
        top = float(np.nanmax([np.nanmax(data.observed, initial=0), np.nanmax(data.band_high, initial=0)]))
        for n, peak in enumerate(data.quiet_peaks, start=1):
            px = peak.hour + HOUR / 2
            ax.scatter([px], [peak.observed], facecolors="none", edgecolors="#6b4c9a", zorder=3, s=40,
                       label="earlier peak, no alert" if n == 1 else None)
            ax.annotate(f"({n})", xy=(px, peak.observed), xytext=(0, 7), textcoords="offset points", ha="center",
                        fontsize=8, color="#6b4c9a")
        if notes:
            fig.text(0.01, 0.01, "\n".join(notes), fontsize=8, color="#3d2b5c", va="bottom", ha="left")
        ax.set_ylim(0, max(top * 1.25, 1.0))
        ax.set_title(f"{data.title} — last 7 days (UTC)", fontsize=10)
        ax.set_ylabel("tickets / hour")
        ax.set_xlabel("hour (UTC)")
        ax.legend(loc="upper left", fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout(rect=(0, 0.22 * len(notes) / fig.get_figheight() + (0.02 if notes else 0), 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
