"""Standing offers: providers paid for capacity that stands, checked rather than trusted.

**The offer.** ``offer_stand`` posts GPUs (model, count), a price per GPU-second at most
``standing_max_price``, a period in blocks, the key of the node that serves them, and collateral of
at least ``standing_collateral_per_gpu`` per GPU. Its id is the hash of that transaction.

**Checked two ways.**
- *Buying it.* Anyone may take the offer at its price (``offer_take``: GPUs x GPU-seconds x price
  locked). The provider must accept within ``challenge_window`` blocks (``offer_accept``): the take
  becomes an ordinary escrow keyed by the take's hash, backed by part of the offer's collateral,
  settled, claimed or refunded as any contract (``protocol.ledger.escrow``). A provider that lets
  the window pass is recorded by the taker (``offer_refused``): the taker's funds come back with
  ``availability_slash_share`` of the collateral, and the offer earns nothing this epoch. Capacity
  that is not there, or not for sale at the posted price, costs collateral the first time someone
  buys it, and the price cap keeps every offer buyable.
- *Challenging it.* Anyone but the provider may challenge an offer (``offer_challenge``, with
  ``challenge_deposit``). The seed is the challenge transaction's hash: unknown to the provider
  before the challenge is on the ledger. The answer (``offer_answer``, which anyone may submit) is
  the signature of the offer's **node key** over the seed, in ``challenge_window`` blocks: only a
  node that is up and holds that key can make it, after the challenge. A valid answer pays the
  challenger's deposit to the provider (challenging costs the challenger, so nobody can grind a
  provider for free). A miss (``offer_miss``, recorded by anyone after the window) slashes
  ``availability_slash_share`` of the collateral, half to the challenger with its deposit, the rest
  burned, and the offer earns nothing this epoch.

**Neither side can fake it.** The challenger cannot make a live node look absent: the answer is
valid whoever relays it, and the deposit it loses pays the provider. The provider cannot look live
without its node: the seed is fresh and the signature is checked against the key posted in the
offer. A provider challenging itself (a second key) only moves its deposit between its own
pockets, minus fees: rewards never count challenges answered, only blocks stood.

**Prices in a stable unit.** An offer may be quoted in a registered asset (``quote``: its price
is then that asset's base units per GPU-second). A take fixes the DCT it locks, and the escrow it
becomes pays, from the DCT/asset pool's time-weighted price as the take's block sees it:
``ceil(price x 10^9 / twap)`` DCT base units per GPU-second (rounded up: the provider is never paid
less than it quoted, the requester pays under one base unit per GPU-second more). From then on
neither side's amount moves with DCT's price. Refused with a typed error while the pool's average
does not cover a whole ``twap_window`` (``NoQuotePrice``: a younger average is whatever the pool's
creator set), or while the pool holds less than ``QUOTE_DEPTH`` times the DCT the take locks
(``PoolTooShallow``: holding a thin pool's price away for a window costs less than it could gain).
``standing_max_price`` applies to the DCT price at posting.

**Rewards.** ``availability_share`` of each block's issuance (from the community pool's part, as
liquidity mining) goes to ``availability_pool`` while offers exist; at each epoch's end it is
split pro rata GPUs x blocks stood in the epoch, not counting offers that missed a challenge or
refused a take, nor those with a challenge unanswered past its window; dust to the community pool.

Attacks considered, and the node's side
---------------------------------------

| attack | mechanism | test (``tests/unit/``) |
|---|---|---|
| a provider faking availability | the seed exists only once the challenge is on the ledger; the answer must verify under the node key posted with the offer, not the wallet's; a live key is not GPUs, so the offer is also buyable by anyone | ``test_the_providers_wallet_key_cannot_answer_for_its_node``, ``test_an_answer_is_bound_to_its_seed_a_stale_one_does_not_answer_the_next_challenge`` |
| a challenger faking absence | the answer counts whoever relays it, and pays the deposit to the provider. Residual: validators censoring it for a whole window | |
| self-challenge, self-take | rewards count blocks stood, never challenges answered; the same key is ``OwnOffer`` 2327; a take from a second key is a self-dealt escrow, a loss under the provider-reward rules | ``test_challenging_oneself_from_a_second_key_gains_nothing`` |
| manipulating the price a take fixes | a whole-window average the take's own block cannot move; a fresh pool is refused; the depth rule keeps the gain small next to the capital a move needs | ``test_ledger_stable_quote.py`` |

**The node's side.** ``AvailabilityResponder`` (``node/services/availability.py``) answers each open
challenge of an offer naming this node's key once, within its window, through the market's
transaction lane, and signs nothing else; ``dcent offer answer`` does it by hand (RPC
``offer_answer``). Real nodes: ``tests/integration/test_standing_offers.py``,
``test_liquidity_node.py``; ``tests/e2e/test_liquidity.py`` runs pool, mining and a TUSD-quoted offer
(challenged, taken, settled; another refused) on two nodes.
"""

