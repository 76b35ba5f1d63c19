"""The transaction envelope: round trips for every kind, hand-made non-canonical and malformed
forms, and fuzzing: random and mutated bytes raise ``MalformedTx`` and nothing else."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import decode, encode
from protocol.ledger.errors import MalformedTx, UnknownTxKind
from protocol.ledger.tx import (
    MAX_TX_BYTES,
    MSG_TYPES,
    AssetMint,
    AssetPropose,
    AssetSend,
    Delegate,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Grant,
    GrantRevoke,
    MiningBond,
    MiningUnbond,
    Msg,
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferMiss,
    OfferRefused,
    OfferStand,
    OfferTake,
    OfferWithdraw,
    OpenEscrow,
    PoolAdd,
    PoolRemove,
    PoolSwap,
    Redelegate,
    Refund,
    Stake,
    Transfer,
    Undelegate,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    decode_tx,
    prove_consensus_key,
    sign_tx,
)

from .ledger_helpers import (
    CHAIN_ID,
    FEE,
    addr,
    claim_msg,
    key,
    make_terms,
    mutations,
    settle_msg,
    sign_contract,
    sign_raw_body,
    tx_body,
)

TERMS = make_terms()
MESSAGES: list[Msg] = [
    Transfer(addr("bob"), 12_345),
    Stake(1_000),
    Unstake(1),
    ValidatorCreate(
        key("carol").public_key.raw,
        prove_consensus_key(key("carol"), CHAIN_ID, addr("alice")),
        "carol's node",
        10**17,
        2 * 10**17,
        10**16,
        5_000,
    ),
    ValidatorEdit("renamed", 10**17),
    Delegate(addr("val-0"), 77),
    Undelegate(addr("val-0"), 7),
    Redelegate(addr("val-0"), addr("val-1"), 3),
    Unjail(),
    OpenEscrow(sign_contract(TERMS)),
    settle_msg(TERMS, 77),
    Refund(TERMS.contract_hash()),
    claim_msg(TERMS, 42),
    EscrowFinalize(TERMS.contract_hash()),
    EscrowDispute(TERMS.contract_hash()),
    GovPropose("fee_burn_share", 10**17, 10**10),
    GovVote(3, "veto"),
    Grant(addr("bob"), 5_000, 1_000, ("escrow_open",)),
    GrantRevoke(addr("bob")),
    AssetPropose("TUSD", 10**10),
    AssetMint("TUSD", addr("bob"), 5),
    AssetSend("lp:TUSD", addr("bob"), 5),
    PoolAdd("TUSD", 10, 20, 1),
    PoolRemove("TUSD", 10, 1, 0),
    PoolSwap("TUSD", True, 10, 1, 99),
    MiningBond("TUSD", 10),
    MiningUnbond("TUSD", 3),
    OfferStand(bytes(range(32)), "NVIDIA H100 80GB HBM3", 8, 100, 500, 10**12),
    OfferChallenge(bytes(32)),
    OfferAnswer(bytes(32), bytes(64)),
    OfferMiss(bytes(32)),
    OfferWithdraw(bytes(32)),
    OfferTake(bytes(32), 2, 3_600),
    OfferAccept(bytes(32)),
    OfferRefused(bytes(32)),
]
VALID_TXS = [sign_tx(key("alice"), CHAIN_ID, n + 1, FEE, msg) for n, msg in enumerate(MESSAGES)]
FUZZ = settings(max_examples=settings().max_examples * 5)


def test_every_kind_has_a_message_in_the_corpus() -> None:
    assert sorted(type(m).KIND for m in MESSAGES) == sorted(MSG_TYPES)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).KIND)
def test_sign_and_decode_round_trip(msg: Msg) -> None:
    raw = sign_tx(key("alice"), CHAIN_ID, 7, 123, msg)
    tx = decode_tx(raw)
    assert (tx.chain_id, tx.nonce, tx.fee, tx.msg) == (CHAIN_ID, 7, 123, msg)
    assert tx.sender == addr("alice")
    assert tx.public_key == key("alice").public_key.raw
    assert tx.hash == hashlib.sha256(raw).digest()
    assert tx.raw == raw
    assert tx.verify_signature()
    assert encode(decode(raw)) == raw


def _envelope(**fields: object) -> dict[str, object]:
    good = decode(VALID_TXS[0])
    assert isinstance(good, dict)
    return {**good, **fields}


def _malformed(raw: bytes) -> MalformedTx:
    with pytest.raises(MalformedTx) as caught:
        decode_tx(raw)
    assert caught.value.code in (2001, 2008)
    return caught.value


BODY = tx_body("transfer", {"amount": 5, "to": addr("bob")})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("empty", b""),
        ("not a map", encode([b"body", b"key", b"sig"])),
        ("extra envelope field", encode(_envelope(memo="hi"))),
        ("missing signature", encode({k: v for k, v in _envelope().items() if k != "signature"})),
        ("short public key", encode(_envelope(public_key=bytes(31)))),
        ("long signature", encode(_envelope(signature=bytes(65)))),
        ("body as str", encode(_envelope(body="body"))),
        ("body not canonical", encode(_envelope(body=b"\xcc\x05"))),
        (
            "unsorted envelope keys",
            msgpack.packb({"signature": bytes(64), "body": b"\x80", "public_key": bytes(32)}),
        ),
        ("trailing byte", VALID_TXS[0] + b"\x00"),
        ("oversized", encode(_envelope(body=bytes(MAX_TX_BYTES)))),
        ("body missing nonce", sign_raw_body("alice", {k: v for k, v in BODY.items() if k != "nonce"})),
        ("body extra field", sign_raw_body("alice", {**BODY, "memo": "x"})),
        ("nonce zero", sign_raw_body("alice", {**BODY, "nonce": 0})),
        ("negative fee", sign_raw_body("alice", {**BODY, "fee": -1})),
        ("fee as bool", sign_raw_body("alice", {**BODY, "fee": True})),
        ("fee as str", sign_raw_body("alice", {**BODY, "fee": "10"})),
        ("chain id as bytes", sign_raw_body("alice", {**BODY, "chain_id": CHAIN_ID.encode()})),
        ("kind as int", sign_raw_body("alice", {**BODY, "kind": 1})),
        (
            "msg unknown field",
            sign_raw_body("alice", {**BODY, "msg": {"amount": 5, "memo": "", "to": addr("bob")}}),
        ),
        ("msg missing field", sign_raw_body("alice", {**BODY, "msg": {"amount": 5}})),
        ("msg wrong type", sign_raw_body("alice", {**BODY, "msg": {"amount": "5", "to": addr("bob")}})),
        ("msg short address", sign_raw_body("alice", {**BODY, "msg": {"amount": 5, "to": bytes(19)}})),
        ("msg as list", sign_raw_body("alice", {**BODY, "msg": [5, addr("bob")]})),
        ("vote option", sign_raw_body("alice", tx_body("gov_vote", {"option": "maybe", "proposal_id": 1}))),
        ("proposal zero", sign_raw_body("alice", tx_body("gov_vote", {"option": "yes", "proposal_id": 0}))),
        ("refund hash", sign_raw_body("alice", tx_body("escrow_refund", {"contract_hash": bytes(31)}))),
        ("stake negative", sign_raw_body("alice", tx_body("stake", {"amount": -5}))),
        (
            "propose empty param",
            sign_raw_body("alice", tx_body("gov_propose", {"deposit": 1, "param": "", "value": 1})),
        ),
    ],
)
def test_malformed_and_non_canonical_transactions(name: str, raw: bytes) -> None:
    exc = _malformed(raw)
    assert type(exc) is MalformedTx, name


def test_unknown_kind_is_its_own_subclass() -> None:
    exc = _malformed(sign_raw_body("alice", tx_body("mint", {})))
    assert type(exc) is UnknownTxKind
    assert exc.code == 2008


def test_tx_hash_commits_to_the_whole_envelope() -> None:
    # Two envelopes of the same body with different signatures (e.g. a malleated one) differ in hash.
    tx = decode_tx(VALID_TXS[0])
    other = encode(_envelope(signature=bytes(64)))
    assert decode_tx(other).hash != tx.hash
    assert not decode_tx(other).verify_signature()


def _decodes_only_canonically(raw: bytes) -> None:
    try:
        tx = decode_tx(raw)
    except MalformedTx:
        return
    # Whatever decodes is exactly one canonical envelope around one canonical body.
    assert encode(decode(raw)) == raw
    assert encode(decode(tx.body)) == tx.body
    assert tx.raw == raw


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed_tx(raw: bytes) -> None:
    _decodes_only_canonically(raw)


@FUZZ
@given(st.data())
def test_mutated_transactions_raise_only_malformed_tx(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(VALID_TXS))
    _decodes_only_canonically(data.draw(mutations(original)))


@FUZZ
@given(st.data())
def test_mutated_bodies_in_a_valid_envelope_raise_only_malformed_tx(data: st.DataObject) -> None:
    envelope = decode(data.draw(st.sampled_from(VALID_TXS)))
    assert isinstance(envelope, dict) and isinstance(envelope["body"], bytes)
    body = data.draw(mutations(envelope["body"]))
    _decodes_only_canonically(encode({**envelope, "body": body}))


@FUZZ
@given(st.sampled_from(VALID_TXS), st.sampled_from(VALID_TXS), st.integers(0, 2_000), st.integers(0, 2_000))
def test_spliced_transactions_raise_only_malformed_tx(
    first: bytes, second: bytes, cut_1: int, cut_2: int
) -> None:
    _decodes_only_canonically(first[: cut_1 % (len(first) + 1)] + second[cut_2 % (len(second) + 1) :])
