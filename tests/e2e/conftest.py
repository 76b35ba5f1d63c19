"""The ``network`` fixture: one fresh testnet of real node processes per test module.

A module may set ``NETWORK = {...}`` (keyword arguments of :class:`TestNetwork`) to shape its
network. The run's seed (one per run: see ``tests/conftest.py``) is printed in the terminal summary
and with every network; rerun with ``DCENT_E2E_SEED=<seed>`` to replay the same keys, chain id and
scenario choices. When a test
fails, the end of every node's log is printed with it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from node.testnet.errors import LocalnetError
from tests.e2e.framework import TestNetwork, derived_seed, session_seed

SEED = session_seed()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives real node processes of a local testnet over RPC")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestNetwork]:
    options = getattr(request.module, "NETWORK", {})
    seed = derived_seed(SEED, request.module.__name__)
    net = TestNetwork(tmp_path_factory.mktemp("e2e") / "testnet", seed=seed, **options)
    net.build()
    try:
        try:
            net.start_all()
        except (AssertionError, LocalnetError):
            for index in net.indexes:
                print(net.log_tail(index))
            raise
        yield net
    finally:
        results = net.shutdown()
    unclean = [r for r in results if r.killed or r.exit_code != 0]
    assert not unclean, f"nodes did not stop cleanly on SIGTERM: {unclean}"


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "network" in request.fixturenames and request.node.stash.get(_CALL_FAILED, False):
        net: TestNetwork = request.getfixturevalue("network")
        print(f"seed {net.seed} (run seed {SEED}); base port {net.base_port}")
        for index in net.indexes:
            print(net.log_tail(index))
