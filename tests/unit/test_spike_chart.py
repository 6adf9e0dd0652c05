"""The spike chart's data (issue 21): the expected line and its band over all 7 days, the alert's hours, and each
earlier peak that raised no alert explained with the detector's reason. Tests the data plotted, not pixels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from ticketlens.adapters.settings import SpikeSettings
from ticketlens.models.spike_report import ChartData, render_chart, spike_chart_data
from ticketlens.models.spikes import HOUR, Alert, detect_spikes

START = datetime(2026, 6, 1, tzinfo=UTC)  # a Monday
DAILY = np.array([0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 1.8, 1.9, 2.0,
                  2.0, 2.0, 1.9, 1.9, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4])
PARENTS = {"q.busy": "q", "q.small": "q", "q.other": "q", "r.more": "r"}


def seasonal_counts(hours: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(START, periods=hours, freq="h", tz=UTC)
    daily = DAILY[index.hour]
    means = {"q.busy": 10.0, "q.small": 0.25, "q.other": 4.0, "r.more": 6.0}
    leaves = pd.DataFrame({k: rng.poisson(m * daily) for k, m in means.items()}, index=index)
    leaves["q"] = leaves[["q.busy", "q.small", "q.other"]].sum(axis=1)
    leaves["r"] = leaves["r.more"]
    return leaves


def chart_for(counts: pd.DataFrame, series: str, hour: datetime, **kw) -> ChartData:
    alert = Alert(series=series, started_at=hour, last_spike_at=hour, observed=int(counts.loc[hour, series]))
    return spike_chart_data(counts, alert, parents=PARENTS, params=SpikeSettings().params(), **kw)


def test_expected_line_and_band_cover_the_whole_week_and_a_normal_daily_peak_is_explained():
    counts = seasonal_counts(5 * 168)
    alert_hour = counts.index[-1].to_pydatetime()
    assert alert_hour.hour == 23
    counts.loc[alert_hour, "q.busy"] = 22  # a night hour expecting ~4: as tall as the normal midday peaks
    counts.loc[alert_hour, "q"] += 22
    assert detect_spikes(counts, alert_hour + HOUR, parents=PARENTS, params=SpikeSettings().params()).set_index("series").loc["q.busy", "is_spike"]

    data = chart_for(counts, "q.busy", alert_hour)

    assert len(data.hours) == 168 and data.hours[-1] == alert_hour
    assert np.isfinite(data.expected).all()  # over all 7 days, not only at the alert hour
    assert (data.band_low <= data.expected).all() and (data.expected <= data.band_high).all()
    # the line follows the daily cycle: middays expect several times what nights do
    by_hour = pd.Series(data.expected, index=data.hours.hour).groupby(level=0).mean()
    assert by_hour[12] > 4 * by_hour[3]
    assert data.alert_hours == [alert_hour]
    assert data.observed[-1] == 22 and data.observed[-1] > data.band_high[-1]
    # the earlier hours as tall as the alert are middays: mostly inside the band, and each one says why it did
    # not page (one Poisson midday here is 34 vs 17.7 expected: above the band, but under the 2× guard)
    assert data.quiet_peaks, "the week has midday hours about as busy as the alert"
    for peak in data.quiet_peaks:
        assert peak.hour < alert_hour and peak.observed >= 0.8 * 22
        assert 9 <= peak.hour.hour <= 17
        i = list(data.hours).index(peak.hour)
        if peak.reason == "inside the 99% band":
            assert peak.observed <= data.band_high[i]
        else:
            assert peak.observed > data.band_high[i] and peak.reason.startswith("only "), peak
            assert peak.observed < 2 * peak.expected
    assert sum(p.reason == "inside the 99% band" for p in data.quiet_peaks) >= 2


def test_an_earlier_peak_below_the_paging_floor_is_labelled_with_it(tmp_path):
    counts = seasonal_counts(5 * 168, seed=11)
    alert_hour = counts.index[-1].to_pydatetime()
    earlier = alert_hour - timedelta(days=2, hours=20)  # 03:00 two days before: expects ~0.05
    counts.loc[alert_hour, "q.small"] = 14
    counts.loc[earlier, "q.small"] = 4
    for when in (alert_hour, earlier):
        counts.loc[when, "q"] = counts.loc[when, ["q.busy", "q.small", "q.other"]].sum()
    data = chart_for(counts, "q.small", alert_hour, peak_share=0.25)

    (peak,) = [p for p in data.quiet_peaks if p.hour == earlier]
    assert peak.observed == 4 and peak.expected < 1
    i = list(data.hours).index(earlier)
    assert peak.observed > data.band_high[i]  # unusual for its hour, yet too few tickets to page
    assert peak.reason == "below the paging floor (5/h)"

    path = render_chart(data, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_hour_inside_an_earlier_alert_is_not_explained_as_quiet():
    counts = seasonal_counts(5 * 168, seed=3)
    alert_hour = counts.index[-1].to_pydatetime()
    before = alert_hour - timedelta(days=3)
    for when in (alert_hour, before):
        counts.loc[when, "q.busy"] = 30
    exclude = pd.DataFrame(False, index=counts.index, columns=counts.columns)
    exclude.loc[before, ["q.busy", "q"]] = True  # the earlier surge had its own alert
    data = chart_for(counts, "q.busy", alert_hour, exclude=exclude)
    (peak,) = [p for p in data.quiet_peaks if p.hour == before]
    assert peak.reason == "inside an earlier alert"
