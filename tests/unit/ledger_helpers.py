"""Shared builders for the foundation tests: deterministic keys, a small test chain, contracts and
receipts, the "rejected and nothing changed" assertions, and the block replay that the
cross-process determinism test runs in a child interpreter (``python -c`` calling
:func:`replay_main`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import strategies as st

from protocol.contracts import (
    OUTCOME_COMPLETED,
    OUTCOME_JOB_FAILED,
    ContractTerms,
    SignedContract,
    UsageReceipt,
)
from protocol.crypto import PrivateKey
from protocol.encoding import decode, encode, sign_bytes
from protocol.ledger.block import BlockContext, BlockResult, Misbehaviour, apply_block
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.staking import delegation_value
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import EscrowClaim, Msg, Settle, decode_tx, sign_tx

CHAIN_ID = "dcent-test-1"
OTHER_CHAIN_ID = "dcent-other-1"

#: Small periods so unbonding, voting, epochs and dispute windows end within a few blocks.
TEST_PARAMS = Params(
    min_fee=10,
    unbonding_period=3,
    min_validator_stake=100,
    gov_min_deposit=1_000,
    gov_voting_period=3,
    epoch_length=4,
    blocks_per_year=10_000,
    dispute_window_blocks=3,
    signed_blocks_window=10,
    downtime_jail_blocks=3,
    # Standing offers within reach of the test balances (protocol.ledger.availability).
    challenge_window=3,
    challenge_deposit=100,
    standing_collateral_per_gpu=1_000,
    standing_max_price=50,
)
FEE = TEST_PARAMS.min_fee

VALIDATOR_LABELS = ("val-0", "val-1", "val-2")
USER_LABELS = ("alice", "bob", "carol", "dave")
ACTOR_LABELS = VALIDATOR_LABELS + USER_LABELS
#: Keys with no genesis allocation: strangers, forgers.
OUTSIDER_LABELS = ("mallory", "erin")
KNOWN_LABELS = ACTOR_LABELS + OUTSIDER_LABELS
GENESIS_STAKE = 1_000_000
GENESIS_BALANCE = 10_000_000


@functools.cache
def key(label: str) -> PrivateKey:
    """The deterministic test key named ``label``."""
    return PrivateKey.from_label(label)


def addr(label: str) -> bytes:
    """The raw address of the test key named ``label``."""
    return key(label).address.raw


def make_genesis(
    params: Params = TEST_PARAMS,
    *,
    stakes: Sequence[tuple[str, int]] | None = None,
    balances: Sequence[tuple[str, int]] | None = None,
) -> Genesis:
    """A genesis with the three test validators and every actor funded (overridable)."""
    if stakes is None:
        stakes = [(label, GENESIS_STAKE) for label in VALIDATOR_LABELS]
    if balances is None:
        balances = [(label, GENESIS_BALANCE) for label in ACTOR_LABELS]
    return dev_genesis(
        CHAIN_ID,
        [(key(label).public_key.raw, stake) for label, stake in stakes],
        [(addr(label), balance) for label, balance in balances],
        params,
    )


class Chain:
    """A ledger state plus the bookkeeping a test needs to build valid transactions for it.

    ``tx()`` hands out consecutive nonces per sender until the next ``block()`` call, so a block
    can carry several transactions of one sender without the test counting nonces.
    """

    def __init__(self, genesis: Genesis | None = None) -> None:
        self.genesis = genesis if genesis is not None else make_genesis()
        self.state = genesis_state(self.genesis)
        self._reserved: dict[bytes, int] = {}

    @property
    def height(self) -> int:
        return self.state.height

    @property
    def params(self) -> Params:
        return self.state.params

    def balance(self, label: str) -> int:
        return self.state.balance(addr(label))

    def nonce(self, label: str) -> int:
        return self.state.account(addr(label)).nonce

    def bonded(self, label: str) -> int:
        """The tokens of ``label``'s validator (0 when it operates none)."""
        info = self.state.validators.get(addr(label))
        return info.bonded if info is not None else 0

    def rewards(self, label: str) -> int:
        """Block rewards ``label``'s validator earned and has not settled yet."""
        info = self.state.validators.get(addr(label))
        return info.rewards if info is not None else 0

    def delegated(self, label: str, validator: str) -> int:
        """What ``label``'s delegation to ``validator``'s validator is worth."""
        return delegation_value(self.state, addr(label), addr(validator))

    def tx(
        self,
        label: str,
        msg: Msg,
        *,
        fee: int | None = None,
        nonce: int | None = None,
        chain_id: str = CHAIN_ID,
    ) -> bytes:
        """A transaction signed by ``label``'s key with its next nonce (or the one given)."""
        sender = addr(label)
        if nonce is None:
            nonce = self._reserved.get(sender, self.state.account(sender).nonce + 1)
            self._reserved[sender] = nonce + 1
        return sign_tx(key(label), chain_id, nonce, self.params.min_fee if fee is None else fee, msg)

    def context(
        self,
        *,
        height: int | None = None,
        signers: Iterable[bytes] = (),
        misbehaviour: Iterable[Misbehaviour] = (),
        voters: Iterable[bytes] = (),
    ) -> BlockContext:
        return BlockContext(
            height=self.height + 1 if height is None else height,
            proposer=addr(VALIDATOR_LABELS[0]),
            signers=tuple(signers),
            misbehaviour=tuple(misbehaviour),
            voters=tuple(voters),
        )

    def block(
        self,
        txs: Sequence[bytes] = (),
        *,
        signers: Iterable[bytes] = (),
        misbehaviour: Iterable[Misbehaviour] = (),
        voters: Iterable[bytes] = (),
    ) -> BlockResult:
        """Apply the next block; checks the supply invariant afterwards."""
        self._reserved.clear()
        ctx = self.context(signers=signers, misbehaviour=misbehaviour, voters=voters)
        result = apply_block(self.state, ctx, txs)
        self.state.check_invariants()
        assert result.state_hash == self.state.state_hash()
        return result

    def advance_to(self, height: int, *, signers: Iterable[bytes] = (), voters: Iterable[bytes] = ()) -> None:
        """Apply empty blocks until the state is at ``height``."""
        signers, voters = tuple(signers), tuple(voters)
        while self.height < height:
            self.block(signers=signers, voters=voters)

    def forget_reserved_nonces(self) -> None:
        self._reserved.clear()


