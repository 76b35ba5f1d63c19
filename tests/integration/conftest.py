"""Fixtures for the host tests: clusters of real libp2p hosts on 127.0.0.1, or of memory hosts.

Tests that take ``cluster`` run once per implementation of ``Host``. They must also take
``host_clock``: pytest-trio only uses a clock passed straight to the test, and the memory runs
go on ``MockClock(autojump_threshold=0)`` (virtual time, no waiting), the libp2p runs on the
real clock (sockets need real time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from node.host import HostConfig, P2PHost
from node.p2p.interface import Host
from node.p2p.memory import MemoryNetwork
from node.p2p.reconnect import BackoffPolicy
from protocol.crypto import PrivateKey

KINDS = ("libp2p", "memory")
#: Reconnection fast enough for tests; the defaults (0.5 s doubling to 30 s) are for operators.
TEST_BACKOFF = BackoffPolicy(initial_s=0.2, max_s=2.0)
#: Generous: a loaded two-core machine can stall a process for seconds.
DEADLINE_S = 30.0


def seed_of(label: str) -> bytes:
    return PrivateKey.from_label(label).seed()


class Cluster:
    """Starts hosts of one kind in the test's nursery and closes them at the end."""

    def __init__(self, kind: str, nursery: trio.Nursery) -> None:
        self.kind = kind
        self._nursery = nursery
        self._network = MemoryNetwork()
        self.hosts: list[Host] = []

    def make(self, label: str, *, bootstrap: tuple[str, ...] = (), **config: Any) -> Host:
        """A host (not started) whose key derives from ``label``."""
        host: Host
        if self.kind == "libp2p":
            config.setdefault("reconnect", TEST_BACKOFF)
            host = P2PHost(HostConfig(node_key_seed=seed_of(label), bootstrap=bootstrap, **config))
        else:
            host = self._network.create_host(
                seed_of(label), bootstrap=bootstrap, reconnect=TEST_BACKOFF, **config
            )
        self.hosts.append(host)
        return host

    async def start(self, label: str, *, bootstrap: tuple[str, ...] = (), **config: Any) -> Host:
        host = self.make(label, bootstrap=bootstrap, **config)
        await self._nursery.start(host.run)
        return host

    @property
    def network(self) -> MemoryNetwork:
        return self._network

    async def close_all(self) -> None:
        for host in self.hosts:
            await host.close()


@pytest.fixture(params=KINDS)
def host_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def host_clock(host_kind: str) -> trio.testing.MockClock | None:
    return trio.testing.MockClock(autojump_threshold=0) if host_kind == "memory" else None


@pytest.fixture
async def cluster(host_kind: str, nursery: trio.Nursery) -> AsyncIterator[Cluster]:
    hosts = Cluster(host_kind, nursery)
    yield hosts
    await hosts.close_all()
