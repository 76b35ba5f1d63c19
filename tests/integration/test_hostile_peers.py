"""A node never stops because of a peer, and validates gossip before it forwards it.

Real libp2p hosts on 127.0.0.1 and real nodes (SQLite, consensus); the hostile peer is a plain
``P2PHost`` that publishes whatever bytes it likes (its own publishes are never validated).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.main import main
from node.daemon import Node
from node.host import HostConfig, P2PHost
from node.market.delivery_link import send_delivery
from node.market.records import REQUESTER, JobRecord, JobState
from node.metrics import collect_node_metrics, render_exposition
from node.p2p.errors import DialError, P2PError, PeerBannedError
from node.services.capacity import capacity_topic
from node.services.consensus_driver import PROPOSAL_PROTOCOL, SYNC_PUSH_PROTOCOL, consensus_topic
from node.services.consensus_wire import encode_message
from node.services.tx_relay import TX_PROTOCOL
from protocol.consensus.effects import TimeoutKind
from protocol.consensus.messages import Block, Proposal, genesis_certificate, proposal_sign_bytes, sign_vote
from protocol.crypto import PrivateKey
from protocol.encoding import encode
from protocol.ledger.tx import Transfer, sign_tx
from protocol.market.delivery import (
    RESULT_PROTOCOL_ID,
    DeliveryAck,
    DeliveryHeader,
    DeliveryReady,
    ResultDelivery,
    decode_answer,
    delivery_limit,
    output_listing_hash,
)
from protocol.market.errors import ReceiptForOtherContract, ReceiptOverLimit
from protocol.market.messages import Refusal
from tests.integration.conftest import TEST_BACKOFF, seed_of
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, validator_key, wait_until
from tests.unit.ledger_helpers import key, make_receipt, make_terms, sign_contract
from tests.unit.market_builders import make_spec

CAPACITY = capacity_topic(CHAIN_ID)
CONSENSUS = consensus_topic(CHAIN_ID)

#: Bytes that are not a capacity announcement in every way the decoder distinguishes.
GARBAGE = [
    os.urandom(200),  # random bytes (the crash: "malformed msgpack: ExtraData")
    encode({"provider": 7}),  # a map with missing and wrong-type fields
    b"\x81\xa1a\x00\x00",  # trailing bytes after a value
    b"\xd0\x05",  # a non-canonical integer (int8 for a fixfixnum)
]


async def hostile_host(nursery: trio.Nursery, label: str, target: Node) -> P2PHost:
    host = P2PHost(
        HostConfig(
            node_key_seed=seed_of(label), bootstrap=tuple(target.host.listen_addrs), reconnect=TEST_BACKOFF
        )
    )
    await nursery.start(host.run)
    for topic in (CAPACITY, CONSENSUS):
        await host.subscribe(topic)
        await wait_until(lambda t=topic: target.host.peer_id in host.topic_peers(t), what=f"mesh on {topic}")
    return host


def refusals(node: Node, topic: str, reason: str) -> int:
    return node.host.guard.refusals.get((topic, reason), 0)


async def test_garbage_on_the_capacity_topic_is_refused_and_the_node_keeps_committing(tmp_path: Path) -> None:
    """Was: the first undecodable announcement raised DecodeError out of the capacity service and
    the node exited 1 with one line and no peer named."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            hostile = await hostile_host(nursery, "hostile-garbage", node)
            await node.wait_for_height(1)
            for data in GARBAGE:
                await hostile.publish(CAPACITY, data)
            await wait_until(
                lambda: refusals(node, CAPACITY, "decode") == len(GARBAGE), what="garbage refused"
            )
            standing = node.host.guard.standing(hostile.peer_id)
            assert standing.refusals == len(GARBAGE)
            assert node.capacity is not None and node.capacity.dropped == len(GARBAGE)
            height = node.status().height
            await node.wait_for_height(height + 3)  # still committing
            nursery.cancel_scope.cancel()


