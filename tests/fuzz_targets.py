"""Every decoder of network input, what it may raise, and the Hypothesis strategies that feed it
(no tests here: ``tests/unit/test_fuzz_decoders.py`` runs them briefly, ``bench/fuzz.py`` long).

The contract each :class:`Target` checks: for ANY bytes, the decoder returns a value or raises its
typed rejection, and nothing else. What decodes re-encodes to exactly the input (one encoding per
value), and the first check a node applies to the decoded value (the capacity table, the
consensus core, the negotiation state machines, the delivery check, the mempool) again returns
or raises only its typed rejection.

Inputs come in four families, so the fuzzer reaches past the first ``if``:

- random bytes;
- random canonical msgpack values of any shape (valid encoding, nonsense message);
- valid messages (``tests.wire_samples``) with one to three fields replaced, removed, added,
  retyped, resized or pushed to the integer boundaries, re-encoded canonically; signatures are
  then stale, so this is also "forged signatures" and "wrong chain ids";
- valid encodings cut short, extended, with bytes flipped, wrapped in lists nested deeper than
  allowed, or re-encoded non-canonically (keys out of order, floats for integers, str for bin).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import random
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgpack

# node/ decoders: the consensus envelope and the transaction batch frame.
from node.services import consensus_wire
from protocol.blobs.merkle import BlobManifest
from protocol.blobs.wire import BlobReply, BlobRequest
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import ConsensusConfig
from protocol.consensus.errors import InvalidMessage as InvalidConsensusMessage
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import SyncRequest, SyncResponse
from protocol.consensus.sync import serve_sync_request
from protocol.contracts import ContractFormatError
from protocol.encoding import INT_MAX, INT_MIN, DecodeError, Value, decode, encode
from protocol.ledger.errors import MalformedTx
from protocol.ledger.genesis import genesis_state
from protocol.ledger.tx import decode_tx
from protocol.market import delivery as delivery_wire
from protocol.market import messages as market_wire
from protocol.market.capacity import CapacityTable, decode_announcement
from protocol.market.errors import AnnouncementError, DeliveryRejected, MalformedMessage, MarketError
from protocol.market.matching import Offer
from protocol.market.negotiation import (
    ProviderNegotiation,
    ProviderPolicy,
    RequesterNegotiation,
)
from tests import wire_samples as samples


@dataclass(frozen=True)
class Target:
    """One decoder of bytes from the network."""

    name: str
    decode: Callable[[bytes], object]
    #: The typed rejection(s) the decoder may raise.
    rejects: tuple[type[BaseException], ...]
    #: The canonical bytes of a decoded value (to check that what decodes, re-encodes the same).
    encode: Callable[[object], bytes]
    #: Valid encodings, to mutate.
    seeds: Callable[[], list[bytes]]
    #: The node's first check of a decoded value; may raise only ``then_rejects``.
    then: Callable[[object], object] | None = None
    then_rejects: tuple[type[BaseException], ...] = ()


class UnexpectedException(AssertionError):
    """A decoder or check raised something other than its typed rejection: a crash in a node."""


#: The stack a decoder gets in a node: Python's default recursion limit (1000) less what a trio
#: task of the node already uses. Hypothesis raises the limit while it runs a test, which hid a
#: RecursionError on deeply nested input until the checks ran under this limit.
NODE_STACK_FRAMES = 950


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


@contextlib.contextmanager
def node_stack() -> Iterator[None]:
    """Run the body with as much stack as a node's task has, whoever called us."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + NODE_STACK_FRAMES)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


def check(target: Target, data: bytes) -> str:
    """Feed ``data`` to ``target``; returns ``"rejected"``, ``"refused"`` (decoded, then refused
    by the check) or ``"accepted"``. Raises :class:`UnexpectedException` on anything untyped."""
    with node_stack():
        return _check(target, data)


def _check(target: Target, data: bytes) -> str:
    try:
        value = target.decode(data)
    except target.rejects:
        return "rejected"
    except Exception as exc:
        raise UnexpectedException(f"{target.name}: decode raised {exc!r} on {data.hex()}") from exc
    again = target.encode(value)
    if again != data:
        raise UnexpectedException(f"{target.name}: decoded {data.hex()} re-encodes to {again.hex()}")
    if target.then is None:
        return "accepted"
    try:
        target.then(value)
    except target.then_rejects:
        return "refused"
    except Exception as exc:
        raise UnexpectedException(f"{target.name}: the check raised {exc!r} on {data.hex()}") from exc
    return "accepted"


# --------------------------------------------------------------------------------------------
# The checks a node applies after decoding
# --------------------------------------------------------------------------------------------


