"""How ``make test`` spreads the suite over pytest-xdist workers: test by test, except where tests
share something a second worker must not touch at the same time.

A work unit is what one worker runs in turn. Most tests are a unit of their own, so a worker that
finishes early takes the next one and the two workers end together. Kept together are:

- a module that defines a module-scoped fixture, and every e2e module (their ``network`` fixture
  is module-scoped, in ``tests/e2e/conftest.py``): split over two workers, the fixture (a testnet of
  node processes, a node process, a built image) would be set up once per worker;
- the modules of one :data:`SHARED_HOST_STATE` group, which use state of the whole host.

(pytest-xdist's own ``--dist loadgroup`` reads ``xdist_group`` marks through a node-id rewrite that
no longer takes effect on pytest 9 (pytest-xdist issue 1386): tests were silently spread anyway.
This scheduler decides from the module's path and text, which the controller can read itself.)
"""

from __future__ import annotations

import functools
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parents[1]

#: Modules whose tests use host-wide state: one worker runs the whole group, in turn.
SHARED_HOST_STATE = {
    # network namespaces, the veth and bridge names derived for them, the namespace list checked
    "tests/e2e/test_netns.py": "netns",
    "tests/e2e/test_netns_latency.py": "netns",
    # podman's image store: images imported, tagged and removed by name
    "tests/integration/test_executor_container.py": "podman",
    "tests/integration/test_market_container.py": "podman",
}


def work_unit(nodeid: str) -> str:
    """The unit a test belongs to: its group, its module, or itself."""
    module = nodeid.split("::", 1)[0]
    if module in SHARED_HOST_STATE:
        return f"group:{SHARED_HOST_STATE[module]}"
    if module.startswith("tests/e2e/") or _has_module_fixture(module):
        return module
    return nodeid


@functools.cache
def _has_module_fixture(module: str) -> bool:
    path = ROOT / module
    return path.is_file() and 'scope="module"' in path.read_text()


class SharedStateScheduling(LoadScopeScheduling):
    """xdist's scope scheduler with :func:`work_unit` as the scope: larger units go first (its
    default reordering), then single tests in collection order."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)
