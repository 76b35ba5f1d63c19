"""Applying blocks: begin-block (slashing, unbonding releases), transactions, end-block
(issuance, fees, rewards, epoch payouts to providers, governance tallies).

A block is valid only if every transaction in it applies; ``apply_block`` is atomic, so an
invalid block leaves the state exactly as it was. Proposers use :func:`select_txs` to keep only
the candidates that apply, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import economics
from protocol.ledger import (
    authz,
    availability,
    bank,
    distribution,
    escrow,
    gov,
    mining,
    pool,
    slashing,
    staking,
)
from protocol.ledger.errors import ArithmeticFault, BadBlockHeight, LedgerError, UnknownTxKind
from protocol.ledger.events import (
    VALIDATOR_JAILED,
    VALIDATOR_SLASHED,
    LedgerEvent,
    parameter_events,
    tx_events,
)
from protocol.ledger.state import GovProposal, LedgerState
from protocol.ledger.tx import (
    AssetMint,
    AssetPropose,
    AssetSend,
    Delegate,
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    Grant,
    GrantRevoke,
    MiningBond,
    MiningUnbond,
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
    Settle,
    Stake,
    Transfer,
    Tx,
    Undelegate,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    decode_tx,
)


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """A validator offence proven by verified evidence (supplied by consensus)."""

    validator: bytes
    kind: str = "double_sign"
    height: int = 0


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What consensus tells the ledger about a block. Validators are named by consensus address."""

    height: int
    proposer: bytes
    #: Validators whose precommits are in the parent's commit certificate (rewarded).
    signers: tuple[bytes, ...] = ()
    misbehaviour: tuple[Misbehaviour, ...] = ()
    #: The validator set that voted on the parent; those of it not in ``signers`` missed the
    #: parent's height (downtime jailing). Empty when unknown: then nobody is judged.
    voters: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockResult:
    height: int
    state_hash: bytes
    tx_hashes: tuple[bytes, ...]
    fees: int
    minted: int
    burned: int
    validator_rewards: tuple[tuple[bytes, int], ...]
    provider_rewards: tuple[tuple[bytes, int], ...]
    closed_proposals: tuple[int, ...]
    #: Liquidity mining and standing-offer payouts at an epoch's end, by address
    #: (protocol.ledger.mining, protocol.ledger.availability).
    mining_rewards: tuple[tuple[bytes, int], ...] = ()
    #: What the block did that services react to, in the order it did it (protocol.ledger.events).
    events: tuple[LedgerEvent, ...] = ()


