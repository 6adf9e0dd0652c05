"""CSAT-driver benchmark: are the generator's planted drivers found, and is nothing found where nothing was planted?

For each seed: a generated dataset with planted drivers (three agents, two categories, resolution time,
reopens; ``GroundTruth.csat_drivers``) and one with none (``GeneratorConfig(plant_csat_drivers=False)``, same
overall bad-rate). The rating frame is built from the generator (true category as the "prediction"), then
``models.csat_drivers.analyse_drivers`` runs with the default settings (FDR 0.05, ≥ 20 ratings per segment).
A planted driver counts as found when it is reported (significant at the FDR) with the planted sign. Also
measured: the bad-rating reason classifier (trained on the seed labels only) on the generator's bad-rating
comments, whose themes are ground truth.

    uv run python -m bench.csat_bench [--seeds 1,2,3] [--null-seeds 1,2,3,4,5,6] [--days 120] [--tickets-per-day 500]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np

from helpdesk_sim.csat_frames import agent_names, group_names, rating_frame
from helpdesk_sim.generator import GeneratorConfig, generate_dataset
from models.csat_drivers import DriverConfig, analyse_drivers, prepare_ratings
from models.csat_reasons import classify_reasons, load_seed_examples, train_reason_classifier
from models.taxonomy import load_taxonomy


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


def run_one(seed: int, days: int, per_day: int, plant: bool, config: DriverConfig) -> dict:
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
    return {"seed": seed, "plant": plant, "ratings": report.ratings, "bad_rate": report.bad_rate,
            "tested": len(report.effects), "planted": len(planted), "found": found, "missed": missed,
            "extra": extra, "unexplained": unexplained, "direction": {k: v.direction for k, v in reported.items()}, "seconds": seconds, "dataset": dataset}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the datasets with planted drivers")
    parser.add_argument("--null-seeds", default="1,2,3,4,5,6", help="seeds of the datasets without drivers")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--tickets-per-day", type=int, default=500)
    parser.add_argument("--fdr", type=float, default=0.05)
    args = parser.parse_args(argv)
    config = DriverConfig(fdr=args.fdr)
    results = []
    for plant, seeds in ((True, args.seeds), (False, args.null_seeds)):
        for seed in (int(x) for x in seeds.split(",")):
            results.append(run_one(seed, args.days, args.tickets_per_day, plant, config))
    print(f"\nCSAT drivers: {args.days} days × {args.tickets_per_day} tickets/day per dataset, FDR {args.fdr}\n")
    print("| data | seed | ratings | bad-rate | segments tested | planted | found, right sign | missed | "
          "other reported | fit |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for r in results:
        other = ", ".join(f"{f} {lvl} {r['direction'][(f, lvl)]}" + (
            "" if (f, lvl) in r["unexplained"] else " (explained by planted agents)") for f, lvl in r["extra"]) or "none"
        print(f"| {'planted' if r['plant'] else 'no drivers'} | {r['seed']} | {r['ratings']:,} | "
              f"{r['bad_rate']:.1%} | {r['tested']} | {r['planted']} | {len(r['found'])} | "
              f"{', '.join(f'{f} {lvl}' for f, lvl in r['missed']) or '–'} | {other} | {r['seconds']:.1f} s |")
    n, accuracy = reason_accuracy([r["dataset"] for r in results])
    print(f"\nReason classifier (seed labels only) on {n:,} generated bad-rating comments: accuracy {accuracy:.1%}")
    planted_ok = all(not r["missed"] for r in results if r["plant"])
    nulls = [r for r in results if not r["plant"]]
    null_ok = all(not r["extra"] for r in nulls)
    unexplained = sum(len(r["unexplained"]) for r in results if r["plant"])
    print(f"every planted driver found with the right sign: {'yes' if planted_ok else 'NO'}; "
          f"nothing reported without planted drivers: {'yes' if null_ok else 'NO'} "
          f"({sum(bool(r['extra']) for r in nulls)} of {len(nulls)} datasets with a report; expected ≈ FDR); "
          f"unexplained extra findings on planted data: {unexplained}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