# --- contracts and receipts ----------------------------------------------------------------------


def make_terms(
    requester: str = "alice",
    provider: str = "bob",
    *,
    price: int = 5,
    max_gpu_seconds: int = 100,
    collateral: int = 200,
    deadline: int = 10,
    salt: bytes = b"salt-1",
    chain_id: str = CHAIN_ID,
    payer: str | None = None,
) -> ContractTerms:
    """A contract of ``requester`` with ``provider``; ``payer`` (a label) pays for it instead."""
    return ContractTerms(
        chain_id=chain_id,
        requester=key(requester).public_key.raw,
        provider=key(provider).public_key.raw,
        job_hash=bytes(range(32)),
        gpu_uuids=("GPU-00000000-0000-0000-0000-000000000000",),
        price_per_gpu_second=price,
        max_gpu_seconds=max_gpu_seconds,
        collateral=collateral,
        deadline_height=deadline,
        salt=salt,
        payer=addr(payer) if payer is not None else b"",
    )


def sign_contract(
    terms: ContractTerms, requester_signer: str | None = None, provider_signer: str | None = None
) -> SignedContract:
    """Both parties' signatures; name another signer to forge one of them."""
    requester = requester_signer or label_of(terms.requester)
    provider = provider_signer or label_of(terms.provider)
    return SignedContract(terms, terms.sign(key(requester)), terms.sign(key(provider)))


def make_receipt(
    terms: ContractTerms,
    gpu_seconds: int,
    *,
    chain_id: str | None = None,
    contract_hash: bytes | None = None,
    outcome: str = OUTCOME_COMPLETED,
    gpu_ms: int | None = None,
    exit_status: int | None = None,
    limit: str = "",
) -> UsageReceipt:
    """A usage receipt for ``terms`` (of its chain and contract unless others are named):
    ``gpu_seconds`` of work (``gpu_ms`` overrides it), a completed run unless ``outcome`` says
    otherwise (a failed run exits 1 unless ``exit_status`` is given)."""
    if exit_status is None:
        exit_status = 1 if outcome == OUTCOME_JOB_FAILED else 0
    return UsageReceipt(
        chain_id=terms.chain_id if chain_id is None else chain_id,
        contract_hash=terms.contract_hash() if contract_hash is None else contract_hash,
        outcome=outcome,
        gpu_ms=gpu_seconds * 1000 if gpu_ms is None else gpu_ms,
        exit_status=exit_status,
        output_hash=bytes(32),
        limit=limit,
    )


