"""Mempool admission: what is refused (and with which code), what each kind commits of its
sender's balance or bond, nonces in order, the dry run against the sender's pending state, the
verified-signature cache, and cleanup after a commit."""

from __future__ import annotations

import hashlib

import pytest

from node.services.mempool import (
    BlockedByPendingTx,
    DuplicateTx,
    Mempool,
    MempoolSettings,
    MempoolSettingsError,
    NonceGap,
    PendingSpendExceedsBalance,
    SenderLimit,
)
from node.services.mempool.spend import BALANCE, BONDED, RULES, delegation
from protocol.ledger.block import Misbehaviour, apply_block, select_txs
from protocol.ledger.errors import (
    BadNonce,
    BadSignature,
    FeeTooLow,
    InsufficientFunds,
    InsufficientStake,
    MalformedTx,
    NoVotingPower,
    Tombstoned,
    UnknownContract,
    UnknownProposal,
    WrongChainId,
)
from protocol.ledger.tx import (
    GRANTABLE_KINDS,
    MAX_TX_BYTES,
    MSG_TYPES,
    Delegate,
    GovPropose,
    GovVote,
    Grant,
    OpenEscrow,
    Redelegate,
    Refund,
    Stake,
    Transfer,
    Tx,
    Undelegate,
    Unstake,
    decode_tx,
)
from tests.unit.ledger_helpers import (
    FEE,
    GENESIS_BALANCE,
    GENESIS_STAKE,
    OTHER_CHAIN_ID,
    Chain,
    addr,
    flip_signature_bit,
    make_terms,
    settle_msg,
    sign_contract,
)

BOB = addr("bob")


def _pay(chain: Chain, label: str, amount: int = 1, **kw: object) -> bytes:
    return chain.tx(label, Transfer(BOB, amount), **kw)  # type: ignore[arg-type]


def _snapshot(pool: Mempool) -> tuple[object, ...]:
    stats = pool.stats()
    return (stats.count, stats.bytes, stats.senders, tuple(pool.all_commitments()))


def test_admits_valid_and_refuses_duplicates() -> None:
    chain, pool = Chain(), Mempool()
    raw = _pay(chain, "alice")
    tx = pool.add(raw, chain.state)
    assert tx.hash in pool and pool.get(tx.hash) == tx
    with pytest.raises(DuplicateTx) as dup:
        pool.add(raw, chain.state)
    assert dup.value.code == 5601 and len(pool) == 1


@pytest.mark.parametrize(
    ("make", "error", "code"),
    [
        (lambda c: _pay(c, "alice", chain_id=OTHER_CHAIN_ID), WrongChainId, 2002),
        (lambda c: _pay(c, "alice", fee=FEE - 1), FeeTooLow, 2005),
        (lambda c: _pay(c, "alice", nonce=3), NonceGap, 5607),
        (lambda c: b"\x93garbage", MalformedTx, 2001),
        (lambda c: _pay(c, "alice", GENESIS_BALANCE), InsufficientFunds, 2006),
        (lambda c: _pay(c, "mallory"), InsufficientFunds, 2006),
        (lambda c: c.tx("alice", Unstake(1)), InsufficientStake, 2010),
        (lambda c: c.tx("alice", GovVote(1, "yes")), UnknownProposal, 2033),
        (lambda c: c.tx("alice", Refund(bytes(32))), UnknownContract, 2020),
        (lambda c: c.tx("alice", settle_msg(make_terms(), 5)), UnknownContract, 2020),
    ],
    ids=[
        "other-chain",
        "fee-too-low",
        "nonce-gap",
        "malformed",
        "amount-over-balance",
        "unfunded-key",
        "unstake-nothing-bonded",
        "vote-unknown-proposal",
        "refund-unknown-contract",
        "settle-unknown-contract",
    ],
)
def test_refusals_carry_their_code_and_change_nothing(make, error, code) -> None:  # type: ignore[no-untyped-def]
    chain, pool = Chain(), Mempool()
    pool.add(_pay(chain, "carol"), chain.state)
    before, state_hash = _snapshot(pool), chain.state.state_hash()
    with pytest.raises(error) as refused:
        pool.add(make(chain), chain.state)
    assert refused.value.code == code
    assert _snapshot(pool) == before
    assert chain.state.state_hash() == state_hash  # the dry run rolled back


def test_a_used_nonce_is_the_ledgers_bad_nonce() -> None:
    chain, pool = Chain(), Mempool()
    chain.block([_pay(chain, "alice")])
    with pytest.raises(BadNonce):
        pool.add(_pay(chain, "alice", nonce=1), chain.state)


