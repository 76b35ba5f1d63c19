"""Consensus wire messages: frozen records that validate their own fields when built.

Signatures are domain-separated (:func:`protocol.encoding.sign_bytes`) by chain id and kind:
a vote signs ``["vote", height, round, type, block_hash, validator]`` under the ``"vote"``
domain, a proposal signs ``[height, round, pol_round, block_hash]`` under ``"proposal"``. A
precommit inside a commit certificate is the very same signed vote, stored without the fields
the certificate already states once.

``block_hash == b""`` is nil: a vote for no block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.consensus.errors import InvalidMessage
from protocol.crypto import ADDRESS_LEN, SIGNATURE_LEN, PrivateKey
from protocol.encoding import Record, encode, sign_bytes

HASH_LEN = 32
NIL = b""
MAX_ROUND = 2**31 - 1
MAX_HEIGHT = 2**63 - 1
MAX_TIME_MS = 2**63 - 1
#: The time of block 1: its ``last_commit`` is the genesis pseudo-certificate, which holds no
#: precommits to take a median of.
GENESIS_BLOCK_TIME_MS = 0
MAX_TXS_PER_BLOCK = 10_000
#: Encoded bytes a valid block may take (issue 14): a proposal larger than this is refused by
#: every honest validator (prevote nil), so a proposer cannot stuff a block that the others could
#: not receive and execute inside their propose timeout. Checked by the application
#: (:func:`block_size`), not by decoding, so the refusal is an ordinary nil prevote.
MAX_BLOCK_BYTES = 4 * 1024 * 1024
MAX_EVIDENCE_PER_BLOCK = 100
MAX_CERTIFICATE_SIGNATURES = 10_000

# Vote types.
PREVOTE = 1
PRECOMMIT = 2
VOTE_TYPE_NAMES = {PREVOTE: "prevote", PRECOMMIT: "precommit"}

# Steps of a round, ordered: the sign guard compares (height, round, step) lexicographically.
STEP_NONE = 0
STEP_PROPOSE = 1
STEP_PREVOTE = 2
STEP_PRECOMMIT = 3
STEP_NAMES = {
    STEP_NONE: "none",
    STEP_PROPOSE: "propose",
    STEP_PREVOTE: "prevote",
    STEP_PRECOMMIT: "precommit",
}
STEP_OF_VOTE = {PREVOTE: STEP_PREVOTE, PRECOMMIT: STEP_PRECOMMIT}

VOTE_DOMAIN = "vote"
PROPOSAL_DOMAIN = "proposal"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidMessage(message)


def _check_height(height: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    _check(type(height) is int and low <= height <= MAX_HEIGHT, f"height {height!r} out of range")


def _check_round(round_: int) -> None:
    _check(type(round_) is int and 0 <= round_ <= MAX_ROUND, f"round {round_!r} out of range")


def _check_hash(value: bytes, what: str, *, nil_ok: bool = False) -> None:
    ok = len(value) == HASH_LEN or (nil_ok and value == NIL)
    _check(type(value) is bytes and ok, f"{what} must be {HASH_LEN} bytes{' or empty' if nil_ok else ''}")


def _check_address(value: bytes, what: str) -> None:
    _check(type(value) is bytes and len(value) == ADDRESS_LEN, f"{what} must be a {ADDRESS_LEN}-byte address")


def _check_time(value: int, what: str) -> None:
    _check(type(value) is int and 0 <= value <= MAX_TIME_MS, f"{what} {value!r} out of range")


def _check_signature(value: bytes) -> None:
    _check(type(value) is bytes and len(value) == SIGNATURE_LEN, f"a signature is {SIGNATURE_LEN} bytes")


# --------------------------------------------------------------------------------------------
# Votes
# --------------------------------------------------------------------------------------------


def vote_sign_bytes(
    chain_id: str,
    height: int,
    round_: int,
    vote_type: int,
    block_hash: bytes,
    validator: bytes,
    time_ms: int = 0,
) -> bytes:
    """What a validator signs for a vote (its clock reading included: see ``Vote.time_ms``)."""
    return sign_bytes(
        chain_id, VOTE_DOMAIN, encode([height, round_, vote_type, block_hash, validator, time_ms])
    )


@dataclass(frozen=True, slots=True)
class Vote(Record):
    height: int
    round: int
    type: int
    block_hash: bytes
    validator: bytes
    signature: bytes
    #: The validator's clock when it signed (ms). The precommits in a block's ``last_commit``
    #: fix that block's time: their stake-weighted median (BFT time, see ``bft_time``).
    time_ms: int = 0

    def __post_init__(self) -> None:
        _check_height(self.height)
        _check_round(self.round)
        _check(self.type in VOTE_TYPE_NAMES, f"unknown vote type {self.type!r}")
        _check_hash(self.block_hash, "vote block hash", nil_ok=True)
        _check_address(self.validator, "vote validator")
        _check_signature(self.signature)
        _check_time(self.time_ms, "vote time")

    @property
    def is_nil(self) -> bool:
        return self.block_hash == NIL

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(
            chain_id, self.height, self.round, self.type, self.block_hash, self.validator, self.time_ms
        )

    def __repr__(self) -> str:
        target = "nil" if self.is_nil else self.block_hash[:4].hex()
        return (
            f"Vote({VOTE_TYPE_NAMES[self.type]} h={self.height} r={self.round} {target} "
            f"by {self.validator[:4].hex()})"
        )


def sign_vote(
    key: PrivateKey,
    chain_id: str,
    height: int,
    round_: int,
    vote_type: int,
    block_hash: bytes,
    time_ms: int = 0,
) -> Vote:
    """A vote signed by ``key`` (the consensus core signs through its sign guard instead)."""
    validator = key.address.raw
    payload = vote_sign_bytes(chain_id, height, round_, vote_type, block_hash, validator, time_ms)
    return Vote(height, round_, vote_type, block_hash, validator, key.sign(payload), time_ms)


# --------------------------------------------------------------------------------------------
# Commit certificates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitSignature(Record):
    validator: bytes
    signature: bytes
    time_ms: int = 0

    def __post_init__(self) -> None:
        _check_address(self.validator, "certificate signer")
        _check_signature(self.signature)
        _check_time(self.time_ms, "precommit time")


@dataclass(frozen=True, slots=True)
class CommitCertificate(Record):
    """Precommits of more than 2/3 of a height's power for one block, in one round.

    Height 0 is the genesis pseudo-certificate: no signatures, ``block_hash`` is the genesis hash.
    """

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]

    def __post_init__(self) -> None:
        _check_height(self.height, allow_zero=True)
        _check_round(self.round)
        _check_hash(self.block_hash, "certificate block hash")
        _check(len(self.signatures) <= MAX_CERTIFICATE_SIGNATURES, "too many certificate signatures")

    @property
    def signers(self) -> tuple[bytes, ...]:
        return tuple(entry.validator for entry in self.signatures)

    def precommits(self) -> Iterator[Vote]:
        """The signed precommits this certificate stands for."""
        for entry in self.signatures:
            yield Vote(
                self.height,
                self.round,
                PRECOMMIT,
                self.block_hash,
                entry.validator,
                entry.signature,
                entry.time_ms,
            )


def certificate_from_votes(
    height: int, round_: int, block_hash: bytes, votes: list[Vote]
) -> CommitCertificate:
    """A certificate from precommits for ``block_hash``, signers in ascending address order."""
    entries = sorted(
        (CommitSignature(v.validator, v.signature, v.time_ms) for v in votes if v.block_hash == block_hash),
        key=lambda entry: entry.validator,
    )
    return CommitCertificate(height, round_, block_hash, tuple(entries))


def genesis_certificate(genesis_hash: bytes) -> CommitCertificate:
    return CommitCertificate(0, 0, genesis_hash, ())


# --------------------------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence(Record):
    """Two votes by one validator for the same (height, round, type) and different blocks.

    Canonical form: ``vote_a.block_hash < vote_b.block_hash``, so one pair has one encoding.
    Whether the pair is canonical, really conflicts and is really signed is checked by
    :func:`protocol.consensus.evidence.verify_evidence`, which needs the validator set.
    """

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def from_votes(cls, first: Vote, second: Vote) -> DuplicateVoteEvidence:
        """The canonical pair (block-hash order); whether it proves anything is checked later."""
        low, high = (first, second) if first.block_hash < second.block_hash else (second, first)
        return cls(low, high)

    @property
    def height(self) -> int:
        return self.vote_a.height

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator


# --------------------------------------------------------------------------------------------
# Blocks and proposals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block(Record):
    """A block: the parent's commit certificate, transactions, evidence, and the state it yields.

    ``state_hash`` is the ledger state hash after executing this block, so a commit certificate
    for the block also certifies the state. ``time_ms`` is BFT time: the stake-weighted median
    of the precommit times in ``last_commit`` (:func:`protocol.consensus.certificate.bft_time`),
    so no proposer chooses it and it stays within the honest validators' clocks; strictly
    increasing along the chain. The ledger measures periods in blocks and never reads it.
    """

    chain_id: str
    height: int
    time_ms: int
    parent_hash: bytes
    proposer: bytes
    txs: tuple[bytes, ...]
    evidence: tuple[DuplicateVoteEvidence, ...]
    last_commit: CommitCertificate
    state_hash: bytes

    def __post_init__(self) -> None:
        _check(type(self.chain_id) is str and 0 < len(self.chain_id) <= 64, "bad chain id")
        _check_height(self.height)
        _check_time(self.time_ms, "block time")
        _check_hash(self.parent_hash, "parent hash")
        _check_address(self.proposer, "block proposer")
        _check(len(self.txs) <= MAX_TXS_PER_BLOCK, "too many transactions")
        _check(all(len(tx) > 0 for tx in self.txs), "an empty transaction")
        _check(len(self.evidence) <= MAX_EVIDENCE_PER_BLOCK, "too much evidence")
        _check(self.last_commit.height == self.height - 1, "last commit is not for the parent height")
        _check(self.last_commit.block_hash == self.parent_hash, "last commit is not for the parent block")
        _check_hash(self.state_hash, "state hash")

    @property
    def hash(self) -> bytes:
        return block_hash(self)

    def __repr__(self) -> str:
        return f"Block(h={self.height} {self.hash[:4].hex()} txs={len(self.txs)} ev={len(self.evidence)})"


_BLOCK_HASH_CACHE = 4096
#: id(block) -> (block, hash, encoded size). Keyed by identity, because hashing a frozen
#: dataclass walks all of its fields; holding the block keeps its id from being reused while the
#: entry lives.
_block_hashes: dict[int, tuple[Block, bytes, int]] = {}


def _encoded_facts(block: Block) -> tuple[bytes, int]:
    entry = _block_hashes.get(id(block))
    if entry is not None and entry[0] is block:
        return entry[1], entry[2]
    data = block.encode()
    digest = hashlib.sha256(b"dcent/block/v1" + data).digest()
    if len(_block_hashes) >= _BLOCK_HASH_CACHE:
        del _block_hashes[next(iter(_block_hashes))]
    _block_hashes[id(block)] = (block, digest, len(data))
    return digest, len(data)


def block_hash(block: Block) -> bytes:
    """The block id: sha256 over the canonical encoding (memoised; blocks are immutable)."""
    return _encoded_facts(block)[0]


def block_size(block: Block) -> int:
    """The block's canonical encoded length in bytes (memoised with its hash)."""
    return _encoded_facts(block)[1]


