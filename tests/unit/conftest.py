"""Unit tests are pure: a test here that asks for a warehouse or the Prefect harness fails and says where it goes."""

from __future__ import annotations

import pytest

from tests.support.folders import fail_if_uses

_NOT_UNIT = {"warehouse_url", "sqlite_url", "postgres_url", "postgres_available", "prefect_harness"}


@pytest.fixture(autouse=True)
def _unit_tests_stay_pure(request) -> None:
    fail_if_uses(request, _NOT_UNIT, "unit", "warehouse or tests/flows")
