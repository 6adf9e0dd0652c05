"""Fixtures for flow tests: flows run under the session's Prefect test harness, against the simulator.

``env`` is THE settings fixture for flow tests; do not copy it into a test module (tests/unit/test_layout.py
checks that no module defines its own ``env``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketlens.helpdesk_sim.generator import GeneratorConfig, generate_dataset
from ticketlens.helpdesk_sim.testing import running_simulator


@pytest.fixture(scope="module")
def dataset():
    """The flow tests' default helpdesk: 20 days of 120 tickets a day from 2026-06-20 (seed 21). A module that
    needs another one defines its own ``dataset``, which pytest then uses, also inside ``env``."""
    return generate_dataset(GeneratorConfig(seed=21, start=datetime(2026, 6, 20, tzinfo=UTC), days=20,
                                            tickets_per_day=120))


@pytest.fixture
def env(settings_env, tmp_path, sqlite_url, dataset):
    """The simulator serving ``dataset`` and every TICKETLENS_* setting a flow run needs (SQLite warehouse, file
    MLflow store in tmp_path, fast retries); yields the simulator handle. Settings are re-read before and after."""
    with running_simulator(dataset) as sim:
        values = {
            "TICKETLENS_WAREHOUSE_URL": sqlite_url,
            "TICKETLENS_HELPDESK_BASE_URL": sim.base_url,
            "TICKETLENS_HELPDESK_EXPORT_REQUESTS_PER_MINUTE": "6000",
            "TICKETLENS_HELPDESK_REQUESTS_PER_MINUTE": "6000",
            "TICKETLENS_HELPDESK_BACKOFF_BASE_SECONDS": "0.01",
            "TICKETLENS_HELPDESK_BACKOFF_MAX_SECONDS": "0.02",
            "TICKETLENS_HELPDESK_MAX_RETRIES": "2",
            "TICKETLENS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "TICKETLENS_MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
            "TICKETLENS_TRAINING_MIN_EXAMPLES_PER_CLASS": "10",
            "TICKETLENS_WRITEBACK_POLL_INTERVAL_SECONDS": "0.05",
            "TICKETLENS_WRITEBACK_CUSTOM_FIELDS": '{"category": 360010, "tier": 360011}',
        }
        settings_env(values)
        yield sim