def test_an_unfunded_key_is_refused_before_its_signature_is_checked() -> None:
    chain, pool = Chain(), Mempool()
    forged = flip_signature_bit(_pay(chain, "mallory"))
    with pytest.raises(InsufficientFunds):  # not BadSignature: the cheap check came first
        pool.add(forged, chain.state)


def test_forged_signature_is_refused_and_never_vouched_for() -> None:
    chain, pool = Chain(), Mempool()
    forged = flip_signature_bit(_pay(chain, "alice"))
    with pytest.raises(BadSignature):
        pool.add(forged, chain.state)
    assert len(pool) == 0 and pool.stats().verified_cache == 0


def test_pending_transfers_of_a_sender_never_promise_more_than_its_balance() -> None:
    chain, pool = Chain(), Mempool()
    third = GENESIS_BALANCE // 3
    pool.add(_pay(chain, "alice", third), chain.state)
    pool.add(_pay(chain, "alice", third), chain.state)
    assert pool.committed_spend(addr("alice")) == 2 * (third + FEE)
    with pytest.raises(PendingSpendExceedsBalance) as refused:
        pool.add(_pay(chain, "alice", third), chain.state)
    assert refused.value.code == 5604 and "DCT" in refused.value.message
    # What is left still fits.
    rest = GENESIS_BALANCE - 2 * (third + FEE) - FEE
    pool.add(_pay(chain, "alice", rest, nonce=3), chain.state)
    assert pool.committed_spend(addr("alice")) == GENESIS_BALANCE


def test_unstakes_waiting_never_take_more_than_is_bonded() -> None:
    chain, pool = Chain(), Mempool()
    pool.add(chain.tx("val-1", Unstake(GENESIS_STAKE - 1)), chain.state)
    assert pool.committed_spend(addr("val-1"), BONDED) == GENESIS_STAKE - 1
    with pytest.raises(PendingSpendExceedsBalance):
        pool.add(chain.tx("val-1", Unstake(2)), chain.state)
    pool.add(chain.tx("val-1", Unstake(1), nonce=2), chain.state)


def test_undelegations_and_redelegations_waiting_never_take_more_than_is_delegated() -> None:
    chain, pool = Chain(), Mempool()
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 1_000))])
    worth = chain.delegated("alice", "val-0")
    pool.add(chain.tx("alice", Undelegate(addr("val-0"), worth - 400)), chain.state)
    pool.add(chain.tx("alice", Redelegate(addr("val-0"), addr("val-1"), 300)), chain.state)
    assert pool.committed_spend(addr("alice"), delegation(addr("val-0"))) == worth - 100
    with pytest.raises(PendingSpendExceedsBalance):
        pool.add(chain.tx("alice", Undelegate(addr("val-0"), 101)), chain.state)
    with pytest.raises(InsufficientStake):  # nothing delegated there at all
        pool.add(chain.tx("alice", Undelegate(addr("val-2"), 1), nonce=4), chain.state)
    pool.add(chain.tx("alice", Undelegate(addr("val-0"), 100), nonce=4), chain.state)


def test_each_kind_commits_what_it_takes() -> None:
    chain, pool = Chain(), Mempool()
    terms = make_terms("alice", "bob", price=5, max_gpu_seconds=100, collateral=200, deadline=50)
    pool.add(chain.tx("alice", OpenEscrow(sign_contract(terms))), chain.state)
    pool.add(chain.tx("carol", GovPropose("min_fee", 20, 1_000)), chain.state)
    pool.add(chain.tx("dave", Delegate(addr("val-0"), 300)), chain.state)
    assert pool.committed_spend(addr("alice")) == FEE + 500
    assert pool.committed_spend(addr("bob")) == 200  # the provider's collateral
    assert pool.committed_spend(addr("carol")) == FEE + 1_000
    assert pool.committed_spend(addr("dave")) == FEE + 300


def test_a_providers_collateral_in_a_waiting_escrow_cannot_be_spent_twice() -> None:
    chain, pool = Chain(), Mempool()
    collateral = GENESIS_BALANCE // 2
    terms = make_terms("alice", "bob", collateral=collateral, deadline=50)
    pool.add(chain.tx("alice", OpenEscrow(sign_contract(terms))), chain.state)
    with pytest.raises(PendingSpendExceedsBalance):
        pool.add(chain.tx("bob", Transfer(addr("carol"), GENESIS_BALANCE - collateral)), chain.state)
    pool.add(
        chain.tx("bob", Transfer(addr("carol"), GENESIS_BALANCE - collateral - FEE), nonce=1), chain.state
    )


