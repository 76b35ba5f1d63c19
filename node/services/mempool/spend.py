"""What a waiting transaction commits: per kind, which accounts' balances (or bonded stakes) it
takes from when it applies, and whether that alone tells if it applies.

The mempool adds these up per account over every waiting transaction and admits a new one only
if the committed state still covers the sum: the sender's balance pays the fee plus the amount of
this and of all its waiting transactions (an unfunded key cannot park anything), and an unstake
fits in what is bonded minus what waiting unstakes already take. Credits a waiting transaction
would bring (a transfer in, a settled escrow, a release) are not counted: they may never apply.

Attacks this is designed against:
- a flood from unfunded keys: the first transaction of such a key already fails here, before any
  signature is checked, so it costs the node a dict lookup and is never relayed;
- a funded key promising its balance many times over (64 transfers of the whole balance): every
  waiting transaction of one sender is covered at once, so blocks never meet an unpayable one;
- a contract that locks a third party's collateral: ``escrow_open`` counts the provider's
  collateral against the provider's balance too, so its own transactions cannot spend it twice;
- a wallet paying through a grant: the escrow counts against the payer's balance, where the
  money is, so pending escrows of its node cannot promise the wallet's balance twice;
- undelegations and redelegations promising one delegation many times over: each draws on the
  sender's delegation to that validator (``delegation(validator)``), summed like a balance.

Extending: a new transaction kind gets a :class:`KindRule` in :data:`RULES` (the unit tests fail
for a kind without one); a new kind of holding (a delegation to one validator, say) gets a reader
in :data:`READERS`, keyed by :class:`Resource` name, with the ledger error for "never enough".
A kind without a rule is admitted conservatively: only its fee is counted, and it is always
dry-run against its sender's pending state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from protocol.ledger.authz import fee_payer
from protocol.ledger.errors import InsufficientFunds, InsufficientStake, LedgerError
from protocol.ledger.liquidity_errors import InsufficientAsset, NotBonded
from protocol.ledger.pool import holding as asset_holding
from protocol.ledger.staking import delegation_value
from protocol.ledger.state import LedgerState
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
    Settle,
    Stake,
    Transfer,
    Tx,
    Undelegate,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
)
from protocol.units import format_amount


class Resource(NamedTuple):
    """A holding of an account that transactions draw on: ``("balance", b"")``, ``("bonded",
    b"")`` (an operator's own delegation); ``subject`` names what a parametrised holding is of
    (the validator, for ``("delegation", validator)``)."""

    name: str
    subject: bytes = b""


class Claim(NamedTuple):
    account: bytes
    resource: Resource
    amount: int


BALANCE = Resource("balance")
BONDED = Resource("bonded")


@dataclass(frozen=True, slots=True)
class Reader:
    """How much of a resource an account holds in the committed state, and the ledger error a
    transaction asking for more than that would fail with in any block."""

    read: Callable[[LedgerState, bytes, bytes], int]
    never_enough: type[LedgerError]
    what: str


def delegation(validator: bytes) -> Resource:
    """What an account has delegated to ``validator`` (an operator address)."""
    return Resource("delegation", validator)


def _bonded(state: LedgerState, address: bytes, _subject: bytes) -> int:
    # ``unstake`` draws on the operator's own delegation to its validator.
    return delegation_value(state, address, address)


def _delegated(state: LedgerState, address: bytes, validator: bytes) -> int:
    return delegation_value(state, address, validator)


def holding(denom: str) -> Resource:
    """What an account holds of a registered asset or of pool shares (``lp:SYMBOL``)."""
    return Resource("holding", denom.encode())


def _held(state: LedgerState, address: bytes, denom: bytes) -> int:
    return asset_holding(state, address, denom.decode())


READERS: dict[str, Reader] = {
    BALANCE.name: Reader(
        lambda state, address, _s: state.account(address).balance, InsufficientFunds, "balance"
    ),
    BONDED.name: Reader(_bonded, InsufficientStake, "bonded stake"),
    "delegation": Reader(_delegated, InsufficientStake, "delegation"),
    "holding": Reader(_held, InsufficientAsset, "asset holding"),
}


@dataclass(frozen=True, slots=True)
class KindRule:
    """``spends(tx)``: what the transaction takes beyond its fee when it applies.
    ``dry_run``: whether it can fail for reasons the claims do not capture (a contract that does
    not exist, a vote without voting power), so admission dry-runs it against the sender's
    pending state. The next transaction of a sender is always dry-run, whatever its kind."""

    spends: Callable[[Tx], tuple[Claim, ...]]
    dry_run: bool


M = TypeVar("M", bound=Msg)


def _msg(tx: Tx, kind: type[M]) -> M:
    msg = tx.msg
    if not isinstance(msg, kind):  # pragma: no cover - RULES is keyed by the message's own kind
        raise TypeError(f"{kind.KIND} rule applied to a {msg.KIND} transaction")
    return msg


def _nothing(_tx: Tx) -> tuple[Claim, ...]:
    return ()


def _transfer(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, Transfer).amount),)


def _stake(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, Stake).amount),)


def _unstake(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BONDED, _msg(tx, Unstake).amount),)


def _escrow_open(tx: Tx) -> tuple[Claim, ...]:
    terms = _msg(tx, OpenEscrow).contract.terms
    # The maximum cost leaves the payer's balance (the sender's own, unless the contract names a
    # wallet that pays through its grant to the sender); the provider's collateral leaves the
    # provider's balance in the same transaction. Who may send it: the dry run checks.
    return (
        Claim(terms.paying_address, BALANCE, terms.max_cost),
        Claim(terms.provider_address, BALANCE, terms.collateral),
    )


def _validator_create(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, ValidatorCreate).amount),)


def _delegate(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, Delegate).amount),)


def _undelegate(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, Undelegate)
    return (Claim(tx.sender, delegation(msg.validator), msg.amount),)


def _redelegate(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, Redelegate)
    return (Claim(tx.sender, delegation(msg.source), msg.amount),)


def _gov_propose(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, GovPropose).deposit),)


def _asset_propose(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, AssetPropose).deposit),)


def _asset_send(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, AssetSend)
    return (Claim(tx.sender, holding(msg.denom), msg.amount),)


def _pool_add(tx: Tx) -> tuple[Claim, ...]:
    # The most the deposit takes of each side (it takes less of the side in surplus).
    msg = _msg(tx, PoolAdd)
    return (Claim(tx.sender, BALANCE, msg.dct), Claim(tx.sender, holding(msg.symbol), msg.asset))


def _pool_remove(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, PoolRemove)
    return (Claim(tx.sender, holding("lp:" + msg.symbol), msg.shares),)


def _pool_swap(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, PoolSwap)
    return (Claim(tx.sender, BALANCE if msg.sell_dct else holding(msg.symbol), msg.amount),)


def _mining_bond(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, MiningBond)
    return (Claim(tx.sender, holding("lp:" + msg.symbol), msg.shares),)


def _mining_unbond(tx: Tx) -> tuple[Claim, ...]:
    msg = _msg(tx, MiningUnbond)
    return (Claim(tx.sender, mining_bonded(msg.symbol), msg.shares),)


def mining_bonded(symbol: str) -> Resource:
    """The pool shares an account bonded to liquidity mining in the ``symbol`` pool."""
    return Resource("mining", symbol.encode())


def _mined(state: LedgerState, address: bytes, symbol: bytes) -> int:
    stake = state.mining.get((address, symbol.decode()))
    return 0 if stake is None else stake.shares


READERS["mining"] = Reader(_mined, NotBonded, "shares bonded to liquidity mining")


def _offer_stand(tx: Tx) -> tuple[Claim, ...]:
    return (Claim(tx.sender, BALANCE, _msg(tx, OfferStand).collateral),)


RULES: dict[str, KindRule] = {
    Transfer.KIND: KindRule(_transfer, dry_run=False),
    # Staking fails for a tombstoned validator too, which the balance does not say.
    Stake.KIND: KindRule(_stake, dry_run=True),
    Unstake.KIND: KindRule(_unstake, dry_run=False),
    # A consensus key taken, a bad proof, an existing validator: the balance does not say.
    ValidatorCreate.KIND: KindRule(_validator_create, dry_run=True),
    ValidatorEdit.KIND: KindRule(_nothing, dry_run=True),
    # An unknown or tombstoned validator, a share price of zero.
    Delegate.KIND: KindRule(_delegate, dry_run=True),
    # The delegation's worth bounds it; a validator that does not exist is worth 0 there.
    Undelegate.KIND: KindRule(_undelegate, dry_run=False),
    # The destination must exist and the stake may not be mid-redelegation.
    Redelegate.KIND: KindRule(_redelegate, dry_run=True),
    Unjail.KIND: KindRule(_nothing, dry_run=True),
    OpenEscrow.KIND: KindRule(_escrow_open, dry_run=True),
    Settle.KIND: KindRule(_nothing, dry_run=True),
    Refund.KIND: KindRule(_nothing, dry_run=True),
    EscrowClaim.KIND: KindRule(_nothing, dry_run=True),
    EscrowFinalize.KIND: KindRule(_nothing, dry_run=True),
    EscrowDispute.KIND: KindRule(_nothing, dry_run=True),
    GovPropose.KIND: KindRule(_gov_propose, dry_run=True),
    GovVote.KIND: KindRule(_nothing, dry_run=True),
    # A grant moves no money; it fails on its expiry range or the granter's limit of grants.
    Grant.KIND: KindRule(_nothing, dry_run=True),
    GrantRevoke.KIND: KindRule(_nothing, dry_run=True),
    # A symbol taken or too many assets.
    AssetPropose.KIND: KindRule(_asset_propose, dry_run=True),
    # Only the issuer mints: the holdings do not say.
    AssetMint.KIND: KindRule(_nothing, dry_run=True),
    # A holding exists only of a registered asset: enough of it is all a send needs.
    AssetSend.KIND: KindRule(_asset_send, dry_run=False),
    # Slippage limits, deadlines and pools that do not exist yet: the holdings do not say.
    PoolAdd.KIND: KindRule(_pool_add, dry_run=True),
    PoolRemove.KIND: KindRule(_pool_remove, dry_run=True),
    PoolSwap.KIND: KindRule(_pool_swap, dry_run=True),
    # The programme may be full; the asset may not be registered.
    MiningBond.KIND: KindRule(_mining_bond, dry_run=True),
    MiningUnbond.KIND: KindRule(_mining_unbond, dry_run=False),
    # Standing offers: what they take depends on the offer (its price, the challenge deposit),
    # and windows and parties decide whether they apply at all: always dry-run.
    OfferStand.KIND: KindRule(_offer_stand, dry_run=True),
    **{
        kind.KIND: KindRule(_nothing, dry_run=True)
        for kind in (
            OfferChallenge,
            OfferAnswer,
            OfferMiss,
            OfferWithdraw,
            OfferTake,
            OfferAccept,
            OfferRefused,
        )
    },
}

#: A kind nobody wrote a rule for: only the fee is counted, and it is always dry-run.
UNKNOWN_KIND = KindRule(_nothing, dry_run=True)


def rule_for(tx: Tx) -> KindRule:
    return RULES.get(tx.msg.KIND, UNKNOWN_KIND)


def commitments(tx: Tx, rule: KindRule) -> tuple[tuple[tuple[bytes, Resource], int], ...]:
    """The fee and the kind's claims, summed per (account, resource), zero amounts left out, in
    a fixed order (the fee's key first)."""
    # The fee's payer: the sender, or the wallet whose grant pays its node's escrow and fee.
    totals: dict[tuple[bytes, Resource], int] = {(fee_payer(tx), BALANCE): tx.fee}
    for claim in rule.spends(tx):
        key = (claim.account, claim.resource)
        totals[key] = totals.get(key, 0) + claim.amount
    return tuple((key, amount) for key, amount in totals.items() if amount > 0)


def available(state: LedgerState, account: bytes, resource: Resource) -> int:
    """How much of ``resource`` the committed state gives ``account``. Raises KeyError for a
    resource without a reader (a bug: every rule's resource has one)."""
    return READERS[resource.name].read(state, account, resource.subject)


def never_enough(account: bytes, resource: Resource, amount: int, held: int) -> LedgerError:
    """The ledger's error for a transaction that asks ``account`` for more than it holds at all."""
    reader = READERS[resource.name]
    return reader.never_enough(
        f"needs {format_amount(amount)} of {reader.what} but the account holds {format_amount(held)}"
    )
