"""Kill -9 fault suite: SIGKILL ingest, scoring, write-back and backfill at seeded random moments, rerun, compare.

Each trial: a fresh simulator on loopback and a fresh warehouse (a file SQLite database, or a PostgreSQL schema)
prepared for the step → the step runs in a child process → the child is killed with SIGKILL at a seeded point:
by default once a seeded number of commits is visible (never the last) plus a seeded fraction of a commit
interval, or with ``--kill-by time`` after a delay drawn over the step's measured commit window → a clean rerun in
another child → the warehouse is compared with the source:

- ingest: every ticket and rating at the source's latest version, none missing, none extra;
- scoring: every live ticket has exactly one current prediction, every prediction of the champion version;
- write-back: every ticket's tags pushed exactly once (the simulator records each ``update_many``), the helpdesk
  carries the desired tags and every ticket's write-back is ``done``;
- backfill: every live ticket has exactly one current prediction for the version, and partitions finished before
  the kill were not redone (their ``finished_at`` and their tickets' ``predicted_at`` are unchanged).

Children are forked from a forkserver that imported the flows once, so a trial costs the step's run time, not
ten seconds of imports. ``python -m bench.fault_suite --trials 20 --pg-trials 5`` (``make fault-suite``) prints a
results table; ``tests/e2e/test_fault_suite.py`` runs the same harness with 2 trials per step.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

STEPS = ("ingest", "scoring", "writeback", "backfill")
PRELOAD = ["ticketlens.flows.ingest", "ticketlens.flows.backfill", "ticketlens.flows.hourly_pipeline", "ticketlens.tasks.scoring", "ticketlens.tasks.writeback",
           "ticketlens.models.language", "bench.fault_suite"]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ---------------------------------------------------------------------------------------- child entry points


def _child(step: str, env: dict[str, str], api_url: str) -> None:
    """Runs in a forked child: apply the trial's settings, run one step under the shared Prefect API."""
    os.environ.update(env)
    import logging

    from prefect.settings import PREFECT_API_URL, temporary_settings

    logging.disable(logging.WARNING)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        if step == "ingest":
            from ticketlens.flows.ingest import ingest

            ingest()
        elif step == "scoring":
            scoring_step()
        elif step == "writeback":
            writeback_step()
        elif step == "backfill":
            from ticketlens.flows.backfill import backfill

            backfill(model_version=env["FAULT_MODEL_VERSION"])
        else:
            raise ValueError(step)
    os._exit(0)  # skip interpreter teardown of the forked child (atexit handlers of the parent's modules)


def _noop() -> None:
    os._exit(0)


def warm_forkserver(ctx) -> float:
    """Start the forkserver (it imports the flows once) so no trial pays for the imports."""
    started = time.monotonic()
    proc = ctx.Process(target=_noop)
    proc.start()
    proc.join()
    return time.monotonic() - started


def scoring_step() -> dict:
    from prefect import flow

    from ticketlens.adapters.settings import get_settings
    from ticketlens.tasks.scoring import score_new_tickets

    @flow(name="fault-scoring")
    def run() -> dict:
        return asdict(score_new_tickets(get_settings(), f"fault-{uuid.uuid4().hex[:8]}"))

    return run()


def writeback_step() -> dict:
    from prefect import flow

    from ticketlens.adapters.settings import get_settings
    from ticketlens.tasks.writeback import plan_writeback, poll_writeback_jobs, push_writeback

    @flow(name="fault-writeback")
    def run() -> dict:
        settings = get_settings()
        plan_writeback(settings)
        return {"push": asdict(push_writeback(settings, "fault")), "poll": asdict(poll_writeback_jobs(settings))}

    return run()


# ------------------------------------------------------------------------------------------------ fixtures


@dataclass
class Fixture:
    """Everything a trial needs that is built once per suite: dataset, trained champion, warehouse templates."""

    workdir: Path
    dataset: object
    api_url: str
    mlflow_uri: str
    model_version: str
    pg_base: str | None
    templates: dict[str, Path] = field(default_factory=dict)  # SQLite template per step