from __future__ import annotations

import dataclasses

from protocol import economics
from protocol.crypto import verify
from protocol.ledger import pool as pool_module
from protocol.ledger.bank import debit
from protocol.ledger.errors import AmountOverflow, ContractExists, NotAParty
from protocol.ledger.liquidity_errors import (
    BadAvailabilityProof,
    ChallengeOpen,
    ChallengeWindowClosed,
    ChallengeWindowOpen,
    CollateralTooLow,
    NoChallenge,
    NoQuotePrice,
    NoTake,
    OfferNotStanding,
    OwnOffer,
    PoolTooShallow,
    PriceTooHigh,
    SlippageExceeded,
    TakePending,
    TakeWindowClosed,
    TakeWindowOpen,
    TooManyGpus,
    TooManyOffers,
    UnknownOffer,
)
from protocol.ledger.liquidity_state import StandingOffer, Take
from protocol.ledger.state import Escrow, LedgerState
from protocol.ledger.tx import (
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferMiss,
    OfferRefused,
    OfferStand,
    OfferTake,
    OfferWithdraw,
    Tx,
    availability_bytes,
)
from protocol.units import DCT, MAX_AMOUNT

MAX_OFFERS = 10_000
#: A take of an offer quoted in an asset needs the pool to hold at least this many times the DCT
#: it locks: moving a constant-product pool's price by a factor p and holding it for a window
#: costs the manipulator arbitrage on a trade of about reserve x (sqrt(p) - 1) every block, so a
#: deep pool makes the ~(p - 1) x cost a manipulated take could gain the smaller amount.
QUOTE_DEPTH = 10


def quote_price(state: LedgerState, symbol: str, height: int) -> int:
    """The DCT/``symbol`` pool's time-weighted price (asset base units per DCT) as transactions of
    block ``height`` see it, over a whole ``twap_window``. Raises NoQuotePrice."""
    pool = state.pools.get(symbol)
    window = state.params.twap_window
    if pool is None:
        raise NoQuotePrice(f"no DCT/{symbol} pool: an offer quoted in {symbol} has no DCT price")
    first_priced = pool.marks[0][0] if pool.marks else pool.last_height + 1
    price = pool_module.twap(pool, height, window)
    if price is None or first_priced > height - window + 1 or price <= 0:
        raise NoQuotePrice(f"the DCT/{symbol} pool has no time-weighted price over {window} blocks yet")
    return price


