"""The kill -9 fault suite in reduced form (2 seeded trials per step on SQLite, 1 on PostgreSQL for ingest and
write-back). ``make fault-suite`` runs the full one (20 per step). Set TICKETLENS_FAULT_TRIALS to change it here.

Every trial SIGKILLs a child process running the step at a seeded random moment, reruns it cleanly and checks the
warehouse against the source (see bench/fault_suite.py for what is compared).
"""

from __future__ import annotations

import os

import pytest

from bench.fault_suite import STEPS, run_step

pytestmark = pytest.mark.slow
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
