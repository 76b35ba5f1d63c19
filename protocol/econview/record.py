"""What one committed block did to the token economy: the row a node records per block.

A node writes one :class:`BlockEconomics` per block, in the same SQLite transaction as the block
(``node/store.py``), and ``dcent economics history`` reads them back. Recording at commit rather
than deriving by replay: a history query then costs one indexed read per block instead of a
replay from genesis (minutes on a chain of 1-second blocks), and the row is exactly what the
replica computed, never a re-derivation that could drift from it.

Every figure comes from the ledger itself: the totals from the state after the block, the
block's issuance, burn and fees from ``apply_block``'s :class:`BlockResult`, and the work settled
from the block's settle and finalize transactions, priced with the escrow module's own pay rule
(:func:`protocol.ledger.escrow.receipt_pay` and ``SETTLEMENT_RULES``, so a change to how
settlement pays is a change here). A disputed claim is not settled work (its pay is burned), nor
is a refund, nor a receipt whose outcome closes the contract as one (a provider error).

Pure: no I/O, no clock (the block's own time is passed in), no floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.contracts import UsageReceipt
from protocol.economics import bonded_ratio
from protocol.encoding import Record
from protocol.errors import ProtocolError
from protocol.ledger.block import BlockResult
from protocol.ledger.escrow import SETTLEMENT_RULES, receipt_pay
from protocol.ledger.quoted import fixed_price
from protocol.ledger.state import Escrow, LedgerState
from protocol.ledger.tx import EscrowFinalize, OpenEscrow, Settle, Tx, decode_tx

_UINT63 = 2**63
_ESCROW_KIND = b"escrow_"


class RecordFormatError(ProtocolError):
    """A block economics record with a field out of range (a corrupt store row)."""

    code = 1601


@dataclass(frozen=True, slots=True)
class SettledWork:
    """The compute a block settled: GPU-seconds paid for, what requesters paid for them (before
    the protocol fee) and in how many contracts."""

    gpu_seconds: int = 0
    paid: int = 0
    contracts: int = 0


@dataclass(frozen=True, slots=True)
class BlockEconomics(Record):
    """The economy after one block. Amounts in base units, ``inflation`` DEC-scaled (10^18)."""

    height: int
    time_ms: int
    txs: int
    # Totals after the block (the ledger's running figures).
    supply: int
    minted: int
    burned: int
    bonded: int
    unbonding: int
    escrowed: int
    deposits: int
    community_pool: int
    provider_pool: int
    inflation: int
    # What this block did.
    issued: int
    burned_in_block: int
    fees: int
    validator_rewards: int
    provider_rewards: int
    gpu_seconds: int
    paid: int
    settlements: int

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < _UINT63:
                raise RecordFormatError(f"block economics.{name}: {value!r} is not a count in [0, 2^63)")

    @property
    def bonded_ratio(self) -> int:
        return bonded_ratio(self.bonded, self.supply)

    @property
    def price_per_gpu_second(self) -> int | None:
        """The average price paid per GPU-second in this block (truncated), None if no work."""
        return self.paid // self.gpu_seconds if self.gpu_seconds else None


def settled_work(before: LedgerState, txs: Sequence[Tx | bytes]) -> SettledWork:
    """The work the block of ``txs`` settled on top of ``before`` (the state it was applied to).

    The block applied, so every transaction decodes and every escrow it settles exists, either
    in ``before`` or opened earlier in the same block. Raises nothing for such a block; a
    transaction that does not decode raises the ledger's DecodeError/MalformedTx.
    """
    opened: dict[bytes, Escrow] = {}
    gpu_seconds = paid = contracts = 0
    for raw in txs:
        if isinstance(raw, bytes) and _ESCROW_KIND not in raw:
            # The kind is a string inside the body, which the envelope carries verbatim: a
            # transaction without these bytes is no escrow, and needs no second decoding.
            continue
        tx = decode_tx(raw) if isinstance(raw, bytes) else raw
        msg = tx.msg
        if isinstance(msg, OpenEscrow):
            terms = msg.contract.terms
            # A quoted contract pays the price its escrow fixed, which no trade in this block moves.
            price = fixed_price(before, terms, before.height + 1)
            opened[terms.contract_hash()] = Escrow(
                requester_key=terms.requester,
                provider_key=terms.provider,
                requester=terms.requester_address,
                provider=terms.provider_address,
                price_per_gpu_second=price,
                max_gpu_seconds=terms.max_gpu_seconds,
                max_cost=price * terms.max_gpu_seconds,
                collateral=terms.collateral,
                deadline_height=terms.deadline_height,
                opened_height=0,
            )
            continue
        if isinstance(msg, Settle):
            contract_hash, receipt = msg.receipt.contract_hash, msg.receipt
        elif isinstance(msg, EscrowFinalize):
            contract_hash, receipt = msg.contract_hash, None
        else:
            continue
        escrow = opened.get(contract_hash) or before.escrows.get(contract_hash)
        if escrow is None:
            continue  # cannot happen in an applied block; nothing to count
        if receipt is None:
            receipt = UsageReceipt.decode(escrow.claim)
        if SETTLEMENT_RULES[receipt.outcome].slashes_collateral:
            continue  # a provider error closes as a refund: no work was sold
        # As escrow._pay_out: the pay by outcome, and the GPU-seconds credited to epoch work.
        gpu_seconds += min(receipt.gpu_seconds, escrow.max_gpu_seconds)
        paid += receipt_pay(escrow, receipt)
        contracts += 1
    return SettledWork(gpu_seconds, paid, contracts)


def record_block(
    before: LedgerState, after: LedgerState, txs: Sequence[Tx | bytes], result: BlockResult, time_ms: int
) -> BlockEconomics:
    """The record of one applied block: ``before`` is the state it was applied to, ``after`` the
    state it produced, ``result`` what ``apply_block`` returned. Raises RecordFormatError only for
    figures no ledger can hold (negative or 2^63 and above)."""
    work = settled_work(before, txs)
    v = after.vars
    return BlockEconomics(
        height=result.height,
        time_ms=time_ms,
        txs=len(result.tx_hashes),
        supply=after.total_supply(),
        minted=v["minted"],
        burned=v["burned"],
        bonded=v["total_bonded"],
        unbonding=v["total_unbonding"],
        escrowed=v["total_escrowed"],
        deposits=v["total_deposits"],
        community_pool=v["community_pool"],
        provider_pool=v["provider_pool"],
        inflation=v["inflation"],
        issued=result.minted,
        burned_in_block=result.burned,
        fees=result.fees,
        validator_rewards=sum(reward for _, reward in result.validator_rewards),
        provider_rewards=sum(reward for _, reward in result.provider_rewards),
        gpu_seconds=work.gpu_seconds,
        paid=work.paid,
        settlements=work.contracts,
    )