async def test_the_driver_survives_an_error_of_the_core(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            driver = node.driver
            assert driver is not None
            await node.wait_for_height(1)
            real = driver.core.on_timeout
            calls = {"n": 0}

            def failing_once(timeout, now_ms):  # type: ignore[no-untyped-def]
                # A retransmission timer: losing it costs nothing here, so progress after the
                # fault shows the driver went on (a lost COMMIT timer would stall one validator).
                if timeout.kind is TimeoutKind.GOSSIP and calls["n"] == 0:
                    calls["n"] += 1
                    raise RuntimeError("a bug in the core")
                return real(timeout, now_ms)

            driver.core.on_timeout = failing_once  # type: ignore[method-assign]
            with caplog.at_level(logging.ERROR, logger="dcent.consensus"):
                await wait_until(lambda: driver.core_faults == 1, what="the fault counted")
                height = node.status().height
                await node.wait_for_height(height + 3)
            faults = [r for r in caplog.records if "consensus core failed" in r.getMessage()]
            assert faults and faults[0].exc_info is not None  # with its traceback
            nursery.cancel_scope.cancel()


async def test_invalid_gossip_stops_at_the_first_node_and_valid_gossip_crosses_it(tmp_path: Path) -> None:
    """hostile - B - C, a line: what B rejects never reaches C; what B accepts does."""
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            b = await net.start(0)
            c = await net.start(1)  # bootstraps to b only; a follower
            hostile = await hostile_host(nursery, "hostile-line", b)
            assert c.host.peer_id not in {p.peer_id for p in hostile.peers()}
            await c.wait_for_height(1)
            assert b.capacity is not None and c.capacity is not None

            # Valid: the hostile peer's own signed announcement reaches C through B.
            seller = PrivateKey.from_label("hostile-seller")
            genuine = b.capacity.entries()[0]
            now = genuine.issued_at_ms
            valid = _announcement(seller, hostile.peer_id, now, genuine)
            await hostile.publish(CAPACITY, valid.encode())
            await wait_until(
                lambda: seller.public_key.raw in {a.provider for a in c.capacity.entries()},  # type: ignore[union-attr]
                what="the valid announcement crossed B",
            )

            # Invalid: garbage, a forgery, an announcement naming another peer, a vote by a
            # non-validator, a proposal on the gossip topic.
            forged = dataclasses.replace(valid, price_per_gpu_second=1, sequence=valid.sequence + 1)
            impostor = _announcement(seller, b.host.peer_id, now + 1, genuine)
            outsider = PrivateKey.from_label("not-a-validator")
            vote = sign_vote(outsider, CHAIN_ID, b.status().height + 1, 0, 1, bytes(32))
            await hostile.publish(CAPACITY, GARBAGE[0])
            await hostile.publish(CAPACITY, forged.encode())
            await hostile.publish(CAPACITY, impostor.encode())
            await hostile.publish(CONSENSUS, encode_message(vote))
            await wait_until(
                lambda: b.host.guard.standing(hostile.peer_id).refusals == 4, what="B refused all four"
            )
            assert refusals(b, CAPACITY, "decode") == 1
            assert refusals(b, CAPACITY, "signature") == 1
            assert refusals(b, CAPACITY, "invalid") == 1
            assert refusals(b, CONSENSUS, "invalid") == 1
            # B's later messages reach C (one stream, in order): C would have seen them by then.
            sequence = b.capacity.entries()[0].sequence  # B's newest own announcement
            await wait_until(
                lambda: any(
                    a.sequence > sequence and a.provider == b.validator_key.public_key.raw
                    for a in c.capacity.entries()  # type: ignore[union-attr]
                ),
                what="B's next announcement at C",
            )
            # Nothing B relayed was refused at C. Honest votes for a height C has already passed
            # (C lags B on a loaded machine and catches up by sync) are IGNOREd as "stale": not
            # refused input, and never scored (the standings below stay empty).
            assert [
                key for key in c.host.guard.refusals if key[0] in (CAPACITY, CONSENSUS) and key[1] != "stale"
            ] == []
            assert c.host.guard.standings() == []
            # Every copy C's validator dropped was such a stale one (an older announcement of B's
            # arriving after a newer one, on a loaded machine), none refused.
            assert c.capacity.dropped == refusals(c, CAPACITY, "stale")
            assert all(a.price_per_gpu_second != 1 for a in c.capacity.entries())
            nursery.cancel_scope.cancel()


def _announcement(key, peer_id, now, like):  # type: ignore[no-untyped-def]
    from protocol.market.capacity import sign_announcement

    return sign_announcement(
        key,
        CHAIN_ID,
        peer_id=peer_id,
        sequence=now,
        gpus=like.gpus,
        price_per_gpu_second=5,
        collateral=0,
        stake=0,
        executors=("bubblewrap",),
        limits=like.limits,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
    )


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _claim_delivery(host: P2PHost, node: Node, contract_hash: bytes, size: int) -> tuple[object, int]:
    """Open a result stream, announce ``size`` bytes for ``contract_hash``, read the answer, then
    push 1 MiB frames until the stream fails; returns the answer and how many MiB left us."""
    stream = await host.open_stream(node.host.peer_id, RESULT_PROTOCOL_ID)
    await stream.send_frame(DeliveryHeader(contract_hash, size).encode())
    answer = decode_answer(await stream.receive_frame(4096))
    chunk = bytes(1024 * 1024)
    sent = 0
    with trio.fail_after(30):
        try:
            while sent < size // len(chunk):
                await stream.send_frame(chunk)
                sent += 1
        except (P2PError, trio.BrokenResourceError):
            pass
    await stream.reset()
    return answer, sent


async def test_a_stranger_claiming_a_200_mb_delivery_is_refused_after_the_header(tmp_path: Path) -> None:
    """Was: /dcent/result/1.0.0 read a frame of up to 265 MiB before looking for a contract; a
    200 MB frame took a node from 99 MB to 698 MB RSS."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            stranger = await hostile_host(nursery, "stranger", node)
            before = _rss_bytes()
            answer, sent_mib = await _claim_delivery(stranger, node, os.urandom(32), 200 * 1024 * 1024)
            assert isinstance(answer, Refusal) and answer.code == ReceiptForOtherContract.code
            await wait_until(lambda: refusals(node, RESULT_PROTOCOL_ID, "unsolicited") == 1, what="counted")
            assert sent_mib < 200  # the stream was reset under the stranger's writes
            assert _rss_bytes() - before < 64 * 1024 * 1024
            nursery.cancel_scope.cancel()


async def test_a_delivery_is_taken_only_from_the_contracts_provider_and_within_its_limit(
    tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            provider = await hostile_host(nursery, "provider-peer", node)
            other = await hostile_host(nursery, "other-peer", node)
            assert node.market is not None
            terms = make_terms()
            spec = make_spec(output_limit_bytes="1 MiB")
            record = JobRecord(
                job_id="job-under-test",
                role=REQUESTER,
                spec=spec,
                created_ms=0,
                state=JobState.ESCROWED,
                peer_id=provider.peer_id,
                contract=sign_contract(terms),
            )
            node.market.book.jobs[record.job_id] = record
            contract_hash = terms.contract_hash()
            limit = delivery_limit(spec.output_limit_bytes)

            answer, _ = await _claim_delivery(other, node, contract_hash, 1000)
            assert isinstance(answer, Refusal) and answer.code == ReceiptForOtherContract.code
            answer, sent = await _claim_delivery(provider, node, contract_hash, limit + 1)
            assert isinstance(answer, Refusal) and answer.code == ReceiptOverLimit.code
            assert sent < 64
            await wait_until(
                lambda: (
                    refusals(node, RESULT_PROTOCOL_ID, "unsolicited") == 1
                    and refusals(node, RESULT_PROTOCOL_ID, "oversize") == 1
                ),
                what="both refusals counted",
            )
            # Within the limit, from the provider: the go-ahead (the body is then checked as before).
            stream = await provider.open_stream(node.host.peer_id, RESULT_PROTOCOL_ID)
            await stream.send_frame(DeliveryHeader(contract_hash, limit).encode())
            ready = decode_answer(await stream.receive_frame(4096))
            assert ready == DeliveryReady(contract_hash, limit)
            await stream.reset()

            # The provider's side of the protocol, end to end: countersigned.
            receipt = dataclasses.replace(make_receipt(terms, 1), output_hash=output_listing_hash({}))
            delivery = ResultDelivery(
                receipt=receipt,
                provider_sig=receipt.sign(key("bob")),
                files=(),
                stdout=b"done\n",
                stderr=b"",
                stdout_truncated=False,
                stderr_truncated=False,
                outputs_truncated=False,
                timed_out=False,
            )
            answer = await send_delivery(
                provider, node.host.peer_id, contract_hash, delivery.encode(), timeout=30
            )
            assert isinstance(answer, DeliveryAck) and answer.contract_hash == contract_hash
            assert receipt.verify(node.validator_key.public_key.raw, answer.requester_sig)
            assert record.state is JobState.DELIVERED and record.receipt == receipt
            nursery.cancel_scope.cancel()


async def _dcent_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, [*argv, "--output", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


async def test_a_peer_past_the_threshold_is_banned_disconnected_and_refused_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            hostile = await hostile_host(nursery, "hostile-banned", node)
            home = str(node.paths.root)

            info = await _dcent_json(capsys, "node", "info", "--home", home)
            assert info["peer_id"] == node.host.peer_id
            assert info["multiaddrs"] == node.host.listen_addrs
            assert info["chain_id"] == CHAIN_ID and info["role"] == "validator, provider"
            assert isinstance(info["height"], int)
            peers = await _dcent_json(capsys, "node", "peers", "--home", home)
            assert [p["peer_id"] for p in peers["connected"]] == [hostile.peer_id]
            assert peers["connected"][0]["score"] == 0 and peers["banned"] == []

            junk = [*GARBAGE, os.urandom(64)]  # 5 x 25: past the threshold of 100, decay or not
            for data in junk:
                await hostile.publish(CAPACITY, data)
            await wait_until(lambda: node.host.guard.is_banned(hostile.peer_id), what="the peer banned")
            await wait_until(lambda: node.host.peer_ids() == [], what="the banned peer disconnected")
            # Refused inbound (its bootstrap loop redials) and outbound.
            with pytest.raises(PeerBannedError):
                await node.host.connect(hostile.listen_addrs[0])
            with contextlib.suppress(DialError):
                await hostile.connect(node.host.listen_addrs[0])  # the handshake may complete...
            # ...but the node closes the connection as it arrives.
            await wait_until(lambda: hostile.peer_ids() == [], what="the banned peer's dial closed")
            assert node.host.peer_ids() == []

            scores = await _dcent_json(capsys, "node", "peers", "--home", home)
            assert scores["banned"] == [hostile.peer_id]
            assert scores["connected"] == []
            (standing,) = scores["scored"]
            assert standing["peer_id"] == hostile.peer_id and standing["bans"] == 1
            assert standing["banned_for_s"] > 0
            assert {"protocol": CAPACITY, "reason": "decode", "count": len(junk)} in scores["refusals"]

            # The text forms name the banned peer and the refused messages.
            capsys.readouterr()
            for argv in (["node", "peers"], ["node", "info"]):
                assert await trio.to_thread.run_sync(main, [*argv, "--home", home]) == 0
            text = capsys.readouterr().out
            assert hostile.peer_id[:20] in text and "decode" in text and node.host.listen_addrs[0] in text

            exposition = render_exposition(await collect_node_metrics(node))
            assert (
                f'dcent_p2p_refusals_total{{protocol="{CAPACITY}",reason="decode"}} {len(junk)}' in exposition
            )
            assert "dcent_p2p_banned_peers 1" in exposition
            nursery.cancel_scope.cancel()


async def test_forged_proposals_garbage_pushes_and_forged_transactions_are_refused_and_scored(
    tmp_path: Path,
) -> None:
    """hostile - B - C. B, a validator holding half the stake, stays at height 1 (no quorum), so a
    height-1 proposal stays current; the hostile peer sends one that is not signed by the round's
    proposer. B refuses it without relaying it to C; B also refuses garbage and votes pushed as
    committed blocks, and transaction batches with a forged or other-chain transaction."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=2)
            b = await net.start(0)
            c = await net.start(2)  # not in the genesis: a follower, connected to B only
            hostile = await hostile_host(nursery, "hostile-streams", b)
            assert b.driver is not None and b.driver.core.height == 1
            genesis_hash = net.genesis.genesis_hash()
            block = Block(
                chain_id=CHAIN_ID,
                height=1,
                time_ms=1,
                parent_hash=genesis_hash,
                proposer=validator_key(1).address.raw,
                txs=(),
                evidence=(),
                last_commit=genesis_certificate(genesis_hash),
                state_hash=bytes(32),
            )
            forger = PrivateKey.from_label("forger")
            forged = Proposal(
                1, 0, -1, block, forger.sign(proposal_sign_bytes(CHAIN_ID, 1, 0, -1, block.hash))
            )
            stream = await hostile.open_stream(b.host.peer_id, PROPOSAL_PROTOCOL)
            await stream.send_frame(encode_message(forged))
            await stream.close()
            await wait_until(lambda: refusals(b, PROPOSAL_PROTOCOL, "signature") == 1, what="forgery refused")

            stream = await hostile.open_stream(b.host.peer_id, SYNC_PUSH_PROTOCOL)
            await stream.send_frame(os.urandom(100))
            await wait_until(
                lambda: refusals(b, SYNC_PUSH_PROTOCOL, "decode") == 1, what="garbage push refused"
            )
            vote = sign_vote(PrivateKey.from_label("not-a-validator"), CHAIN_ID, 1, 0, 1, bytes(32))
            stream = await hostile.open_stream(b.host.peer_id, SYNC_PUSH_PROTOCOL)
            await stream.send_frame(encode_message(vote))
            await wait_until(
                lambda: refusals(b, SYNC_PUSH_PROTOCOL, "invalid") == 1, what="vote push refused"
            )

            # 50 + 25 + 20 so far: one more forgery bans the peer.
            assert b.host.guard.standing(hostile.peer_id).score > 90
            assert not b.host.guard.is_banned(hostile.peer_id)

            transfer = Transfer(bytes(20), 1)
            good = sign_tx(FAUCET, CHAIN_ID, 1, 10_000, transfer)
            forged_tx = good[:-1] + bytes([good[-1] ^ 1])  # the signature's last byte
            other_chain = sign_tx(FAUCET, "another-chain", 1, 10_000, transfer)
            relay = await hostile_host(nursery, "hostile-relay", b)
            stream = await relay.open_stream(b.host.peer_id, TX_PROTOCOL)
            await stream.send_frame(encode([other_chain, good]))  # the batch ends at the first
            await stream.send_frame(encode([forged_tx]))
            await stream.close()
            await wait_until(
                lambda: refusals(b, TX_PROTOCOL, "signature") == refusals(b, TX_PROTOCOL, "wrong_chain") == 1,
                what="forged transactions refused",
            )
            assert len(b.mempool) == 0
            assert b.host.guard.standing(relay.peer_id).refusals == 2

            stream = await hostile.open_stream(b.host.peer_id, PROPOSAL_PROTOCOL)
            await stream.send_frame(encode_message(forged))
            await wait_until(lambda: b.host.guard.is_banned(hostile.peer_id), what="the forger banned")

            # C never got the forgery (it would have refused it too: the same checks).
            assert c.host.peer_ids() == [b.host.peer_id]
            assert refusals(c, PROPOSAL_PROTOCOL, "signature") == 0
            assert c.host.guard.standings() == []
            nursery.cancel_scope.cancel()
