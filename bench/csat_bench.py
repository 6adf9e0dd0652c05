"""CSAT-driver benchmark: planted drivers found, one bad agent among many found, nothing found in null data.

For each seed: a generated dataset with planted drivers (three agents, two categories, resolution time,
reopens; ``GroundTruth.csat_drivers``) and one with none (``GeneratorConfig(plant_csat_drivers=False)``, same
overall bad-rate). The rating frame is built from the generator (true category as the "prediction"), then
``models.csat_drivers.analyse_drivers`` runs with the default settings (FDR 0.05, ≥ 20 ratings per segment).
A planted driver counts as found when it is reported (significant at the FDR) with the planted sign. Also
measured: the bad-rating reason classifier (trained on the seed labels only) on the generator's bad-rating
comments, whose themes are ground truth.

Power and error rates over many seeds (``helpdesk_sim.csat_cases``): one bad agent (70 % bad vs 40 %, ~80
ratings) among 40 and among 150 agents -- found when that agent is reported worse; the same frames with no bad
agent, and generator datasets without planted drivers -- a *false driver* is any reported effect, in either
direction. For each case both flat procedures are counted, from the same p-values: Benjamini-Hochberg and
Benjamini-Yekutieli (the default, ``TICKETLENS_CSAT_FDR_METHOD=by``).

    uv run python -m bench.csat_bench [--parts planted null agents] [--seeds 1,2,3] [--null-seeds 1-20]
        [--agent-seeds 1-20] [--agents 40 150] [--days 120] [--tickets-per-day 500]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ticketlens.adapters.settings import CsatSettings
from ticketlens.helpdesk_sim.csat_cases import FIRST_AGENT_ID, FIRST_GROUP_ID, one_bad_agent_ratings
from ticketlens.helpdesk_sim.csat_frames import agent_names, group_names, rating_frame
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.models.csat_drivers import DriverConfig, _flat_fdr, analyse_drivers, prepare_ratings
from ticketlens.models.csat_reasons import classify_reasons, load_seed_examples, train_reason_classifier
from ticketlens.models.taxonomy import load_taxonomy


def planted_key(driver: dict) -> tuple[str, str]:
    kind = driver["kind"]
    if kind == "agent":
        return "agent", str(driver["key"])
    if kind == "category":
        return "category", str(driver["key"])
    if kind == "resolution_time":
        return "resolution_time", "per doubling of resolution time"
    if kind == "reopened":
        return "reopened", "reopened"
    raise ValueError(f"unknown planted driver kind {kind!r}")


Key = tuple[str, str]  # (factor, level) of a driver


@dataclass
class GeneratorRun:
    """One generator dataset analysed: what was planted, found, missed and reported besides."""

    seed: int
    plant: bool
    ratings: int
    by_reported: int  # effects significant under Benjamini-Yekutieli (from the same p-values)
    bad_rate: float
    tested: int
    planted: int
    found: list[Key]  # planted drivers reported with the planted sign
    missed: list[Key]
    extra: list[Key]  # reported (BH) but not planted
    unexplained: list[Key]  # extra findings that no planted agent explains
    direction: dict[Key, str]
    seconds: float
    dataset: Any = field(default=None, repr=False)  # kept for the reason-classifier accuracy (planted data only)


@dataclass
class Procedure:
    """One FDR procedure's verdict on a one-bad-agent frame."""

    found: bool  # the bad agent reported worse
    false: int  # reported effects that are neither the bad agent nor its team being worse
    reported: int


@dataclass
class AgentCase:
    """One one-bad-agent frame analysed, judged by both procedures."""

    seed: int
    agents: int
    ratings: int
    tested: int
    seconds: float
    bh: Procedure
    by: Procedure
    agent_p: float  # the bad agent's own p-value (NaN when no agent is bad)