def test_a_grant_paid_escrow_commits_the_payers_balance_not_the_nodes() -> None:
    chain = Chain()
    chain.block([chain.tx("carol", Grant(addr("alice"), GENESIS_BALANCE, 50, GRANTABLE_KINDS))])
    pool = Mempool()
    terms = make_terms("alice", "bob", price=5, max_gpu_seconds=100, deadline=50, payer="carol")
    pool.add(chain.tx("alice", OpenEscrow(sign_contract(terms))), chain.state)
    assert pool.committed_spend(addr("alice")) == 0  # the node pays nothing, not even the fee
    assert pool.committed_spend(addr("carol")) == FEE + 500
    # The wallet's balance is promised to the escrow: it cannot also send all of it away.
    with pytest.raises(PendingSpendExceedsBalance):
        pool.add(chain.tx("carol", Transfer(BOB, chain.balance("carol") - FEE)), chain.state)


def test_every_transaction_kind_has_a_spend_rule() -> None:
    assert set(MSG_TYPES) <= set(RULES), "give each new kind a KindRule in node/services/mempool/spend.py"


def test_later_transactions_are_dry_run_on_the_senders_pending_state() -> None:
    chain, pool = Chain(), Mempool()
    # A proposal only exists once the first transaction applies: the vote after it is checked on
    # top of it, so it is admitted although the committed state knows no proposal 1.
    pool.add(chain.tx("val-0", GovPropose("min_fee", 20, 1_000)), chain.state)
    pool.add(chain.tx("val-0", GovVote(1, "yes")), chain.state)
    # Only the sender's own waiting transactions count: for Alice, proposal 1 does not exist yet.
    pool.add(_pay(chain, "alice"), chain.state)
    with pytest.raises(UnknownProposal):
        pool.add(chain.tx("alice", GovVote(1, "yes")), chain.state)
    block = select_txs(chain.state, chain.context(), [tx.raw for tx in pool.reap(10)], 10)
    assert len(block) == 3
    chain.block(block)
    pool.remove_committed(chain.state)
    # Once it does, a vote behind her own waiting transfer still fails: she has no voting power.
    pool.add(_pay(chain, "alice", nonce=2), chain.state)
    with pytest.raises(NoVotingPower):
        pool.add(chain.tx("alice", GovVote(1, "yes"), nonce=3), chain.state)


def test_nonces_are_admitted_in_order_with_no_gap() -> None:
    chain, pool = Chain(), Mempool()
    pool.add(_pay(chain, "alice", nonce=1), chain.state)
    with pytest.raises(NonceGap):
        pool.add(_pay(chain, "alice", nonce=3), chain.state)
    pool.add(_pay(chain, "alice", nonce=2), chain.state)
    pool.add(_pay(chain, "alice", nonce=3), chain.state)
    assert pool.next_nonce(addr("alice"), chain.state) == 4


def test_per_sender_count_and_byte_bounds() -> None:
    chain, pool = Chain(), Mempool(MempoolSettings(max_per_sender=2))
    pool.add(_pay(chain, "alice"), chain.state)
    pool.add(_pay(chain, "alice"), chain.state)
    with pytest.raises(SenderLimit) as refused:
        pool.add(_pay(chain, "alice"), chain.state)
    assert refused.value.code == 5606
    pool.add(_pay(chain, "bob"), chain.state)  # another sender is not held up


def test_per_sender_byte_bound() -> None:
    chain, pool = Chain(), Mempool(MempoolSettings(max_per_sender=10_000, max_sender_bytes=MAX_TX_BYTES))
    with pytest.raises(SenderLimit) as refused:
        for _ in range(MAX_TX_BYTES):
            raw = _pay(chain, "alice")
            pool.add(raw, chain.state)
    assert "bytes" in refused.value.message
    assert pool.stats().bytes <= MAX_TX_BYTES < pool.stats().bytes + len(raw)


def test_a_dead_waiting_transaction_blocks_dry_run_kinds_behind_it_until_replaced() -> None:
    chain, pool = Chain(), Mempool()
    stake = pool.add(chain.tx("val-2", Stake(10)), chain.state)
    # val-2 double-signs and is tombstoned: its waiting stake can never apply again.
    chain.block(misbehaviour=[Misbehaviour(addr("val-2"))])
    chain.forget_reserved_nonces()
    pool.remove_committed(chain.state)
    with pytest.raises(BlockedByPendingTx) as blocked:
        pool.add(chain.tx("val-2", GovPropose("min_fee", 20, 1_000), nonce=2), chain.state)
    assert blocked.value.code == 5608 and "nonce 1" in blocked.value.message
    with pytest.raises(Tombstoned):
        pool.add(chain.tx("val-2", Stake(11), nonce=1, fee=FEE * 2), chain.state)
    # Its nonce goes to any valid transaction, no fee bump needed, since the waiting one is dead.
    transfer = pool.add(chain.tx("val-2", Transfer(BOB, 5), nonce=1), chain.state)
    assert stake.hash not in pool and pool.waiting(addr("val-2")) == [transfer]


