"""Warehouse tests exercise data access without the Prefect API: one that asks for the harness fails and says so."""

from __future__ import annotations

import pytest

from tests.support.folders import fail_if_uses


@pytest.fixture(autouse=True)
def _warehouse_tests_need_no_prefect(request) -> None:
    fail_if_uses(request, {"prefect_harness"}, "warehouse", "flows")