def _offer_capacity(value: object) -> None:
    CapacityTable(samples.CHAIN_ID).offer(value, samples.NOW_MS)  # type: ignore[arg-type]


def _fresh_core() -> ConsensusCore:
    """The sample chain's only validator, at height 1 (nothing decided yet)."""
    doc = samples.genesis()
    app = LedgerApp(genesis_state(doc), genesis_hash=doc.genesis_hash())
    core = ConsensusCore(app, key=None, config=ConsensusConfig())
    core.start(samples.NOW_MS)
    return core


def _to_core(value: object) -> None:
    _fresh_core().receive(value, samples.NOW_MS + 1)  # type: ignore[arg-type]


def _sync_response_to_core(value: object) -> None:
    core = _fresh_core()
    for committed in value.blocks:  # type: ignore[attr-defined]
        core.receive(committed, samples.NOW_MS + 1)


def _serve_sync(value: object) -> None:
    committed = samples.committed_block()
    serve_sync_request(
        value,  # type: ignore[arg-type]
        last_height=1,
        load=lambda height: committed if height == 1 else None,
    )


def _requester_negotiation() -> RequesterNegotiation:
    request = samples.quote_request()
    offer = Offer(
        provider=samples.PROVIDER.public_key.raw,
        peer_id=samples.NODE_PEER_ID,
        price_per_gpu_second=1_000,
        collateral=10 * 10**9,
        stake=100 * 10**9,
        gpu_uuids=(samples.GPU_UUID,),
        eligible_gpu_uuids=(samples.GPU_UUID,),
        simulated=True,
        unenforced_limits=(),
        sequence=samples.NOW_MS,
        expires_at_ms=samples.NOW_MS + 30_000,
    )
    return RequesterNegotiation(
        key=samples.REQUESTER,
        chain_id=samples.CHAIN_ID,
        spec=request.spec,
        offer=offer,
        nonce=request.nonce,
        deadline_height=request.deadline_height,
    )


def _policy() -> ProviderPolicy:
    return ProviderPolicy(
        key=samples.PROVIDER,
        chain_id=samples.CHAIN_ID,
        price_per_gpu_second=1_000,
        collateral=10 * 10**9,
        executors=frozenset({"bubblewrap"}),
        limits=samples.announcement().limits,
    )


def _negotiate(value: object) -> None:
    """Each market message, to the side that receives it, in the state that expects it."""
    now = samples.NOW_MS
    if isinstance(value, market_wire.QuoteRequest):
        ProviderNegotiation(_policy()).receive_request(
            value, now_ms=now, free_gpus=[samples.gpu()], min_deadline_height=1
        )
    elif isinstance(value, market_wire.ContractProposal):
        provider = ProviderNegotiation(_policy())
        provider.receive_request(
            samples.quote_request(), now_ms=now, free_gpus=[samples.gpu()], min_deadline_height=1
        )
        provider.receive(value, now)
    else:
        requester = _requester_negotiation()
        requester.start(now)
        if isinstance(value, market_wire.ContractAccepted):
            # The provider's own quote (same terms as the sample's), then our contract sent.
            requester.receive_quote(_quote_for(requester), now)
            requester.propose_contract(now)
        requester.receive(value, now)  # type: ignore[arg-type]


def _quote_for(requester: RequesterNegotiation) -> market_wire.Quote:
    provider = ProviderNegotiation(_policy())
    quote = provider.receive_request(
        requester.request, now_ms=samples.NOW_MS, free_gpus=[samples.gpu()], min_deadline_height=1
    )
    assert isinstance(quote, market_wire.Quote)
    return quote


def _check_delivery(value: object) -> None:
    delivery_wire.check_delivery(samples.terms(), value, output_limit_bytes=2**20)  # type: ignore[arg-type]


def _verify_started(value: object) -> None:
    value.verify(samples.terms())  # type: ignore[attr-defined]


def _decode_tx_batch(data: bytes) -> list[bytes]:
    """What ``/dcent/tx/1.0.0``'s receiver does with a frame before admitting its transactions."""
    batch = decode(data)
    if type(batch) is not list or not all(type(raw) is bytes for raw in batch):
        raise DecodeError("a transaction batch is a list of byte strings")
    return batch  # type: ignore[return-value]


def _decode_each_tx(value: object) -> None:
    for raw in value:  # type: ignore[attr-defined]
        try:
            decode_tx(raw)
        except MalformedTx:
            continue


# --------------------------------------------------------------------------------------------
# The targets
# --------------------------------------------------------------------------------------------


def _record_encode(value: object) -> bytes:
    return value.encode()  # type: ignore[attr-defined,no-any-return]