def tx_bytes_budget(draft: Block, max_bytes: int = MAX_BLOCK_BYTES) -> int:
    """What a proposer may spend on transactions, counted with :func:`tx_wire_cost` each, so that
    ``draft`` (everything but its transactions, which it must not hold yet) stays within
    ``max_bytes`` once they are in. The reserve covers the list header growing to its widest."""
    if draft.txs:
        raise ValueError("the draft must not hold transactions")
    return max_bytes - block_size(draft) - _LIST_HEADER_RESERVE


#: A msgpack array header grows from 1 byte (up to 15 items) to at most 5.
_LIST_HEADER_RESERVE = 4


def tx_wire_cost(raw: bytes) -> int:
    """A transaction's bytes in an encoded block: its length plus its msgpack bin header."""
    size = len(raw)
    return size + (2 if size < 0x100 else 3 if size < 0x10000 else 5)


def proposal_sign_bytes(chain_id: str, height: int, round_: int, pol_round: int, block_id: bytes) -> bytes:
    return sign_bytes(chain_id, PROPOSAL_DOMAIN, encode([height, round_, pol_round, block_id]))


@dataclass(frozen=True, slots=True)
class Proposal(Record):
    """The proposer of (height, round) proposes ``block``; ``pol_round`` is its valid round or -1."""

    height: int
    round: int
    pol_round: int
    block: Block
    signature: bytes

    def __post_init__(self) -> None:
        _check_height(self.height)
        _check_round(self.round)
        _check(type(self.pol_round) is int and -1 <= self.pol_round < self.round, "pol_round out of range")
        _check(self.block.height == self.height, "proposal and block heights differ")
        _check_signature(self.signature)

    def sign_bytes(self, chain_id: str) -> bytes:
        return proposal_sign_bytes(chain_id, self.height, self.round, self.pol_round, self.block.hash)

    def __repr__(self) -> str:
        return f"Proposal(h={self.height} r={self.round} pol={self.pol_round} {self.block!r})"