def base_env(fx: Fixture, warehouse_url: str, sim) -> dict[str, str]:
    from ticketlens.helpdesk_sim.testing import client_env

    return client_env(
        warehouse_url, sim,
        TICKETLENS_HELPDESK_EXPORT_PAGE_SIZE="100",
        TICKETLENS_HELPDESK_CSAT_PAGE_SIZE="50",
        TICKETLENS_MLFLOW_TRACKING_URI=fx.mlflow_uri,
        TICKETLENS_MLFLOW_ARTIFACT_LOCATION=str(fx.workdir / "mlartifacts"),
        TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS="3",
        TICKETLENS_TRAINING_MIN_HOLDOUT_ROWS="50",
        TICKETLENS_BACKFILL_AFTER_PROMOTION="false",
        TICKETLENS_SCORING_CHUNK_SIZE="60",
        TICKETLENS_BACKFILL_WORKERS="2",
        TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS="0.05",
        FAULT_MODEL_VERSION=fx.model_version,
    )


@contextlib.contextmanager
def applied_env(env: dict[str, str]) -> Iterator[None]:
    from ticketlens.adapters.settings import get_settings

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def sqlite_copy(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as s, sqlite3.connect(dst) as d:
        s.backup(d)


@contextlib.contextmanager
def pg_schema(pg_base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema (dropped afterwards) and a URL selecting it."""
    from ticketlens.adapters.warehouse.engine import get_engine

    schema = f"tl_fault_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))  # a generated identifier, not input
    sep = "&" if "?" in pg_base else "?"
    url = f"{pg_base}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            get_engine(url).dispose()
        get_engine.cache_clear()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def copy_warehouse(src_url: str, dst_url: str) -> None:
    """Copy every warehouse table's rows (PostgreSQL templates; SQLite uses the backup API)."""
    from ticketlens.adapters.warehouse.engine import get_engine, migrate
    from ticketlens.adapters.warehouse.schema import metadata

    migrate(dst_url)
    src, dst = get_engine(src_url), get_engine(dst_url)
    with src.connect() as s, dst.begin() as d:
        for table in metadata.sorted_tables:
            rows = [dict(r) for r in s.execute(sa.select(table)).mappings()]
            if rows:
                d.execute(sa.insert(table), rows)
            if "id" in table.c and table.c.id.autoincrement is True and rows:
                d.execute(sa.text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"),
                          {"t": table.name, "v": max(r["id"] for r in rows)})


def build_fixture(workdir: Path, api_url: str, pg_base: str | None, log: Callable[[str], None]) -> Fixture:
    """Dataset (~900 tickets over 3 months), a trained champion, and templates for scoring/write-back/backfill."""
    from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
    from ticketlens.helpdesk_sim.seed import seed_warehouse
    from ticketlens.helpdesk_sim.testing import running_simulator

    dataset = generate_dataset(GeneratorConfig(seed=11, start=datetime(2026, 3, 1, tzinfo=UTC), days=90,
                                               tickets_per_day=10))
    fx = Fixture(workdir, dataset, api_url, f"sqlite:///{workdir / 'mlflow.db'}", "", pg_base)
    seeded = workdir / "seeded.db"
    seed_warehouse(f"sqlite:///{seeded}", dataset)
    with running_simulator(dataset) as sim, applied_env(base_env(fx, f"sqlite:///{seeded}", sim)):
        from ticketlens.flows.nightly_retrain import nightly_retrain

        log("training a champion for the scoring, write-back and backfill trials ...")
        trained = nightly_retrain()
        fx.model_version = str(trained["version"])
        fx.templates["scoring"] = fx.templates["backfill"] = seeded
        scored = workdir / "scored.db"
        sqlite_copy(seeded, scored)
        with applied_env({"TICKETLENS_WAREHOUSE_URL": f"sqlite:///{scored}"}):
            scoring_step()
        fx.templates["writeback"] = scored
    return fx


@contextlib.contextmanager
def trial_warehouse(fx: Fixture, step: str, backend: str) -> Iterator[str]:
    from ticketlens.adapters.warehouse.engine import get_engine, migrate

    if backend == "sqlite":
        path = fx.workdir / f"trial-{uuid.uuid4().hex[:8]}.db"
        if step == "ingest":
            migrate(f"sqlite:///{path}")
        else:
            sqlite_copy(fx.templates[step], path)
        try:
            yield f"sqlite:///{path}"
        finally:
            with contextlib.suppress(Exception):
                get_engine(f"sqlite:///{path}").dispose()
            get_engine.cache_clear()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with pg_schema(fx.pg_base) as url:
        if step == "ingest":
            migrate(url)
        else:
            copy_warehouse(f"sqlite:///{fx.templates[step]}", url)
        yield url


# ------------------------------------------------------------------------------------------------- checks


def _ts(value) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def progress(step: str, url: str, sim) -> int:
    """How far a (killed) run got: rows a user would see."""
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import csat_ratings, ticket_predictions, tickets

    if step == "writeback":
        return sum(len(u["tickets"]) for u in sim.updates())
    tables = {"ingest": (tickets, csat_ratings), "scoring": (ticket_predictions,),
              "backfill": (ticket_predictions,)}[step]
    with contextlib.suppress(sa.exc.SQLAlchemyError), get_engine(url).connect() as conn:
        return sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables)
    return 0


def check_ingest(url: str, sim, _fx, _before) -> None:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import csat_ratings, tickets

    snap = sim.snapshot()
    with get_engine(url).connect() as conn:
        got = {r.id: (r.updated_at, r.status) for r in conn.execute(sa.select(tickets.c.id, tickets.c.updated_at,
                                                                              tickets.c.status))}
        ratings = {r.id: (r.updated_at, r.score) for r in conn.execute(
            sa.select(csat_ratings.c.id, csat_ratings.c.updated_at, csat_ratings.c.score))}
    expected = {t["id"]: (_ts(t["updated_at"]), t["status"]) for t in snap["tickets"]}
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, f"lost tickets {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}"
    stale = [i for i in expected if got[i] != expected[i]]
    assert not stale, f"tickets not at the source's version: {stale[:5]}"
    assert ratings == {r["id"]: (_ts(r["updated_at"]), r["score"]) for r in snap["ratings"]}, "ratings differ"


def _current_predictions(url: str) -> tuple[int, Counter, set[str]]:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import ticket_predictions, tickets

    p = ticket_predictions
    with get_engine(url).connect() as conn:
        live = conn.execute(sa.select(sa.func.count()).where(tickets.c.is_deleted.is_(False))).scalar_one()
        per_ticket = Counter(conn.execute(sa.select(p.c.ticket_id).where(p.c.is_current.is_(True))).scalars())
        versions = set(conn.execute(sa.select(p.c.model_version).distinct()).scalars())
    return live, per_ticket, versions


def check_scoring(url: str, _sim, fx: Fixture, _before) -> None:
    live, per_ticket, versions = _current_predictions(url)
    doubles = [t for t, n in per_ticket.items() if n > 1]
    assert not doubles, f"tickets with more than one current prediction: {doubles[:5]}"
    assert len(per_ticket) == live, f"{live - len(per_ticket)} live tickets have no prediction"
    assert versions == {fx.model_version}, versions


def check_writeback(url: str, sim, _fx, _before) -> None:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import writeback_state

    pushes = Counter(t["id"] for u in sim.updates() for t in u["tickets"])
    twice = [t for t, n in pushes.items() if n > 1]
    assert not twice, f"tags pushed more than once for tickets {twice[:5]}"
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(writeback_state.c.ticket_id, writeback_state.c.status,
                                      writeback_state.c.desired_tags)).all()
    states = Counter(r.status for r in rows)
    assert states == Counter({"done": len(rows)}), f"write-back states {dict(states)}"
    for r in random.Random(0).sample(rows, min(25, len(rows))):
        tags = set(sim.ticket(r.ticket_id)["tags"])
        assert set(r.desired_tags) <= tags, f"ticket {r.ticket_id} lacks {set(r.desired_tags) - tags}"
    assert set(pushes) == {r.ticket_id for r in rows}, "some tickets were never pushed"