def run_one(seed: int, days: int, per_day: int, plant: bool, config: DriverConfig) -> GeneratorRun:
    dataset = generate_dataset(GeneratorConfig(seed=seed, start=datetime(2026, 5, 1, tzinfo=UTC), days=days,
                                               tickets_per_day=per_day, plant_csat_drivers=plant))
    frame = prepare_ratings(rating_frame(dataset), agent_names(dataset), group_names(dataset))
    t0 = time.perf_counter()
    report = analyse_drivers(frame, config)
    seconds = time.perf_counter() - t0
    reported = {(r.factor, str(r.level)): r for r in report.effects[report.effects["significant"]].itertuples()}
    planted = dataset.truth.csat_drivers
    found, missed = [], []
    for d in planted:
        key = planted_key(d)
        hit = reported.get(key)
        right_sign = hit is not None and (hit.log_odds > 0) == (d["effect"] > 0)
        (found if right_sign else missed).append(key)
    planted_keys = {planted_key(d) for d in planted}
    extra = sorted(k for k in reported if k not in planted_keys)
    # A team that contains a planted bad agent is a true (aggregate) finding, not a false one.
    bad_agent_groups = {str(t.rating.group_id) for t in dataset.tickets
                        if t.rating and str(t.rating.assignee_id) in {k[1] for k in planted_keys if k[0] == "agent"}}
    # ... and so is a team without one being better than the (unweighted) average team.
    unexplained = [k for k in extra if not (k[0] == "team" and (
        (k[1] in bad_agent_groups) == (reported[k].log_odds > 0)))]
    by = report.effects[_flat_fdr(report.effects["p_value"].to_numpy(), "by") <= config.fdr] \
        if len(report.effects) else report.effects
    return GeneratorRun(seed, plant, report.ratings, len(by), report.bad_rate, len(report.effects), len(planted),
                        found, missed, extra, unexplained, {k: v.direction for k, v in reported.items()}, seconds,
                        dataset)


def reason_accuracy(datasets) -> tuple[int, float]:
    taxonomy = load_taxonomy()
    model = train_reason_classifier(load_seed_examples(taxonomy))
    comments, truth = [], []
    for dataset in datasets:
        themes = dataset.truth.csat_reason_themes
        for t in dataset.tickets:
            if t.rating and t.rating.comment and t.rating.id in themes:
                comments.append(t.rating.comment)
                truth.append(themes[t.rating.id])
    predicted = classify_reasons(model, comments)["theme"].to_numpy()
    return len(comments), float(np.mean(predicted == np.asarray(truth)))