def _dispatch(state: LedgerState, tx: Tx, height: int) -> None:
    msg = tx.msg
    if isinstance(msg, Transfer):
        bank.transfer(state, tx, msg)
    elif isinstance(msg, Stake):
        staking.stake(state, tx, msg)
    elif isinstance(msg, Unstake):
        staking.unstake(state, tx, msg, height)
    elif isinstance(msg, ValidatorCreate):
        staking.create_validator(state, tx, msg, height)
    elif isinstance(msg, ValidatorEdit):
        staking.edit_validator(state, tx, msg, height)
    elif isinstance(msg, Delegate):
        staking.delegate(state, tx, msg)
    elif isinstance(msg, Undelegate):
        staking.undelegate(state, tx, msg, height)
    elif isinstance(msg, Redelegate):
        staking.redelegate(state, tx, msg, height)
    elif isinstance(msg, Unjail):
        slashing.unjail(state, tx, msg, height)
    elif isinstance(msg, OpenEscrow):
        escrow.open_escrow(state, tx, msg, height)
    elif isinstance(msg, Settle):
        escrow.settle(state, tx, msg)
    elif isinstance(msg, Refund):
        escrow.refund(state, tx, msg, height)
    elif isinstance(msg, EscrowClaim):
        escrow.claim(state, tx, msg, height)
    elif isinstance(msg, EscrowFinalize):
        escrow.finalize(state, tx, msg, height)
    elif isinstance(msg, EscrowDispute):
        escrow.dispute(state, tx, msg, height)
    elif isinstance(msg, GovPropose):
        gov.propose(state, tx, msg, height)
    elif isinstance(msg, GovVote):
        gov.vote(state, tx, msg, height)
    elif isinstance(msg, Grant):
        authz.grant(state, tx, msg, height)
    elif isinstance(msg, GrantRevoke):
        authz.revoke(state, tx, msg)
    elif isinstance(msg, AssetPropose):
        pool.propose_asset(state, tx, msg, height)
    elif isinstance(msg, AssetMint):
        pool.mint(state, tx, msg)
    elif isinstance(msg, AssetSend):
        pool.send(state, tx, msg)
    elif isinstance(msg, PoolAdd):
        pool.add_liquidity(state, tx, msg, height)
    elif isinstance(msg, PoolRemove):
        pool.remove_liquidity(state, tx, msg, height)
    elif isinstance(msg, PoolSwap):
        pool.swap(state, tx, msg, height)
    elif isinstance(msg, MiningBond):
        mining.bond(state, tx, msg, height)
    elif isinstance(msg, MiningUnbond):
        mining.unbond(state, tx, msg, height)
    elif isinstance(msg, _OFFER_KINDS):
        _dispatch_offer(state, tx, height)
    else:  # pragma: no cover - decode_tx only builds the kinds above
        raise UnknownTxKind(f"no handler for {type(msg).__name__}")


_OFFER_KINDS = (
    OfferStand,
    OfferChallenge,
    OfferAnswer,
    OfferMiss,
    OfferWithdraw,
    OfferTake,
    OfferAccept,
    OfferRefused,
)


def _dispatch_offer(state: LedgerState, tx: Tx, height: int) -> None:
    msg = tx.msg
    if isinstance(msg, OfferStand):
        availability.stand(state, tx, msg, height)
    elif isinstance(msg, OfferChallenge):
        availability.challenge(state, tx, msg, height)
    elif isinstance(msg, OfferAnswer):
        availability.answer(state, tx, msg, height)
    elif isinstance(msg, OfferMiss):
        availability.miss(state, tx, msg, height)
    elif isinstance(msg, OfferWithdraw):
        availability.withdraw(state, tx, msg, height)
    elif isinstance(msg, OfferTake):
        availability.take(state, tx, msg, height)
    elif isinstance(msg, OfferAccept):
        availability.accept(state, tx, msg, height)
    elif isinstance(msg, OfferRefused):
        availability.refused(state, tx, msg, height)


def apply_tx(state: LedgerState, tx: Tx | bytes, height: int, *, verify_signature: bool = True) -> Tx:
    """Apply one transaction at block ``height``; atomic. Raises a LedgerError subclass."""
    decoded = decode_tx(tx) if isinstance(tx, bytes) else tx
    try:
        with state.journal.atomic():
            bank.ante(state, decoded, verify_signature=verify_signature)
            _dispatch(state, decoded, height)
    except ArithmeticError as exc:  # OverflowError, ZeroDivisionError: a bug, kept typed
        raise ArithmeticFault(f"transaction execution failed: {exc!r}") from None
    return decoded


class _Discard(Exception):
    """Raised to roll back a dry run on purpose."""


def check_tx(state: LedgerState, raw: bytes) -> Tx:
    """Would ``raw`` apply on top of ``state`` in the next block? Mempool admission; changes nothing.

    Raises the LedgerError the transaction would fail with.
    """
    decoded = decode_tx(raw)
    try:
        with state.journal.atomic():
            apply_tx(state, decoded, state.height + 1)
            raise _Discard
    except _Discard:
        pass
    return decoded


