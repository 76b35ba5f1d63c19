"""What the hostile peers of tests/integration/test_hostile_peers_process.py send: classes of
bad input, each with the verdicts the node's peer guard must count for it (no tests here).

A peer is banned at a score of 100 (four or five undecodable messages, two or three forgeries),
after which everything it sends is dropped unread as "banned". Sent by one peer, most classes
would never be judged: so each class comes from a peer of its own (a new key), and each must show
its own verdicts in the node's counters. Classes that cross the threshold end banned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from node.config import HomePaths, load_key
from node.services.consensus_wire import encode_message
from protocol.blobs.errors import BadBlobRequest
from protocol.blobs.wire import BlobReply
from protocol.consensus.messages import PREVOTE, sign_vote
from protocol.crypto import Address, PrivateKey
from protocol.encoding import encode
from protocol.ledger.tx import Transfer, sign_tx
from protocol.market.capacity import sign_announcement
from tests import wire_samples as samples
from tests.integration.hostile_peer import Expected, HostilePeer, NodeProcess


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


#: A map with its keys out of order (canonical msgpack sorts them), a non-minimal integer.
UNSORTED_MAP = b"\x82\xa1b\x01\xa1a\x02"
NON_MINIMAL_INT = b"\xd0\x05"


# --------------------------------------------------------------------------------------------
# Gossip
# --------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What a class's builder may use: the node, the peer sending, the topic, a seeded rng."""

    node: NodeProcess
    hostile: HostilePeer
    topic: str
    rng: random.Random
    height: int
    spoofed: Any  # another peer's id (the observer's), to claim as originator

    @property
    def peer(self) -> str:
        return str(self.hostile.peer_id)

    @property
    def capacity(self) -> bool:
        return self.topic.endswith("/capacity/1")

    def announcement(self, *, sequence: int, age_ms: int = 0, chain_id: str = "", price: int = 1) -> Any:
        """A capacity announcement of this peer's own (a key of its label), ``age_ms`` old."""
        issued = int(time.time() * 1000) - age_ms
        return sign_announcement(
            PrivateKey.from_label(f"hostile-harness/seller/{self.peer}"),
            chain_id or self.node.chain_id,
            peer_id=self.peer,
            sequence=sequence,
            gpus=(samples.gpu(),),
            price_per_gpu_second=price,
            collateral=0,
            stake=0,
            executors=("bubblewrap",),
            limits=samples.announcement().limits,
            issued_at_ms=issued,
            expires_at_ms=issued + 30_000,
        )

    def vote(self, *, key: PrivateKey | None = None, chain_id: str = "", ahead: int = 20) -> Any:
        """A prevote ``ahead`` heights past the head read before the peer connected (ahead of the
        node still, on a 100 ms chain, once it arrives: a vote that fell below the height before
        the node's is IGNOREd as stale before its signature is judged), by ``key`` (a stranger
        when None)."""
        signer = key or PrivateKey.from_label(f"hostile-harness/stranger/{self.peer}")
        block = hashlib.sha256(b"hostile").digest()
        return sign_vote(signer, chain_id or self.node.chain_id, self.height + ahead, 0, PREVOTE, block)

    def valid(self) -> bytes:
        """A well-formed message of the topic, to cut short, reorder or retype."""
        if self.capacity:
            return bytes(self.announcement(sequence=1).encode())
        return encode_message(self.vote())

    def one_each(self, *payloads: bytes) -> list[list[Any]]:
        """One pubsub RPC per payload."""
        return [[self.hostile.message(self.topic, data)] for data in payloads]


def validator_key_of(node: NodeProcess) -> PrivateKey:
    return load_key(HomePaths(node.home).validator_key)


def _reordered(data: bytes) -> bytes:
    """The same map with its keys in reverse order: a non-canonical encoding of a valid message."""
    value = msgpack.unpackb(data, raw=False)
    return bytes(msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True))


def _retyped(data: bytes, field_name: str, value: object) -> bytes:
    doc = msgpack.unpackb(data, raw=False)
    inner = doc.get("m", doc)  # a consensus message's envelope, or the announcement itself
    inner[field_name] = value
    return encode(doc)


def _random_bytes(c: Context) -> list[list[Any]]:
    return c.one_each(*(c.rng.randbytes(size) for size in (1, 64, 1000)))


