"""Shared test settings: a hypothesis profile that tolerates a loaded 2-core CI machine."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Deadlines make property tests flaky on a busy machine; the example count keeps them bounded.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _many_peers_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run many peers on 127.0.0.1: lift the one-link-per-address default for the
    ``hubswarm share/fetch`` processes they start (tests of the limit pass it explicitly)."""
    monkeypatch.setenv("HUBSWARM_MAX_PER_ADDRESS", "0")