def backfill_snapshot(url: str, fx: Fixture) -> dict:
    """Partitions finished so far and the predicted_at of their tickets' predictions."""
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import backfill_partitions, ticket_predictions, tickets

    with get_engine(url).connect() as conn:
        done = {r.partition_key: r.finished_at for r in conn.execute(
            sa.select(backfill_partitions.c.partition_key, backfill_partitions.c.finished_at))}
        predicted = {}
        for key in done:
            start = datetime(int(key[:4]), int(key[5:7]), 1, tzinfo=UTC)
            end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
            q = (sa.select(ticket_predictions.c.ticket_id, ticket_predictions.c.predicted_at)
                 .join(tickets, tickets.c.id == ticket_predictions.c.ticket_id)
                 .where(tickets.c.created_at >= start, tickets.c.created_at < end,
                        ticket_predictions.c.model_version == fx.model_version))
            predicted.update({r.ticket_id: r.predicted_at for r in conn.execute(q)})
    return {"done": done, "predicted": predicted}


def check_backfill(url: str, _sim, fx: Fixture, before: dict) -> None:
    from ticketlens.adapters.warehouse.engine import get_engine
    from ticketlens.adapters.warehouse.schema import backfill_partitions

    check_scoring(url, _sim, fx, before)
    after = backfill_snapshot(url, fx)
    redone = [k for k, at in before["done"].items() if after["done"].get(k) != at]
    assert not redone, f"partitions finished before the kill were redone: {redone}"
    rescored = [t for t, at in before["predicted"].items() if after["predicted"].get(t) != at]
    assert not rescored, f"{len(rescored)} tickets of finished partitions were re-scored"
    from ticketlens.adapters.warehouse.schema import tickets
    from ticketlens.tasks.backfill import month_partitions

    with get_engine(url).connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(backfill_partitions)).scalar_one()
        first, last = conn.execute(sa.select(sa.func.min(tickets.c.created_at), sa.func.max(tickets.c.created_at))
                                   .where(tickets.c.is_deleted.is_(False))).one()
    expected = len(month_partitions(first, last))
    assert n == expected, f"{n} partitions done, expected {expected}"