@dataclass(frozen=True, slots=True)
class CommittedBlock(Record):
    """A decided block with the certificate of its own commit: what block sync carries."""

    block: Block
    certificate: CommitCertificate

    def __post_init__(self) -> None:
        _check(self.certificate.height == self.block.height, "certificate is for another height")
        _check(self.certificate.block_hash == self.block.hash, "certificate is for another block")


@dataclass(frozen=True, slots=True)
class SyncRequest(Record):
    """Ask a peer for its committed blocks from ``from_height`` on, at most ``max_blocks``."""

    from_height: int
    max_blocks: int

    def __post_init__(self) -> None:
        _check_height(self.from_height)
        _check(type(self.max_blocks) is int and 1 <= self.max_blocks <= 1000, "max_blocks out of range")


@dataclass(frozen=True, slots=True)
class SyncResponse(Record):
    blocks: tuple[CommittedBlock, ...]

    def __post_init__(self) -> None:
        _check(len(self.blocks) <= 1000, "too many blocks in one response")


# --------------------------------------------------------------------------------------------
# Persisted signer state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignState(Record):
    """What a validator persists BEFORE broadcasting anything it signed.

    ``(height, round, step)`` is the highest step signed; ``last_votes`` (the prevote and/or
    precommit signed in that round) and ``last_proposal`` are re-broadcast after a restart and
    never re-signed differently. The
    lock and the valid value survive restarts, so a restarted validator keeps its promises.
    Optional fields are tuples of length 0 or 1.
    """

    height: int
    round: int
    step: int
    last_votes: tuple[Vote, ...] = ()
    last_proposal: tuple[Proposal, ...] = ()
    locked_round: int = -1
    locked_block: tuple[Block, ...] = ()
    valid_round: int = -1
    valid_block: tuple[Block, ...] = ()
    #: The 2f+1 prevotes for the valid block in the valid round: the proof others need to
    #: accept it when we re-propose it (and to release their locks). Vote sets are not
    #: persisted, so without it a restarted validator could stay locked forever.
    valid_pol: tuple[Vote, ...] = ()

    def __post_init__(self) -> None:
        _check_height(self.height, allow_zero=True)
        _check_round(self.round)
        _check(self.step in STEP_NAMES, f"unknown step {self.step!r}")
        _check(len(self.last_votes) <= 2 and len(self.last_proposal) <= 1, "too many last messages")
        _check(len(self.locked_block) <= 1 and len(self.valid_block) <= 1, "at most one locked/valid block")
        _check((self.locked_round == -1) == (not self.locked_block), "locked round without block")
        _check((self.valid_round == -1) == (not self.valid_block), "valid round without block")
        _check(
            all(v.round == self.valid_round and v.height == self.height for v in self.valid_pol),
            "valid POL votes must be from the valid round",
        )

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)
