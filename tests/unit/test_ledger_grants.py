"""Grants (protocol.ledger.authz): a wallet lets a node's account open escrows on the wallet's
account, within a cap, until an expiry, for the kinds it names; the contract names the wallet as
payer and everything returned goes back to it. Every refusal leaves the state unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.contracts import ContractFormatError, ContractTerms
from protocol.economics import mul_ratio
from protocol.encoding import decode, encode
from protocol.ledger.authz import MAX_GRANTS_PER_GRANTER, find_grant
from protocol.ledger.block import select_txs
from protocol.ledger.errors import (
    GrantExhausted,
    GrantExpired,
    InvalidGrant,
    MalformedTx,
    NoGrant,
    NotAParty,
    TooManyGrants,
)
from protocol.ledger.snapshot import SnapshotError, decode_snapshot, encode_snapshot
from protocol.ledger.tx import MAX_GRANT_BLOCKS, Grant, GrantRevoke, OpenEscrow, Refund, decode_tx

from .ledger_helpers import (
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    make_terms,
    settle_msg,
    sign_contract,
    sign_raw_body,
    tx_body,
)

# Alice runs the node (the requester), Carol owns the wallet (the payer), Bob sells the GPU.
# price 7 x 100 GPU-seconds: the escrow locks 700 of Carol's; Bob locks 300 of collateral.
TERMS = make_terms("alice", "bob", price=7, max_gpu_seconds=100, collateral=300, deadline=10, payer="carol")
HASH = TERMS.contract_hash()
KINDS = ("escrow_open",)


def granted(limit: int = 1_000, expiry: int = 50) -> Chain:
    """Carol has granted Alice ``limit`` for escrows until ``expiry`` (committed at height 1)."""
    chain = Chain()
    chain.block([chain.tx("carol", Grant(addr("alice"), limit, expiry, KINDS))])
    return chain


def terms(salt: bytes, price: int = 7, payer: str = "carol", deadline: int = 10) -> ContractTerms:
    return make_terms(
        "alice",
        "bob",
        price=price,
        max_gpu_seconds=100,
        collateral=300,
        deadline=deadline,
        salt=salt,
        payer=payer,
    )


def test_a_grant_is_recorded_under_its_granter() -> None:
    chain = granted()
    info = find_grant(chain.state, addr("carol"), addr("alice"))
    assert info is not None
    assert (info.spend_limit, info.spent, info.expiry_height, info.kinds) == (1_000, 0, 50, KINDS)
    assert find_grant(chain.state, addr("alice"), addr("carol")) is None  # it goes one way


def test_the_node_opens_an_escrow_from_the_wallet_and_its_balance_is_untouched() -> None:
    chain = granted()
    alice, carol, bob = chain.balance("alice"), chain.balance("carol"), chain.balance("bob")
    fee = chain.params.min_fee
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert chain.balance("alice") == alice  # the node's own money: not even the fee
    assert chain.balance("carol") == carol - 700 - fee  # the grant covers the fee too (feegrant)
    assert chain.balance("bob") == bob - 300
    assert chain.nonce("alice") == 1  # the node signed it: its nonce moves, its balance does not
    escrow = chain.state.escrows[HASH]
    assert (escrow.requester, escrow.payer) == (addr("alice"), addr("carol"))
    info = find_grant(chain.state, addr("carol"), addr("alice"))
    assert info is not None and (info.spent, info.remaining) == (700 + fee, 300 - fee)


def test_settlement_returns_the_unused_deposit_to_the_payer_not_the_requester() -> None:
    chain = granted()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    alice, carol, bob = chain.balance("alice"), chain.balance("carol"), chain.balance("bob")
    chain.block([chain.tx("bob", settle_msg(TERMS, 55))])  # 55 GPU-seconds x 7 = 385
    protocol_fee = mul_ratio(385, TEST_PARAMS.protocol_fee_share)
    assert chain.balance("carol") == carol + 700 - 385
    assert chain.balance("alice") == alice
    assert chain.balance("bob") == bob + 385 - protocol_fee + 300 - chain.params.min_fee


def test_a_refund_goes_to_the_payer_whoever_asks_for_it() -> None:
    for asker in ("alice", "carol"):
        chain = granted()
        chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
        chain.advance_to(TERMS.deadline_height)
        alice, carol = chain.balance("alice"), chain.balance("carol")
        chain.block([chain.tx(asker, Refund(HASH))])
        fee = chain.params.min_fee
        assert chain.balance("carol") == carol + 700 - (fee if asker == "carol" else 0)
        assert chain.balance("alice") == alice - (fee if asker == "alice" else 0)
        assert chain.state.closed_contracts[HASH] == "refunded"
        # Returned money goes to the wallet, not back into the grant: the cap bounds what was locked.
        info = find_grant(chain.state, addr("carol"), addr("alice"))
        assert info is not None and info.spent == 700 + chain.params.min_fee


def test_a_stranger_can_refund_nothing() -> None:
    chain = granted()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    chain.advance_to(TERMS.deadline_height)
    assert_block_rejected(chain, [chain.tx("dave", Refund(HASH))], NotAParty, 2024)


def test_the_wallet_may_sign_the_escrow_itself_without_a_grant() -> None:
    chain = Chain()
    alice, carol = chain.balance("alice"), chain.balance("carol")
    chain.block([chain.tx("carol", OpenEscrow(sign_contract(TERMS)))])
    assert chain.balance("carol") == carol - 700 - chain.params.min_fee
    assert chain.balance("alice") == alice
    assert chain.state.escrows[HASH].payer == addr("carol")


# --- refusals ----------------------------------------------------------------------------------


def test_without_a_grant_the_node_cannot_spend_the_wallet() -> None:
    chain = Chain()
    raw = chain.tx("alice", OpenEscrow(sign_contract(TERMS)))
    error = assert_block_rejected(chain, [raw], NoGrant, 2071, tx_index=0)
    assert "dcent wallet grant" in error.message


def test_a_grant_to_another_account_does_not_help() -> None:
    chain = Chain()
    chain.block([chain.tx("carol", Grant(addr("dave"), 1_000, 50, KINDS))])
    assert_block_rejected(chain, [chain.tx("alice", OpenEscrow(sign_contract(TERMS)))], NoGrant, 2071)


def test_nobody_but_requester_or_payer_opens_it() -> None:
    chain = granted()
    assert_block_rejected(chain, [chain.tx("dave", OpenEscrow(sign_contract(TERMS)))], NotAParty, 2024)


def test_an_expired_grant_is_refused() -> None:
    chain = granted(expiry=3)
    chain.advance_to(3)  # the grant is usable at height 3, the last; the escrow applies at 4
    error = assert_block_rejected(
        chain, [chain.tx("alice", OpenEscrow(sign_contract(TERMS)))], GrantExpired, 2072
    )
    assert "expired at height 3" in error.message


def test_the_last_height_of_a_grant_still_counts() -> None:
    chain = granted(expiry=3)
    chain.advance_to(2)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert HASH in chain.state.escrows


def test_an_exhausted_grant_is_refused_with_what_is_left_in_dct() -> None:
    chain = granted(limit=1_000)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms(b"one"))))])  # 700 + 10 of 1,000
    raw = chain.tx("alice", OpenEscrow(sign_contract(terms(b"two"))))
    error = assert_block_rejected(chain, [raw], GrantExhausted, 2073)
    assert "0.00000029 DCT left of 0.000001 DCT" in error.message
    assert "needs 0.00000071 DCT with its fee" in error.message


def test_two_escrows_in_one_block_cannot_both_use_the_last_of_a_grant() -> None:
    chain = granted(limit=1_000)
    first = chain.tx("alice", OpenEscrow(sign_contract(terms(b"one"))))
    second = chain.tx("alice", OpenEscrow(sign_contract(terms(b"two"))))
    assert_block_rejected(chain, [first, second], GrantExhausted, 2073, tx_index=1)


def test_a_revoked_grant_is_refused_and_open_escrows_stay() -> None:
    chain = granted(limit=5_000)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms(b"one"))))])
    chain.block([chain.tx("carol", GrantRevoke(addr("alice")))])
    assert find_grant(chain.state, addr("carol"), addr("alice")) is None
    assert terms(b"one").contract_hash() in chain.state.escrows
    assert_block_rejected(chain, [chain.tx("alice", OpenEscrow(sign_contract(terms(b"two"))))], NoGrant, 2071)


def test_revoking_what_was_never_granted() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("carol", GrantRevoke(addr("alice")))], NoGrant, 2071)


def test_a_failed_escrow_does_not_count_against_the_grant() -> None:
    chain = granted(limit=1_000)
    forged = sign_contract(TERMS, provider_signer="mallory")
    chain.block([])  # height 2
    chain.forget_reserved_nonces()
    ctx = chain.context()
    assert select_txs(chain.state, ctx, [chain.tx("alice", OpenEscrow(forged))], 10) == []
    info = find_grant(chain.state, addr("carol"), addr("alice"))
    assert info is not None and info.spent == 0


def test_a_new_grant_replaces_the_old_one_and_its_count() -> None:
    chain = granted(limit=1_000)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms(b"one"))))])
    chain.block([chain.tx("carol", Grant(addr("alice"), 2_000, 90, KINDS))])
    info = find_grant(chain.state, addr("carol"), addr("alice"))
    assert info is not None and (info.spend_limit, info.spent, info.expiry_height) == (2_000, 0, 90)
    assert len(chain.state.grants[addr("carol")]) == 1


def test_grant_bounds() -> None:
    chain = Chain()
    cases = [
        (Grant(addr("carol"), 1, 50, KINDS), "to oneself"),
        (Grant(addr("alice"), 1, 1, KINDS), "not after height"),  # applies at height 1
        (Grant(addr("alice"), 1, 1 + MAX_GRANT_BLOCKS + 1, KINDS), "more than"),
    ]
    for msg, words in cases:
        error = assert_block_rejected(chain, [chain.tx("carol", msg)], InvalidGrant, 2070)
        assert words in error.message
    chain.block([chain.tx("carol", Grant(addr("alice"), 1, 1 + MAX_GRANT_BLOCKS, KINDS))])


def test_grant_fields_are_checked_when_decoded() -> None:
    bad = [
        {"expiry_height": 5, "grantee": addr("alice"), "kinds": ["transfer"], "spend_limit": 1},
        {"expiry_height": 5, "grantee": addr("alice"), "kinds": [], "spend_limit": 1},
        {
            "expiry_height": 5,
            "grantee": addr("alice"),
            "kinds": ["escrow_open", "escrow_open"],
            "spend_limit": 1,
        },
        {"expiry_height": 5, "grantee": addr("alice"), "kinds": ["escrow_open"], "spend_limit": 0},
        {"expiry_height": 0, "grantee": addr("alice"), "kinds": ["escrow_open"], "spend_limit": 1},
        {"expiry_height": 5, "grantee": b"short", "kinds": ["escrow_open"], "spend_limit": 1},
    ]
    for msg in bad:
        raw = sign_raw_body("carol", tx_body("grant", msg))
        try:
            decode_tx(raw)
        except MalformedTx as exc:
            assert exc.code == 2001
        else:  # pragma: no cover - the assertion's message
            raise AssertionError(f"decoded {msg}")


def test_a_granter_has_at_most_a_bounded_number_of_live_grants() -> None:
    chain = Chain()
    grantees = [bytes([i]) * 20 for i in range(1, MAX_GRANTS_PER_GRANTER + 2)]
    chain.block([chain.tx("carol", Grant(g, 1, 5, KINDS)) for g in grantees[:-1]])
    raw = chain.tx("carol", Grant(grantees[-1], 1, 50, KINDS))
    assert_block_rejected(chain, [raw], TooManyGrants, 2075)
    # Replacing one of them is fine, and once they expire they make room.
    chain.block([chain.tx("carol", Grant(grantees[0], 2, 50, KINDS))])
    chain.advance_to(6)
    chain.block([chain.tx("carol", Grant(grantees[-1], 1, 50, KINDS))])
    assert [g.grantee for g in chain.state.grants[addr("carol")]] == [grantees[0], grantees[-1]]


def test_a_contract_names_another_account_as_payer_or_none() -> None:
    for payer in (addr("alice"), b"x" * 19):
        try:
            ContractTerms(**{**_fields(TERMS), "payer": payer})
        except ContractFormatError as exc:
            assert exc.code == 4001
        else:  # pragma: no cover
            raise AssertionError(payer)


def _fields(t: ContractTerms) -> dict[str, object]:
    return {name: getattr(t, name) for name in t.to_wire()}


def test_grants_and_payers_are_in_the_state_hash_and_snapshots() -> None:
    chain = granted()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert restored.grants[addr("carol")] == chain.state.grants[addr("carol")]
    assert restored.escrows[HASH].payer == addr("carol")
    other = granted(limit=1_001)
    other.block([other.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert other.state.state_hash() != chain.state.state_hash()


def test_a_snapshot_with_a_grant_spent_beyond_its_limit_is_refused() -> None:
    chain = granted()
    doc = decode(encode_snapshot(chain.state))
    assert isinstance(doc, dict)
    doc["grants"][0][1][0][2] = 1_001  # type: ignore[index]
    try:
        decode_snapshot(encode(doc))
    except SnapshotError as exc:
        assert "spent beyond" in exc.message
    else:  # pragma: no cover
        raise AssertionError("accepted")


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 3_000),
    prices=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    refund_some=st.booleans(),
)
def test_the_node_never_spends_more_than_the_cap_nor_its_own_balance(
    limit: int, prices: list[int], refund_some: bool
) -> None:
    chain = granted(limit=limit, expiry=100)
    alice_start, carol_start = chain.balance("alice"), chain.balance("carol")
    fee = chain.params.min_fee
    spent = opened = carol_fees = 0
    for index, price in enumerate(prices):
        contract = terms(index.to_bytes(2, "big"), price=price, deadline=chain.height + 3)
        raw = chain.tx("alice", OpenEscrow(sign_contract(contract)))
        chosen = select_txs(chain.state, chain.context(), [raw], 1)
        chain.forget_reserved_nonces()
        if chosen:
            chain.block(chosen)
            spent += contract.max_cost + fee
            opened += 1
        else:
            assert spent + contract.max_cost + fee > limit  # refused only when over the cap
        if refund_some and chosen:
            chain.advance_to(contract.deadline_height)
            chain.block([chain.tx("carol", Refund(contract.contract_hash()))])
            carol_fees += fee
    info = find_grant(chain.state, addr("carol"), addr("alice"))
    assert info is not None and info.spent == spent <= limit
    assert chain.balance("alice") == alice_start  # the node's balance: untouched
    locked = sum(e.max_cost for _, e in chain.state.escrows.sorted_items() if e.payer == addr("carol"))
    # Carol paid the escrows' fees and her refunds' fees; each escrow still open holds its cost,
    # each refunded one gave it back.
    assert chain.balance("carol") == carol_start - opened * fee - locked - carol_fees