CHECKS = {"ingest": check_ingest, "scoring": check_scoring, "writeback": check_writeback, "backfill": check_backfill}


# -------------------------------------------------------------------------------------------------- trials


@dataclass
class StepResult:
    step: str
    backend: str
    trials: int = 0
    killed: int = 0
    killed_mid_work: int = 0  # killed after committing some but not all of the work
    finished_before_kill: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    calibration_seconds: float = 0.0


def _run_child(ctx, step: str, env: dict[str, str], api_url: str, kill_after: float | None,
               timeout: float = 600, watch: Callable[[float], object] | None = None) -> tuple[bool, float]:
    """Start the step in a forked child; SIGKILL it after ``kill_after`` s. Returns (was killed, elapsed).

    ``watch(elapsed)`` is called every 50 ms while the child runs (calibration records when work happens);
    when it returns True the child is killed there and then (a kill at a chosen point of progress).
    """
    started = time.monotonic()
    proc = ctx.Process(target=_child, args=(step, env, api_url), daemon=True)
    proc.start()
    limit = kill_after if kill_after is not None else timeout
    triggered = False
    while proc.is_alive() and time.monotonic() - started < limit and not triggered:
        proc.join(0.05)
        if watch is not None and proc.is_alive():
            triggered = watch(time.monotonic() - started) is True
    elapsed = time.monotonic() - started
    if proc.is_alive():
        if kill_after is None and not triggered:
            proc.kill()
            proc.join()
            raise TimeoutError(f"{step} did not finish within {timeout:.0f} s")
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        if proc.exitcode == 0:  # it finished in the instant between the liveness check and the signal
            return False, elapsed
        assert proc.exitcode == -signal.SIGKILL, f"{step} child exited with {proc.exitcode} when killed"
        return True, elapsed
    if proc.exitcode != 0:
        raise RuntimeError(f"{step} child exited with {proc.exitcode} (not killed)")
    return False, elapsed


