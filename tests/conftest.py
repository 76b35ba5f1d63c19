"""The run's e2e seed, one for the whole run, pytest-xdist workers included.

The controller picks the seed in ``pytest_configure``, before xdist spawns its workers, and puts it
in the environment they inherit; every worker's networks derive from it, and the summary names it.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.framework import SEED_ENV, session_seed


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(SEED_ENV, str(session_seed()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seed = os.environ[SEED_ENV]
    terminalreporter.write_line(f"dcent e2e seed: {seed} (reproduce with {SEED_ENV}={seed})")
