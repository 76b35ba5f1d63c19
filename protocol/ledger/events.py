"""Ledger events: what a committed block did that services outside the ledger react to.

``apply_block`` returns, in :attr:`BlockResult.events`, one :class:`LedgerEvent` per effect a
subscriber acts on, in the order the block caused them: begin-block's slashes and jailings, then
each transaction's escrow step, then end-block's parameter changes. The node's chain feed hands
them to the market, which wakes the job a contract event names instead of re-reading the
ledger every block (``protocol/market/settlement.py`` decides what the job does then).

Events are derived from what the ledger applied, never from what a peer said, and cost O(1) per
transaction: a block of transfers has none. A transaction that failed left no event, because a
block applies all of its transactions or none (``protocol/ledger/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.ledger.msg import Msg
from protocol.ledger.state import GovProposal, LedgerState
from protocol.ledger.tx import EscrowClaim, EscrowDispute, EscrowFinalize, OpenEscrow, Refund, Settle

ESCROW_OPENED = "escrow_opened"
ESCROW_SETTLED = "escrow_settled"
ESCROW_CLAIMED = "escrow_claimed"
ESCROW_FINALIZED = "escrow_finalized"
ESCROW_DISPUTED = "escrow_disputed"
ESCROW_REFUNDED = "escrow_refunded"
VALIDATOR_SLASHED = "validator_slashed"
VALIDATOR_JAILED = "validator_jailed"
PARAMS_CHANGED = "params_changed"

#: The contract events: their ``key`` is a contract hash.
CONTRACT_EVENTS = (
    ESCROW_OPENED,
    ESCROW_SETTLED,
    ESCROW_CLAIMED,
    ESCROW_FINALIZED,
    ESCROW_DISPUTED,
    ESCROW_REFUNDED,
)
EVENT_KINDS = (*CONTRACT_EVENTS, VALIDATOR_SLASHED, VALIDATOR_JAILED, PARAMS_CHANGED)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """``kind`` (one of :data:`EVENT_KINDS`) of the thing named by ``key``: a contract hash for
    the escrow events, a validator operator's address for slashes and jailings, the parameter's
    name (UTF-8) for a parameter change."""

    kind: str
    key: bytes
    #: ``escrow_opened``: the DCT price per GPU-second the escrow fixed (a contract quoted in an
    #: asset is priced at its block, not by its terms); 0 for the other kinds.
    price: int = 0

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown ledger event kind {self.kind!r}")

    @property
    def is_contract_event(self) -> bool:
        return self.kind in CONTRACT_EVENTS


def tx_events(msg: Msg, state: LedgerState) -> tuple[LedgerEvent, ...]:
    """The events of one transaction's message, just applied to ``state`` (none for most kinds)."""
    if isinstance(msg, OpenEscrow):
        contract_hash = msg.contract.terms.contract_hash()
        return (LedgerEvent(ESCROW_OPENED, contract_hash, state.escrows[contract_hash].price_per_gpu_second),)
    if isinstance(msg, Settle):
        return (LedgerEvent(ESCROW_SETTLED, msg.receipt.contract_hash),)
    if isinstance(msg, EscrowClaim):
        return (LedgerEvent(ESCROW_CLAIMED, msg.receipt.contract_hash),)
    if isinstance(msg, EscrowFinalize):
        return (LedgerEvent(ESCROW_FINALIZED, msg.contract_hash),)
    if isinstance(msg, EscrowDispute):
        return (LedgerEvent(ESCROW_DISPUTED, msg.contract_hash),)
    if isinstance(msg, Refund):
        return (LedgerEvent(ESCROW_REFUNDED, msg.contract_hash),)
    return ()


def parameter_events(closed: list[GovProposal]) -> tuple[LedgerEvent, ...]:
    """A ``params_changed`` event per proposal that passed (and so set its parameter)."""
    return tuple(LedgerEvent(PARAMS_CHANGED, p.param.encode()) for p in closed if p.status == "passed")
