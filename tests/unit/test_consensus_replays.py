"""Consensus input a peer can replay or repeat at no cost (audit h18), against the real driver on
memory hosts, a real store and real signatures, on trio's mock clock (no sleeps):

1. a peer that subscribes to the consensus topic and stops reading makes ``publish`` raise
   ``GossipBackpressureError``; the driver loses that message and goes on;
2. an authentic old vote, re-published under a fresh seqno, is neither relayed nor acted on, a
   copy of a vote just accepted is dropped, and blocks for a lagging validator go only to the peer
   that showed it lagging, at most once per interval;
3. our own committed blocks pushed back at us are dropped on their height, undecoded, and scored
   past an allowance;
4. endless batches of stale transactions are scored past an allowance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from node.p2p.errors import GossipBackpressureError, P2PError
from node.p2p.framing import Stream
from node.p2p.guard import Reason
from node.p2p.interface import GossipMessage, Verdict, serve_requests
from node.p2p.memory import MemoryHost, MemoryNetwork
from node.services import consensus_driver
from node.services.consensus_checks import (
    USELESS_GOSSIP_ALLOWANCE,
    USELESS_GOSSIP_PER_STRIKE,
    UselessInput,
    committed_height_hint,
)
from node.services.consensus_driver import (
    PROPOSAL_PROTOCOL,
    SYNC_BATCH,
    SYNC_PROTOCOL,
    SYNC_PUSH_PROTOCOL,
    USELESS_PUSHED_ALLOWANCE,
    USELESS_TX_ALLOWANCE,
    ConsensusDriver,
    _Expired,
    _Message,
)
from node.services.consensus_wire import decode_message, encode_message
from node.services.lanes import Lane
from node.services.mempool import Mempool
from node.services.proposal_relay import RELAY_DELAY_S
from node.services.tx_relay import MAX_BATCH_TXS, TX_PROTOCOL
from node.store import ChainStore
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import Timeout, TimeoutKind
from protocol.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    CommittedBlock,
    SyncRequest,
    SyncResponse,
    Vote,
    sign_vote,
)
from protocol.crypto import PrivateKey
from protocol.encoding import encode
from protocol.ledger.tx import Transfer, sign_tx
from tests.waiting import spend_virtual_time, wait_until

from .consensus_support import (
    CHAIN_ID,
    CONFIG,
    Chain,
    build_block,
    certificate,
    client_key,
    propose,
    vkey,
    vote,
)

T = TypeVar("T")

#: Heights the node under test has committed before each test begins.
HEIGHTS = 4


@pytest.fixture(autouse=True)
def store_work_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's work runs in the trio thread: on the mock clock, time would otherwise jump from
    timer to timer, and past every deadline, while a worker thread writes a block."""

    async def run_inline(fn: Callable[..., T], *args: object, **_: object) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)


def seed(label: str) -> bytes:
    return PrivateKey.from_label(f"consensus-replays/{label}").seed()


def now_ms() -> int:
    return int(trio.current_time() * 1000)


def stale_tx() -> bytes:
    """A client's transaction with nonce 1, which block 1 commits: stale ever after."""
    return sign_tx(client_key(0), CHAIN_ID, 1, 10_000, Transfer(to=client_key(1).address.raw, amount=1))


def committed_chain(chain: Chain, heights: int) -> list[CommittedBlock]:
    """Blocks 1..heights signed by every validator; block 1 carries :func:`stale_tx`."""
    builder = chain.app(tx_source=lambda: [stale_tx()] if builder.height == 0 else [])
    blocks = []
    for height in range(1, heights + 1):
        block = build_block(chain, builder, chain.proposer(builder, height, 0))
        assert len(block.txs) == (1 if height == 1 else 0)
        proof = certificate(height, 0, block.hash, range(chain.size))
        builder.commit(block, proof)
        blocks.append(CommittedBlock(block, proof))
    return blocks


@dataclass
class Peer:
    """Another node on the memory network: what reaches it by push and by gossip."""

    host: MemoryHost
    pushes: list[list[bytes]] = field(default_factory=list)
    gossip: trio.MemoryReceiveChannel[GossipMessage] | None = None

    async def record_push(self, stream: Stream) -> None:
        frames = []
        while True:
            try:
                frames.append(await stream.receive_frame(2**24))
            except P2PError:  # the pusher closed (or reset) its stream: done
                break
        self.pushes.append(frames)

    def gossip_received(self) -> list[GossipMessage]:
        assert self.gossip is not None
        received = []
        while True:
            try:
                received.append(self.gossip.receive_nowait())
            except trio.WouldBlock:
                return received