def _truncated(c: Context) -> list[list[Any]]:
    valid = c.valid()
    return c.one_each(valid[: len(valid) // 2], valid[:-1])


def _oversize(c: Context) -> list[list[Any]]:
    return c.one_each(*(c.rng.randbytes(300 * 1024) for _ in range(3)))  # over the 256 KiB a node publishes


def _non_canonical(c: Context) -> list[list[Any]]:
    valid = c.valid()
    return c.one_each(NON_MINIMAL_INT, _reordered(valid), valid + b"\x00")


def _wrong_types(c: Context) -> list[list[Any]]:
    valid = c.valid()
    field_name = "sequence" if c.capacity else "height"
    return c.one_each(_retyped(valid, field_name, "seven"), encode({"provider": 7}), encode([1, 2, 3]))


def _forged(c: Context) -> list[list[Any]]:
    """libp2p's forgeries first (a signature over the envelope that does not verify, another
    peer named as originator: py-libp2p drops both before the node's validator, so their
    undecodable payload must count nothing), then dcent's: a signature that is not the signer's."""
    junk = b"\x93\x01\x02"
    rpcs = [
        [c.hostile.message(c.topic, junk, corrupt_signature=True)],
        [c.hostile.message(c.topic, junk, originator=c.spoofed)],
    ]
    if c.capacity:
        forged = dataclasses.replace(c.announcement(sequence=1), price_per_gpu_second=2)  # signed at 1
        return rpcs + c.one_each(forged.encode())
    validator = Address.parse(c.node.info["address"]).raw
    return rpcs + c.one_each(encode_message(dataclasses.replace(c.vote(), validator=validator)))


def _wrong_chain(c: Context) -> list[list[Any]]:
    """Signed for another chain (the chain id is bound by the signature: refused as a forgery),
    and another chain's message as it was (naming another peer; a proposal, not a vote)."""
    if c.capacity:
        other = c.announcement(sequence=1, chain_id="another-chain")
        return c.one_each(other.encode(), samples.announcement().encode())
    own = c.vote(key=validator_key_of(c.node), chain_id="another-chain")
    return c.one_each(encode_message(own), encode_message(samples.decided_height().proposal))


def _replayed_announcement(c: Context) -> list[list[Any]]:
    """This peer's valid announcement (accepted: the one message of it the node may forward),
    the same again twice, and one of an older sequence."""
    newest = c.announcement(sequence=10).encode()
    return c.one_each(newest, newest, newest, c.announcement(sequence=9).encode())


def _flood(c: Context) -> list[list[Any]]:
    """1,500 messages in 30 RPCs, each one that an honest peer may relay and the node ignores
    (an expired announcement, a vote far ahead by an unknown key), so only the rate limit scores."""
    if c.capacity:
        data = c.announcement(sequence=1, age_ms=120_000).encode()
    else:
        data = encode_message(c.vote(ahead=10**6))
    return [[c.hostile.message(c.topic, data) for _ in range(50)] for _ in range(30)]


@dataclass(frozen=True)
class GossipClass:
    name: str
    build: Callable[[Context], list[list[Any]]]
    expected: Expected
    #: How many of its messages the node may forward (a replay's one valid original).
    forwarded: int = 0


_DECODING = [
    GossipClass("random bytes", _random_bytes, Expected({"decode": 3})),
    GossipClass("truncated", _truncated, Expected({"decode": 2})),
    GossipClass("non-canonical", _non_canonical, Expected({"decode": 3})),
    GossipClass("wrong-type fields", _wrong_types, Expected({"decode": 3})),
    GossipClass("forged signatures", _forged, Expected({"signature": 1})),
    GossipClass("wrong chain id", _wrong_chain, Expected({"signature": 1, "invalid": 1})),
]
_OVERSIZE = GossipClass("oversize", _oversize, Expected({"oversize": 2}, exact=False, banned=True))

#: Each class by topic kind, the banning classes last. The consensus topic has no replay class
#: here: replayed authentic votes are tests/integration/test_consensus_replay_attack.py's.
GOSSIP_CLASSES: dict[str, list[GossipClass]] = {
    "capacity": [
        *_DECODING,
        GossipClass("replayed announcement", _replayed_announcement, Expected({"stale": 3}), forwarded=1),
        _OVERSIZE,
        GossipClass("flood", _flood, Expected({"stale": 1, "flood": 20}, exact=False, banned=True)),
    ],
    "consensus": [
        *_DECODING,
        _OVERSIZE,
        GossipClass("flood", _flood, Expected({"unverifiable": 1, "flood": 20}, exact=False, banned=True)),
    ],
}


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def transfer(node: NodeProcess, nonce: int, chain_id: str = "") -> bytes:
    """A signed transfer of 1 from the node's validator account to itself."""
    key = validator_key_of(node)
    return sign_tx(key, chain_id or node.chain_id, nonce, 10**6, Transfer(to=key.address.raw, amount=1))


def _forged_tx(raw: bytes) -> bytes:
    """The transaction with the last byte of its signature (the encoding's last) flipped."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


async def next_nonce(node: NodeProcess) -> int:
    return int((await node.call("account_get", str(validator_key_of(node).address)))["nonce"]) + 1


@dataclass(frozen=True)
class StreamClass:
    """One class of bad streams: ``build(rng, node, nonce)`` gives the wires, one stream each."""

    name: str
    build: Callable[[random.Random, NodeProcess, int], list[bytes]]
    expected: Expected


#: The length prefix over the protocol's limit, and nothing after it (a node reading on would
#: wait for us): its own class, sent by the test's ``announce``.
OVERSIZE = "oversize"

STREAM_CLASSES = [
    StreamClass(OVERSIZE, lambda rng, node, nonce: [], Expected({"oversize": 1})),
    StreamClass(
        "truncated",
        lambda rng, node, nonce: [frame(rng.randbytes(n))[: 4 + n // 2] for n in (64, 200)],
        Expected({"truncated": 2}),
    ),
    StreamClass(
        "random bytes",
        lambda rng, node, nonce: [frame(rng.randbytes(n)) for n in (7, 100)],
        Expected({"decode": 2}),
    ),
    StreamClass(
        "non-canonical",
        lambda rng, node, nonce: [frame(NON_MINIMAL_INT), frame(UNSORTED_MAP)],
        Expected({"decode": 2}),
    ),
    StreamClass(
        "wrong-type fields",
        lambda rng, node, nonce: [frame(encode({"provider": 7})), frame(encode([1, "two"]))],
        Expected({"decode": 2}),
    ),
]

#: Classes only the transaction relay has (a forged or other-chain transaction ends its batch
#: and is scored; a proposal forgery is judged in tests/integration/test_hostile_peers.py, on a
#: chain held at one height, where its height cannot go stale in flight).
TX_CLASSES = [
    StreamClass(
        "forged signatures",
        lambda rng, node, nonce: [frame(encode([_forged_tx(transfer(node, nonce))]))],
        Expected({"signature": 1}),
    ),
    StreamClass(
        "wrong chain id",
        lambda rng, node, nonce: [frame(encode([transfer(node, nonce, "another-chain")]))],
        Expected({"wrong_chain": 1}),
    ),
]

_UNDECODABLE = ("random bytes", "non-canonical", "wrong-type fields")
#: Where a protocol's verdict on a class differs from the class's own: (protocol, class). The
#: blob server answers a request that does not decode with a refusal of its own (BadBlobRequest)
#: and closes the stream, without a word to the guard: judged by that answer, unscored.
STREAM_VERDICTS: dict[tuple[str, str], Expected] = {("blob", name): Expected({}) for name in _UNDECODABLE}
#: The refusal code a protocol answers a class with, where the answer is the verdict.
STREAM_ANSWERS: dict[tuple[str, str], int] = {("blob", name): BadBlobRequest.code for name in _UNDECODABLE}


def refusal_code(answer: bytes) -> int | None:
    """The code of the blob reply that ``answer`` starts with; None when there is none."""
    if len(answer) < 4 or len(answer) < 4 + struct.unpack(">I", answer[:4])[0]:
        return None
    return BlobReply.decode(answer[4 : 4 + struct.unpack(">I", answer[:4])[0]]).code


def stream_classes(name: str) -> list[StreamClass]:
    return STREAM_CLASSES + (TX_CLASSES if name == "tx" else [])
