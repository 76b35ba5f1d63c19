"""The tx relay's memory of what each peer sent us (issue 14): bounded, per peer, forgotten for
peers that are gone. The relaying itself is tested over real and memory hosts in
``tests/integration/test_tx_relay.py``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.p2p.errors import P2PError
from node.services import tx_relay
from node.services.tx_relay import TxRelay


class _Host:
    """Only what the relay asks of a host outside its run: the connected peers."""

    def __init__(self, *peers: str) -> None:
        self.peers = list(peers)

    def peer_ids(self) -> list[str]:
        return sorted(self.peers)


async def _admit(batch: list[bytes], peer_id: str) -> list[bytes]:
    return batch


def test_only_the_latest_transactions_a_peer_sent_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tx_relay, "KNOWN_KEPT", 3)
    relay = TxRelay(_Host("peer-a", "peer-b"), _admit)  # type: ignore[arg-type]
    relay._note_known("peer-a", [b"1", b"2", b"3", b"4"])

    assert relay._unknown_to("peer-a", [b"1", b"2", b"4", b"5"]) == [b"1", b"5"], (
        "1 was forgotten: the oldest"
    )
    assert relay._unknown_to("peer-b", [b"2", b"3"]) == [b"2", b"3"], (
        "what peer-a sent says nothing of peer-b"
    )
    assert relay.spared == 2


def test_a_peer_that_is_gone_is_not_remembered() -> None:
    host = _Host("peer-a")
    relay = TxRelay(host, _admit)  # type: ignore[arg-type]
    relay._note_known("stranger", [b"1"])
    assert relay._unknown_to("stranger", [b"1"]) == [b"1"]

    relay._note_known("peer-a", [b"2"])
    host.peers = []
    relay._nursery = object()  # type: ignore[assignment]  # relay() only acts once the relay runs
    relay.relay([b"3"])  # every relay forgets the peers no longer connected
    assert relay._unknown_to("peer-a", [b"2"]) == [b"2"]


async def test_a_failed_link_forgets_what_the_peer_sent(autojump_clock: trio.testing.MockClock) -> None:
    """The peer behind a failed link may come back restarted, with an empty mempool: the next
    link's backlog must go in full, not less what the peer sent us before."""

    class Unreachable(_Host):
        async def open_stream(self, peer_id: str, protocol: str) -> None:
            raise P2PError("the peer is gone")

    relay = TxRelay(Unreachable("peer-a"), _admit)  # type: ignore[arg-type]
    relay._note_known("peer-a", [b"1"])
    async with trio.open_nursery() as nursery:
        relay._nursery = nursery
        relay.relay([b"2"])  # starts the link; its send fails
    assert relay.linked_peers == []
    assert relay._unknown_to("peer-a", [b"1", b"2"]) == [b"1", b"2"]


def test_what_a_peer_sent_is_remembered_as_small_digests_and_oversize_junk_not_at_all() -> None:
    """A hostile peer's batches of 64 KiB junk must not pin its bytes here: 8,192 of them would be
    half a GiB per peer."""
    relay = TxRelay(_Host("peer-a"), _admit)  # type: ignore[arg-type]
    big, oversize = b"x" * tx_relay.MAX_TX_BYTES, b"y" * (tx_relay.MAX_TX_BYTES + 1)
    relay._note_known("peer-a", [big, oversize])
    assert all(len(key) == 16 for key in relay._known["peer-a"])
    assert len(relay._known["peer-a"]) == 1
    assert relay._unknown_to("peer-a", [big, oversize]) == [oversize]