@dataclass
class Rig:
    chain: Chain
    blocks: list[CommittedBlock]
    host: MemoryHost
    driver: ConsensusDriver
    attacker: Peer
    bystander: Peer

    def old_vote(self, height: int, validator: int = 0, *, round_: int = 0, vote_type: int = PREVOTE) -> Vote:
        """An authentic vote of ``validator`` at ``height``, as anyone who saw it can replay it."""
        return vote(validator, height, round_, vote_type, self.blocks[height - 1].block.hash)

    def judge(self, message: Vote, forwarder: str = "") -> Verdict:
        """The gossip validator's verdict on ``message`` forwarded by ``forwarder``."""
        forwarder = forwarder or self.attacker.host.peer_id
        data = encode_message(message)
        return self.driver.checks.gossip(GossipMessage(self.driver.topic, data, forwarder, forwarder)).verdict


@asynccontextmanager
async def open_rig(
    tmp_path: Path, *, validator: int | None = None, chain: Chain | None = None, publish_fails: bool = False
) -> AsyncIterator[Rig]:
    """A node that has committed ``HEIGHTS`` blocks (or, as ``validator``, a fresh chain's only
    validator), connected to an attacker and a bystander that both subscribe to consensus.
    ``publish_fails``: every publish of the node raises, as when its only subscriber stopped reading."""
    chain = chain or Chain()
    network = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        host = network.create_host(seed("node"))
        await nursery.start(host.run)
        store = await trio.to_thread.run_sync(ChainStore.open, tmp_path / "chain.db")
        await trio.to_thread.run_sync(store.bind_chain, CHAIN_ID, chain.genesis_hash)
        mempool = Mempool()
        app = chain.app(tx_source=lambda: mempool.reap(100))
        key = None if validator is None else vkey(validator)
        core = ConsensusCore(app, key=key, config=CONFIG, verifier=chain.verifier)
        driver = ConsensusDriver(core=core, app=app, store=store, host=host, mempool=mempool, clock_ms=now_ms)
        peers = []
        for label in ("attacker", "bystander"):
            peer = Peer(network.create_host(seed(label)))
            await nursery.start(peer.host.run)
            peer.host.set_stream_handler(SYNC_PUSH_PROTOCOL, peer.record_push)
            peer.gossip = await peer.host.subscribe(driver.topic)
            await host.connect(peer.host.listen_addrs[0])
            peers.append(peer)
        blocks = committed_chain(chain, HEIGHTS) if validator is None else []
        if publish_fails:
            host.publish = every_queue_full  # type: ignore[method-assign]
        await nursery.start(driver.run)
        for committed in blocks:
            await driver.lanes.put(Lane.SYNC, _Message(committed, "", SYNC_PROTOCOL, scored=True))
        with trio.fail_after(60):
            await driver.wait_for_height(len(blocks))
        try:
            yield Rig(chain, blocks, host, driver, *peers)
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)


# --- 1. backpressure ------------------------------------------------------------------------


async def every_queue_full(topic: str, data: bytes) -> None:
    raise GossipBackpressureError(f"every subscriber of {topic} has a full outbound queue")


