"""Realistic hourly ticket counts per category, for calibrating and benchmarking the spike detector.

The ticket generator (``helpdesk_sim.generator``) draws a Poisson total per hour and splits it by fixed shares:
counts that are exactly Poisson per category, which flatters any detector. Real contact volumes are not like that
(measured on public hourly event counts: per-series NB dispersion from 0.06 to 0.78, bursts that last several
hours). This module draws *counts* directly (no ticket text: fast enough for months × dozens of categories) with:

* **over-dispersion that varies by category**: each leaf's hourly count is Poisson(λ·g) with a gamma multiplier g
  of mean 1 and variance α, α drawn per category log-uniformly from ``dispersion_range``, so every hour is exactly
  negative binomial with that category's α;
* **autocorrelated noise**: the multipliers are an AR(1) Gaussian process mapped onto the gamma distribution
  (a Gaussian copula), coefficient per category from ``ar_range`` -- a busy hour is followed by busy hours, so
  a 3-hour sum varies much more than three independent hours would;
* **day-of-week effects** per category (the shared weekly profile times a per-category factor) and the shared
  hour-of-day profile;
* **slow level drift**: a random walk of the log level per category (``drift_per_week`` SD per week);
* **holidays**: whole days at ``holiday_factor`` × the usual volume for every category;
* **planted incidents**: one leaf at ``multiplier`` × its volume for 2-6 daytime hours (ground truth in
  ``incidents``, the ``helpdesk_sim.dataset.Incident`` records the benchmark scores against).

Pure and seeded: the same config gives the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from ticketlens.helpdesk_sim.dataset import Incident
from ticketlens.helpdesk_sim.generator import HOURLY, WEEKLY
from ticketlens.models.taxonomy import load_taxonomy


@dataclass(frozen=True)
class CountsConfig:
    seed: int = 0
    start: datetime = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday
    days: int = 56
    tickets_per_day: float = 1000.0
    incidents: int = 24
    dispersion_range: tuple[float, float] = (0.04, 0.8)  # per-category NB α (log-uniform)
    ar_range: tuple[float, float] = (0.3, 0.85)  # per-category AR(1) coefficient of the hourly noise
    weekday_sd: float = 0.1  # per-category log-factor on the shared day-of-week profile
    drift_per_week: float = 0.1  # SD of the log level's random walk per week
    holidays: int = 2  # whole days at holiday_factor × the usual volume (never in the first 2 weeks)
    holiday_factor: float = 0.35
    multipliers: tuple[int, int] = (3, 8)
    incident_hours: tuple[int, int] = (2, 6)
    warmup_days: int = 14  # incidents start after this (the detector needs history)

    def __post_init__(self) -> None:
        if self.days < 1 or self.tickets_per_day <= 0:
            raise ValueError("days and tickets_per_day must be positive")
        lo, hi = self.dispersion_range
        if not 0 < lo <= hi:
            raise ValueError(f"dispersion_range must be 0 < low <= high, got {self.dispersion_range}")
        if not all(-1 < a < 1 for a in self.ar_range):
            raise ValueError(f"ar_range must lie in (-1, 1), got {self.ar_range}")


@dataclass
class CountsData:
    counts: pd.DataFrame  # hourly counts, leaves then parents, UTC hour index
    parents: dict[str, str]  # leaf → parent
    incidents: list[Incident]
    dispersion: dict[str, float] = field(default_factory=dict)  # the α each leaf was drawn with
    autocorrelation: dict[str, float] = field(default_factory=dict)
    holidays: list[datetime] = field(default_factory=list)
    mean_rate: dict[str, float] = field(default_factory=dict)  # tickets per hour, before incidents


def _ar1(rng: np.random.Generator, n: int, phi: np.ndarray) -> np.ndarray:
    """Stationary AR(1) Gaussian series with unit variance, one column per coefficient."""
    out = np.empty((n, len(phi)))
    out[0] = rng.standard_normal(len(phi))
    scale = np.sqrt(1 - phi**2)
    shocks = rng.standard_normal((n, len(phi)))
    for t in range(1, n):
        out[t] = phi * out[t - 1] + scale * shocks[t]
    return out


def generate_counts(config: CountsConfig | None = None) -> CountsData:
    """Hourly counts for every taxonomy leaf (shares from the taxonomy) and its parent; see the module doc."""
    c = config or CountsConfig()
    rng = np.random.default_rng(c.seed)
    tax = load_taxonomy()
    leaves = list(tax.leaves)
    parents = {k: tax.categories[k].parent for k in leaves}
    shares = np.array([tax.categories[k].base_share for k in leaves], dtype=float)
    shares /= shares.sum()
    n, m = c.days * 24, len(leaves)
    index = pd.date_range(c.start, periods=n, freq="h", tz=UTC)
    hour, dow = index.hour.to_numpy(), index.day_of_week.to_numpy()

    alpha = np.exp(rng.uniform(*np.log(c.dispersion_range), size=m))
    phi = rng.uniform(*c.ar_range, size=m)
    weekday = WEEKLY[None, :] * np.exp(rng.normal(0, c.weekday_sd, size=(m, 7)))
    weekday /= weekday.mean(axis=1, keepdims=True) / WEEKLY.mean()
    profile = HOURLY[hour] / HOURLY.mean()
    drift = np.cumsum(rng.normal(0, c.drift_per_week / np.sqrt(168), size=(n, m)), axis=0)
    day_index = np.arange(n) // 24
    holiday_days = sorted(rng.choice(np.arange(min(14, c.days - 1), c.days), size=min(c.holidays, max(c.days - 14, 0)),
                                     replace=False).tolist()) if c.holidays else []
    holiday = np.where(np.isin(day_index, holiday_days), c.holiday_factor, 1.0)
    rate = (c.tickets_per_day / 24 * shares[None, :] * profile[:, None] * weekday[:, dow].T
            * np.exp(drift - drift.mean(axis=0)) * holiday[:, None])
    # gamma(1/α, α) multipliers (mean 1, variance α) driven by an AR(1) Gaussian: NB hours, autocorrelated
    u = stats.norm.cdf(_ar1(rng, n, phi))
    g = stats.gamma.ppf(np.clip(u, 1e-12, 1 - 1e-12), a=1 / alpha[None, :], scale=alpha[None, :])
    lam = rate * g
    counts = rng.poisson(lam)

    incidents: list[Incident] = []
    start_ts = int(c.start.timestamp())
    days = np.arange(min(c.warmup_days, c.days - 1), c.days)
    days = days[~np.isin(days, holiday_days)]
    for i in range(c.incidents):
        j = int(rng.choice(m, p=shares))
        day = int(rng.choice(days))
        begin = day * 24 + int(rng.integers(7, 20))
        length = int(rng.integers(c.incident_hours[0], c.incident_hours[1] + 1))
        stop = min(begin + length, n)
        mult = float(rng.integers(c.multipliers[0], c.multipliers[1] + 1))
        extra = np.maximum(1, rng.poisson(lam[begin:stop, j] * (mult - 1)))  # an incident always shows
        counts[begin:stop, j] += extra
        incidents.append(Incident(id=f"inc-{i + 1:03d}", category=leaves[j], start=start_ts + begin * 3600,
                                  end=start_ts + stop * 3600, multiplier=mult))

    frame = pd.DataFrame(counts.astype(np.int64), index=index, columns=leaves)
    for parent in sorted(set(parents.values())):
        frame[parent] = frame[[k for k in leaves if parents[k] == parent]].sum(axis=1)
    frame.index.name = "hour"
    return CountsData(counts=frame, parents=parents, incidents=incidents,
                      dispersion=dict(zip(leaves, alpha.tolist(), strict=True)),
                      autocorrelation=dict(zip(leaves, phi.tolist(), strict=True)),
                      holidays=[c.start + timedelta(days=int(d)) for d in holiday_days],
                      mean_rate=dict(zip(leaves, rate.mean(axis=0).tolist(), strict=True)))