def settle_msg(
    terms: ContractTerms,
    gpu_seconds: int,
    *,
    chain_id: str | None = None,
    provider_signer: str | None = None,
    requester_signer: str | None = None,
    contract_hash: bytes | None = None,
    outcome: str = OUTCOME_COMPLETED,
    gpu_ms: int | None = None,
) -> Settle:
    """A ``Settle`` whose receipt both parties signed (or the signers named instead)."""
    receipt = make_receipt(
        terms, gpu_seconds, chain_id=chain_id, contract_hash=contract_hash, outcome=outcome, gpu_ms=gpu_ms
    )
    provider = provider_signer or label_of(terms.provider)
    requester = requester_signer or label_of(terms.requester)
    return Settle(receipt, receipt.sign(key(provider)), receipt.sign(key(requester)))


def claim_msg(
    terms: ContractTerms,
    gpu_seconds: int,
    *,
    chain_id: str | None = None,
    provider_signer: str | None = None,
    contract_hash: bytes | None = None,
    outcome: str = OUTCOME_COMPLETED,
) -> EscrowClaim:
    """An ``EscrowClaim`` of a receipt signed by the provider (or the signer named instead)."""
    receipt = make_receipt(
        terms, gpu_seconds, chain_id=chain_id, contract_hash=contract_hash, outcome=outcome
    )
    return EscrowClaim(receipt, receipt.sign(key(provider_signer or label_of(terms.provider))))


def label_of(public_key: bytes) -> str:
    """The label of a test key, from its public key."""
    for label in KNOWN_LABELS:
        if key(label).public_key.raw == public_key:
            return label
    raise KeyError("not a test key; pass the signer's label explicitly")


# --- rejection assertions -------------------------------------------------------------------------


def assert_rejected(
    state: LedgerState, action: Callable[[], object], error: type[LedgerError], code: int
) -> LedgerError:
    """``action()`` fails with exactly ``error`` (whose code is ``code``) and changes nothing."""
    before = state.state_hash()
    with pytest.raises(LedgerError) as caught:
        action()
    assert type(caught.value) is error, f"expected {error.__name__}, got {caught.value!r}"
    assert caught.value.code == code
    assert state.state_hash() == before
    return caught.value


def assert_block_rejected(
    chain: Chain,
    txs: Sequence[bytes],
    error: type[LedgerError],
    code: int,
    *,
    tx_index: int | None = None,
    misbehaviour: Iterable[Misbehaviour] = (),
) -> LedgerError:
    """The next block with ``txs`` is rejected with ``error`` at ``tx_index``; the state keeps its hash."""
    chain.forget_reserved_nonces()
    ctx = chain.context(misbehaviour=misbehaviour)
    exc = assert_rejected(chain.state, lambda: apply_block(chain.state, ctx, txs), error, code)
    if tx_index is not None:
        assert exc.tx_index == tx_index
    return exc


# --- cross-process replay ----------------------------------------------------------------------


def encode_scenario(genesis: Genesis, blocks: Sequence[tuple[BlockContext, Sequence[bytes]]]) -> bytes:
    """Serialize a genesis and a list of attempted blocks (valid or not) for :func:`replay`."""
    return encode(
        {
            "genesis": genesis.to_json(),
            "blocks": [
                {
                    "height": ctx.height,
                    "proposer": ctx.proposer,
                    "signers": list(ctx.signers),
                    "misbehaviour": [[m.validator, m.kind, m.height] for m in ctx.misbehaviour],
                    "voters": list(ctx.voters),
                    "txs": list(txs),
                }
                for ctx, txs in blocks
            ],
        }
    )