def _samples(*builders: Callable[[], object]) -> Callable[[], list[bytes]]:
    return lambda: [_record_encode(build()) for build in builders]


def _market_seeds() -> list[bytes]:
    return [
        market_wire.encode_message(m)
        for m in (
            samples.quote_request(),
            samples.quote(),
            samples.contract_proposal(),
            samples.contract_accepted(),
            samples.refusal(),
        )
    ]


def _consensus_seeds() -> list[bytes]:
    decided = samples.decided_height()
    return [
        consensus_wire.encode_message(m)
        for m in (
            decided.prevote,
            decided.precommit,
            decided.proposal,
            samples.evidence(),
            samples.committed_block(),
        )
    ]


TARGETS: tuple[Target, ...] = (
    Target(
        "canonical msgpack (protocol.encoding.decode)",
        decode,
        (DecodeError,),
        encode,
        lambda: [encode({"a": [1, -1, b"x", "y", True]})],
    ),
    Target(
        "capacity announcement (gossip /dcent/<chain>/capacity/1)",
        decode_announcement,
        (DecodeError,),
        _record_encode,
        _samples(samples.announcement),
        _offer_capacity,
        (AnnouncementError,),
    ),
    Target(
        "consensus message (gossip /dcent/<chain>/consensus/1, /dcent/consensus/proposal/1.0.0, "
        "/dcent/sync/push/1.0.0)",
        consensus_wire.decode_message,
        (DecodeError,),
        lambda value: consensus_wire.encode_message(value),  # type: ignore[arg-type]
        _consensus_seeds,
        _to_core,
        (InvalidConsensusMessage,),
    ),
    Target(
        "sync request (/dcent/sync/1.0.0)",
        SyncRequest.decode,
        (DecodeError,),
        _record_encode,
        _samples(samples.sync_request),
        _serve_sync,
        (InvalidConsensusMessage,),
    ),
    Target(
        "sync response (/dcent/sync/1.0.0)",
        SyncResponse.decode,
        (DecodeError,),
        _record_encode,
        _samples(samples.sync_response),
        _sync_response_to_core,
        (InvalidConsensusMessage,),
    ),
    Target(
        "transaction (in /dcent/tx/1.0.0 batches, in blocks)",
        decode_tx,
        (MalformedTx,),
        lambda tx: tx.raw,  # type: ignore[attr-defined]
        lambda: list(samples.txs_of_every_kind().values()),
    ),
    Target(
        "transaction batch (/dcent/tx/1.0.0)",
        _decode_tx_batch,
        (DecodeError,),
        encode,
        lambda: [encode(list(samples.txs_of_every_kind().values())[:3])],
        _decode_each_tx,
        (),
    ),
    Target(
        "market message (/dcent/market/1.0.0)",
        market_wire.decode_message,
        (MalformedMessage,),
        lambda value: market_wire.encode_message(value),  # type: ignore[arg-type]
        _market_seeds,
        _negotiate,
        (MarketError, ContractFormatError),
    ),
    Target(
        "delivery header (/dcent/result/2.0.0, first frame)",
        delivery_wire.decode_header,
        (MalformedMessage,),
        _record_encode,
        _samples(samples.delivery_header),
    ),
    Target(
        "result delivery (/dcent/result/2.0.0, request)",
        delivery_wire.decode_delivery,
        (MalformedMessage,),
        _record_encode,
        _samples(samples.delivery),
        _check_delivery,
        (DeliveryRejected,),
    ),
    Target(
        "delivery answer (/dcent/result/2.0.0, response)",
        delivery_wire.decode_answer,
        (MalformedMessage,),
        lambda value: delivery_wire.encode_answer(value),  # type: ignore[arg-type]
        lambda: [
            delivery_wire.encode_answer(samples.delivery_ack()),
            delivery_wire.encode_answer(samples.delivery_ready()),
            delivery_wire.encode_answer(samples.refusal()),
        ],
    ),
    Target(
        "job output (/dcent/joblog/1.0.0)",
        delivery_wire.decode_output,
        (MalformedMessage,),
        _record_encode,
        _samples(samples.job_output),
    ),
    Target(
        "job started (/dcent/jobstatus/1.0.0)",
        delivery_wire.JobStarted.decode,
        (DecodeError,),
        _record_encode,
        _samples(samples.job_started),
        _verify_started,
        (),
    ),
    Target(
        "blob request (/dcent/blob/1.0.0)",
        BlobRequest.decode,
        (DecodeError,),
        _record_encode,
        lambda: [r.encode() for r in samples.blob_requests().values()],
    ),
    Target(
        "blob reply (/dcent/blob/1.0.0)",
        BlobReply.decode,
        (DecodeError,),
        _record_encode,
        lambda: [r.encode() for r in samples.blob_replies().values()],
    ),
    Target(
        "blob manifest (/dcent/blob/1.0.0, have)",
        BlobManifest.decode,
        (DecodeError,),
        _record_encode,
        _samples(samples.blob_manifest),
        lambda manifest: manifest.content_id(),  # type: ignore[attr-defined]
        (),
    ),
)

