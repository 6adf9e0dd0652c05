"""Hourly spike detection per category: a pure, Prefect-free detector and the alert lifecycle rules.

Model, per series (every leaf category and every parent category), for the evaluated hour ``t``:

* **Seasonal baseline.** The expected *total* volume at ``t`` is the trimmed mean of the total at the same hour
  of week over the trailing ``baseline_weeks`` weeks (hour of day over the last 7 days when there are fewer than
  ``min_weeks_for_weekly`` weeks of history; a flat mean before that). The series' share of the total at that
  slot is its own share in those same past hours, shrunk towards its overall share of the trailing weeks
  (``share_prior`` pseudo-tickets), so sparse categories borrow the pooled profile while big ones keep their own.
* **Recent level.** The baseline times ``(observed + a) / (baseline + a)`` over the last ``level_hours``
  (``a = level_prior``): a category that grew last week is not an incident this week.
* **Robustness.** Hours inside past alerts (``exclude``) are left out of the baseline sums; the weekly means are
  trimmed, so a spike that was never alerted cannot inflate the baseline either. (The dispersion, below, keeps
  every hour: its tail is what it measures.)
* **Test.** Upper tail of a negative binomial with mean ``expected`` and variance ``μ + α μ²``, with α per
  series and per window length (1..``window_hours`` hours ending now), estimated by robust moments from that
  series' own one-step-ahead residuals over the last ``dispersion_hours`` -- past alert hours included -- and
  shrunk towards the pooled (median) value (``estimate_series_dispersion``). The k-hour window sums get their own
  α from the series' past k-hour sums, which carries the autocorrelation of real bursts. All α of one window
  length are then scaled by one factor κ so that the last week of history is calibrated at
  ``calibration_level`` (``calibrate_dispersion``). The smallest window p-value is multiplied by the windows'
  effective number measured on the history (``window_multiplicity``, ≤ the Bonferroni bound). Benjamini-Hochberg
  across the series tested in the hour (``fdr``), or the series' own p-value ≤ ``alert_rate`` (the false-alert
  budget per category-hour, ``passes_test``), then the guards: at least ``min_count`` tickets in the hour
  itself and ``min_ratio`` × the expected count of the window that made the p-value.
* **Short history.** No paging before ``min_history_hours`` of data; a category first seen less than
  ``min_category_history_hours`` ago (a new leaf, or one with no history at all) pages only from
  ``new_category_min_count`` tickets in the hour. A parent is not paged while one of its leaves is spiking or
  has an open alert: the leaf's alert already says it.

Everything here takes and returns plain DataFrames; ``tasks/spikes.py`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import special, stats

from ticketlens.models.states import AlertState, NotificationKind
from ticketlens.models.windows import as_utc

HOUR = timedelta(hours=1)
WEEK_HOURS = 168


@dataclass(frozen=True)
class SpikeParams:
    """Detector thresholds; ``adapters.settings.SpikeSettings.params()`` builds them, with the one set of defaults
    (``TICKETLENS_SPIKE_*``)."""

    baseline_weeks: int
    min_weeks_for_weekly: int
    level_hours: int
    level_prior: float
    share_prior: float
    dispersion_hours: int
    dispersion_prior: float
    dispersion_clip: float
    calibration_level: float
    min_calibration: float
    max_calibration: float
    min_dispersion: float
    max_dispersion: float
    default_dispersion: float
    fdr: float
    alert_rate: float
    min_count: int
    min_ratio: float
    min_expected: float
    window_hours: int
    min_history_hours: int
    min_category_history_hours: int
    new_category_min_count: int

    def __post_init__(self) -> None:
        if self.baseline_weeks < 1 or self.min_weeks_for_weekly < 1:
            raise ValueError("baseline_weeks and min_weeks_for_weekly must be at least 1")
        if not 0 < self.fdr < 1:
            raise ValueError(f"fdr must be in (0, 1), got {self.fdr}")
        if not 0 <= self.alert_rate < 1:
            raise ValueError(f"alert_rate must be in [0, 1), got {self.alert_rate}")
        if self.min_ratio < 1:
            raise ValueError(f"min_ratio must be at least 1, got {self.min_ratio}")
        if self.min_dispersion < 0 or self.max_dispersion < self.min_dispersion:
            raise ValueError("need 0 <= min_dispersion <= max_dispersion")

    @property
    def lookback_hours(self) -> int:
        """Hours of counts before the evaluated hour that the detector reads."""
        return self.baseline_weeks * WEEK_HOURS + self.dispersion_hours + self.level_hours


# ------------------------------------------------------------------------------------------------ counting


def floor_hour(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}; use UTC-aware datetimes")
    return as_utc(ts).replace(minute=0, second=0, microsecond=0)


def last_complete_hour_end(now: datetime | None = None) -> datetime:
    """The default ``as_of``: the end of the last complete hour before ``now`` (UTC)."""
    return floor_hour(now or datetime.now(UTC))


def hourly_counts(
    events: pd.DataFrame, start: datetime, end: datetime, parents: Mapping[str, str]
) -> pd.DataFrame:
    """Tickets per hour [start, end) by leaf and by parent category, zero hours and zero categories included.

    ``events`` has ``created_at`` (UTC) and ``category`` (leaf key); ``parents`` maps every known leaf to its
    parent. Leaves outside ``parents`` (e.g. a category a newer model predicts) still get their own column and
    count towards the parent given in an optional ``parent_category`` column.
    """
    start, end = floor_hour(start), floor_hour(end)
    index = pd.date_range(start, end, freq="h", inclusive="left", tz=UTC)
    leaves = list(parents)
    parent_of = dict(parents)
    if len(events):
        created = pd.to_datetime(events["created_at"], utc=True)
        inside = (created >= start) & (created < end)
        frame = pd.DataFrame({"hour": created[inside].dt.floor("h"),
                              "category": events.loc[inside, "category"].astype(str)})
        if "parent_category" in events:
            for leaf, parent in zip(events.loc[inside, "category"], events.loc[inside, "parent_category"],
                                    strict=True):
                parent_of.setdefault(str(leaf), str(parent))
        leaves += sorted(set(frame["category"]) - set(leaves))
        leaf_counts = frame.groupby(["hour", "category"]).size().unstack(fill_value=0)
    else:
        leaf_counts = pd.DataFrame(index=pd.DatetimeIndex([], tz=UTC))
    leaf_counts = leaf_counts.reindex(index=index, columns=leaves, fill_value=0).fillna(0).astype(np.int64)
    parent_keys = sorted({parent_of.get(leaf, leaf.split(".")[0]) for leaf in leaves})
    parent_counts = pd.DataFrame(
        {p: leaf_counts[[leaf for leaf in leaves if parent_of.get(leaf, leaf.split(".")[0]) == p]].sum(axis=1)
         for p in parent_keys}, index=index)
    out = pd.concat([leaf_counts, parent_counts], axis=1)
    out.index.name = "hour"
    return out


def alert_mask(index: pd.DatetimeIndex, columns: Iterable[str], alerts: Iterable[Mapping],
               parents: Mapping[str, str]) -> pd.DataFrame:
    """True where an hour lies inside a past alert of that series (a leaf's alert also masks its parent).

    Each alert is a mapping with ``series``, ``started_at`` and ``until`` (exclusive end; None = still open).
    """
    mask = pd.DataFrame(False, index=index, columns=list(columns))
    if len(index) == 0:
        return mask
    last = index[-1] + HOUR
    for alert in alerts:
        until = alert.get("until") or last
        rows = (index >= alert["started_at"]) & (index < until)
        for series in (alert["series"], parents.get(alert["series"])):
            if series is not None and series in mask.columns:
                mask.loc[rows, series] = True
    return mask


# ------------------------------------------------------------------------------------------------ the model


def _trimmed_mean(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 1 after cutting the lowest and highest quarter of the valid values (NaN-aware)."""
    data = np.where(valid, values, np.nan)
    data = np.sort(data, axis=1)  # NaN sort last
    n = valid.sum(axis=1)
    cut = np.floor(0.25 * n).astype(int)
    ranks = np.arange(values.shape[1]).reshape((1, -1) + (1,) * (values.ndim - 2))
    cut_b = cut.reshape((*cut.shape[:1], 1, *cut.shape[1:]))
    n_b = n.reshape(cut_b.shape)
    keep = (ranks >= cut_b) & (ranks < n_b - cut_b)
    kept = keep.sum(axis=1)
    total = np.where(keep, np.nan_to_num(data), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept > 0, total / np.maximum(kept, 1), np.nan), n


def _window_sum(cum: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Sum of rows [end - length, end) from a cumulative sum with a leading zero row."""
    starts = np.maximum(ends - length, 0)
    return cum[ends] - cum[starts]


@dataclass
class _Baseline:
    expected: np.ndarray  # (targets, series)
    method: np.ndarray  # (targets,) "hour_of_week" | "hour_of_day" | "flat" | "none"


def _baseline(y: np.ndarray, usable: np.ndarray, leaf_cols: np.ndarray, first: int, targets: np.ndarray,
              p: SpikeParams) -> _Baseline:
    """Seasonal baseline × recent level for each target row (vectorised over targets and series)."""
    n_rows, n_series = y.shape
    total = y[:, leaf_cols].sum(axis=1).astype(float)
    has_data = np.arange(n_rows) >= first
    use = usable & has_data[:, None]

    # ---- seasonal expected total and slot share, at every row that the level window needs
    need = np.arange(max(int(targets.min()) - p.level_hours, 0), int(targets.max()) + 1)

    def slot_values(lags: np.ndarray):
        idx = need[:, None] - lags[None, :]
        ok = (idx >= first) & (idx >= 0)
        idx_c = np.clip(idx, 0, n_rows - 1)
        tot = total[idx_c]
        mean_tot, n_valid = _trimmed_mean(tot, ok)
        u = use[idx_c] & ok[:, :, None]  # (rows, lags, series)
        ys = np.where(u, y[idx_c], 0).sum(axis=1)
        ts = np.where(u, tot[:, :, None], 0).sum(axis=1)
        return mean_tot, n_valid, ys, ts

    weekly = slot_values(WEEK_HOURS * np.arange(1, p.baseline_weeks + 1))
    daily = slot_values(24 * np.arange(1, 8))
    use_weekly = weekly[1] >= p.min_weeks_for_weekly
    use_daily = ~use_weekly & (daily[1] >= 1)
    mean_tot = np.where(use_weekly, weekly[0], np.where(use_daily, daily[0], np.nan))
    slot_y = np.where(use_weekly[:, None], weekly[2], daily[2])
    slot_t = np.where(use_weekly[:, None], weekly[3], daily[3])

    # overall share of each series over the trailing baseline window (usable hours only)
    cum_y = np.vstack([np.zeros((1, n_series)), np.cumsum(np.where(use, y, 0), axis=0)])
    cum_t = np.vstack([np.zeros((1, n_series)), np.cumsum(np.where(use, total[:, None], 0), axis=0)])
    span = p.baseline_weeks * WEEK_HOURS
    win_y, win_t = _window_sum(cum_y, need, span), _window_sum(cum_t, need, span)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(win_t > 0, win_y / np.maximum(win_t, 1e-12), 0.0)
        slot_share = (slot_y + p.share_prior * share) / (slot_t + p.share_prior)
        # flat fallback for the first day: the mean total per data hour so far
        cum_total = np.concatenate([[0.0], np.cumsum(np.where(has_data, total, 0))])
        hours_so_far = np.maximum(need - first, 0)
        flat = np.where(hours_so_far > 0, (cum_total[need] - cum_total[np.minimum(need, max(first, 0))])
                        / np.maximum(hours_so_far, 1), 0.0)
    method_need = np.where(use_weekly, "hour_of_week", np.where(use_daily, "hour_of_day", "flat"))
    mean_tot = np.where(np.isnan(mean_tot), flat, mean_tot)
    base = slot_share * mean_tot[:, None]  # (need, series)

    # ---- recent level over the previous level_hours (usable hours), shrunk towards 1
    full_base = np.zeros((n_rows, n_series))
    full_base[need] = base
    cum_obs = np.vstack([np.zeros((1, n_series)), np.cumsum(np.where(use, y, 0), axis=0)])
    cum_exp = np.vstack([np.zeros((1, n_series)), np.cumsum(np.where(use, full_base, 0), axis=0)])
    obs_recent = _window_sum(cum_obs, targets, p.level_hours)
    exp_recent = _window_sum(cum_exp, targets, p.level_hours)
    level = (obs_recent + p.level_prior) / (exp_recent + p.level_prior)
    pos = targets - need[0]
    expected = base[pos] * level
    method = np.where(targets > first, method_need[pos], "none")
    return _Baseline(expected=expected, method=method)


def estimate_dispersion(observed: np.ndarray, expected: np.ndarray, p: SpikeParams) -> float:
    """Pooled NB dispersion α by moments: Σ[(y-μ)² - y] / Σ μ², clipped to [min, max]."""
    ok = np.isfinite(expected) & np.isfinite(observed) & (expected > 0)
    mu, y = expected[ok], observed[ok]
    denom = float((mu**2).sum())
    if denom < 50.0:  # too little volume to say: stay conservative
        return p.default_dispersion
    alpha = float((((y - mu) ** 2) - y).sum() / denom)
    return float(np.clip(alpha, p.min_dispersion, p.max_dispersion))


def window_sums(values: np.ndarray, length: int) -> np.ndarray:
    """Sums over ``length`` consecutive rows ending at each row (rows before the first full window are NaN)."""
    values = np.asarray(values, dtype=float)
    out = np.full_like(values, np.nan)
    if length <= len(values):
        cum = np.vstack([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
        out[length - 1:] = cum[length:] - cum[:-length]
    return out


@dataclass(frozen=True)
class Dispersion:
    """NB dispersion per series and the pooled value the per-series estimates are shrunk towards."""

    alpha: np.ndarray  # (series,) shrunk, clipped; used by the test
    raw: np.ndarray  # (series,) the series' own robust moment estimate (NaN where it has no volume)
    pooled: float
    weight: np.ndarray  # (series,) share of the series' own estimate in ``alpha`` (0 = all pooled)


def estimate_series_dispersion(observed: np.ndarray, expected: np.ndarray, p: SpikeParams,
                               pooled_from: np.ndarray | None = None, scale: float = 1.0) -> Dispersion:
    """Robust NB dispersion α per series (columns), shrunk towards the pooled value.

    ``observed``/``expected``: (periods, series) counts and their one-step-ahead expectations -- single hours or
    k-hour window sums. *Every* period counts, past alert hours included: leaving them out cuts off the upper tail
    the test is about, so α comes out too small and the p-values too small (measured: α 0.11-0.22 with past alerts
    left out vs 0.35-2.0 with nothing left out, on real series). Robustness comes from a Huber-type cap instead:
    a period's count enters the moment sums at most ``dispersion_clip`` standard deviations above its expectation
    (two passes, so the cap uses the series' own α). A big incident then adds a bounded amount to α rather than
    silencing the series for a week, while the quiet tail (well inside 5 SD) enters in full.

    Per series, the moment estimate is S/M with S = Σ[(y-μ)² - y] and M = Σμ² (``raw``). It is shrunk towards the
    pooled value α₀: α = (S + λ α₀) / (M + λ), λ = ``dispersion_prior`` × ``scale`` (``scale`` = k² for k-hour
    sums), so a series with little volume borrows the pool's value and a busy one keeps its own. α₀ is the median
    of the leaf series' own estimates (``pooled_from``: which columns; series with M ≥ λ), so one large category
    does not dictate the dispersion of every other one (the former single pooled α did).
    """
    y = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    ok = np.isfinite(y) & np.isfinite(mu) & (mu > 0)
    y, mu = np.where(ok, y, 0.0), np.where(ok, mu, 0.0)
    n_series = y.shape[1]
    pooled_cols = np.ones(n_series, dtype=bool) if pooled_from is None else np.asarray(pooled_from, dtype=bool)
    lam = p.dispersion_prior * scale
    m = (mu**2).sum(axis=0)

    def moments(alpha: np.ndarray) -> np.ndarray:
        cap = mu + p.dispersion_clip * np.sqrt(mu + alpha[None, :] * mu**2)
        yc = np.minimum(y, cap)
        return np.where(ok, (yc - mu) ** 2 - yc, 0.0).sum(axis=0)

    def pool(s: np.ndarray) -> float:
        informative = pooled_cols & (m >= max(lam, 1e-9))
        if informative.sum() >= 3:
            return float(np.median(s[informative] / m[informative]))
        denom = m[pooled_cols].sum()
        if denom < 50.0:  # too little volume to say: stay conservative
            return p.default_dispersion
        return float(s[pooled_cols].sum() / denom)

    alpha = np.full(n_series, p.default_dispersion)
    for _ in range(2):
        s = moments(alpha)
        pooled = float(np.clip(pool(s), p.min_dispersion, p.max_dispersion))
        alpha = np.clip((s + lam * pooled) / (m + lam), p.min_dispersion, p.max_dispersion)
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.where(m > 0, s / np.maximum(m, 1e-12), np.nan)
    return Dispersion(alpha=alpha, raw=raw, pooled=pooled, weight=m / (m + lam) if lam > 0 else np.ones(n_series))


def calibrate_dispersion(observed: np.ndarray, expected: np.ndarray, alpha: np.ndarray, p: SpikeParams) -> float:
    """Factor κ on the dispersions so that the model's own history is calibrated at ``calibration_level``.

    The NB model matches each series' *variance*; real counts (and the baseline's own error, which moves with
    the autocorrelated noise) have heavier upper tails than a negative binomial of that variance, so tail
    p-values come out too small. This is the empirical calibration against the categories' own history: over
    the history periods of all leaf series (incidents and past alerts included, nothing cut off), find κ such
    that the share of periods whose randomised PIT, P(Y > y) + U·P(Y = y) under NB(μ, κα), lies below the level
    equals the level. The share is computed exactly in expectation over U (no random draw), so κ is smooth in
    the data. The level (default 1e-2) has enough periods below it to be estimated from two weeks of history,
    while incident hours in that history make up a small part of it (κ comes out slightly conservative). κ is
    kept within [``min_calibration``, ``max_calibration``].
    """
    y = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    a = np.broadcast_to(np.asarray(alpha, dtype=float), y.shape)
    ok = np.isfinite(y) & np.isfinite(mu) & (mu > 0)
    y, mu = np.where(ok, y, 0.0), np.where(ok, mu, 1.0)
    if ok.sum() * p.calibration_level < 20:  # too few periods to tell: leave the model as it is
        return 1.0
    total = int(ok.sum())
    x = p.calibration_level
    # Only periods well above their expectation can have a PIT below the level (P(Y > y) < 1 % needs y more than
    # ~2 SD above μ, and the narrowest distribution allowed is about Poisson): the rest add 0 for any κ. Keeping
    # only y > μ + 1.5√μ cuts the work about tenfold without changing the result.
    tail = ok & (y > mu + 1.5 * np.sqrt(np.maximum(mu, 0)))
    y, mu, a = y[tail], mu[tail], a[tail]
    log_fact = special.gammaln(y + 1)

    def share(kappa: float) -> float:
        # scipy.special directly: the scipy.stats wrappers cost ~10× more on these arrays
        size = 1.0 / np.maximum(kappa * a, 1e-9)
        prob = size / (size + mu)
        above = special.betainc(y + 1, size, 1 - prob)  # P(Y > y)
        at = np.exp(special.gammaln(y + size) - special.gammaln(size) - log_fact + size * np.log(prob)
                    + y * np.log1p(-prob))  # P(Y = y)
        return float(np.clip((x - above) / np.maximum(at, 1e-300), 0.0, 1.0).sum() / total)

    lo, hi = np.log(p.min_calibration), np.log(p.max_calibration)
    if share(np.exp(hi)) > x:
        return float(np.exp(hi))
    if share(np.exp(lo)) <= x:
        return float(np.exp(lo))
    for _ in range(7):  # bisection on log κ: 2^-7 of the range (±2 %) is below the estimate's noise
        mid = (lo + hi) / 2
        if share(np.exp(mid)) > x:
            lo = mid
        else:
            hi = mid
    return float(np.exp(hi))


def window_multiplicity(history_pvalues: np.ndarray, p: SpikeParams) -> float:
    """How many independent tests the 1..N-hour windows are worth, measured on the categories' own history.

    ``history_pvalues``: (periods, series, windows) p-values of the history periods, one per window length. The
    detector takes the smallest window p-value, which is too small by up to N; Bonferroni (× N) is the safe
    bound but the windows overlap and real counts are autocorrelated, so the windows are far from independent
    and × N is conservative (measured: 0.3-0.6 × the nominal share on quiet hours). The factor used is
    share(min over windows < level) / share(one-hour p < level) over the history, at ``calibration_level``,
    within [1, N]; with too few history periods below the level it stays N (Bonferroni).
    """
    n = history_pvalues.shape[-1]
    if n == 1:
        return 1.0
    one = history_pvalues[..., 0]
    ok = np.isfinite(one)
    below_one = float((one[ok] < p.calibration_level).sum())
    if below_one < 10:
        return float(n)
    below_any = float((np.nanmin(history_pvalues, axis=-1)[ok] < p.calibration_level).sum())
    return float(np.clip(below_any / below_one, 1.0, n))


def nb_upper_pvalue(observed: np.ndarray, expected: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """P(Y ≥ observed) for Y ~ NB(mean=expected, var=μ+αμ²), elementwise (``alpha`` a scalar or one per element).

    P(Y ≥ y) = I_{1-p}(y, size), the regularised beta, straight from ``scipy.special.betainc``: the scipy.stats
    wrapper costs ~10× more, and the calibration evaluates this on thousands of history periods every hour. α is
    floored at 1e-9, so α = 0 gives the Poisson tail (to ~1e-8 relative).
    """
    y = np.asarray(observed, dtype=float)
    mu = np.asarray(expected, dtype=float)
    size = 1.0 / np.maximum(np.asarray(alpha, dtype=float), 1e-9)
    prob = size / (size + mu)
    with np.errstate(invalid="ignore"):
        out = special.betainc(np.maximum(y, 1.0), size, 1.0 - prob)
    return np.where(y <= 0, 1.0, out)


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values (NaN stays NaN)."""
    pvalues = np.asarray(pvalues, dtype=float)
    out = np.full_like(pvalues, np.nan)
    ok = np.isfinite(pvalues)
    if ok.any():
        out[ok] = stats.false_discovery_control(pvalues[ok], method="bh")
    return out


@dataclass(frozen=True)
class _Counts:
    """The counts ``detect_spikes`` reads, as arrays: rows = hours (the evaluated one last), columns = series."""

    hour: datetime  # start of the evaluated hour
    columns: list[str]
    leaf_cols: np.ndarray  # (series,) True for leaf categories (keys of ``parents``)
    y: np.ndarray  # (hours, series) counts
    usable: np.ndarray  # (hours, series) False inside past alerts (kept out of the baseline)
    t: int  # row of the evaluated hour
    first: int  # first row with any ticket


def _read_counts(counts: pd.DataFrame, as_of: datetime, parents: Mapping[str, str], p: SpikeParams,
                 exclude: pd.DataFrame | None) -> _Counts:
    """Cut the counts to the lookback window and turn them into arrays; say clearly what is missing."""
    hour = floor_hour(as_of) - HOUR
    if hour not in counts.index:
        raise ValueError(f"the counts do not cover the evaluated hour {hour.isoformat()} "
                         f"(they span {counts.index.min()} .. {counts.index.max()})")
    counts = counts.loc[hour - p.lookback_hours * HOUR: hour]
    columns = list(counts.columns)
    leaf_cols = np.array([c in parents for c in columns])
    if not leaf_cols.any():
        raise ValueError("no leaf category columns in the counts (none of them is a key of `parents`)")
    y = counts.to_numpy(dtype=float)
    usable = np.ones_like(y, dtype=bool)
    if exclude is not None:
        ex = exclude.reindex(index=counts.index, columns=columns, fill_value=False).fillna(False)
        usable = ~ex.to_numpy(dtype=bool)
    nonzero = np.flatnonzero(y[:, leaf_cols].sum(axis=1) > 0)
    t = len(counts) - 1
    first = min(int(nonzero[0]) if len(nonzero) else t, t)
    return _Counts(hour=hour, columns=columns, leaf_cols=leaf_cols, y=y, usable=usable, t=t, first=first)


@dataclass(frozen=True)
class _Expectations:
    """One-step-ahead expectations: of the evaluated hour and of the history hours the dispersion is fitted on."""

    base: _Baseline  # rows = ``targets``: the warm history hours, then the evaluated hour
    targets: np.ndarray
    warm: np.ndarray  # history rows with ``min_history_hours`` of data before them
    observed: np.ndarray  # (series,) the evaluated hour's counts
    expected: np.ndarray  # (series,) its baseline (≥ 0)
    mu: np.ndarray  # (series,) the mean the test uses (≥ ``min_expected``)
    hist_y: np.ndarray  # (warm, series)
    hist_mu: np.ndarray  # (warm, series)


def _expectations(c: _Counts, p: SpikeParams) -> _Expectations:
    disp_targets = np.arange(max(c.t - p.dispersion_hours, c.first + 1), c.t)
    warm = disp_targets[disp_targets - c.first >= p.min_history_hours]
    targets = np.concatenate([warm, [c.t]]).astype(int)
    base = _baseline(c.y, c.usable, c.leaf_cols, c.first, targets, p)
    expected = np.maximum(base.expected[-1], 0.0)
    # Every history hour counts towards the dispersion, past alert hours included
    # (``estimate_series_dispersion`` says why).
    return _Expectations(base=base, targets=targets, warm=warm, observed=c.y[c.t], expected=expected,
                         mu=np.maximum(expected, p.min_expected), hist_y=c.y[warm],
                         hist_mu=np.maximum(base.expected[:-1], p.min_expected))


_CALIBRATION_ROWS = slice(-WEEK_HOURS, None)  # calibration on the last week of history: enough periods, 1/3 the cost


def _calibrated(disp: Dispersion, hist_y: np.ndarray, hist_mu: np.ndarray, leaf_cols: np.ndarray,
                p: SpikeParams) -> tuple[float, np.ndarray]:
    """κ for one window length (``calibrate_dispersion`` on the leaves' last week) and the calibrated α."""
    cal = _CALIBRATION_ROWS
    kappa = calibrate_dispersion(hist_y[cal][:, leaf_cols], hist_mu[cal][:, leaf_cols], disp.alpha[leaf_cols], p)
    return kappa, np.clip(kappa * disp.alpha, p.min_dispersion, p.max_dispersion)


def _history_pvalues(hist_y: np.ndarray, hist_mu: np.ndarray, alpha: np.ndarray, leaf_cols: np.ndarray
                     ) -> np.ndarray:
    cal = _CALIBRATION_ROWS
    return nb_upper_pvalue(hist_y[cal][:, leaf_cols], hist_mu[cal][:, leaf_cols], alpha[leaf_cols])


@dataclass(frozen=True)
class _WindowTest:
    """The best of the 1..``window_hours``-hour windows ending now, per series, and how it was tested."""

    p_value: np.ndarray  # smallest window p-value × ``multiplicity``
    p_hour: np.ndarray  # the one-hour p-value alone
    window: np.ndarray  # length of the window that made ``p_value``
    window_observed: np.ndarray
    window_expected: np.ndarray
    alpha: np.ndarray  # one-hour α, calibrated
    window_alpha: list[np.ndarray]  # α per window length (index k-1): one hour uncalibrated, longer ones calibrated
    pooled: float  # the one-hour pooled α, before calibration
    kappa: float  # the one-hour calibration factor
    multiplicity: float


def _test_windows(c: _Counts, e: _Expectations, p: SpikeParams) -> _WindowTest:
    """NB tests of the windows ending now (1..``window_hours`` hours), corrected for their number.

    A sustained 3× surge on a small category is invisible in any one hour but not over three. Each window length
    has its own dispersion, estimated from the category's own past k-hour sums: real counts are autocorrelated (a
    busy hour is followed by busy hours), so a k-hour sum varies more than k independent hours would, and testing
    it as independent hours makes its p-values far too small. The smallest window p-value is corrected for the
    number of windows as the category history shows it (``window_multiplicity``).
    """
    leaf = c.leaf_cols
    one_hour = estimate_series_dispersion(e.hist_y, e.hist_mu, p, pooled_from=leaf)
    kappa, alpha = _calibrated(one_hour, e.hist_y, e.hist_mu, leaf, p)
    p_hour = pvals = nb_upper_pvalue(e.observed, e.mu, alpha)
    hist_p = [_history_pvalues(e.hist_y, e.hist_mu, alpha, leaf)]
    window_alpha = [one_hour.alpha]
    window = np.ones(len(c.columns), dtype=int)
    win_obs, win_mu = e.observed.copy(), e.mu.copy()
    best_obs, best_mu = e.observed.copy(), e.mu.copy()
    for k in range(2, p.window_hours + 1):
        row = c.t - (k - 1)
        pos = np.flatnonzero(e.targets == row)
        if len(pos) == 0 or len(e.warm) < 24 + k:
            break
        win_obs = win_obs + c.y[row]
        win_mu = win_mu + np.maximum(e.base.expected[pos[0]], p.min_expected)
        wy, wmu = window_sums(e.hist_y, k)[k - 1:], window_sums(e.hist_mu, k)[k - 1:]
        _, alpha_k = _calibrated(estimate_series_dispersion(wy, wmu, p, pooled_from=leaf, scale=k * k), wy, wmu,
                                 leaf, p)
        window_alpha.append(alpha_k)
        hist_p.append(_history_pvalues(wy, wmu, alpha_k, leaf))
        pk = nb_upper_pvalue(win_obs, win_mu, alpha_k)
        # an earlier hour inside a past alert does not count towards a new one
        better = c.usable[c.t - (k - 1):c.t].all(axis=0) & (pk < pvals)
        pvals = np.where(better, pk, pvals)
        window = np.where(better, k, window)
        best_obs = np.where(better, win_obs, best_obs)
        best_mu = np.where(better, win_mu, best_mu)
    rows = min(len(h) for h in hist_p)
    multiplicity = window_multiplicity(np.stack([h[len(h) - rows:] for h in hist_p], axis=-1), p)
    return _WindowTest(p_value=np.minimum(pvals * multiplicity, 1.0), p_hour=p_hour, window=window,
                       window_observed=best_obs, window_expected=best_mu, alpha=alpha, window_alpha=window_alpha,
                       pooled=one_hour.pooled, kappa=kappa, multiplicity=multiplicity)


def _history_gates(c: _Counts, p: SpikeParams) -> tuple[np.ndarray, np.ndarray]:
    """(warming, new) per series: too little data overall to test; a category first seen too recently."""
    first_seen = np.array([np.flatnonzero(c.y[:c.t, j] > 0)[0] if (c.y[:c.t, j] > 0).any() else c.t
                           for j in range(len(c.columns))])
    warming = np.full(len(c.columns), c.t - c.first < p.min_history_hours)
    new = c.t - first_seen < p.min_category_history_hours
    return warming, new


def _passes_guards(testable: np.ndarray, new: np.ndarray, pvals: np.ndarray, qvals: np.ndarray,
                   observed: np.ndarray, ratio: np.ndarray, window_ratio: np.ndarray, p: SpikeParams) -> np.ndarray:
    """The test (``passes_test``: BH or the per-series budget) and the paging guards: the hour itself must have
    ``min_count`` tickets ("fewer tickets than this never page") and be above its expectation; the window that
    made the p-value must be ``min_ratio`` × its expectation; a new category needs ``new_category_min_count``
    tickets in the hour."""
    significant = (testable & passes_test(pvals, qvals, p) & (observed >= p.min_count) & (window_ratio >= p.min_ratio)
                   & (ratio >= 1.0))
    return significant & (~new | (observed >= p.new_category_min_count))


def _leave_parents_to_leaves(columns: list[str], leaf_cols: np.ndarray, significant: np.ndarray,
                             status: np.ndarray, parents: Mapping[str, str], active: Iterable[str]) -> None:
    """A parent is not paged while one of its leaves spikes or has an open alert (in place)."""
    spiking = {c for c, s in zip(columns, significant, strict=True) if s} | set(active)
    children: dict[str, list[str]] = {}
    for leaf, parent in parents.items():
        children.setdefault(parent, []).append(leaf)
    for j, col in enumerate(columns):
        if not leaf_cols[j] and significant[j] and any(ch in spiking for ch in children.get(col, [])):
            significant[j] = False
            status[j] = "covered_by_leaf"


def passes_test(pvalues: np.ndarray, qvalues: np.ndarray, p: SpikeParams) -> np.ndarray:
    """Series whose evidence is enough to page (before the guards): BH q ≤ ``fdr``, or p ≤ ``alert_rate`` alone.

    The false-alert goal is a rate per category-hour (≤ 1 false alert per 1,000 quiet category-hours): a
    per-comparison error rate. A series whose calibrated p-value must be ≤ τ pages falsely in at most a share τ
    of its quiet hours, however many other series are tested in the hour. BH alone is far stricter than that
    goal when one category spikes, which is what an incident usually is: with 49 series at FDR 0.002 a lone
    spike needs p ≤ 4e-5, 25× below the goal's budget, and in the benchmark that threshold, not the test,
    missed most of the incidents a perfect model could have found (``docs/benchmarks.md``, spike detection).
    BH stays for hours where several series spike together (it then admits p-values above τ). ``alert_rate``
    = 0 leaves BH alone. NaN (untested) never passes.
    """
    pvalues = np.asarray(pvalues, dtype=float)
    qvalues = np.asarray(qvalues, dtype=float)
    return (qvalues <= p.fdr) | (pvalues <= p.alert_rate)


def detect_spikes(
    counts: pd.DataFrame,
    as_of: datetime,
    *,
    parents: Mapping[str, str],
    params: SpikeParams,
    exclude: pd.DataFrame | None = None,
    active: Iterable[str] = (),
) -> pd.DataFrame:
    """Evaluate the hour ``[as_of - 1h, as_of)`` for every series in ``counts``.

    ``counts``: hourly counts (``hourly_counts``) covering at least the evaluated hour; earlier rows are the
    history (``params.lookback_hours`` are used). ``parents`` maps leaf → parent; every other column is a
    parent series. ``exclude``: True for past alert hours (``alert_mask``). ``active``: series with an open
    alert (their parent is not paged). Returns one row per series with ``observed``, ``expected``, ``ratio``,
    ``p_value`` (best window, corrected for the windows), ``p_hour`` (the one-hour NB p-value alone),
    ``window_hours`` / ``window_observed`` / ``window_expected`` (the window that made ``p_value``), ``q_value``,
    ``dispersion`` (the series' one-hour α, calibrated), ``window_dispersion`` (α of its best window),
    ``pooled_dispersion`` (the value the series' α are shrunk towards, before calibration), ``calibration``
    (κ of the one-hour α), ``window_multiplicity``, ``baseline``, ``status`` and ``is_spike``.
    """
    p = params
    c = _read_counts(counts, as_of, parents, p, exclude)
    e = _expectations(c, p)
    w = _test_windows(c, e, p)
    warming, new = _history_gates(c, p)
    testable = ~warming
    pvals = np.where(testable, w.p_value, np.nan)
    qvals = benjamini_hochberg(pvals)
    ratio = e.observed / e.mu
    # the per-series budget trusts the p-values' scale, so only where the calibration had the history to run
    calibrated = e.hist_y[_CALIBRATION_ROWS][:, c.leaf_cols].size * p.calibration_level >= 20
    significant = _passes_guards(testable, new, pvals, qvals, e.observed, ratio,
                                 w.window_observed / w.window_expected, p if calibrated else replace(p, alert_rate=0.0))
    status = np.where(warming, "warming_up", np.where(new, "new_category", "normal")).astype(object)
    status[significant] = "spike"
    _leave_parents_to_leaves(c.columns, c.leaf_cols, significant, status, parents, active)
    return pd.DataFrame({
        "series": c.columns,
        "kind": np.where(c.leaf_cols, "leaf", "parent"),
        "parent": [parents.get(col) for col in c.columns],
        "hour": c.hour,
        "observed": e.observed.astype(int),
        "expected": e.expected,
        "ratio": ratio,
        "p_value": pvals,
        "p_hour": np.where(testable, w.p_hour, np.nan),
        "window_hours": w.window,
        "window_observed": w.window_observed.astype(int),
        "window_expected": w.window_expected,
        "q_value": qvals,
        "dispersion": w.alpha,
        "window_dispersion": np.array([w.window_alpha[k - 1][j] for j, k in enumerate(w.window)]),
        "pooled_dispersion": w.pooled,
        "calibration": w.kappa,
        "window_multiplicity": w.multiplicity,
        "baseline": e.base.method[-1],
        "status": status,
        "is_spike": significant,
    })


@dataclass(frozen=True)
class HourlyModel:
    """The detector's model of recent hours, as ``detect_spikes`` sees it at ``as_of`` (for charts and reports)."""

    expected: pd.DataFrame  # one-step-ahead expected count per hour (rows) and series (columns); NaN = no model
    dispersion: pd.Series  # the series' one-hour NB α, calibrated (the ``dispersion`` column of ``detect_spikes``)
    min_expected: float  # the floor the test puts under the expected count


def hourly_model(
    counts: pd.DataFrame,
    as_of: datetime,
    *,
    parents: Mapping[str, str],
    params: SpikeParams,
    exclude: pd.DataFrame | None = None,
) -> HourlyModel:
    """Expected counts of the hours before ``as_of`` (up to ``dispersion_hours``) and of the evaluated hour.

    Each hour's expectation is the seasonal baseline × recent level computed from the hours *before* it (one step
    ahead), exactly as the detector fits its dispersion; hours with less than ``min_history_hours`` of data before
    them have none (NaN).
    """
    p = params
    c = _read_counts(counts, as_of, parents, p, exclude)
    e = _expectations(c, p)
    one_hour = estimate_series_dispersion(e.hist_y, e.hist_mu, p, pooled_from=c.leaf_cols)
    _, alpha = _calibrated(one_hour, e.hist_y, e.hist_mu, c.leaf_cols, p)
    index = counts.loc[c.hour - p.lookback_hours * HOUR: c.hour].index
    expected = pd.DataFrame(np.nan, index=index, columns=c.columns)
    expected.iloc[e.targets] = np.maximum(e.base.expected, 0.0)
    return HourlyModel(expected=expected, dispersion=pd.Series(alpha, index=c.columns),
                       min_expected=p.min_expected)


# ------------------------------------------------------------------------------------------------ lifecycle


@dataclass(frozen=True)
class LifecycleParams:
    """Alert lifecycle; ``adapters.settings.SpikeSettings.lifecycle()`` builds the deployed one."""

    growth_factor: float  # an ongoing alert is re-announced when its hourly count grows this much
    resolve_after_hours: int  # quiet hours before an alert resolves (one dip does not end an incident)


@dataclass
class Alert:
    """One incident of one series, from its first flagged hour to its resolution."""

    series: str
    started_at: datetime
    state: str = AlertState.OPEN  # open → ongoing → resolved (models.states.AlertState)
    last_spike_at: datetime | None = None
    resolved_at: datetime | None = None
    observed: int = 0
    expected: float = 0.0
    ratio: float = 0.0
    p_value: float = 1.0
    peak_observed: int = 0
    notified_observed: int = 0
    hours_flagged: int = 0
    id: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    alert: Alert
    hour: datetime


def advance_alerts(open_alerts: Iterable[Alert], detections: pd.DataFrame, hour: datetime,
                   params: LifecycleParams) -> tuple[list[Alert], list[Notification]]:
    """Apply one evaluated hour to the open alerts: open, continue, grow, resolve.

    Returns every alert that changed (new ones included) and the messages to send: one ``opened`` per
    incident, ``grew`` only when the hourly count reached ``growth_factor`` × the last announced count, and one
    ``resolved`` after ``resolve_after_hours`` hours without a flagged hour.
    """
    lp = params
    by_series = {a.series: a for a in open_alerts if a.state != AlertState.RESOLVED}
    changed: list[Alert] = []
    notes: list[Notification] = []
    flagged = detections[detections["is_spike"].astype(bool)]
    for row in flagged.itertuples(index=False):
        current = by_series.get(row.series)
        values = {"observed": int(row.observed), "expected": float(row.expected), "ratio": float(row.ratio),
                  "p_value": float(row.p_value)}
        if current is None:
            alert = Alert(series=row.series, started_at=hour, state=AlertState.OPEN, last_spike_at=hour,
                          peak_observed=int(row.observed), notified_observed=int(row.observed), hours_flagged=1,
                          **values)
            by_series[row.series] = alert
            changed.append(alert)
            notes.append(Notification(NotificationKind.OPENED, alert, hour))
            continue
        if current.last_spike_at is not None and hour <= current.last_spike_at:
            continue  # this hour was applied already (a re-run): nothing changes, nothing is sent twice
        alert = replace(current, state=AlertState.ONGOING, last_spike_at=hour, hours_flagged=current.hours_flagged + 1,
                        peak_observed=max(current.peak_observed, int(row.observed)), **values)
        if alert.observed >= lp.growth_factor * max(current.notified_observed, 1):
            alert.notified_observed = alert.observed
            notes.append(Notification(NotificationKind.GREW, alert, hour))
        by_series[row.series] = alert
        changed.append(alert)
    flagged_series = set(flagged["series"])
    for series, alert in list(by_series.items()):
        if series in flagged_series or alert.state == AlertState.RESOLVED or alert.last_spike_at is None:
            continue
        if hour - alert.last_spike_at >= lp.resolve_after_hours * HOUR:
            done = replace(alert, state=AlertState.RESOLVED, resolved_at=hour)
            changed.append(done)
            notes.append(Notification(NotificationKind.RESOLVED, done, hour))
    return changed, notes
