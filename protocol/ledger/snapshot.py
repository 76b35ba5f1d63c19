"""Ledger snapshots: the whole state as canonical bytes, and back.

The node stores one with each committed height (or every few heights) so a restart replays only
from the newest snapshot. The rows are :meth:`LedgerState.sections`, the same the state hash
covers. Restoring checks every row's shape and every cell's type and range, rebuilds the indexes,
verifies the invariants and hashes the result, so a corrupted or malformed snapshot is a
:class:`SnapshotError` (which callers answer by replaying from genesis), never another exception
and never a state that fails later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol.contracts import UsageReceipt
from protocol.crypto import address_of
from protocol.encoding import DecodeError, decode, encode
from protocol.ledger import liquidity_state
from protocol.ledger.errors import InvariantError, LedgerError
from protocol.ledger.params import PARAM_BOUNDS, Params
from protocol.ledger.pool import ACTION_PROPOSALS
from protocol.ledger.state import (
    SCALARS,
    Account,
    Escrow,
    GovProposal,
    GrantInfo,
    LedgerState,
    Redelegation,
    SigningInfo,
    Unbonding,
    ValidatorInfo,
)
from protocol.ledger.tx import MAX_MONIKER, VOTE_OPTIONS
from protocol.units import MAX_AMOUNT

#: 3: registered validators with delegations, redelegations, signing records, pending rewards.
#: 4: grants, and the payer of each escrow.
#: 5: assets, holdings and pools (protocol.ledger.liquidity_state).
#: 6: standing offers' quote unit, and the DCT price each pending take fixed.
SNAPSHOT_VERSION = 6


class SnapshotError(InvariantError):
    """Snapshot bytes that do not decode to a consistent ledger state."""

    code = 2098


def encode_snapshot(state: LedgerState) -> bytes:
    doc: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "chain_id": state.chain_id,
        "params": state.params.to_wire(),
    }
    doc.update(state.sections())
    return encode(doc)


Check = Callable[[Any], bool]


def _uint(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_AMOUNT


def _blob(length: int | None = None) -> Check:
    return lambda value: type(value) is bytes and (length is None or len(value) == length)


def _flag(value: Any) -> bool:
    return type(value) is bool


def _one_of(*allowed: str) -> Check:
    return lambda value: type(value) is str and value in allowed


def _list(value: Any) -> bool:
    return type(value) is list


def _moniker(value: Any) -> bool:
    return type(value) is str and len(value) <= MAX_MONIKER and value.isprintable()


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


_VALIDATOR_COLUMNS = (_ADDRESS, _KEY, *(_uint,) * 6, _moniker, _uint, _flag, _uint, _flag)
_ESCROW_COLUMNS = (_HASH, _KEY, _KEY, _ADDRESS, _ADDRESS, *(_uint,) * 6, _blob(), _blob(), _uint, _ADDRESS)
_GRANT_COLUMNS = (_ADDRESS, _uint, _uint, _uint, _list)
_PROPOSAL_STATUS = _one_of("voting", "passed", "rejected", "vetoed", "no_quorum", "failed")
_PROPOSAL_PARAMS = _one_of(*PARAM_BOUNDS, *ACTION_PROPOSALS)
_PROPOSAL_COLUMNS: tuple[Check, ...] = (_uint, _ADDRESS, _PROPOSAL_PARAMS, _uint, _uint, _uint, _uint)
_PROPOSAL_COLUMNS += (_PROPOSAL_STATUS, *(_uint,) * 4)


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


def _restore_staking(state: LedgerState, doc: dict[str, Any]) -> None:
    for row in _rows(doc, "validators", _VALIDATOR_COLUMNS):
        state.validators.set(row[0], ValidatorInfo(*row[1:]))
        state.consensus_index.set(address_of(row[1]), row[0])
    held_by: dict[bytes, list[bytes]] = {}
    for delegator, operator, shares in _rows(doc, "delegations", (_ADDRESS, _ADDRESS, _uint)):
        state.delegations.set((delegator, operator), shares)
        held_by.setdefault(delegator, []).append(operator)
    for delegator, operators in held_by.items():
        state.delegated_to.set(delegator, tuple(operators))  # rows come in key order: sorted
    unbonding: tuple[Check, ...] = (_ADDRESS, _ADDRESS, _uint, _uint)
    for height, entries in _rows(doc, "unbonding", (_uint, _list)):
        state.unbonding.set(height, tuple(Unbonding(*_row(e, "unbonding entry", unbonding)) for e in entries))
    redelegation: tuple[Check, ...] = (_ADDRESS, _ADDRESS, _ADDRESS, _uint, _uint)
    for height, entries in _rows(doc, "redelegations", (_uint, _list)):
        restored = tuple(Redelegation(*_row(e, "redelegation", redelegation)) for e in entries)
        state.redelegations.set(height, restored)
        for entry in restored:
            state.redelegating_into.set((entry.delegator, entry.destination), height)
    for operator, start, missed in _rows(doc, "signing", (_ADDRESS, _uint, _list)):
        if not all(_uint(h) for h in missed):
            raise SnapshotError("signing: missed heights are integers")
        state.signing.set(operator, SigningInfo(start, tuple(missed)))


def _restore_grants(state: LedgerState, doc: dict[str, Any]) -> None:
    """Grants by granter; each must be one a ``grant`` could have made (check_invariants)."""
    for granter, entries in _rows(doc, "grants", (_ADDRESS, _list)):
        grants = []
        for entry in entries:
            grantee, limit, spent, expiry, kinds = _row(entry, "grant", _GRANT_COLUMNS)
            if not all(type(kind) is str for kind in kinds):
                raise SnapshotError("grant: kinds are strings")
            grants.append(GrantInfo(grantee, limit, spent, expiry, tuple(kinds)))
        state.grants.set(granter, tuple(grants))


def decode_snapshot(data: bytes) -> LedgerState:
    """Rebuild a state. Raises :class:`SnapshotError` for anything inconsistent."""
    try:
        doc: Any = decode(data)
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError("unsupported snapshot version")
        if type(doc.get("chain_id")) is not str:
            raise SnapshotError("chain_id: expected a string")
        state = LedgerState(doc["chain_id"], Params.from_wire(doc["params"]))
        for name, value in _rows(doc, "vars", (_one_of(*SCALARS), _uint)):
            state.vars.set(name, value)
        for address, balance, nonce in _rows(doc, "accounts", (_ADDRESS, _uint, _uint)):
            state.accounts.set(address, Account(balance, nonce))
        _restore_staking(state, doc)
        for row in _rows(doc, "escrows", _ESCROW_COLUMNS):
            state.escrows.set(row[0], _escrow(row))
        for contract_hash, outcome in _rows(
            doc, "closed", (_HASH, _one_of("settled", "refunded", "disputed"))
        ):
            state.closed_contracts.set(contract_hash, outcome)
        for row in _rows(doc, "proposals", _PROPOSAL_COLUMNS):
            state.proposals.set(row[0], GovProposal(*row))
        for proposal_id, voter, option in _rows(doc, "votes", (_uint, _ADDRESS, _one_of(*VOTE_OPTIONS))):
            state.votes.set((proposal_id, voter), option)
        for address, weight in _rows(doc, "epoch_work", (_ADDRESS, _uint)):
            state.epoch_work.set(address, weight)
        _restore_grants(state, doc)
        liquidity_state.restore(state, doc, _rows)
        state.check_invariants()
        state.state_hash()  # every row hashes: right types, integers in range
    # Any malformed row (too short: IndexError, wrong type: TypeError, out of range:
    # OverflowError, ...) is a corrupt snapshot, which callers answer by replaying from genesis.
    except (DecodeError, LedgerError, LookupError, TypeError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"corrupt snapshot: {exc!r}") from None
    return state
