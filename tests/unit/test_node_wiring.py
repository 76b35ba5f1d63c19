"""The node's services are wired once (node/services/wiring.py); the RPC table binds the method
schema to handlers over narrow views; the metrics read only theirs. None of these needs a Node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from node.metrics import collect_node_metrics, render_exposition
from node.p2p.guard import PeerGuard, Reason
from node.rpc.errors import MethodRegistrationError
from node.rpc.methods import MethodSpec, MethodTable
from node.rpc.node_methods import NodeMethods
from node.rpc.node_table import NODE_SCHEMA, build_node_table
from node.services.wiring import NodeIdentity, NodeServices
from tests.wire_samples import PROVIDER, genesis


def identity(**changes: object) -> NodeIdentity:
    fields: dict[str, Any] = {
        "moniker": "n0",
        "genesis": genesis(),
        "key": PROVIDER,
        "executor": "subprocess",
        "simulated_gpus": True,
    }
    fields.update(changes)
    return NodeIdentity(**fields)


def test_a_node_serves_exactly_its_schema() -> None:
    """Binding checks each handler against its spec; the served table is the documented one."""
    placeholder = cast(Any, object())
    services = NodeServices(
        identity=identity(),
        store=placeholder,
        app=placeholder,
        host=placeholder,
        mempool=placeholder,
        driver=placeholder,
        readiness=placeholder,
        capacity=placeholder,
        blobs=placeholder,
        market=placeholder,
        availability=placeholder,
    )
    table = build_node_table(services, lambda: "http://127.0.0.1:1/")
    assert table.schema() == tuple(sorted(NODE_SCHEMA, key=lambda spec: spec.name))
    assert len({spec.name for spec in NODE_SCHEMA}) == len(NODE_SCHEMA)


def test_binding_refuses_a_spec_without_its_handler() -> None:
    class Handlers:
        async def chain_head(self) -> int:
            return 1

    with pytest.raises(MethodRegistrationError, match="no handler chain_get_block"):
        MethodTable().bind((MethodSpec("chain_getBlock", "A block."),), Handlers())


def test_binding_refuses_a_handler_whose_arguments_differ_from_the_spec() -> None:
    class Handlers:
        async def chain_head(self, height: int) -> int:
            return height

    with pytest.raises(MethodRegistrationError, match="differ"):
        MethodTable().bind((MethodSpec("chain_head", "The head."),), Handlers())


def test_a_spec_checks_its_name_when_declared() -> None:
    with pytest.raises(MethodRegistrationError, match="namespace_method"):
        MethodSpec("chainHead", "no namespace")
    assert MethodSpec("account_grantsReceived").handler_name == "account_grants_received"
    assert MethodSpec("chain_head", "  The head.\n").doc == "The head."


def test_an_identity_needs_a_moniker_and_an_executor() -> None:
    with pytest.raises(ValueError, match="moniker"):
        identity(moniker="")
    with pytest.raises(ValueError, match="executor"):
        identity(executor="")
    assert identity().chain_id == genesis().chain_id


# --- handlers over small fakes: what they read is all they are given --------------------------


@dataclass
class FakeHost:
    peer_id: str = "12D3KooWfake"
    listen_addrs: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/1"])
    guard: PeerGuard = field(default_factory=PeerGuard)
    connected: int = 2

    def peers(self) -> list[object]:
        return [object()] * self.connected


@dataclass
class FakeDriver:
    height: int = 7
    core_faults: int = 1


@dataclass
class FakeReadiness:
    def status(self) -> Any:
        return self

    def to_json(self) -> dict[str, object]:
        return {"selling": False}


async def test_node_status_reads_only_its_view() -> None:
    @dataclass
    class Reads:
        identity: NodeIdentity
        host: FakeHost
        driver: FakeDriver
        readiness: FakeReadiness

    reads = Reads(identity(), FakeHost(), FakeDriver(), FakeReadiness())
    methods = NodeMethods(cast(Any, reads), lambda: "")
    assert await methods.node_status() == {
        "height": 7,
        "peers": 2,
        "executor": "subprocess",
        "provider": {"selling": False},
    }


async def test_metrics_read_only_their_view() -> None:
    @dataclass
    class Store:
        def job_counts(self) -> dict[str, int]:
            return {"running": 1}

    @dataclass
    class Capacity:
        last_report: None = None

    @dataclass
    class Market:
        def busy_gpu_uuids(self) -> tuple[str, ...]:
            return ("GPU-1",)

    @dataclass
    class Reads:
        store: Store
        capacity: Capacity
        market: Market
        host: FakeHost
        mempool: list[bytes]
        driver: FakeDriver

    host = FakeHost()
    host.guard.refuse("p", "/dcent/test", Reason.DECODE)
    reads = Reads(Store(), Capacity(), Market(), host, [b"tx"] * 3, FakeDriver())
    text = render_exposition(await collect_node_metrics(reads))
    for line in (
        "dcent_height 7",
        "dcent_peers 2",
        "dcent_mempool_txs 3",
        'dcent_jobs{state="running"} 1',
        "dcent_gpu_units 0",
        "dcent_gpu_units_allocated 1",
        "dcent_consensus_core_faults_total 1",
    ):
        assert line in text.splitlines()
    assert 'dcent_p2p_refusals_total{protocol="/dcent/test",reason="decode"} 1' in text
