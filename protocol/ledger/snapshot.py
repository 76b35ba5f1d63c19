"""Ledger snapshots: the whole state as canonical bytes, and back.

The node stores one with each committed height (or every few heights) so a restart replays only
from the newest snapshot. Restoring verifies the invariants, and callers compare the state hash
with the one the chain committed, so a corrupted snapshot is detected rather than trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol.contracts import UsageReceipt
from protocol.encoding import DecodeError, decode, encode
from protocol.ledger.errors import InvariantError, LedgerError
from protocol.ledger.params import PARAM_BOUNDS, Params
from protocol.ledger.state import (
    SCALARS,
    Account,
    Escrow,
    LedgerState,
    Proposal,
    Unbonding,
    ValidatorInfo,
)
from protocol.ledger.tx import VOTE_OPTIONS
from protocol.units import MAX_AMOUNT

#: 2: escrows carry the provider's pending claim, params the dispute window.
SNAPSHOT_VERSION = 2


class SnapshotError(InvariantError):
    """Snapshot bytes that do not decode to a consistent ledger state."""

    code = 2098


def encode_snapshot(state: LedgerState) -> bytes:
    return encode(
        {
            "version": SNAPSHOT_VERSION,
            "chain_id": state.chain_id,
            "vars": [[k, v] for k, v in state.vars.sorted_items()],
            "params": state.params.to_wire(),
            "accounts": [[a, x.balance, x.nonce] for a, x in state.accounts.sorted_items()],
            "validators": [
                [a, x.public_key, x.bonded, x.tombstoned] for a, x in state.validators.sorted_items()
            ],
            "unbonding": [
                [h, [[u.address, u.amount] for u in us]] for h, us in state.unbonding.sorted_items()
            ],
            "escrows": [
                [
                    c,
                    e.requester_key,
                    e.provider_key,
                    e.requester,
                    e.provider,
                    e.price_per_gpu_second,
                    e.max_gpu_seconds,
                    e.max_cost,
                    e.collateral,
                    e.deadline_height,
                    e.opened_height,
                    e.claim,
                    e.claim_provider_sig,
                    e.claimed_height,
                ]
                for c, e in state.escrows.sorted_items()
            ],
            "closed": [[c, s] for c, s in state.closed_contracts.sorted_items()],
            "proposals": [
                [p.id, p.proposer, p.param, p.value, p.deposit, p.submit_height, p.end_height]
                + [p.status, p.yes, p.no, p.abstain, p.veto]
                for _, p in state.proposals.sorted_items()
            ],
            "votes": [[i, voter, option] for (i, voter), option in state.votes.sorted_items()],
            "epoch_work": [[a, s] for a, s in state.epoch_work.sorted_items()],
        }
    )


Check = Callable[[Any], bool]


def _uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_AMOUNT


def _blob(length: int | None = None) -> Check:
    return lambda value: type(value) is bytes and (length is None or len(value) == length)


def _text(value: Any) -> bool:
    return type(value) is str


def _flag(value: Any) -> bool:
    return type(value) is bool


def _one_of(*allowed: str) -> Check:
    return lambda value: value in allowed and type(value) is str


_ADDRESS, _KEY, _HASH = _blob(20), _blob(32), _blob(32)


def _row(value: Any, section: str, columns: tuple[Check, ...]) -> list[Any]:
    """One row of ``section``, every column of the right type: exactly as many as ``columns``."""
    if type(value) is not list or len(value) != len(columns):
        raise SnapshotError(f"a {section} row has {len(columns)} columns")
    for index, (cell, check) in enumerate(zip(value, columns, strict=True)):
        if not check(cell):
            raise SnapshotError(f"{section} row, column {index}: {cell!r} is not what it should be")
    return value


def _rows(doc: dict[str, Any], section: str, columns: tuple[Check, ...]) -> list[list[Any]]:
    rows = doc.get(section)
    if type(rows) is not list:
        raise SnapshotError(f"{section}: expected a list of rows")
    return [_row(row, section, columns) for row in rows]


_ESCROW_COLUMNS = (_HASH, _KEY, _KEY, _ADDRESS, _ADDRESS, *(_uint,) * 6, _blob(), _blob(), _uint)
_PROPOSAL_STATUS = _one_of("voting", "passed", "rejected", "vetoed", "no_quorum", "failed")
_PROPOSAL_COLUMNS = (
    _uint,
    _ADDRESS,
    _one_of(*PARAM_BOUNDS),
    _uint,
    _uint,
    _uint,
    _uint,
    _PROPOSAL_STATUS,
    *(_uint,) * 4,
)


def _escrow(row: list[Any]) -> Escrow:
    """One escrow row (contract hash first); a pending claim must be a receipt for that contract."""
    escrow = Escrow(*row[1:])
    if escrow.has_claim:
        try:
            receipt = UsageReceipt.decode(escrow.claim)
        except DecodeError as exc:
            raise SnapshotError(f"an escrow's claim is not a receipt: {exc.message}") from None
        if receipt.contract_hash != row[0]:
            raise SnapshotError("an escrow's claim names another contract")
    return escrow


def decode_snapshot(data: bytes) -> LedgerState:
    """Rebuild a state. Raises :class:`SnapshotError` for anything inconsistent."""
    try:
        doc: Any = decode(data)
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError("unsupported snapshot version")
        if type(doc.get("chain_id")) is not str:
            raise SnapshotError("chain_id: expected a string")
        state = LedgerState(doc["chain_id"], Params.from_wire(doc["params"]))
        for name, value in _rows(doc, "vars", (_text, _uint)):
            if name not in SCALARS:
                raise SnapshotError(f"unknown scalar {name!r}")
            state.vars.set(name, value)
        for address, balance, nonce in _rows(doc, "accounts", (_ADDRESS, _uint, _uint)):
            state.accounts.set(address, Account(balance, nonce))
        for address, public_key, bonded, tombstoned in _rows(
            doc, "validators", (_ADDRESS, _KEY, _uint, _flag)
        ):
            state.validators.set(address, ValidatorInfo(public_key, bonded, tombstoned))
        for height, entries in _rows(doc, "unbonding", (_uint, lambda v: type(v) is list)):
            unbonding = [_row(entry, "unbonding entry", (_ADDRESS, _uint)) for entry in entries]
            state.unbonding.set(height, tuple(Unbonding(a, amount) for a, amount in unbonding))
        for row in _rows(doc, "escrows", _ESCROW_COLUMNS):
            state.escrows.set(row[0], _escrow(row))
        for contract_hash, outcome in _rows(
            doc, "closed", (_HASH, _one_of("settled", "refunded", "disputed"))
        ):
            state.closed_contracts.set(contract_hash, outcome)
        for row in _rows(doc, "proposals", _PROPOSAL_COLUMNS):
            state.proposals.set(row[0], Proposal(*row))
        for proposal_id, voter, option in _rows(doc, "votes", (_uint, _ADDRESS, _one_of(*VOTE_OPTIONS))):
            state.votes.set((proposal_id, voter), option)
        for address, weight in _rows(doc, "epoch_work", (_ADDRESS, _uint)):
            state.epoch_work.set(address, weight)
        state.check_invariants()
        state.state_hash()  # every row hashes: right types, integers in range
    # Any malformed row (too short: IndexError, wrong type: TypeError, out of range:
    # OverflowError, ...) is a corrupt snapshot, which callers answer by replaying from genesis.
    except (DecodeError, LedgerError, LookupError, TypeError, ValueError, ArithmeticError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc!r}") from None
    return state