def _after_progress(step: str, url: str, sim, target: int, extra: float) -> Callable[[float], bool]:
    """A ``watch`` that fires ``extra`` seconds after the warehouse first shows ``target`` committed rows."""
    reached: list[float] = []

    def watch(elapsed: float) -> bool:
        if not reached and progress(step, url, sim) >= target:
            reached.append(elapsed)
        return bool(reached) and elapsed >= reached[0] + extra

    return watch


def run_step(fx: Fixture, ctx, step: str, backend: str, trials: int, seed: int,
             log: Callable[[str], None], kill_by: str = "progress") -> StepResult:
    """``kill_by="progress"``: each kill lands after a seeded commit (never the last) plus a seeded fraction of
    a commit interval. ``"time"``: after a delay drawn over the calibrated commit window, which also lands
    before the first commit or after the last (the run then only finishes its bookkeeping)."""
    from ticketlens.helpdesk_sim.testing import running_simulator

    result = StepResult(step, backend)
    started = time.monotonic()
    slow = {"ingest": 20, "writeback": 20}.get(step, 0)
    # Calibrate: one unkilled run measures when the step commits work; kills are drawn over that window
    # (from just before its first commit to just after its last), so most land in the middle of the work.
    seen: dict[int, float] = {}
    with trial_warehouse(fx, step, backend) as url, running_simulator(fx.dataset, slow_ms=slow) as sim:
        def watch(elapsed: float) -> None:
            seen.setdefault(progress(step, url, sim), elapsed)

        _, duration = _run_child(ctx, step, base_env(fx, url, sim), fx.api_url, None, watch=watch)
        CHECKS[step](url, sim, fx, {"done": {}, "predicted": {}})
    result.calibration_seconds = duration
    first = min((t for p, t in seen.items() if p > 0), default=0.1)
    last = max(seen.values(), default=duration)
    window = (max(0.1, first - 0.5), max(first, last) + 0.3)
    log(f"  {step} on {backend}: run takes {duration:.1f} s, commits between {first:.1f} s and {last:.1f} s")
    rng = random.Random(f"{seed}-{step}-{backend}")
    marks = sorted(p for p in seen if p > 0)
    gaps = sorted(b - a for a, b in zip(sorted(seen.values()), sorted(seen.values())[1:], strict=False) if b > a)
    page_time = gaps[len(gaps) // 2] if gaps else 1.0
    for trial in range(trials):
        delay = rng.uniform(*window)
        target = extra = None
        if kill_by == "progress" and len(marks) > 1:
            # A run's speed varies with the machine's load, so a fixed delay often lands before the first or
            # after the last commit. Instead: wait until a seeded number of commits is visible (never the
            # last), then a seeded fraction of a typical commit interval — any point of the next page's fetch,
            # validation or load transaction.
            target, extra = rng.choice(marks[:-1]), rng.uniform(0, page_time)
        with trial_warehouse(fx, step, backend) as url, running_simulator(fx.dataset, slow_ms=slow) as sim:
            env = base_env(fx, url, sim)
            total = None
            try:
                if target is not None:
                    killed, delay = _run_child(ctx, step, env, fx.api_url, None,
                                               watch=_after_progress(step, url, sim, target, extra))
                else:
                    killed, _ = _run_child(ctx, step, env, fx.api_url, delay)
                done = progress(step, url, sim)
                before = backfill_snapshot(url, fx) if step == "backfill" else None
                _run_child(ctx, step, env, fx.api_url, None)  # the clean rerun
                total = progress(step, url, sim)
                CHECKS[step](url, sim, fx, before)
                result.passed += 1
            except (AssertionError, RuntimeError, TimeoutError) as exc:
                killed = True
                done = -1
                result.failures.append(f"trial {trial} (kill after {delay:.2f} s): {exc}")
            result.trials += 1
            result.killed += killed
            result.finished_before_kill += not killed
            if killed and total is not None and 0 < done < total:
                result.killed_mid_work += 1
            log(f"  {step:9s} {backend:10s} trial {trial + 1:2d}/{trials}: kill at {delay:5.2f} s, "
                f"{'killed' if killed else 'finished first'}, progress {done}/{total} → "
                f"{'ok' if len(result.failures) == trial + 1 - result.passed else 'FAIL'}")
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def fault_environment(workdir: Path | None = None, pg_base: str | None = None,
                      log: Callable[[str], None] = print) -> Iterator[tuple[Fixture, object]]:
    """Prefect API + forkserver + fixture. Inside pytest pass nothing: the session harness is already up."""
    from prefect.settings import PREFECT_API_URL

    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ticketlens-faults-")) if own else workdir
    try:
        api_url = PREFECT_API_URL.value()
        if not api_url:
            raise RuntimeError("no Prefect API: run inside prefect_test_harness (the suite's main() does)")
        ctx = multiprocessing.get_context("forkserver")
        fx = build_fixture(workdir, api_url, pg_base, log)
        # The forkserver starts now, with these in its environment: it loads the champion once (bench.fault_warm).
        os.environ.update(FAULT_WARM_MLFLOW_URI=fx.mlflow_uri, FAULT_WARM_MODEL_VERSION=fx.model_version)
        ctx.set_forkserver_preload([*PRELOAD, "bench.fault_warm"])
        log(f"forkserver ready in {warm_forkserver(ctx):.1f} s (imports paid once)")
        yield fx, ctx
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def run_suite(trials: int, pg_trials: int, steps=STEPS, seed: int = 1, pg_base: str | None = None,
              log: Callable[[str], None] = print, kill_by: str = "progress") -> list[StepResult]:
    results = []
    with fault_environment(pg_base=pg_base, log=log) as (fx, ctx):
        for step in steps:
            for backend, n in (("sqlite", trials), ("postgresql", pg_trials)):
                if n and (backend == "sqlite" or pg_base):
                    log(f"{step} on {backend}: {n} trials")
                    results.append(run_step(fx, ctx, step, backend, n, seed, log, kill_by))
    return results


def table(results: list[StepResult]) -> str:
    lines = ["| step | backend | trials | killed mid-work | finished before kill | passed | step run (s) | "
             "suite time (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.step} | {r.backend} | {r.trials} | {r.killed_mid_work} | {r.finished_before_kill} | "
                     f"{r.passed}/{r.trials} | {r.calibration_seconds:.1f} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="seeded kill trials per step on SQLite")
    parser.add_argument("--pg-trials", type=int, default=5, help="trials per step on PostgreSQL (0: skip)")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-by", choices=("progress", "time"), default="progress",
                        help="place kills after a seeded commit (default) or at a delay over the commit window")
    parser.add_argument("--postgres-url", default=os.environ.get("TICKETLENS_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    pg = args.postgres_url if args.pg_trials else None
    if pg:
        try:
            sa.create_engine(pg).connect().close()
        except sa.exc.OperationalError:
            print(f"PostgreSQL at {pg} unreachable: PostgreSQL trials skipped", file=sys.stderr)
            pg = None
    started = time.monotonic()
    with prefect_test_harness(server_startup_timeout=180):
        results = run_suite(args.trials, args.pg_trials, tuple(args.steps.split(",")), args.seed, pg,
                            log=lambda m: print(m, flush=True), kill_by=args.kill_by)
    print()
    print(table(results))
    print(f"\nTotal {time.monotonic() - started:.0f} s")
    failures = [f"{r.step}/{r.backend}: {f}" for r in results for f in r.failures]
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