def replay(payload: bytes) -> list[str]:
    """Apply every block of an encoded scenario to its genesis state, in order.

    One line per block: ``ok <state hash>`` or ``err <code> <tx index> <state hash>``.
    """
    doc: Any = decode(payload)
    state = genesis_state(Genesis.from_text(doc["genesis"], fmt="json"))
    lines = []
    for block in doc["blocks"]:
        ctx = BlockContext(
            height=block["height"],
            proposer=block["proposer"],
            signers=tuple(block["signers"]),
            misbehaviour=tuple(Misbehaviour(v, kind, h) for v, kind, h in block["misbehaviour"]),
            voters=tuple(block["voters"]),
        )
        try:
            apply_block(state, ctx, block["txs"])
        except LedgerError as exc:
            lines.append(f"err {exc.code} {exc.tx_index} {state.state_hash().hex()}")
        else:
            lines.append(f"ok {state.state_hash().hex()}")
    return lines


def replay_main() -> None:
    """Child-process entry point: a list of encoded scenarios on stdin, their transcripts on
    stdout, then the interpreter's ``hash("dcent")`` so the parent can see the hash seed differed."""
    payloads: Any = decode(sys.stdin.buffer.read())
    for payload in payloads:
        for line in replay(payload):
            print(line)
    print(f"strhash {hash('dcent')}")


def senders_and_nonces(txs: Iterable[bytes]) -> list[tuple[bytes, int]]:
    """``(sender, nonce)`` of each transaction, in block order."""
    return [(tx.sender, tx.nonce) for tx in map(decode_tx, txs)]


# --- hand-made transactions ---------------------------------------------------------------------


def sign_raw_body(
    label: str, body: dict[str, object], *, sign_chain_id: str = CHAIN_ID, kind: str = "tx"
) -> bytes:
    """An envelope around an arbitrary body, signed under ``(sign_chain_id, kind)``: for bodies
    ``sign_tx`` refuses to build and for signatures made in the wrong domain."""
    body_bytes = encode(body)
    signature = key(label).sign(sign_bytes(sign_chain_id, kind, body_bytes))
    return encode({"body": body_bytes, "public_key": key(label).public_key.raw, "signature": signature})


def tx_body(msg_kind: str, msg: dict[str, object], *, nonce: int = 1, fee: int = FEE) -> dict[str, object]:
    return {"chain_id": CHAIN_ID, "fee": fee, "kind": msg_kind, "msg": msg, "nonce": nonce}


def replace_in_envelope(raw: bytes, **fields: object) -> bytes:
    """The same transaction envelope with some of its fields replaced."""
    envelope: Any = decode(raw)
    envelope.update(fields)
    return encode(envelope)


def flip_signature_bit(raw: bytes) -> bytes:
    envelope: Any = decode(raw)
    signature = bytearray(envelope["signature"])
    signature[7] ^= 0x10
    return replace_in_envelope(raw, signature=bytes(signature))


# --- fuzzing ------------------------------------------------------------------------------------


def _flip_bit(data: bytes, position: int, bit: int) -> bytes:
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


def one_mutation(data: bytes) -> st.SearchStrategy[bytes]:
    """One random edit of ``data``: a bit flip, a byte overwrite, a truncation, an extension, a
    deletion, an insertion, or a splice of random bytes over a slice."""
    size = len(data)
    extend = st.binary(min_size=1, max_size=16).map(lambda extra: data + extra)
    insert = st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=8)).map(
        lambda t: data[: t[0]] + t[1] + data[t[0] :]
    )
    if size == 0:
        return extend | insert
    position = st.integers(0, size - 1)
    return st.one_of(
        st.tuples(position, st.integers(0, 7)).map(lambda t: _flip_bit(data, *t)),
        st.tuples(position, st.integers(0, 255)).map(
            lambda t: data[: t[0]] + bytes([t[1]]) + data[t[0] + 1 :]
        ),
        position.map(lambda cut: data[:cut]),
        extend,
        insert,
        st.tuples(position, st.integers(1, 8)).map(lambda t: data[: t[0]] + data[t[0] + t[1] :]),
        st.tuples(position, position, st.binary(max_size=12)).map(
            lambda t: data[: min(t[0], t[1])] + t[2] + data[max(t[0], t[1]) :]
        ),
    )


@st.composite
def mutations(draw: st.DrawFn, data: bytes, max_edits: int = 3) -> bytes:
    """``data`` after one to ``max_edits`` random edits."""
    for _ in range(draw(st.integers(1, max_edits))):
        data = draw(one_mutation(data))
    return data