def dct_price(quoted: int, twap: int) -> int:
    """DCT base units per GPU-second for ``quoted`` asset base units per GPU-second at ``twap``
    (asset base units per DCT), rounded up; at least 1 base unit."""
    return max(1, -(-quoted * DCT // twap))


def offer_dct_price(state: LedgerState, offer: StandingOffer, height: int) -> int:
    """What one GPU-second of ``offer`` costs in DCT base units for a take in block ``height``.
    Raises NoQuotePrice."""
    if not offer.quote:
        return offer.price
    return dct_price(offer.price, quote_price(state, offer.quote, height))


def _offer(state: LedgerState, offer_id: bytes) -> StandingOffer:
    offer = state.offers.get(offer_id)
    if offer is None:
        raise UnknownOffer("no standing offer with that id")
    return offer


def stand(state: LedgerState, tx: Tx, msg: OfferStand, height: int) -> bytes:
    params = state.params
    if len(state.offers) >= MAX_OFFERS:
        raise TooManyOffers(f"the ledger holds at most {MAX_OFFERS} standing offers")
    price = msg.price
    if msg.quote:
        pool_module.active_asset(state, msg.quote)
        price = dct_price(msg.price, quote_price(state, msg.quote, height))
    if price > params.standing_max_price:
        raise PriceTooHigh(f"price {price} is above the standing maximum {params.standing_max_price}")
    needed = msg.gpu_count * params.standing_collateral_per_gpu
    if msg.collateral < needed:
        raise CollateralTooLow(f"{msg.gpu_count} GPUs need at least {needed} base units of collateral")
    debit(state, tx.sender, msg.collateral, "standing offer collateral")
    offer = StandingOffer(
        provider=tx.sender,
        provider_key=tx.public_key,
        node_key=msg.node_key,
        gpu_model=msg.gpu_model,
        gpu_count=msg.gpu_count,
        price=msg.price,
        collateral=msg.collateral,
        start=height,
        end=height + msg.period,
        credited_until=height,
        quote=msg.quote,
    )
    state.offers.set(tx.hash, offer)
    return tx.hash


def _standing(offer: StandingOffer, height: int) -> None:
    if height > offer.end:
        raise OfferNotStanding(f"the offer stood until height {offer.end}")


def challenge(state: LedgerState, tx: Tx, msg: OfferChallenge, height: int) -> None:
    offer = _offer(state, msg.offer)
    _standing(offer, height)
    if tx.sender == offer.provider:
        raise OwnOffer("a provider cannot challenge its own offer")
    if offer.seed:
        raise ChallengeOpen("the offer already has an open challenge")
    deposit = state.params.challenge_deposit
    debit(state, tx.sender, deposit, "challenge deposit")
    deadline = height + state.params.challenge_window
    state.offers.set(
        msg.offer,
        dataclasses.replace(offer, seed=tx.hash, deadline=deadline, challenger=tx.sender, deposit=deposit),
    )


def _cleared(offer: StandingOffer) -> StandingOffer:
    return dataclasses.replace(offer, seed=b"", deadline=0, challenger=b"", deposit=0)


def answer(state: LedgerState, tx: Tx, msg: OfferAnswer, height: int) -> None:
    offer = _offer(state, msg.offer)
    if not offer.seed:
        raise NoChallenge("the offer has no open challenge")
    if height > offer.deadline:
        raise ChallengeWindowClosed(f"the challenge had to be answered by height {offer.deadline}")
    if not verify(offer.node_key, msg.signature, availability_bytes(state.chain_id, msg.offer, offer.seed)):
        raise BadAvailabilityProof("not the offer's node key's signature over the challenge's seed")
    state.credit(offer.provider, offer.deposit)
    state.offers.set(msg.offer, _cleared(offer))


def miss(state: LedgerState, tx: Tx, msg: OfferMiss, height: int) -> None:
    offer = _offer(state, msg.offer)
    if not offer.seed:
        raise NoChallenge("the offer has no open challenge")
    if height <= offer.deadline:
        raise ChallengeWindowOpen(f"the node may answer until height {offer.deadline}")
    slashed = economics.mul_ratio(offer.collateral, state.params.availability_slash_share)
    bounty = slashed // 2
    state.credit(offer.challenger, offer.deposit + bounty)
    state.add("burned", slashed - bounty)
    state.offers.set(
        msg.offer, dataclasses.replace(_cleared(offer), collateral=offer.collateral - slashed, forfeited=True)
    )


def withdraw(state: LedgerState, tx: Tx, msg: OfferWithdraw, height: int) -> None:
    offer = _offer(state, msg.offer)
    if tx.sender != offer.provider:
        raise NotAParty("only the provider withdraws its offer")
    if height <= offer.end:
        raise OfferNotStanding(f"the offer stands until height {offer.end}")
    if offer.seed:
        raise ChallengeOpen("answer the open challenge (or let it be recorded as missed) first")
    if msg.offer in state.takes:
        raise TakePending("a take is waiting: accept it or let it be refused first")
    state.credit(offer.provider, offer.collateral)
    state.offers.delete(msg.offer)


def take(state: LedgerState, tx: Tx, msg: OfferTake, height: int) -> None:
    offer = _offer(state, msg.offer)
    _standing(offer, height)
    if tx.sender == offer.provider:
        raise OwnOffer("a provider cannot take its own offer")
    if msg.offer in state.takes:
        raise TakePending("the offer already has a take waiting for the provider")
    if msg.gpus > offer.gpu_count:
        raise TooManyGpus(f"the offer stands for {offer.gpu_count} GPUs")
    price = offer_dct_price(state, offer, height)
    if msg.max_price and price > msg.max_price:
        raise SlippageExceeded(
            f"a GPU-second costs {price} base units now, above the take's limit {msg.max_price}"
        )
    cost = msg.gpus * msg.gpu_seconds * price
    if cost > MAX_AMOUNT:
        raise AmountOverflow("the take would cost more than the ledger holds")
    if offer.quote and state.pools[offer.quote].dct < QUOTE_DEPTH * cost:
        raise PoolTooShallow(
            f"the DCT/{offer.quote} pool holds {state.pools[offer.quote].dct} base units of DCT, "
            f"less than {QUOTE_DEPTH} times the take's {cost}"
        )
    debit(state, tx.sender, cost, "standing offer take")
    pending = Take(
        take_id=tx.hash,
        requester=tx.sender,
        requester_key=tx.public_key,
        gpus=msg.gpus,
        gpu_seconds=msg.gpu_seconds,
        max_cost=cost,
        deadline=height + state.params.challenge_window,
        price=price,
    )
    state.takes.set(msg.offer, pending)


def _take(state: LedgerState, offer_id: bytes) -> Take:
    pending = state.takes.get(offer_id)
    if pending is None:
        raise NoTake("the offer has no pending take")
    return pending


def accept(state: LedgerState, tx: Tx, msg: OfferAccept, height: int) -> bytes:
    """The take becomes an escrow keyed by the take's hash; returns that key."""
    offer = _offer(state, msg.offer)
    pending = _take(state, msg.offer)
    if tx.sender != offer.provider:
        raise NotAParty("only the provider accepts a take of its offer")
    if height > pending.deadline:
        raise TakeWindowClosed(f"the take had to be accepted by height {pending.deadline}")
    if pending.take_id in state.escrows or pending.take_id in state.closed_contracts:
        raise ContractExists("an escrow with the take's id exists")  # pragma: no cover - hashes are unique
    collateral = min(offer.collateral, pending.max_cost)
    # A GPU-second per block at most: the job has at least its runtime in blocks.
    deadline = height + state.params.challenge_window + pending.gpu_seconds
    if deadline > MAX_AMOUNT:
        raise AmountOverflow("the take runs past the last height the ledger encodes")
    state.escrows.set(
        pending.take_id,
        Escrow(
            requester_key=pending.requester_key,
            provider_key=offer.provider_key,
            requester=pending.requester,
            provider=offer.provider,
            price_per_gpu_second=pending.price,
            max_gpu_seconds=pending.gpus * pending.gpu_seconds,
            max_cost=pending.max_cost,
            collateral=collateral,
            deadline_height=deadline,
            opened_height=height,
        ),
    )
    state.add("total_escrowed", pending.max_cost + collateral)
    state.offers.set(msg.offer, dataclasses.replace(offer, collateral=offer.collateral - collateral))
    state.takes.delete(msg.offer)
    return pending.take_id


def refused(state: LedgerState, tx: Tx, msg: OfferRefused, height: int) -> None:
    offer = _offer(state, msg.offer)
    pending = _take(state, msg.offer)
    if tx.sender != pending.requester:
        raise NotAParty("only the taker records a refusal")
    if height <= pending.deadline:
        raise TakeWindowOpen(f"the provider may accept until height {pending.deadline}")
    slashed = economics.mul_ratio(offer.collateral, state.params.availability_slash_share)
    state.credit(pending.requester, pending.max_cost + slashed)
    state.offers.set(
        msg.offer, dataclasses.replace(offer, collateral=offer.collateral - slashed, forfeited=True)
    )
    state.takes.delete(msg.offer)


# --- rewards ------------------------------------------------------------------------------------------
def accrue(state: LedgerState, amount: int) -> None:
    """End-block: the availability share of this block's issuance, set aside while offers exist."""
    state.add("availability_pool" if len(state.offers) else "community_pool", amount)


def _epoch_weight(offer: StandingOffer, height: int) -> int:
    if offer.forfeited or (offer.seed and height > offer.deadline):
        return 0
    stood = max(0, min(height, offer.end) - max(offer.credited_until, offer.start))
    return offer.gpu_count * stood


def pay_epoch(state: LedgerState, height: int) -> list[tuple[bytes, int]]:
    """Split the pot pro rata GPUs x blocks stood this epoch; dust to the community pool; every
    offer starts the next epoch with no weight and no forfeit."""
    weights = [(offer_id, _epoch_weight(offer, height)) for offer_id, offer in state.offers.sorted_items()]
    shares, dust = economics.pro_rata(state.vars["availability_pool"], weights)
    state.vars.set("availability_pool", 0)
    state.add("community_pool", dust)
    paid: dict[bytes, int] = {}
    for offer_id, reward in shares:
        provider = state.offers[offer_id].provider
        paid[provider] = paid.get(provider, 0) + reward
    for address, reward in sorted(paid.items()):
        state.credit(address, reward)
    for offer_id, offer in state.offers.sorted_items():
        state.offers.set(offer_id, dataclasses.replace(offer, credited_until=height, forfeited=False))
    return sorted(paid.items())
