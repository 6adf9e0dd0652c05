"""Spike detector vs the generator's planted incidents, hour by hour over simulated months.

The detector sees the tickets' *true* categories (the generator's ``true_category``), so this measures the
detector, not the classifier. Each simulated hour runs ``detect_spikes`` on the counts up to that hour, with the
hours of the alerts it raised so far excluded from its baseline, and the alert lifecycle decides what would be
sent, exactly as the hourly flow does. Scored against ``GroundTruth.incidents``:

* an incident is *found* when its category (or that category's parent) is flagged during the incident (an
  incident that starts while the series' alert is still open is found by that alert: no second page);
  detection delay = hours from the incident's start to the end of the first flagged hour (1 = its first hour);
* an alert is *true* when it opens during an incident on its series or within 3 hours after it (the tail);
  precision = true alerts / all alerts opened; false alerts per 1,000 quiet category-hours (series × evaluated
  hours outside every incident on that series and its 3-hour tail).

Two count sources: ``generator`` (the ticket generator's tickets by true category: Poisson per category-hour) and
``realistic`` (``helpdesk_sim.counts``: negative-binomial hours with per-category dispersion, autocorrelated
noise, day-of-week effects, level drift, holidays). For each run it also prints the **calibration** of the
p-values on quiet category-hours (outside incidents and their 3-hour tails): the share of hours with p below
1e-2, 1e-3 and 1e-4 as a multiple of that level, by series size, for the detector's p-value and for the
randomised PIT of the one-hour NB model.

Usage: ``python -m bench.spike_bench [--days 56] [--tickets-per-day 3000 1000] [--incidents 24] [--seed 7]
[--sources generator realistic]``
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from ticketlens.helpdesk_sim.counts import CountsConfig, generate_counts
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.spikes import (
    HOUR,
    Alert,
    LifecycleParams,
    SpikeParams,
    advance_alerts,
    detect_spikes,
    hourly_counts,
)
from ticketlens.models.taxonomy import load_taxonomy

LEVELS = (1e-2, 1e-3, 1e-4)
SIZES = (("< 1 ticket/h", 0.0, 1.0), ("1-5 tickets/h", 1.0, 5.0), ("≥ 5 tickets/h", 5.0, np.inf))


@dataclass
class Result:
    source: str
    tickets_per_day: int
    days: int
    incidents: int
    found: int
    first_hour_5x: str
    recall_3x_2h: str
    median_delay: float
    max_delay: float
    alerts: int
    precision: float
    false_alerts: int
    fa_per_1000: float
    seconds: float
    missed: list
    false: list
    calibration: list


START = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday


def generator_counts(days: int, tickets_per_day: int, incidents: int, seed: int):
    """Counts of the ticket generator's tickets by true category (Poisson per category-hour) and its incidents."""
    tax = load_taxonomy()
    parents = {k: c.parent for k, c in tax.categories.items()}
    data = generate_dataset(GeneratorConfig(seed=seed, start=START, days=days, tickets_per_day=tickets_per_day,
                                            incidents=incidents))
    events = pd.DataFrame({"created_at": pd.to_datetime([t.created_at for t in data.tickets], unit="s", utc=True),
                           "category": [t.true_category for t in data.tickets]})
    counts = hourly_counts(events, START, START + timedelta(days=days), parents)
    return counts, parents, data.truth.incidents


def realistic_counts(days: int, tickets_per_day: int, incidents: int, seed: int):
    """``helpdesk_sim.counts``: NB hours with per-category α, autocorrelation, weekdays, drift, holidays."""
    data = generate_counts(CountsConfig(seed=seed, start=START, days=days, tickets_per_day=tickets_per_day,
                                        incidents=incidents))
    return data.counts, data.parents, data.incidents


