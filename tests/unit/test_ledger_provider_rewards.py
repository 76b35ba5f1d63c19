"""Provider rewards cannot be farmed by trading with oneself.

The attack (issue 12, item 4): a party holding two keys opens contracts between them at any
price, settles them, and collects the epoch's provider pool. The rule under test
(``economics.provider_payouts``): the pool is split pro rata the protocol fees each provider's
contracts burned, and no provider gets more than ``provider_reward_cap`` (< 100%) of what it
burned. So whatever the price, the usage, the pool's size or the honest providers around it,
the self-dealer ends the epoch poorer than it started.
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol import economics
from protocol.economics import mul_ratio
from protocol.ledger.params import PARAM_BOUNDS
from protocol.ledger.tx import OpenEscrow
from protocol.units import percent

from .ledger_helpers import TEST_PARAMS, Chain, addr, make_genesis, make_terms, settle_msg, sign_contract

#: Self-dealing keys (requester "mallory", provider "erin") and honest pairs.
ATTACKER = ("mallory", "erin")
HONEST = (("alice", "bob"), ("carol", "dave"))
RICH = 2**60


def _chain(protocol_fee_share: int, cap: int, pool: int) -> Chain:
    params = TEST_PARAMS.with_value("protocol_fee_share", protocol_fee_share).with_value(
        "provider_reward_cap", cap
    )
    balances = [(label, RICH) for label in ("mallory", "erin", "alice", "bob", "carol", "dave")]
    balances.append(("val-0", pool))
    chain = Chain(make_genesis(params, balances=balances))
    # Model a pool that grew over many epochs: val-0's balance moves into it (supply unchanged).
    account = chain.state.account(addr("val-0"))
    chain.state.accounts.set(addr("val-0"), type(account)(account.balance - pool, account.nonce))
    chain.state.add("provider_pool", pool)
    chain.state.check_invariants()
    return chain


@settings(max_examples=200, deadline=None)
@given(
    price=st.one_of(st.integers(1, 10), st.integers(1, 2**40)),
    seconds=st.integers(1, 2**20),
    used=st.integers(0, 2**20),
    protocol_fee_share=st.sampled_from((0, 1, percent(1), percent(2), percent(50))),
    cap=st.integers(0, PARAM_BOUNDS["provider_reward_cap"][1]),
    pool=st.one_of(st.integers(0, 10**6), st.integers(0, 2**58)),
    honest=st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 1_000)), max_size=2),
    rounds=st.integers(1, 3),
)
def test_trading_with_oneself_at_any_price_never_pays(
    price: int,
    seconds: int,
    used: int,
    protocol_fee_share: int,
    cap: int,
    pool: int,
    honest: list[tuple[int, int]],
    rounds: int,
) -> None:
    # The attacker can afford every round's escrow (what it cannot afford it cannot try).
    assume(rounds * price * seconds <= RICH // 2)
    chain = _chain(protocol_fee_share, cap, pool)
    requester, provider = ATTACKER
    wealth_before = chain.balance(requester) + chain.balance(provider)
    epoch = chain.params.epoch_length
    assert chain.height == 0

    opens, settles = [], []
    for round_ in range(rounds):
        terms = make_terms(
            requester,
            provider,
            price=price,
            max_gpu_seconds=seconds,
            collateral=1,
            deadline=epoch + 5,
            salt=b"self-%d" % round_,
        )
        opens.append(chain.tx(requester, OpenEscrow(sign_contract(terms))))
        settles.append(chain.tx(provider, settle_msg(terms, used)))
    for (honest_price, honest_used), (buyer, seller) in zip(honest, HONEST, strict=False):
        terms = make_terms(buyer, seller, price=honest_price, max_gpu_seconds=1_000, deadline=epoch + 5)
        opens.append(chain.tx(buyer, OpenEscrow(sign_contract(terms))))
        settles.append(chain.tx(seller, settle_msg(terms, honest_used)))
    chain.block(opens)
    chain.block(settles)
    burned_weight = chain.state.epoch_work.get(addr(provider)) or 0
    chain.advance_to(epoch)  # the payout block

    wealth_after = chain.balance(requester) + chain.balance(provider)
    # Every contract paid its protocol fee and two transaction fees: a self-dealer always loses.
    assert wealth_after < wealth_before
    paid = wealth_after - wealth_before + 2 * rounds * chain.params.min_fee
    expected_burn = rounds * mul_ratio(min(used, seconds) * price, protocol_fee_share)
    assert burned_weight == expected_burn
    # Its pool payout is at most the capped share of what it burned: strictly less when positive.
    payout = paid + expected_burn
    assert 0 <= payout <= mul_ratio(expected_burn, cap)
    assert payout == 0 or payout < expected_burn


def test_payouts_split_a_scarce_pool_pro_rata_and_cap_a_plentiful_one() -> None:
    weights = [(b"a", 100), (b"b", 300), (b"c", 0)]
    scarce, left = economics.provider_payouts(40, weights, percent(50))
    assert scarce == [(b"a", 10), (b"b", 30)] and left == 0
    plentiful, left = economics.provider_payouts(10_000, weights, percent(50))
    assert plentiful == [(b"a", 50), (b"b", 150)] and left == 10_000 - 200
    nothing, left = economics.provider_payouts(10_000, [(b"a", 0)], percent(50))
    assert nothing == [] and left == 10_000