def seeds_of(text: str) -> list[int]:
    """``1,2,3`` or ``1-20``."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",") if x]


def run_agent_case(seed: int, agents: int, bad: bool, config: DriverConfig) -> AgentCase:
    raw, bad_agent = one_bad_agent_ratings(seed, agents=agents, bad_agent_rate=0.7 if bad else None)
    frame = prepare_ratings(raw)
    t0 = time.perf_counter()
    report = analyse_drivers(frame, config)
    seconds = time.perf_counter() - t0
    effects = report.effects
    q_by = _flat_fdr(effects["p_value"].to_numpy(), "by")
    verdicts = {}
    for name, sig in (("bh", effects["significant"].to_numpy(bool)), ("by", q_by <= config.fdr)):
        hit = sig & (effects["factor"] == "agent").to_numpy() & (effects["level"] == str(bad_agent)).to_numpy() \
            & (effects["direction"] == "worse").to_numpy()
        # the bad agent's own team being worse is a true aggregate finding, not a false one
        bad_team = str(FIRST_GROUP_ID + (int(bad_agent) - FIRST_AGENT_ID) // 8) if bad_agent else ""
        true_team = ((effects["factor"] == "team") & (effects["direction"] == "worse")
                     & (effects["level"] == bad_team)).to_numpy()
        verdicts[name] = Procedure(bool(hit.any()), int((sig & ~hit & ~true_team).sum()), int(sig.sum()))
    row = effects[(effects["factor"] == "agent") & (effects["level"] == str(bad_agent))]
    agent_p = float(row["p_value"].iloc[0]) if len(row) else float("nan")
    return AgentCase(seed, agents, report.ratings, len(effects), seconds, verdicts["bh"], verdicts["by"], agent_p)


def agent_table(args, config: DriverConfig) -> None:
    seeds = seeds_of(args.agent_seeds)
    print(f"\nOne bad agent (70 % bad vs 40 %, ~80 ratings each; helpdesk_sim.csat_cases), {len(seeds)} seeds per row, "
          f"FDR {config.fdr}\n")
    print("| agents | bad agent planted | ratings (median) | levels tested | bad agent found, BH "
          "| found, BY (default) | datasets with a false driver, BH | with a false driver, BY | bad agent's p (median) "
          "| fit (median) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for agents in args.agents:
        for bad in (True, False):
            rows = [run_agent_case(seed, agents, bad, config) for seed in seeds]
            n = len(rows)
            found = (f"{sum(r.bh.found for r in rows)}/{n}", f"**{sum(r.by.found for r in rows)}/{n}**") \
                if bad else ("–", "–")
            gate = f"{np.median([r.agent_p for r in rows]):.1e}" if bad else "–"
            print(f"| {agents} | {'yes' if bad else 'no (null)'} | {int(np.median([r.ratings for r in rows])):,} "
                  f"| {int(np.median([r.tested for r in rows]))} | {found[0]} | {found[1]} "
                  f"| {sum(r.bh.false > 0 for r in rows)}/{n} | {sum(r.by.false > 0 for r in rows)}/{n} "
                  f"| {gate} | {np.median([r.seconds for r in rows]):.1f} s |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("planted", "null", "agents"),
                        default=["planted", "null", "agents"])
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the generator datasets with planted drivers")
    parser.add_argument("--null-seeds", default="1-20", help="seeds of the generator datasets without drivers")
    parser.add_argument("--agent-seeds", default="1-20", help="seeds of the one-bad-agent frames")
    parser.add_argument("--agents", type=int, nargs="+", default=[40, 150])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--tickets-per-day", type=int, default=500)
    parser.add_argument("--fdr", type=float, default=0.05)
    args = parser.parse_args(argv)
    # The factor tests are shown next to the levels but select nothing, so the drivers are the same without them;
    # leaving out their four extra fits makes the 100-dataset run ~3× faster.
    # method="bh": the reports' own significance is BH; BY (the default) is counted from the same p-values.
    config = replace(CsatSettings().drivers(), fdr=args.fdr, factor_tests=False, method="bh")
    if "agents" in args.parts:
        agent_table(args, config)
    results = []
    header = False
    for plant, seeds, part in ((True, args.seeds, "planted"), (False, args.null_seeds, "null")):
        if part not in args.parts:
            continue
        for seed in seeds_of(seeds):
            r = run_one(seed, args.days, args.tickets_per_day, plant, config)
            results.append(r)
            if not header:  # rows print as they finish (a long run under load still reports what it did)
                print(f"\nCSAT drivers on generator data: {args.days} days × {args.tickets_per_day} tickets/day per "
                      f"dataset, FDR {args.fdr}\n")
                print("| data | seed | ratings | bad-rate | segments tested | planted | found, right sign | missed | "
                      "other reported (BH) | reported with BY | fit |")
                print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
                header = True
            other = ", ".join(f"{f} {lvl} {r.direction[(f, lvl)]}" + (
                "" if (f, lvl) in r.unexplained else " (explained by planted agents)")
                for f, lvl in r.extra) or "none"
            print(f"| {'planted' if r.plant else 'no drivers'} | {r.seed} | {r.ratings:,} | "
                  f"{r.bad_rate:.1%} | {r.tested} | {r.planted} | {len(r.found)} | "
                  f"{', '.join(f'{f} {lvl}' for f, lvl in r.missed) or '–'} | {other} | {r.by_reported} "
                  f"| {r.seconds:.1f} s |", flush=True)
            if not plant:
                r.dataset = None  # only planted datasets are needed later; null ones would hold memory
    if not results:
        return 0
    if any(r.plant for r in results):
        n, accuracy = reason_accuracy([r.dataset for r in results if r.dataset is not None])
        print(f"\nReason classifier (seed labels only) on {n:,} generated bad-rating comments: accuracy {accuracy:.1%}")
    planted = [r for r in results if r.plant]
    nulls = [r for r in results if not r.plant]
    if planted:
        print(f"planted drivers found with the right sign: {sum(len(r.found) for r in planted)} of "
              f"{sum(r.planted for r in planted)}; unexplained extra findings on planted data: "
              f"{sum(len(r.unexplained) for r in planted)}")
    if nulls:
        print(f"datasets without planted drivers with any reported effect (either direction): BH "
              f"{sum(bool(r.extra) for r in nulls)} of {len(nulls)}, BY {sum(r.by_reported > 0 for r in nulls)} "
              f"of {len(nulls)} (goal ≤ 5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
