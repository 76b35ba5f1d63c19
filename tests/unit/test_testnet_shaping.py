"""Choosing how a namespaced testnet's links are shaped, before anything is built: netem where the
kernel has it, else the TUN switch, else a clear refusal (error 5910) with both reasons."""

from __future__ import annotations

import pytest

import node.cli.testnet_netns as testnet_netns
from node.testnet.errors import NetemUnavailable
from node.testnet.netns import Fabric, LinkShape, Placement

SHAPED = Placement("ab12", "10.80.1", LinkShape(rtt_ms=50))


def no_fabric_may_be_built(monkeypatch: pytest.MonkeyPatch) -> list[Placement]:
    built: list[Placement] = []

    def create(placement: Placement, nodes: int) -> Fabric:
        built.append(placement)
        return Fabric(placement, nodes)

    monkeypatch.setattr(Fabric, "create", staticmethod(create))
    return built


def test_without_netem_or_tun_up_is_refused_before_anything_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    built = no_fabric_may_be_built(monkeypatch)
    monkeypatch.setattr(testnet_netns, "netem_unavailable", lambda: "no sch_netem")
    monkeypatch.setattr(testnet_netns, "tun_unavailable", lambda: "/dev/net/tun cannot be opened")
    with pytest.raises(NetemUnavailable) as refused:
        testnet_netns.build_fabric(SHAPED, 3)
    assert refused.value.code == 5910
    assert "no sch_netem" in str(refused.value) and "/dev/net/tun" in str(refused.value)
    assert built == []


def test_without_netem_the_links_are_built_unshaped_for_the_tun_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = no_fabric_may_be_built(monkeypatch)
    monkeypatch.setattr(testnet_netns, "netem_unavailable", lambda: "no sch_netem")
    monkeypatch.setattr(testnet_netns, "tun_unavailable", lambda: None)
    fabric, needs_switch = testnet_netns.build_fabric(SHAPED, 3)
    assert needs_switch and fabric is not None
    assert [placement.shape for placement in built] == [LinkShape()]


def test_with_netem_the_links_carry_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    built = no_fabric_may_be_built(monkeypatch)
    monkeypatch.setattr(testnet_netns, "netem_unavailable", lambda: None)
    _, needs_switch = testnet_netns.build_fabric(SHAPED, 3)
    assert not needs_switch and [placement.shape for placement in built] == [SHAPED.shape]
