"""Shared test settings: a hypothesis profile that tolerates a loaded 2-core CI machine."""

from __future__ import annotations

import os

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
