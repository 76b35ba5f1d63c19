"""Hypothesis profiles for the unit tests.

``ci`` (the default) keeps the whole foundation suite well inside a minute and a half on a loaded
two-core machine; ``soak`` runs far more examples for a long local or nightly hunt:

    HYPOTHESIS_PROFILE=soak .venv/bin/pytest -q tests/unit

No deadlines: a loaded machine must never turn a slow example into a failure.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
