"""Ledger snapshots: the whole state as canonical bytes, and back.

The node stores one with each committed height (or every few heights) so a restart replays only
from the newest snapshot. Restoring verifies the invariants, and callers compare the state hash
with the one the chain committed, so a corrupted snapshot is detected rather than trusted.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from protocol.contracts import UsageReceipt
from protocol.encoding import DecodeError, decode, encode
from protocol.ledger.errors import InvariantError
from protocol.ledger.params import Params
from protocol.ledger.state import (
    SCALARS,
    Account,
    Escrow,
    LedgerState,
    Proposal,
    Unbonding,
    ValidatorInfo,
)

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


_ESCROW_COLUMNS = 1 + len(fields(Escrow))


def _escrow(row: Any) -> Escrow:
    """One escrow row (contract hash first); a pending claim must be a receipt for that contract."""
    if not isinstance(row, list) or len(row) != _ESCROW_COLUMNS:
        raise SnapshotError(f"an escrow row has {_ESCROW_COLUMNS} columns")
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
        state = LedgerState(str(doc["chain_id"]), Params.from_wire(doc["params"]))
        for name, value in doc["vars"]:
            if name not in SCALARS:
                raise SnapshotError(f"unknown scalar {name!r}")
            state.vars.set(name, value)
        for address, balance, nonce in doc["accounts"]:
            state.accounts.set(address, Account(balance, nonce))
        for address, public_key, bonded, tombstoned in doc["validators"]:
            state.validators.set(address, ValidatorInfo(public_key, bonded, tombstoned))
        for height, entries in doc["unbonding"]:
            state.unbonding.set(height, tuple(Unbonding(a, amount) for a, amount in entries))
        for row in doc["escrows"]:
            state.escrows.set(row[0], _escrow(row))
        for contract_hash, outcome in doc["closed"]:
            state.closed_contracts.set(contract_hash, outcome)
        for row in doc["proposals"]:
            state.proposals.set(row[0], Proposal(*row))
        for proposal_id, voter, option in doc["votes"]:
            state.votes.set((proposal_id, voter), option)
        for address, seconds in doc["epoch_work"]:
            state.epoch_work.set(address, seconds)
        state.check_invariants()
    except (DecodeError, InvariantError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc}") from None
    return state
