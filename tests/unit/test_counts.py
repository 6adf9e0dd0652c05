"""The realistic count generator (helpdesk_sim.counts) used by the spike benchmark and calibration tests."""

from __future__ import annotations

import numpy as np
import pytest

from ticketlens.helpdesk_sim.counts import CountsConfig, generate_counts


@pytest.fixture(scope="module")
def data():
    return generate_counts(CountsConfig(seed=5, days=56, tickets_per_day=3000, incidents=6, holidays=2))


def test_counts_cover_every_leaf_and_parent_and_are_reproducible(data):
    counts = data.counts
    assert len(counts) == 56 * 24 and str(counts.index.tz) == "UTC"
    assert set(data.parents) <= set(counts.columns) and set(data.parents.values()) <= set(counts.columns)
    parent = next(iter(set(data.parents.values())))
    leaves = [k for k, v in data.parents.items() if v == parent]
    assert (counts[parent] == counts[leaves].sum(axis=1)).all()
    again = generate_counts(CountsConfig(seed=5, days=56, tickets_per_day=3000, incidents=6, holidays=2))
    assert again.counts.equals(counts)
    assert counts.iloc[:, :len(data.parents)].to_numpy().sum() == pytest.approx(56 * 3000, rel=0.25)


def test_overdispersion_varies_by_category_and_noise_is_autocorrelated(data):
    quiet = data.counts.copy()
    busy = [leaf for leaf, rate in data.mean_rate.items() if rate > 4]
    alphas = np.array([data.dispersion[k] for k in busy])
    assert alphas.max() / alphas.min() > 4  # categories differ a lot, like real series
    # residual against the weekly profile: variance beyond Poisson grows with α; lag-1 autocorrelation > 0
    excess, lag1 = [], []
    for k in busy:
        y = quiet[k].to_numpy(float)
        profile = quiet[k].groupby([quiet.index.day_of_week, quiet.index.hour]).transform("mean").to_numpy()
        r = (y - profile) / np.sqrt(profile)
        excess.append(((y - profile) ** 2 - y).sum() / (profile**2).sum())
        lag1.append(np.corrcoef(r[1:], r[:-1])[0, 1])
    assert np.corrcoef(alphas, excess)[0, 1] > 0.7
    assert np.median(lag1) > 0.1


def test_holidays_and_incidents_are_planted(data):
    counts = data.counts[list(data.parents)].sum(axis=1)
    for day in data.holidays:
        same_weekday = counts[(counts.index.day_of_week == day.weekday())]
        holiday = counts[day.strftime("%Y-%m-%d")].sum()
        assert holiday < 0.6 * same_weekday.resample("D").sum().replace(0, np.nan).median()
    assert len(data.incidents) == 6
    for inc in data.incidents:
        assert inc.multiplier >= 3 and 2 * 3600 <= inc.end - inc.start <= 6 * 3600


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="dispersion_range"):
        CountsConfig(dispersion_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="ar_range"):
        CountsConfig(ar_range=(0.2, 1.0))
