"""What each test folder promises (see tests/conftest.py), checked when a test runs."""

from __future__ import annotations

import pytest


def fail_if_uses(request: pytest.FixtureRequest, forbidden: set[str], folder: str, move_to: str) -> None:
    """Fail a test that needs more than its folder promises, saying where it belongs."""
    used = forbidden & set(request.fixturenames)
    if used:
        pytest.fail(f"{request.node.nodeid} lives in tests/{folder}/ but uses {sorted(used)}: move it to "
                    f"tests/{move_to}/ (see tests/conftest.py)", pytrace=False)
