"""Bounded arithmetic: no transaction, block or parameter can push a value of the ledger state out
of its encodable range, and no block makes ``apply_block`` or ``state_hash`` raise anything but a
typed ledger error.

The attacks (issue 12, item 1): a price-0 contract whose settles credit more than 2^64
GPU-seconds to one provider's epoch work, so ``state_hash`` raised ``OverflowError`` inside
``apply_block`` and every proposer crashed; ``blocks_per_year = 1`` with a high ``inflation_max``
overflowing the supply within 40 blocks. Here every transaction kind is tried with extreme values
on a chain whose supply is near the 2^63 - 1 limit, and issuance is run at the most aggressive
parameters the bounds allow.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import economics
from protocol.econsim import kernel
from protocol.encoding import decode, encode, sign_bytes
from protocol.ledger.block import BlockContext, apply_block, check_tx
from protocol.ledger.errors import FreeContract, LedgerError
from protocol.ledger.genesis import genesis_state
from protocol.ledger.params import PARAM_BOUNDS, Params
from protocol.ledger.snapshot import decode_snapshot, encode_snapshot
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    MSG_TYPES,
    AssetMint,
    GovPropose,
    Grant,
    OfferStand,
    OpenEscrow,
    PoolAdd,
    Transfer,
    prove_consensus_key,
)
from protocol.units import DEC, MAX_AMOUNT

from .ledger_helpers import (
    CHAIN_ID,
    GENESIS_STAKE,
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    key,
    make_genesis,
    make_terms,
    settle_msg,
    sign_contract,
    sign_raw_body,
)
from .liquidity_helpers import register

#: Values at and around every boundary a 64-bit field has on the wire.
EXTREMES = (0, 1, 2, 3, 1_000, 2**32, 2**62, MAX_AMOUNT - 1, MAX_AMOUNT, 2**63, 2**64 - 1)
SIGNED_EXTREMES = (*EXTREMES, -1, -(2**63))
PEOPLE = ("alice", "bob", "carol", "dave")
#: Every person holds a quarter of what is left below the limit: the supply is near 2^63 - 1.
RICH_BALANCE = (MAX_AMOUNT - 3 * 1_000_000) // 4


def rich_chain() -> Chain:
    genesis = make_genesis(balances=[(label, RICH_BALANCE) for label in PEOPLE])
    chain = Chain(genesis)
    assert MAX_AMOUNT - chain.state.total_supply() < 10**6
    return chain


def _contract_dict(draw: st.DrawFn, requester: str, provider: str, height: int) -> dict[str, Any]:
    terms = {
        "chain_id": CHAIN_ID,
        "collateral": draw(st.sampled_from(EXTREMES)),
        "deadline_height": draw(st.sampled_from((height + 2, *EXTREMES))),
        "gpu_uuids": ["GPU-0"],
        "job_hash": bytes(32),
        "max_gpu_seconds": draw(st.sampled_from(EXTREMES)),
        "price_per_gpu_second": draw(st.sampled_from(EXTREMES)),
        "provider": key(provider).public_key.raw,
        "requester": key(requester).public_key.raw,
        "salt": draw(st.binary(min_size=1, max_size=4)),
        "payer": draw(st.sampled_from((b"", addr("carol"), addr("dave"), bytes(20)))),
    }
    signed = sign_bytes(CHAIN_ID, "contract", encode(terms))
    return {
        "provider_sig": key(provider).sign(signed),
        "requester_sig": key(requester).sign(signed),
        "terms": terms,
    }


def _receipt_dict(draw: st.DrawFn, contract_hash: bytes) -> tuple[dict[str, Any], bytes]:
    outcome = draw(
        st.sampled_from(("completed", "job_failed", "timed_out", "provider_error", "limit_exceeded"))
    )
    receipt = {
        "chain_id": CHAIN_ID,
        "contract_hash": contract_hash,
        "exit_status": draw(st.sampled_from((0, 1, -1, 2**31 - 1, -(2**31), 2**31))),
        "gpu_ms": draw(st.sampled_from(EXTREMES)),
        "limit": draw(st.sampled_from(("", "memory", "x" * 65))),
        "outcome": outcome,
        "output_hash": bytes(32),
    }
    return receipt, sign_bytes(CHAIN_ID, "receipt", encode(receipt))


def _open_contract(chain: Chain) -> bytes:
    """The hash of the contract the rich chain's first block escrowed (open or closed since)."""
    hashes = chain.state.escrows.sorted_items() or chain.state.closed_contracts.sorted_items()
    return hashes[0][0]