TARGETS_BY_NAME = {target.name: target for target in TARGETS}
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
#
# Inputs are built from a "tape" of choices, as libFuzzer's FuzzedDataProvider does: the unit
# tests let Hypothesis write the tape (``st.binary``), so it explores and shrinks; the benchmark
# reads it from a Hypothesis-seeded ``random.Random``, because Hypothesis spends about a
# millisecond per example of its own, and a tape cut into many inputs is what reaches hundreds of
# thousands of them in minutes.

BOUNDARY_INTS = (0, 1, -1, 2, 255, 256, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, INT_MAX, INT_MIN, -(2**31))
_TEXT_PALETTE = (
    "abcxyz09_-/.",
    "ABC \t\n\r\x00\x7f",
    "\u00e9\u202e\u200b\u2028\ufeff\U0001f600",
    "GPU-SIM-",
    "12D3KooW",
)


class Tape:
    """Choices read from bytes (then zeros once they run out) or from a random generator."""

    def __init__(self, data: bytes = b"", rng: random.Random | None = None) -> None:
        self._data = data
        self._pos = 0
        self._rng = rng

    def byte(self) -> int:
        if self._rng is not None:
            return self._rng.getrandbits(8)
        if self._pos < len(self._data):
            self._pos += 1
            return self._data[self._pos - 1]
        return 0

    def integer(self, low: int, high: int) -> int:
        span = high - low
        if span <= 0:
            return low
        if self._rng is not None:
            return self._rng.randint(low, high)
        raw = 0
        for _ in range((span.bit_length() + 7) // 8):
            raw = raw << 8 | self.byte()
        return low + raw % (span + 1)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def binary(self, max_size: int) -> bytes:
        size = self.integer(0, max_size)
        if self._rng is not None:
            return self._rng.randbytes(size)
        return bytes(self.byte() for _ in range(size))

    def text(self, max_size: int) -> str:
        return "".join(self.choice(self.choice(_TEXT_PALETTE)) for _ in range(self.integer(0, max_size)))

    def int64(self) -> int:
        kind = self.integer(0, 3)
        if kind == 0:
            return self.choice(BOUNDARY_INTS)
        if kind == 1:
            return self.integer(-300, 300)
        return self.integer(INT_MIN, INT_MAX)

    def value(self, depth: int = 0) -> Value:
        """Any canonical value: scalars, and lists and maps (shallow, small)."""
        kind = self.integer(0, 6 if depth < 3 else 4)
        if kind == 0:
            return self.int64()
        if kind == 1:
            return self.byte() & 1 == 1
        if kind == 2:
            return self.binary(80)
        if kind in (3, 4):
            return self.text(24)
        if kind == 5:
            return [self.value(depth + 1) for _ in range(self.integer(0, 4))]
        return {self.text(8): self.value(depth + 1) for _ in range(self.integer(0, 4))}


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every position in a wire value: map keys and list indexes, depth first."""
    found: list[tuple[object, ...]] = [prefix]
    if isinstance(value, dict):
        for key in sorted(value):
            found += _paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _get(value: object, path: tuple[object, ...]) -> object:
    for step in path:
        value = value[step]  # type: ignore[index]
    return value


def _replacement(tape: Tape, old: object) -> object:
    """A new value for a field: of another type, or the same type pushed out of range."""
    kind = tape.integer(0, 7)
    if kind == 0:
        return tape.value()
    if kind == 1:
        return tape.choice(BOUNDARY_INTS)
    if isinstance(old, bytes) and kind < 5:
        return tape.choice(
            [b"", old[:-1], old + b"\x00", bytes(len(old)), old[::-1], b"\xff" * (len(old) + 1)]
        )
    if isinstance(old, str) and kind < 5:
        return tape.choice(["", old + "\x00", old.upper(), "\u202e" + old, old * 40, "x" * 2000])
    if isinstance(old, int) and not isinstance(old, bool) and kind < 5:
        grown = [old + 1, old - 1, -old, old * 2**20, INT_MAX, INT_MIN]
        return tape.choice([v for v in grown if INT_MIN <= v <= INT_MAX])
    if isinstance(old, list) and kind < 5:
        return tape.choice([[], old * 2, old[1:], [*old, tape.value()]])
    # Another type altogether.
    return tape.choice([0, -1, True, b"", "", [], {}, [old], {"x": old}])


def _mutate_once(tape: Tape, value: object, paths: list[tuple[object, ...]]) -> object:
    path = tape.choice(paths)
    if not path:
        return _replacement(tape, value)
    parent = _get(value, path[:-1])
    key = path[-1]
    old = _get(value, path)
    action = tape.integer(0, 9)
    if isinstance(parent, dict) and action == 0:
        del parent[key]  # type: ignore[arg-type]
    elif isinstance(parent, dict) and action == 1:
        parent[tape.text(10)] = tape.value()
    elif isinstance(parent, list) and action == 0:
        del parent[key]  # type: ignore[call-overload]
    elif isinstance(parent, list) and action == 1:
        parent.insert(key, copy.deepcopy(old))  # type: ignore[arg-type]
    else:
        parent[key] = _replacement(tape, old)  # type: ignore[index]
    return value


def mutated_message(tape: Tape, seeds: list[bytes]) -> bytes:
    """A valid message with one to three fields changed, re-encoded canonically."""
    seed = tape.choice(seeds)
    value = msgpack.unpackb(seed)  # a fresh copy to change
    paths = _seed_paths(seed)
    for _ in range(tape.integer(1, 3)):
        value = _mutate_once(tape, value, paths)
        paths = _paths(value)
    return encode(value)


@functools.lru_cache(maxsize=256)
def _seed_paths(seed: bytes) -> list[tuple[object, ...]]:
    return _paths(decode(seed))


def _non_canonical(value: object, how: str) -> object:
    if isinstance(value, dict):
        items = [(k, _non_canonical(v, how)) for k, v in value.items()]
        return dict(reversed(items)) if how == "unsorted" else dict(items)
    if isinstance(value, list):
        return [_non_canonical(v, how) for v in value]
    if how == "float" and type(value) is int and abs(value) < 2**53:
        return float(value)
    if how == "bin-as-str" and isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def mangled_bytes(tape: Tape, seeds: list[bytes]) -> bytes:
    """A valid encoding cut, extended, flipped, spliced, or re-encoded non-canonically."""
    data = bytearray(tape.choice(seeds))
    how = tape.choice(["cut", "extend", "flip", "splice", "unsorted", "float", "bin-as-str", "ints", "nest"])
    if how == "cut":
        return bytes(data[: tape.integer(0, max(0, len(data) - 1))])
    if how == "extend":
        return bytes(data) + tape.binary(16) + b"\x00"
    if how == "flip":
        for _ in range(tape.integer(1, 4)):
            data[tape.integer(0, len(data) - 1)] ^= 1 << tape.integer(0, 7)
        return bytes(data)
    if how == "splice":
        start = tape.integer(0, len(data))
        end = tape.integer(start, len(data))
        return bytes(data[:start]) + tape.binary(32) + bytes(data[end:])
    if how == "nest":
        # Wrapped in lists or maps as deep as msgpack allows and beyond (Python's recursion limit
        # is about as deep as msgpack's own limit).
        depth = tape.choice([33, 500, 999, 1000, 1010, 1024, 1025, 5000])
        wrapper = tape.choice([b"\x91", b"\x81\xa1m"])
        return wrapper * depth + bytes(data)
    if how == "ints":
        # The first small int after the first byte, as a non-minimal uint32: same number, longer.
        for index, byte in enumerate(data):
            if byte < 0x80 and index > 0:
                return bytes(data[:index]) + b"\xce" + struct.pack(">I", byte) + bytes(data[index + 1 :])
        return bytes(data)
    return msgpack.packb(_non_canonical(decode(bytes(data)), how), use_bin_type=True)  # type: ignore[no-any-return]


@functools.cache
def seeds_of(name: str) -> list[bytes]:
    return TARGETS_BY_NAME[name].seeds()


def generate(target: Target, tape: Tape) -> bytes:
    """One input for ``target``, from one of the four families (mutations twice as often)."""
    seeds = seeds_of(target.name)
    family = tape.integer(0, 5)
    if family == 0:
        return tape.binary(512)
    if family == 1:
        return encode(tape.value())
    if family == 5:
        return mangled_bytes(tape, seeds)
    return mutated_message(tape, seeds)


__all__ = [
    "TARGETS",
    "TARGETS_BY_NAME",
    "Tape",
    "Target",
    "UnexpectedException",
    "check",
    "generate",
    "node_stack",
    "seeds_of",
]
