"""Run-wide set-up: the e2e seed, and how pytest-xdist spreads the tests (``tests/scheduling.py``).

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


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from tests.scheduling import SharedStateScheduling

    return SharedStateScheduling(config, log)