def run(source: str, days: int, tickets_per_day: int, incidents: int, seed: int, params: SpikeParams,
        lifecycle: LifecycleParams) -> Result:
    started = time.perf_counter()
    if source == "generator":
        counts, parents, incs = generator_counts(days, tickets_per_day, incidents, seed)
    else:
        counts, parents, incs = realistic_counts(days, tickets_per_day, incidents, seed)
    start = START
    exclude = pd.DataFrame(False, index=counts.index, columns=counts.columns)
    ex = exclude.to_numpy().copy()
    col = {c: j for j, c in enumerate(counts.columns)}
    open_alerts: dict[str, Alert] = {}
    opened: list[Alert] = []
    flagged: dict[str, list[datetime]] = {}
    warmup = params.min_history_hours
    pvals, phour, cdf_below, quiet_mask = [], [], [], []
    for i in range(warmup, len(counts)):
        hour = counts.index[i].to_pydatetime()
        det = detect_spikes(counts, hour + HOUR, parents=parents, params=params,
                            exclude=pd.DataFrame(ex, index=counts.index, columns=counts.columns),
                            active=list(open_alerts))
        pvals.append(det["p_value"].to_numpy())
        phour.append(det["p_hour"].to_numpy())
        mu = np.maximum(det["expected"].to_numpy(), params.min_expected)
        size = 1 / np.maximum(det["dispersion"].to_numpy(), 1e-9)
        cdf_below.append(stats.nbinom.pmf(det["observed"].to_numpy(), size, size / (size + mu)))
        for series in det.loc[det["is_spike"].astype(bool), "series"]:
            flagged.setdefault(series, []).append(hour)
        changed, notes = advance_alerts(open_alerts.values(), det, hour, lifecycle)
        for a in changed:
            if a.state == "resolved":
                open_alerts.pop(a.series, None)
            else:
                open_alerts[a.series] = a
        opened += [n.alert for n in notes if n.kind == "opened"]
        for a in open_alerts.values():
            for s in (a.series, parents.get(a.series)):
                if s in col:
                    ex[i, col[s]] = True

    first_eval = start + timedelta(hours=warmup)
    delays, missed = {}, []
    for inc in incs:
        s, e = datetime.fromtimestamp(inc.start, UTC), datetime.fromtimestamp(inc.end, UTC)
        # found = the category (or its parent) is flagged during the incident; a second incident on a series
        # whose alert is still open counts as found by that alert (it is on the lead's screen already)
        hits = [h for series in (inc.category, parents[inc.category]) for h in flagged.get(series, []) if s <= h < e]
        if hits:
            delays[inc.id] = (min(hits) + HOUR - s) / HOUR
        else:
            missed.append(f"{inc.id} {inc.category} {inc.multiplier:.0f}x {(e - s) / HOUR:.0f}h")
    found = len(delays)
    # an alert is true when it opens during an incident on its series (or up to 3 h after: the incident's tail)
    false_alerts = [a for a in opened if not any(
        a.series in (inc.category, parents[inc.category])
        and datetime.fromtimestamp(inc.start, UTC) <= a.started_at < datetime.fromtimestamp(inc.end, UTC) + 3 * HOUR
        for inc in incs)]
    # quiet category-hours: each series' evaluated hours outside incidents on that series (or its children)
    hours = counts.index[warmup:]
    quiet = 0
    quiet_mask = np.zeros((len(hours), len(counts.columns)), dtype=bool)
    for j, c in enumerate(counts.columns):
        busy = np.zeros(len(hours), dtype=bool)
        for inc in incs:
            if c in (inc.category, parents[inc.category]):
                s, e = pd.Timestamp(inc.start, unit="s", tz=UTC), pd.Timestamp(inc.end, unit="s", tz=UTC)
                busy |= (hours >= s) & (hours < e + 3 * HOUR)
        quiet += int((~busy).sum())
        quiet_mask[:, j] = ~busy
    # calibration on quiet hours, by the series' mean volume (tickets per hour over the whole run)
    rate = counts.iloc[warmup:].mean(axis=0).to_numpy()
    p_all, ph_all, pmf_all = np.vstack(pvals), np.vstack(phour), np.vstack(cdf_below)
    # randomised PIT of the one-hour NB test: P(Y > y) + U·P(Y = y) is uniform when the model is right, so it
    # checks the distribution itself, free of the conservativeness a discrete test has at small counts
    rng = np.random.default_rng(seed)
    pit = ph_all - rng.random(ph_all.shape) * pmf_all
    calibration = []
    for label, lo, hi in SIZES:
        cols = (rate >= lo) & (rate < hi)
        sel = quiet_mask & cols[None, :] & np.isfinite(p_all)
        calibration.append({"source": source, "tickets_per_day": tickets_per_day, "size": label,
                            "series": int(cols.sum()), "hours": int(sel.sum()),
                            **{f"p<{x:g}": float((p_all[sel] < x).mean()) if sel.any() else float("nan")
                               for x in LEVELS},
                            **{f"pit<{x:g}": float((pit[sel] < x).mean()) if sel.any() else float("nan")
                               for x in LEVELS}})
    big = [inc for inc in incs if inc.multiplier >= 5 and datetime.fromtimestamp(inc.start, UTC) >= first_eval]
    first_hour = sum(1 for inc in big if delays.get(inc.id) == 1)
    eligible = [inc for inc in incs if inc.multiplier >= 3 and inc.end - inc.start >= 2 * 3600]
    recall = sum(1 for inc in eligible if inc.id in delays)
    d = list(delays.values())
    return Result(source, tickets_per_day, days, len(incs), found, f"{first_hour}/{len(big)}", f"{recall}/{len(eligible)}",
                  float(np.median(d)) if d else float("nan"), float(max(d)) if d else float("nan"), len(opened),
                  (len(opened) - len(false_alerts)) / len(opened) if opened else float("nan"), len(false_alerts),
                  1000 * len(false_alerts) / max(quiet, 1), time.perf_counter() - started, missed,
                  [f"{a.series} {a.started_at:%m-%d %H}h obs {a.observed} exp {a.expected:.1f} p {a.p_value:.1e}"
                   for a in false_alerts], calibration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--tickets-per-day", type=int, nargs="+", default=[3000, 1000])
    parser.add_argument("--incidents", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sources", nargs="+", choices=("generator", "realistic"), default=["generator", "realistic"],
                        help="ticket generator (Poisson per category) and/or helpdesk_sim.counts (realistic)")
    parser.add_argument("--fdr", type=float, default=None, help="override TICKETLENS_SPIKE_FDR")
    args = parser.parse_args(argv)
    from ticketlens.adapters.settings import load_settings

    settings = load_settings()
    params = settings.spike.params()
    if args.fdr is not None:
        params = replace(params, fdr=args.fdr)
    print(f"detector: {params}")
    results = [run(source, args.days, tpd, args.incidents, args.seed, params, settings.spike.lifecycle())
               for source in args.sources for tpd in args.tickets_per_day]
    print("\n| counts | tickets/day | days | incidents | found | ≥3×·≥2h found (goal all) "
          "| ≥5× in first hour (goal all) | median / max delay (h) | alerts | precision | false alerts "
          "| per 1,000 quiet category-hours (goal ≤ 1) | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.source} | {r.tickets_per_day:,} | {r.days} | {r.incidents} | {r.found} | {r.recall_3x_2h} "
              f"| {r.first_hour_5x} | {r.median_delay:.0f} / {r.max_delay:.0f} | {r.alerts} | {r.precision:.2f} "
              f"| {r.false_alerts} | {r.fa_per_1000:.2f} | {r.seconds:.0f} s |")
    for r in results:
        if r.missed:
            print(f"missed ({r.source}, {r.tickets_per_day:,}/day): " + "; ".join(r.missed))
        if r.false:
            print(f"false alerts ({r.source}, {r.tickets_per_day:,}/day): " + "; ".join(r.false))
    print("\nCalibration on quiet category-hours: share with p < x as a multiple of x (goal 0.5-2). "
          "'p' = the detector's p-value (best of the 1..N-hour windows × their effective number); 'PIT' = randomised one-hour NB PIT.")
    print("\n| counts | tickets/day | series size | series | quiet hours | p<1e-2 | p<1e-3 | p<1e-4 "
          "| PIT<1e-2 | PIT<1e-3 | PIT<1e-4 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for c in r.calibration:
            cells = " | ".join(f"{c[f'{k}<{x:g}'] / x:.2f}×" for k in ("p", "pit") for x in LEVELS)
            print(f"| {c['source']} | {c['tickets_per_day']:,} | {c['size']} | {c['series']} | {c['hours']:,} "
                  f"| {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
