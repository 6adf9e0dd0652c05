"""The kill -9 fault suite in reduced form (2 seeded trials per step on SQLite, 1 on PostgreSQL for ingest and
write-back). ``make fault-suite`` runs the full one (20 per step). Set TICKETLENS_FAULT_TRIALS to change it here.

Every trial SIGKILLs a child process running the step at a seeded random moment, reruns it cleanly and checks the
warehouse against the source (see bench/fault_suite.py for what is compared).
"""

from __future__ import annotations

import os

import pytest

from bench.fault_suite import (
    STEPS,
    _run_child,
    backfill_snapshot,
    base_env,
    check_backfill,
    run_step,
    trial_warehouse,
)
from ticketlens.helpdesk_sim.testing import running_simulator

# The module fixture trains a champion and starts a forkserver (~3-5 min on a busy 2-CPU machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
TRIALS = int(os.environ.get("TICKETLENS_FAULT_TRIALS", "2"))


@pytest.fixture(scope="module")
def faults(prefect_harness, postgres_available):
    from bench.fault_suite import fault_environment

    with fault_environment(pg_base=postgres_available) as env:
        yield env


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_then_rerun_equals_the_source_on_sqlite(faults, step):
    fx, ctx = faults
    result = run_step(fx, ctx, step, "sqlite", TRIALS, seed=7, log=print)
    assert result.failures == [] and result.passed == TRIALS


@pytest.mark.parametrize("step", ["ingest", "writeback"])
def test_kill_9_then_rerun_equals_the_source_on_postgresql(faults, step):
    fx, ctx = faults
    result = run_step(fx, ctx, step, "postgresql", 1, seed=7, log=print)
    assert result.failures == [] and result.passed == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_backfill_killed_after_a_finished_partition_resumes_without_redoing_it(faults, backend):
    """A real SIGKILL of the backfill process once at least one month is done and others are still running."""
    fx, ctx = faults
    with trial_warehouse(fx, "backfill", backend) as url, running_simulator(fx.dataset) as sim:
        env = base_env(fx, url, sim)
        killed, _ = _run_child(ctx, "backfill", env, fx.api_url, None,
                               watch=lambda _elapsed: len(backfill_snapshot(url, fx)["done"]) >= 1)
        assert killed
        before = backfill_snapshot(url, fx)
        assert 1 <= len(before["done"]) < 3 and before["predicted"]  # months done at the kill, one at least not
        _run_child(ctx, "backfill", env, fx.api_url, None)  # the rerun
        check_backfill(url, sim, fx, before)  # finished months untouched, every ticket one current prediction


def test_a_write_back_killed_between_batches_never_pushes_a_ticket_twice(faults):
    """SIGKILL as soon as the first update_many batch reached the helpdesk, while later batches are in flight."""
    from bench.fault_suite import check_writeback, progress

    fx, ctx = faults
    with trial_warehouse(fx, "writeback", "sqlite") as url, running_simulator(fx.dataset, slow_ms=150) as sim:
        env = base_env(fx, url, sim)
        killed, _ = _run_child(ctx, "writeback", env, fx.api_url, None,
                               watch=lambda _elapsed: progress("writeback", url, sim) > 0)
        assert killed
        pushed_before = progress("writeback", url, sim)
        assert 0 < pushed_before < sum(1 for _ in sim.snapshot()["tickets"])
        _run_child(ctx, "writeback", env, fx.api_url, None)
        check_writeback(url, sim, fx, None)  # each ticket pushed exactly once, all done, tags on the tickets