def test_was_verified_covers_every_admitted_transaction_until_its_block() -> None:
    chain, pool = Chain(), Mempool()
    raws = [_pay(chain, "alice"), _pay(chain, "alice"), _pay(chain, "bob")]
    for raw in raws:
        pool.add(raw, chain.state)
    asked: list[bool] = []

    def verified(tx: Tx) -> bool:
        asked.append(pool.was_verified(tx))
        return asked[-1]

    ctx = chain.context()
    apply_block(chain.state, ctx, raws, verified=verified)
    assert asked == [True, True, True]  # no signature was checked a second time
    assert pool.remove_committed(chain.state, {tx.hash for tx in pool.reap(10)}) == 3
    assert len(pool) == 0
    stranger = Chain()
    assert not pool.was_verified(Mempool().add(_pay(stranger, "carol"), stranger.state))


def test_a_forged_copy_of_an_admitted_transaction_is_not_vouched_for_and_fails_in_a_block() -> None:
    """The verified cache is keyed by the hash of the whole envelope, signature included: a copy
    with the same body and another signature is verified at block execution, and refused."""
    chain, pool = Chain(), Mempool()
    raw = _pay(chain, "alice")
    admitted = pool.add(raw, chain.state)
    forged = decode_tx(flip_signature_bit(raw))
    assert forged.body == admitted.body and forged.signature != admitted.signature
    assert pool.was_verified(admitted) and not pool.was_verified(forged)
    with pytest.raises(BadSignature):
        apply_block(chain.state.copy(), chain.context(), [forged], verified=pool.was_verified)
    apply_block(chain.state, chain.context(), [admitted], verified=pool.was_verified)


def test_remove_committed_drops_included_and_conflicting_and_counts_the_conflict() -> None:
    chain, pool = Chain(), Mempool()
    mine = pool.add(_pay(chain, "alice", 5, nonce=1), chain.state)
    later = pool.add(_pay(chain, "alice", 6, nonce=2), chain.state)
    theirs = _pay(chain, "alice", 7, nonce=1)  # another node's transaction with the same nonce
    chain.block([theirs])
    assert pool.remove_committed(chain.state, {hashlib.sha256(theirs).digest()}) == 1
    assert mine.hash not in pool and later.hash in pool
    assert pool.stats().conflicted == 1
    assert pool.reap(10) == [later]


def test_remove_committed_drops_what_a_slash_made_unpayable_newest_first() -> None:
    chain, pool = Chain(), Mempool()
    first = pool.add(chain.tx("val-1", Unstake(GENESIS_STAKE // 2)), chain.state)
    second = pool.add(chain.tx("val-1", Unstake(GENESIS_STAKE // 2)), chain.state)
    chain.block(misbehaviour=[Misbehaviour(addr("val-1"))])  # 5% slashed: both no longer fit
    pool.remove_committed(chain.state)
    assert first.hash in pool and second.hash not in pool
    assert pool.stats().unpayable == 1
    assert pool.committed_spend(addr("val-1"), BONDED) <= chain.bonded("val-1")


def test_discard_drops_the_transaction_and_its_senders_later_ones() -> None:
    chain, pool = Chain(), Mempool()
    first = pool.add(_pay(chain, "alice"), chain.state)
    pool.add(_pay(chain, "alice"), chain.state)
    other = pool.add(_pay(chain, "bob"), chain.state)
    assert pool.discard(first.hash) and not pool.discard(first.hash)
    assert pool.reap(10) == [other]
    assert pool.stats().bytes == len(other.raw)
    assert pool.committed_spend(addr("alice")) == 0 and pool.committed_spend(addr("alice"), BALANCE) == 0
    pool.add(_pay(chain, "alice", 2, nonce=1), chain.state)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_txs": 0},
        {"busy_blocks": -1},
        {"max_bytes": 10},
        {"replace_bump_percent": -1},
        {"expiry_blocks": True},
    ],
)
def test_impossible_settings_are_refused(settings: dict[str, int]) -> None:
    with pytest.raises(MempoolSettingsError) as refused:
        MempoolSettings(**settings)
    assert refused.value.code == 5620