def _begin_block(state: LedgerState, ctx: BlockContext) -> list[LedgerEvent]:
    """Evidence first, then liveness, then releases: stake maturing in this very block is
    still slashed for an infraction proven in it. Returns the slashes and jailings as events."""
    state.vars.set("height", ctx.height)
    offences = sorted(ctx.misbehaviour, key=lambda m: (m.validator, m.kind, m.height))
    slashed = slashing.punish_double_signs(
        state, [(m.validator, m.height) for m in offences if m.kind == "double_sign"]
    )
    jailed = slashing.track_liveness(state, ctx.height, ctx.voters, ctx.signers)
    staking.release_matured(state, ctx.height)
    mining.release_matured(state, ctx.height)
    return [LedgerEvent(VALIDATOR_SLASHED, operator) for operator in slashed] + [
        LedgerEvent(VALIDATOR_JAILED, operator) for operator in jailed
    ]


def _merged(a: list[tuple[bytes, int]], b: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    total: dict[bytes, int] = dict(a)
    for address, amount in b:
        total[address] = total.get(address, 0) + amount
    return sorted(total.items())


def _end_block(
    state: LedgerState, ctx: BlockContext
) -> tuple[
    int, int, list[tuple[bytes, int]], list[tuple[bytes, int]], list[GovProposal], list[tuple[bytes, int]]
]:
    params = state.params
    fees = state.vars["fee_pool"]
    state.vars.set("fee_pool", 0)
    fee_burn, fee_to_validators = economics.split_fees(fees, params)
    state.add("burned", fee_burn)

    supply = state.total_supply()
    inflation = economics.next_inflation(state.vars["inflation"], state.vars["total_bonded"], supply, params)
    state.vars.set("inflation", inflation)
    issued = state.vars["genesis_supply"] + state.vars["minted"]
    provision = economics.block_provision(supply, inflation, params, issued=issued)
    state.add("minted", provision)
    split = economics.split_issuance(provision, params)
    # Liquidity mining's share comes out of the community pool's part (protocol.ledger.mining):
    # the params keep validators + providers + mining <= 100%, so the part covers it.
    to_mining = economics.mul_ratio(provision, params.liquidity_mining_share)
    to_availability = economics.mul_ratio(provision, params.availability_share)
    state.add("community_pool", split.community - to_mining - to_availability)
    mining.accrue(state, to_mining)
    availability.accrue(state, to_availability)
    state.add("provider_pool", split.providers)

    active = state.validator_set()
    signers = set(ctx.signers)
    rewarded = [(v.address, v.power) for v in active if v.address in signers] or [
        (v.address, v.power) for v in active
    ]
    shares, dust = economics.pro_rata(split.validators + fee_to_validators, rewarded)
    validator_rewards = []
    for consensus_address, reward in shares:
        operator = state.consensus_index[consensus_address]
        distribution.accrue(state, operator, reward)
        validator_rewards.append((operator, reward))
    state.add("community_pool", dust)

    provider_rewards: list[tuple[bytes, int]] = []
    if ctx.height % params.epoch_length == 0 and len(state.epoch_work):
        work = state.epoch_work.sorted_items()
        provider_rewards, left = economics.provider_payouts(
            state.vars["provider_pool"], work, params.provider_reward_cap
        )
        for address, reward in provider_rewards:
            state.credit(address, reward)
        state.vars.set("provider_pool", left)
        for address, _ in work:
            state.epoch_work.delete(address)

    mining_rewards: list[tuple[bytes, int]] = []
    if ctx.height % params.epoch_length == 0 and (len(state.mining) or state.vars["mining_pool"]):
        mining_rewards = mining.pay_epoch(state, ctx.height)
    if ctx.height % params.epoch_length == 0 and (len(state.offers) or state.vars["availability_pool"]):
        availability_rewards = availability.pay_epoch(state, ctx.height)
        mining_rewards = _merged(mining_rewards, availability_rewards)

    closed = gov.tally_ending(state, ctx.height)
    return provision, fee_burn, validator_rewards, provider_rewards, closed, mining_rewards


def apply_block(
    state: LedgerState,
    ctx: BlockContext,
    txs: Sequence[bytes | Tx],
    *,
    verified: Callable[[Tx], bool] | None = None,
) -> BlockResult:
    """Apply a block in place; atomic. Raises BadBlockHeight or the first transaction's
    LedgerError (with ``tx_index`` set), and then the state is unchanged.

    ``verified(tx)`` may report a signature already checked (by the mempool) to skip re-checking.
    """
    if ctx.height != state.height + 1:
        raise BadBlockHeight(f"block height {ctx.height} does not follow {state.height}")
    burned_before = state.vars["burned"]
    tx_hashes = []
    try:
        with state.journal.atomic():
            events = _begin_block(state, ctx)
            for index, raw in enumerate(txs):
                try:
                    tx = decode_tx(raw) if isinstance(raw, bytes) else raw
                    skip_verify = verified is not None and verified(tx)
                    apply_tx(state, tx, ctx.height, verify_signature=not skip_verify)
                except LedgerError as exc:
                    exc.tx_index = index
                    raise
                tx_hashes.append(tx.hash)
                events.extend(tx_events(tx.msg, state))
            fees_before_end = state.vars["fee_pool"]
            minted, _, validator_rewards, provider_rewards, closed, mining_rewards = _end_block(state, ctx)
            events.extend(parameter_events(closed))
            # Inside the atomic scope: a state that cannot be hashed is rolled back, not kept.
            state_hash = state.state_hash()
    except ArithmeticError as exc:  # OverflowError (msgpack included), ZeroDivisionError
        raise ArithmeticFault(f"block execution failed: {exc!r}") from None
    return BlockResult(
        height=ctx.height,
        state_hash=state_hash,
        tx_hashes=tuple(tx_hashes),
        fees=fees_before_end,
        minted=minted,
        burned=state.vars["burned"] - burned_before,
        validator_rewards=tuple(validator_rewards),
        provider_rewards=tuple(provider_rewards),
        closed_proposals=tuple(p.id for p in closed),
        mining_rewards=tuple(mining_rewards),
        events=tuple(events),
    )


def select_txs(
    state: LedgerState,
    ctx: BlockContext,
    candidates: Sequence[bytes | Tx],
    max_txs: int,
    *,
    verified: Callable[[Tx], bool] | None = None,
    max_bytes: int | None = None,
    byte_cost: Callable[[bytes], int] = len,
    out_of_time: Callable[[], bool] | None = None,
) -> list[bytes]:
    """The candidates that apply in order on top of ``state`` for block ``ctx`` (proposers), as
    raw bytes. ``verified(tx)`` may report a signature the mempool already checked.

    Bounds: at most ``max_txs`` transactions and ``max_bytes`` of ``byte_cost`` (a candidate that
    does not fit is passed over, a smaller later one may still fit); selection stops as soon as
    ``out_of_time()`` says so (the node's assembly time bound; the choice is the proposer's, and
    the block's validity never depends on it).

    Dry run: the state is unchanged afterwards.
    """
    chosen: list[bytes] = []
    spent = 0
    try:
        with state.journal.atomic():
            _begin_block(state, ctx)
            for candidate in candidates:
                if len(chosen) >= max_txs or (out_of_time is not None and out_of_time()):
                    break
                raw = candidate if isinstance(candidate, bytes) else candidate.raw
                cost = byte_cost(raw)
                if max_bytes is not None and spent + cost > max_bytes:
                    continue
                try:
                    tx = decode_tx(candidate) if isinstance(candidate, bytes) else candidate
                    skip_verify = verified is not None and verified(tx)
                    apply_tx(state, tx, ctx.height, verify_signature=not skip_verify)
                except LedgerError:
                    continue
                chosen.append(tx.raw)
                spent += cost
            raise _Discard
    except _Discard:
        pass
    return chosen