async def test_a_publish_refused_for_backpressure_is_a_lost_message_not_the_end_of_the_node(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The only subscriber stopped reading: every publish raises. The only validator of its chain
    still commits block after block (it needs nobody's vote), and counts what it could not send."""

    async with open_rig(tmp_path, validator=0, chain=Chain(powers=(1,)), publish_fails=True) as rig:
        with trio.fail_after(600):
            await rig.driver.wait_for_height(3)
        assert rig.driver.lost_publishes >= 3


# --- 2. replayed votes ----------------------------------------------------------------------


async def test_an_authentic_old_vote_is_ignored_and_not_relayed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_rig(tmp_path) as rig:
        assert rig.driver.core.height == HEIGHTS + 1
        # Still signed by a validator of a set we keep (100 heights): it used to be accepted.
        assert rig.judge(rig.old_vote(1)) is Verdict.IGNORE
        assert rig.judge(rig.old_vote(HEIGHTS - 1, vote_type=PRECOMMIT)) is Verdict.IGNORE
        assert rig.driver.checks.stale_votes == 2
        await rig.attacker.host.publish(rig.driver.topic, encode_message(rig.old_vote(2)))
        await trio.testing.wait_all_tasks_blocked()
        assert rig.bystander.gossip_received() == []
        assert rig.attacker.pushes == [] and rig.bystander.pushes == []


async def test_an_old_vote_by_a_key_that_was_no_validator_is_rejected_not_ignored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """However far the chain has moved on since it was sent, a non-validator's vote is a forgery
    of membership: REJECTed (the host scores its forwarder), never counted as merely stale."""
    async with open_rig(tmp_path) as rig:
        outsider = PrivateKey.from_label("consensus-replays/outsider")
        forged = sign_vote(outsider, CHAIN_ID, 1, 0, PREVOTE, rig.blocks[0].block.hash, 1_000)
        result = rig.driver.checks.gossip(
            GossipMessage(rig.driver.topic, encode_message(forged), "x", rig.attacker.host.peer_id)
        )
        assert result.verdict is Verdict.REJECT and result.reason is Reason.INVALID
        assert rig.driver.checks.stale_votes == 0
        # The same outsider at the current height: the same verdict.
        current = sign_vote(outsider, CHAIN_ID, HEIGHTS + 1, 0, PREVOTE, bytes(32), 1_000)
        assert rig.judge(current) is Verdict.REJECT


async def test_a_vote_for_the_height_just_decided_is_still_used(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Late precommits for the last height go into the next certificate, and a validator one
    height behind is helped: both need the previous height's votes."""
    async with open_rig(tmp_path) as rig:
        assert rig.judge(rig.old_vote(HEIGHTS, vote_type=PRECOMMIT)) is Verdict.ACCEPT


async def test_a_copy_of_a_vote_just_accepted_is_dropped_and_a_retransmission_later_passes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_rig(tmp_path) as rig:
        current = vote(1, HEIGHTS + 1, 0, PREVOTE, b"\x00" * 32)
        assert rig.judge(current) is Verdict.ACCEPT
        assert rig.judge(current) is Verdict.IGNORE
        assert rig.judge(current, rig.bystander.host.peer_id) is Verdict.IGNORE
        assert rig.driver.checks.duplicate_votes == 2
        # The core re-sends its own votes unchanged every gossip interval: those must get through.
        autojump_clock.jump(CONFIG.gossip_interval_ms / 1000)
        assert rig.judge(current) is Verdict.ACCEPT


async def test_a_peer_forwarding_useless_votes_past_the_allowance_is_scored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_rig(tmp_path) as rig:
        old = [rig.old_vote(h, v, round_=r) for h in (1, 2) for v in range(4) for r in range(100)]
        verdicts = [
            rig.judge(message) for message in old[: USELESS_GOSSIP_ALLOWANCE + USELESS_GOSSIP_PER_STRIKE]
        ]
        assert set(verdicts[:-1]) == {Verdict.IGNORE}
        assert verdicts[-1] is Verdict.REJECT  # the host scores a REJECT against the forwarder
        result = rig.driver.checks.gossip(
            GossipMessage(rig.driver.topic, encode_message(old[-1]), "x", rig.attacker.host.peer_id)
        )
        assert result.verdict is Verdict.IGNORE and result.reason is Reason.STALE
        # Through the host: the attacker's replays end in a score against it.
        for message in old[-USELESS_GOSSIP_PER_STRIKE:]:
            await rig.attacker.host.publish(rig.driver.topic, encode_message(message))
        assert rig.host.guard.standing(rig.attacker.host.peer_id).score > 0
        assert rig.host.guard.standing(rig.bystander.host.peer_id).score == 0


async def test_blocks_for_a_lagging_validator_go_only_to_the_peer_that_showed_it_lagging(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each validator's vote of the previous height makes the core offer that validator blocks;
    the attacker replaying all four gets one push in the interval, the bystander none."""
    async with open_rig(tmp_path) as rig:
        for validator in range(4):
            data = encode_message(rig.old_vote(HEIGHTS, validator))
            await rig.attacker.host.publish(rig.driver.topic, data)
            await trio.testing.wait_all_tasks_blocked()
        assert [len(frames) for frames in rig.attacker.pushes] == [1]
        assert rig.bystander.pushes == []
        autojump_clock.jump(rig.driver.push_interval_ms / 1000)
        await rig.attacker.host.publish(rig.driver.topic, encode_message(rig.old_vote(HEIGHTS, 0, round_=1)))
        await trio.testing.wait_all_tasks_blocked()
        assert len(rig.attacker.pushes) == 2 and rig.bystander.pushes == []


# --- 3. our own blocks pushed back ----------------------------------------------------------


def test_the_height_of_a_committed_block_is_read_without_decoding_it() -> None:
    blocks = committed_chain(Chain(), 2)
    assert [committed_height_hint(encode_message(b)) for b in blocks] == [1, 2]
    assert committed_height_hint(b"") is None
    assert committed_height_hint(encode({"m": {"block": 7}, "t": "committed"})) is None
    assert committed_height_hint(encode_message(vote(0, 3, 0, PREVOTE, b"\x00" * 32))) is None


async def test_old_blocks_pushed_back_are_dropped_undecoded_and_scored_past_an_allowance(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = []

    def counting_decode(data: bytes) -> object:
        decoded.append(len(data))
        return decode_message(data)

    monkeypatch.setattr(consensus_driver, "decode_message", counting_decode)
    async with open_rig(tmp_path) as rig:
        frames = [encode_message(rig.blocks[i % HEIGHTS]) for i in range(SYNC_BATCH)]
        attacker = rig.attacker.host.peer_id
        for _ in range(USELESS_PUSHED_ALLOWANCE // SYNC_BATCH):
            await push(rig.attacker.host, rig.host.peer_id, frames)
        assert decoded == []
        assert rig.driver.useless_pushed.total == USELESS_PUSHED_ALLOWANCE
        assert rig.host.guard.standing(attacker).score == 0
        await push(rig.attacker.host, rig.host.peer_id, frames)
        assert rig.host.guard.standing(attacker).score > 0
        while not rig.host.guard.is_banned(attacker):  # past the ban threshold, banned as usual
            await push(rig.attacker.host, rig.host.peer_id, frames)
        assert rig.driver.height == HEIGHTS


async def push(host: MemoryHost, peer_id: str, frames: list[bytes]) -> None:
    stream = await host.open_stream(peer_id, SYNC_PUSH_PROTOCOL)
    for data in frames:
        await stream.send_frame(data)
    await stream.close()
    await trio.testing.wait_all_tasks_blocked()


# --- 4. stale transactions ------------------------------------------------------------------


async def test_batches_of_stale_transactions_are_scored_past_an_allowance(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_rig(tmp_path) as rig:
        attacker = rig.attacker.host.peer_id
        batch = [stale_tx()] * MAX_BATCH_TXS  # committed at height 1: every one is refused
        stream = await rig.attacker.host.open_stream(rig.host.peer_id, TX_PROTOCOL)
        for _ in range(USELESS_TX_ALLOWANCE // MAX_BATCH_TXS):
            await stream.send_frame(encode(batch))
            await trio.testing.wait_all_tasks_blocked()
        assert rig.driver.useless_txs.total == USELESS_TX_ALLOWANCE
        assert rig.host.guard.standing(attacker).score == 0
        await stream.send_frame(encode(batch))
        await trio.testing.wait_all_tasks_blocked()
        assert rig.host.guard.standing(attacker).score > 0
        assert rig.driver.mempool.stats().count == 0


async def test_a_batch_that_admits_something_or_only_repeats_what_another_peer_sent_is_not_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_rig(tmp_path) as rig:
        fresh = sign_tx(client_key(0), CHAIN_ID, 2, 10_000, Transfer(to=client_key(1).address.raw, amount=1))
        admitted = await rig.driver._admit_txs([fresh, stale_tx()], rig.attacker.host.peer_id)
        assert admitted == [fresh]
        assert await rig.driver._admit_txs([fresh] * 10, rig.bystander.host.peer_id) == []
        assert rig.driver.useless_txs.total == 0


# --- the counter ----------------------------------------------------------------------------


def test_useless_input_strikes_once_per_chunk_past_the_allowance_and_forgets_after_the_window() -> None:
    counter = UselessInput(allowance=10, per_strike=5, window_ms=60_000, max_peers=2)
    assert [counter.add("a", 1, 0) for _ in range(20)] == [False] * 14 + [True] + [False] * 4 + [True]
    assert counter.add("a", 5, 60_000) is False  # a new window
    assert counter.add("a", 10, 60_001) is True  # 15 in this window: one strike
    counter.add("b", 1, 0)
    counter.add("c", 1, 0)
    assert len(counter._peers) == 2 and "a" not in counter._peers
    assert counter.strikes == 3


async def test_a_relayed_copy_of_a_committed_transaction_is_refused_on_its_hash_and_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_rig(tmp_path) as rig:
        offered: list[bytes] = []
        add = rig.driver.mempool.add
        monkeypatch.setattr(
            rig.driver.mempool, "add", lambda raw, state: offered.append(raw) or add(raw, state)
        )
        assert await rig.driver._admit_txs([stale_tx()], rig.attacker.host.peer_id) == []
        assert offered == []  # never decoded: block 1 committed it
        assert rig.driver.useless_txs.total == 1  # counted as useless, as its used nonce would be


async def test_a_bug_admitting_a_relayed_batch_is_counted_and_the_driver_serves_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relayed batches are admitted in the consensus task (its transaction lane), so a bug there
    must cost one batch, not consensus."""
    async with open_rig(tmp_path) as rig:

        def broken(raw: bytes, state: object) -> None:
            raise RuntimeError("a mempool bug")

        monkeypatch.setattr(rig.driver.mempool, "add", broken)
        fresh = sign_tx(client_key(0), CHAIN_ID, 2, 10_000, Transfer(to=client_key(1).address.raw, amount=1))
        stream = await rig.attacker.host.open_stream(rig.host.peer_id, TX_PROTOCOL)
        await stream.send_frame(encode([fresh]))
        await trio.testing.wait_all_tasks_blocked()
        assert rig.driver.core_faults == 1
        stale = _Expired(Timeout(TimeoutKind.PROPOSE, 1, 0))  # a timer long past: ignored by the core
        assert rig.driver.lanes.offer(Lane.CONSENSUS, stale)
        await trio.testing.wait_all_tasks_blocked()
        assert rig.driver.lanes.waiting(Lane.CONSENSUS) == 0  # still served


async def test_a_relayed_copy_of_a_proposal_already_handled_is_dropped_on_its_hash_before_decoding(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every peer relays each proposal once, so in a full mesh most copies a node receives are of
    one it already handled; each used to be decoded and its signature checked again (a whole
    block's worth of work, issue 14). A copy of our own proposal sent back to us is dropped on
    its hash, counted, and never decoded."""
    async with open_rig(tmp_path, validator=0, chain=Chain(powers=(1,))) as rig:
        proposals: list[bytes] = []

        async def record(stream: Stream) -> None:
            proposals.append(await stream.receive_frame(2**24))

        rig.attacker.host.set_stream_handler(PROPOSAL_PROTOCOL, record)
        with trio.fail_after(600):
            while not proposals:
                await rig.driver.wait_for_height(rig.driver.height + 1)
        decoded: list[bytes] = []
        monkeypatch.setattr(consensus_driver, "decode_message", lambda data: decoded.append(data))

        stream = await rig.attacker.host.open_stream(rig.host.peer_id, PROPOSAL_PROTOCOL)
        await stream.send_frame(proposals[0])
        await stream.close()
        await wait_until(lambda: rig.driver.duplicate_proposals or decoded, what="the copy handled")

        assert rig.driver.duplicate_proposals == 1
        assert decoded == []


@pytest.mark.parametrize("bystander_voted", [True, False], ids=["voted", "silent"])
async def test_a_proposal_is_relayed_after_a_pause_only_to_peers_not_known_to_hold_it(
    bystander_voted: bool, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The attacker hands us a valid proposal for the next height. A bystander that has voted for
    its block (the vote's origin being the bystander) holds it: no stream to it, and none back to
    the attacker. A bystander that has not shown it gets the relay, ``RELAY_DELAY_S`` later."""
    async with open_rig(tmp_path) as rig:
        relayed: list[tuple[float, bytes]] = []

        async def record(stream: Stream) -> None:
            relayed.append((trio.current_time(), await stream.receive_frame(2**24)))

        rig.bystander.host.set_stream_handler(PROPOSAL_PROTOCOL, record)
        rig.attacker.host.set_stream_handler(PROPOSAL_PROTOCOL, record)
        builder = rig.chain.app()
        for committed in rig.blocks:
            builder.commit(committed.block, committed.certificate)
        height = HEIGHTS + 1
        block = build_block(rig.chain, builder, rig.chain.proposer(builder, height, 0))
        data = encode_message(propose(rig.chain, builder, 0, block))

        stream = await rig.attacker.host.open_stream(rig.host.peer_id, PROPOSAL_PROTOCOL)
        await stream.send_frame(data)
        await stream.close()
        received = trio.current_time()
        if bystander_voted:
            voter = rig.chain.non_proposer(builder, height)
            await rig.bystander.host.publish(
                rig.driver.topic, encode_message(vote(voter, height, 0, PREVOTE, block.hash))
            )
        await spend_virtual_time(2 * RELAY_DELAY_S)

        if bystander_voted:
            assert relayed == []
            assert rig.driver.relays_skipped == 2  # the attacker (it sent it) and the bystander
        else:
            assert [frame for _, frame in relayed] == [data]
            assert relayed[0][0] - received == pytest.approx(RELAY_DELAY_S, abs=0.005)
            assert rig.driver.relays_skipped == 1  # the attacker


# --- 6. a node the gossip no longer reaches ---------------------------------------------------


async def test_a_node_that_gossip_no_longer_reaches_syncs_from_its_peers_once_its_height_stalls(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No vote or proposal reaches the node (its mesh pruned it, say), but a connected peer has
    three more blocks: a whole stall interval without a new height, and the node asks for them.
    While the chain stays where it is, it asks once per interval, not more."""
    async with open_rig(tmp_path) as rig:
        later = committed_chain(rig.chain, HEIGHTS + 3)
        assert later[:HEIGHTS] == rig.blocks
        asked: list[float] = []

        async def serve(_peer_id: str, payload: bytes) -> bytes:
            request = SyncRequest.decode(payload)
            asked.append(trio.current_time())
            return SyncResponse(tuple(later[request.from_height - 1 :])).encode()

        rig.bystander.host.set_stream_handler(SYNC_PROTOCOL, serve_requests(serve, max_request=1024))
        interval = rig.driver.stall_sync_ms / 1000
        start = trio.current_time()
        with trio.fail_after(2 * interval):
            await rig.driver.wait_for_height(HEIGHTS + 3)
        assert interval <= trio.current_time() - start < 2 * interval
        assert rig.driver.stalled_syncs == 1
        assert rig.driver.app.height == HEIGHTS + 3

        await spend_virtual_time(3.5 * interval)
        assert 3 <= len(asked) - 1 <= 4
        assert all(b - a >= interval for a, b in pairwise(asked))


class _AttackerFirst:
    """Asks the attacker first when the driver picks peers to sync from."""

    def __init__(self, attacker: str) -> None:
        self.attacker = attacker

    def sample(self, peers: list[str], count: int) -> list[str]:
        return sorted(peers, key=lambda peer: peer != self.attacker)[:count]


async def test_a_sync_answer_of_blocks_not_asked_for_is_refused_and_an_honest_peer_asked_next(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The attacker answers every sync request with 32 copies of block 1: the core would drop
    them unscored, and as a full batch they kept the node asking the attacker, ever higher,
    never the bystander that has the blocks."""
    async with open_rig(tmp_path) as rig:
        later = committed_chain(rig.chain, HEIGHTS + 3)
        attacker = rig.attacker.host.peer_id

        async def lie(_peer_id: str, _payload: bytes) -> bytes:
            return SyncResponse((later[0],) * SYNC_BATCH).encode()

        async def serve(_peer_id: str, payload: bytes) -> bytes:
            return SyncResponse(tuple(later[SyncRequest.decode(payload).from_height - 1 :])).encode()

        rig.attacker.host.set_stream_handler(SYNC_PROTOCOL, serve_requests(lie, max_request=1024))
        rig.bystander.host.set_stream_handler(SYNC_PROTOCOL, serve_requests(serve, max_request=1024))
        rig.driver.rng = _AttackerFirst(attacker)  # type: ignore[assignment]
        with trio.fail_after(2 * rig.driver.stall_sync_ms / 1000):
            await rig.driver.wait_for_height(HEIGHTS + 3)
        assert rig.host.guard.refusals[(SYNC_PROTOCOL, Reason.INVALID.value)] >= 1
        assert rig.host.guard.standing(attacker).score > 0
        assert rig.host.guard.standing(rig.bystander.host.peer_id).score == 0