MsgBuilder = Callable[[st.DrawFn, Chain], tuple[str, dict[str, Any]]]


def _amount(field: str) -> MsgBuilder:
    def build(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
        return draw(st.sampled_from(PEOPLE)), {field: draw(st.sampled_from(SIGNED_EXTREMES))}

    return build


def _transfer(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "amount": draw(st.sampled_from(SIGNED_EXTREMES)),
        "to": addr(draw(st.sampled_from((*PEOPLE, "mallory")))),
    }


def _escrow_open(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    requester, provider = draw(st.permutations(PEOPLE))[:2]
    return requester, {"contract": _contract_dict(draw, requester, provider, chain.height)}


def _settle(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    receipt, signed = _receipt_dict(draw, _open_contract(chain))
    return "alice", {
        "provider_sig": key("bob").sign(signed),
        "receipt": receipt,
        "requester_sig": key("alice").sign(signed),
    }


def _claim(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    receipt, signed = _receipt_dict(draw, _open_contract(chain))
    return "bob", {"provider_sig": key("bob").sign(signed), "receipt": receipt}


def _by_hash(sender: str) -> MsgBuilder:
    def build(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
        return sender, {"contract_hash": _open_contract(chain)}

    return build


def _gov_propose(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "deposit": draw(st.sampled_from(SIGNED_EXTREMES)),
        "param": draw(st.sampled_from(sorted(PARAM_BOUNDS))),
        "value": draw(st.sampled_from(SIGNED_EXTREMES)),
    }


def _gov_vote(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(("val-0", "val-1", *PEOPLE))), {
        "option": draw(st.sampled_from(("yes", "no", "veto", "abstain"))),
        "proposal_id": draw(st.sampled_from((1, *SIGNED_EXTREMES))),
    }


def _validator_create(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    operator = draw(st.sampled_from(PEOPLE))
    node = key(draw(st.sampled_from(("node-a", "node-b", "val-0"))))
    return operator, {
        "amount": draw(st.sampled_from(SIGNED_EXTREMES)),
        "commission": draw(st.sampled_from((0, DEC // 10, DEC, DEC + 1, -1))),
        "consensus_key": node.public_key.raw,
        "key_proof": prove_consensus_key(node, CHAIN_ID, addr(operator)),
        "max_commission": draw(st.sampled_from((0, DEC // 5, DEC, 2**64 - 1))),
        "max_commission_change": draw(st.sampled_from((0, DEC // 100, DEC))),
        "moniker": draw(st.sampled_from(("", "node", "x" * 64, "x" * 65))),
    }


def _validator_edit(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(("val-0", *PEOPLE))), {
        "commission": draw(st.sampled_from((0, DEC // 10, DEC, DEC + 1, -1, 2**64 - 1))),
        "moniker": "m",
    }


def _delegation(kind: str) -> MsgBuilder:
    def build(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
        validators = ("val-0", "val-1", "val-2", "alice")
        msg: dict[str, Any] = {"amount": draw(st.sampled_from(SIGNED_EXTREMES))}
        if kind == "redelegate":
            msg["source"], msg["destination"] = (addr(v) for v in draw(st.permutations(validators))[:2])
        else:
            msg["validator"] = addr(draw(st.sampled_from(validators)))
        return draw(st.sampled_from(("val-0", *PEOPLE))), msg

    return build


def _grant(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "expiry_height": draw(
            st.sampled_from((chain.height + 1, chain.height + 10_000_000, *SIGNED_EXTREMES))
        ),
        "grantee": addr(draw(st.sampled_from(PEOPLE))),
        "kinds": draw(st.sampled_from((["escrow_open"], [], ["transfer"]))),
        "spend_limit": draw(st.sampled_from(SIGNED_EXTREMES)),
    }


def _grant_revoke(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {"grantee": addr(draw(st.sampled_from(PEOPLE)))}


def _unjail(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(("val-0", "val-1", "alice"))), {}


SYMBOLS = ("TUSD", "EUR")


def _asset_propose(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "deposit": draw(st.sampled_from(SIGNED_EXTREMES)),
        "symbol": draw(st.sampled_from((*SYMBOLS, "DCT", "x"))),
    }


def _asset_mint(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(("carol", "alice"))), {
        "amount": draw(st.sampled_from(SIGNED_EXTREMES)),
        "symbol": draw(st.sampled_from(SYMBOLS)),
        "to": addr(draw(st.sampled_from(PEOPLE))),
    }


def _asset_send(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "amount": draw(st.sampled_from(SIGNED_EXTREMES)),
        "denom": draw(st.sampled_from((*SYMBOLS, "lp:TUSD", "lp:"))),
        "to": addr(draw(st.sampled_from(PEOPLE))),
    }


def _pool_add(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "asset": draw(st.sampled_from(SIGNED_EXTREMES)),
        "dct": draw(st.sampled_from(SIGNED_EXTREMES)),
        "min_shares": draw(st.sampled_from(SIGNED_EXTREMES)),
        "symbol": draw(st.sampled_from(SYMBOLS)),
    }


def _pool_remove(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "min_asset": draw(st.sampled_from(SIGNED_EXTREMES)),
        "min_dct": draw(st.sampled_from(SIGNED_EXTREMES)),
        "shares": draw(st.sampled_from(SIGNED_EXTREMES)),
        "symbol": draw(st.sampled_from(SYMBOLS)),
    }


def _pool_swap(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "amount": draw(st.sampled_from(SIGNED_EXTREMES)),
        "deadline": draw(st.sampled_from(SIGNED_EXTREMES)),
        "min_out": draw(st.sampled_from(SIGNED_EXTREMES)),
        "sell_dct": draw(st.booleans()),
        "symbol": draw(st.sampled_from(SYMBOLS)),
    }


def _mining(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "shares": draw(st.sampled_from(SIGNED_EXTREMES)),
        "symbol": draw(st.sampled_from(SYMBOLS)),
    }


def _an_offer(draw: st.DrawFn, chain: Chain) -> bytes:
    offers = [offer_id for offer_id, _ in chain.state.offers.sorted_items()]
    return draw(st.sampled_from(offers)) if offers and draw(st.booleans()) else bytes(32)


def _offer_stand(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "collateral": draw(st.sampled_from(SIGNED_EXTREMES)),
        "gpu_count": draw(st.sampled_from((0, 1, 1024, 1025, -1, 2**63))),
        "gpu_model": draw(st.sampled_from(("H100", "", "x" * 65))),
        "node_key": key("node-a").public_key.raw,
        "period": draw(st.sampled_from((0, 1, 10, 10**6, 10**6 + 1, 2**63))),
        "price": draw(st.sampled_from(SIGNED_EXTREMES)),
        "quote": draw(st.sampled_from(("", "TUSD", "NONE", "dct", "X" * 11))),
    }


def _offer_ref(kind: str) -> MsgBuilder:
    def build(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
        return draw(st.sampled_from(PEOPLE)), {"offer": _an_offer(draw, chain)}

    return build


def _offer_answer(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {"offer": _an_offer(draw, chain), "signature": bytes(64)}


def _offer_take(draw: st.DrawFn, chain: Chain) -> tuple[str, dict[str, Any]]:
    return draw(st.sampled_from(PEOPLE)), {
        "gpu_seconds": draw(st.sampled_from(SIGNED_EXTREMES)),
        "gpus": draw(st.sampled_from((0, 1, 8, 1024, 1025))),
        "offer": _an_offer(draw, chain),
        "max_price": draw(st.sampled_from((0, *SIGNED_EXTREMES))),
    }


#: One builder of extreme messages per transaction kind (a test checks none is missing).
BUILDERS: dict[str, MsgBuilder] = {
    "transfer": _transfer,
    "stake": _amount("amount"),
    "unstake": _amount("amount"),
    "validator_create": _validator_create,
    "validator_edit": _validator_edit,
    "delegate": _delegation("delegate"),
    "undelegate": _delegation("undelegate"),
    "redelegate": _delegation("redelegate"),
    "unjail": _unjail,
    "escrow_open": _escrow_open,
    "escrow_settle": _settle,
    "escrow_refund": _by_hash("alice"),
    "escrow_claim": _claim,
    "escrow_finalize": _by_hash("bob"),
    "escrow_dispute": _by_hash("alice"),
    "gov_propose": _gov_propose,
    "gov_vote": _gov_vote,
    "grant": _grant,
    "grant_revoke": _grant_revoke,
    "asset_propose": _asset_propose,
    "asset_mint": _asset_mint,
    "asset_send": _asset_send,
    "pool_add": _pool_add,
    "pool_remove": _pool_remove,
    "pool_swap": _pool_swap,
    "mining_bond": _mining,
    "mining_unbond": _mining,
    "offer_stand": _offer_stand,
    **{
        kind: _offer_ref(kind)
        for kind in ("offer_challenge", "offer_miss", "offer_withdraw", "offer_accept", "offer_refused")
    },
    "offer_answer": _offer_answer,
    "offer_take": _offer_take,
}


def test_every_transaction_kind_has_an_extreme_value_builder() -> None:
    assert set(BUILDERS) == set(MSG_TYPES)


def _setup(chain: Chain) -> None:
    """A registered asset (TUSD, issued by carol) of which everyone holds nearly a quarter of the
    limit, a pool holding a quarter of it and of alice's DCT; then an open escrow worth most of
    alice's balance (bob sells) and a proposal in its vote."""
    chain.block([chain.tx("dave", Transfer(addr(v), 10**6)) for v in ("val-0", "val-1", "val-2")])
    register(chain)
    chain.block([chain.tx("carol", AssetMint("TUSD", addr(p), MAX_AMOUNT // 4)) for p in PEOPLE])
    chain.block([chain.tx("alice", PoolAdd("TUSD", RICH_BALANCE // 4, MAX_AMOUNT // 4, 1))])
    standing = OfferStand(
        key("node-a").public_key.raw, "H100", 1024, TEST_PARAMS.standing_max_price, 10**6, RICH_BALANCE // 8
    )
    # A quoted offer needs the pool's average over a whole window; at the asset's lowest price.
    chain.advance_to(chain.height + chain.params.twap_window)
    quoted = dataclasses.replace(standing, price=1, quote="TUSD")
    chain.block([chain.tx("bob", standing), chain.tx("bob", quoted)])
    terms = make_terms(
        "alice",
        "bob",
        price=1,
        max_gpu_seconds=RICH_BALANCE // 2,
        collateral=RICH_BALANCE // 2,
        deadline=50,
    )
    chain.block(
        [
            chain.tx("alice", OpenEscrow(sign_contract(terms))),
            chain.tx("carol", GovPropose("min_fee", 11, chain.params.gov_min_deposit)),
            # Grants at the largest cap: escrows opened through them spend up to the maximum.
            chain.tx("carol", Grant(addr("alice"), MAX_AMOUNT, 100, ("escrow_open",))),
            chain.tx("dave", Grant(addr("bob"), MAX_AMOUNT, 100, ("escrow_open",))),
        ]
    )


def _all_ints(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | tuple):
        return [n for item in value for n in _all_ints(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _all_ints(item)]
    return []


def assert_in_range(state: LedgerState) -> None:
    """Every integer the state holds is in [0, 2^63 - 1], it hashes, and it round-trips."""
    state.check_invariants()
    state.state_hash()
    snapshot = encode_snapshot(state)
    numbers = _all_ints(decode(snapshot))
    assert all(0 <= n <= MAX_AMOUNT for n in numbers), [n for n in numbers if not 0 <= n <= MAX_AMOUNT]
    assert decode_snapshot(snapshot).state_hash() == state.state_hash()


@st.composite
def extreme_txs(draw: st.DrawFn, chain: Chain) -> list[bytes]:
    txs = []
    nonces: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(BUILDERS)))
        sender, msg = BUILDERS[kind](draw, chain)
        nonce = nonces.get(sender, chain.state.account(addr(sender)).nonce + 1)
        if draw(st.integers(0, 9)) == 0:
            nonce = draw(st.sampled_from(SIGNED_EXTREMES))
        nonces[sender] = min(nonce + 1, 2**64 - 1)
        fee = draw(st.sampled_from((chain.params.min_fee, *SIGNED_EXTREMES)))
        body = {"chain_id": CHAIN_ID, "fee": fee, "kind": kind, "msg": msg, "nonce": nonce}
        txs.append(sign_raw_body(sender, body))
    return txs


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_extreme_values_of_every_kind_are_refused_with_typed_errors_or_stay_in_range(
    data: st.DataObject,
) -> None:
    chain = rich_chain()
    _setup(chain)
    for _ in range(data.draw(st.integers(1, 3), label="blocks")):
        txs = data.draw(extreme_txs(chain), label="txs")
        for raw in txs:
            with contextlib.suppress(LedgerError):
                check_tx(chain.state, raw)
        before = chain.state.state_hash()
        ctx = BlockContext(chain.height + 1, addr("val-0"), signers=(addr("val-0"),))
        try:
            apply_block(chain.state, ctx, txs)
        except LedgerError as exc:
            assert 2000 <= exc.code < 3000
            assert chain.state.state_hash() == before
            chain.forget_reserved_nonces()
            chain.block()  # an empty block keeps the chain going
        assert_in_range(chain.state)


def test_a_free_contract_is_refused_and_its_settles_cannot_inflate_anything() -> None:
    # The attack: price 0, the maximum GPU-seconds, settled three times.
    chain = rich_chain()
    free = make_terms("alice", "bob", price=0, max_gpu_seconds=MAX_AMOUNT, collateral=0, deadline=9)
    assert_block_rejected(chain, [chain.tx("alice", OpenEscrow(sign_contract(free)))], FreeContract, 2028)
    # At the lowest price it is allowed, the most GPU-seconds a balance can pay for, three times:
    # the provider's reward weight is the burned fee, bounded by what was burned.
    txs = []
    for round_ in range(3):
        terms = make_terms(
            "alice",
            "bob",
            price=1,
            max_gpu_seconds=RICH_BALANCE // 4,
            collateral=0,
            deadline=9,
            salt=b"r%d" % round_,
        )
        txs += [
            chain.tx("alice", OpenEscrow(sign_contract(terms))),
            chain.tx("bob", settle_msg(terms, 2**52)),
        ]
    chain.block(txs)
    assert chain.state.epoch_work[addr("bob")] <= chain.state.vars["burned"]
    assert_in_range(chain.state)


@settings(max_examples=60, deadline=None)
@given(
    blocks_per_year=st.integers(1, 50),
    inflation_max=st.sampled_from((DEC // 2, DEC)),
    supply_share=st.integers(1, 1_000),
)
def test_issuance_stops_at_the_cap_whatever_the_rate(
    blocks_per_year: int, inflation_max: int, supply_share: int
) -> None:
    params = Params(
        blocks_per_year=blocks_per_year,
        inflation_max=inflation_max,
        inflation_min=inflation_max,
        min_fee=TEST_PARAMS.min_fee,
        min_validator_stake=1,
    )
    balance = (MAX_AMOUNT - 3 * GENESIS_STAKE) // 1_000 * supply_share // 4
    genesis = make_genesis(params, balances=[(label, balance) for label in PEOPLE])
    state = genesis_state(genesis)
    for height in range(1, 200):
        apply_block(state, BlockContext(height, addr("val-0")), [])
    issued = state.vars["genesis_supply"] + state.vars["minted"]
    assert issued <= economics.MAX_ISSUANCE
    if blocks_per_year <= 10:  # 100% (or 50%) a block at most ten blocks a year: the cap is reached
        assert issued == economics.MAX_ISSUANCE
    assert_in_range(state)


@pytest.mark.parametrize("blocks_per_year", [1, 3, 1_000])
def test_the_econsim_kernel_stops_at_the_cap_exactly_as_the_ledger(blocks_per_year: int) -> None:
    params = Params(blocks_per_year=blocks_per_year, inflation_max=DEC, inflation_min=DEC // 2)
    supply = MAX_AMOUNT // 3
    fast = kernel.span(supply, supply // 2, DEC, [5, 7], params, 300, issued=supply)
    slow = kernel.span_by_functions(supply, supply // 2, DEC, [5, 7], params, 300, issued=supply)
    assert (fast.supply, fast.minted, fast.validator_rewards) == (
        slow.supply,
        slow.minted,
        slow.validator_rewards,
    )
    assert fast.supply <= economics.MAX_ISSUANCE
