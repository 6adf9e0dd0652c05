"""Scheduler-created runs (no parameters, pendulum start times) of the window-driven flows.

Regression tests for issue 14 point 2: every scheduled ``csat-drivers`` run failed with "can't compare
offset-naive and offset-aware datetimes" and spike detection with pandas' "Inferred time zone not equal to
passed time zone", because Prefect's pendulum ``DateTime`` went naive after ``astimezone`` + arithmetic. Calling
the flows with explicit aware datetimes (what the older tests did) never showed it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.scheduled import run_as_scheduled, runtime_start_type
from tests.support.spikes import SPIKE_AT
from tests.support.spikes import seed as seed_spikes
from tests.support.warehouse import seed_predictions
from ticketlens.adapters.settings import get_settings
from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.seed import seed_warehouse

pytestmark = pytest.mark.slow
CSAT_START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="Prefect uses stdlib datetimes on Python 3.13+")
def test_the_scheduled_start_prefect_hands_a_flow_is_a_pendulum_datetime():
    import pendulum

    assert issubclass(runtime_start_type(), pendulum.DateTime)


@pytest.fixture
def reports_env(monkeypatch, sqlite_url, tmp_path):
    monkeypatch.setenv("TICKETLENS_WAREHOUSE_URL", sqlite_url)
    monkeypatch.setenv("TICKETLENS_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def test_a_scheduled_csat_drivers_run_analyses_the_days_before_its_slot(prefect_harness, reports_env):
    from ticketlens.flows.csat_drivers import csat_drivers

    dataset = generate_dataset(GeneratorConfig(seed=5, start=CSAT_START, days=21, tickets_per_day=120))
    seed_warehouse(reports_env, dataset)
    seed_predictions(reports_env, dataset)
    slot = CSAT_START + timedelta(days=22, hours=3, minutes=30)  # the prefect.yaml cron slot, a day after the data

    run, state = run_as_scheduled(csat_drivers, slot)

    assert type(run.expected_start_time) is runtime_start_type()
    assert state.is_completed(), state.message
    result = state.result()
    days = get_settings().csat.window_days
    assert (result.window.start, result.window.end) == (slot - timedelta(days=days), slot)
    assert all(type(v) is datetime and v.tzinfo is UTC for v in (result.window.start, result.window.end))
    assert result.ratings > 0 and result.written["csat_reason_counts"] > 0


def test_a_scheduled_spike_detection_run_evaluates_the_hour_before_its_slot(prefect_harness, reports_env):
    from ticketlens.adapters.warehouse.engine import migrate
    from ticketlens.flows.spikes import spike_detection

    migrate(reports_env)
    seed_spikes(reports_env)
    slot = SPIKE_AT + timedelta(hours=1, minutes=5)  # owns [SPIKE_AT, SPIKE_AT + 1h): the first surge hour

    _run, state = run_as_scheduled(spike_detection, slot)

    assert state.is_completed(), state.message
    result = state.result()
    assert result.as_of == (SPIKE_AT + timedelta(hours=1)).isoformat()
    assert result.opened == 1
